"""Hole statistics (no fill needed, so every frame of every example): coverage and hole shape of built
training examples (multi-view and warp-back photo shards) against the evaluation views' warps.

For each folder of shards and for the evaluation clips (``teacher_eval.py prepare``: their last frame,
the held-out view): per frame the hole fraction, the share of hole pixels within 2 px of a seen pixel
(thin gaps and band edges) and the largest connected hole as a fraction of the frame
(``hole_bias.hole_shape``); mean and quartiles over frames, and per kind of source.

    python benchmarks/hole_stats.py --clips /tmp/teval --examples /tmp/pool31 /tmp/photos60 \\
        --json benchmarks/results/hole_stats.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hole_bias import hole_shape  # noqa: E402
from teacher_eval import load_clip  # noqa: E402


def describe(rows: list[dict]) -> dict:
    out = {"frames": len(rows)}
    for k in ("hole_fraction", "hole_thin_share", "hole_largest"):
        v = np.array([r[k] for r in rows])
        out[k] = {"mean": round(float(v.mean()), 3), "q25": round(float(np.quantile(v, 0.25)), 3),
                  "median": round(float(np.median(v)), 3), "q75": round(float(np.quantile(v, 0.75)), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path)
    ap.add_argument("--examples", type=Path, nargs="*", default=[])
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from fvgen.videomodel.data import example_files, load_example

    groups: dict[str, list[dict]] = defaultdict(list)
    if a.clips:
        for f in sorted(a.clips.glob("*.npz")):
            meta, _, _, masks, _ = load_clip(f)
            groups[f"evaluation/{meta['scene']}"].append(hole_shape(masks[-1]))
            groups["evaluation/all"].append(groups[f"evaluation/{meta['scene']}"][-1])
    for folder in a.examples:
        for f in example_files([folder]):
            ex = load_example(f)
            src = ex["meta"].get("source", "")
            kind = "photos" if src.startswith("photos/") else "procedural" if src.startswith("procedural") else "multi-view"
            for m in ex["mask"] > 127:
                r = hole_shape(m)
                groups[f"{kind}/all"].append(r)
                if kind == "photos":
                    groups[f"photos/{ex['meta'].get('depth', '?')} depth"].append(r)
    res = {"machine": platform.node(), "date": time.strftime("%Y-%m-%d"), "clips": str(a.clips),
           "examples": [str(e) for e in a.examples], "groups": {g: describe(rs) for g, rs in sorted(groups.items())}}
    for g, s in res["groups"].items():
        print(f"{g:28s} frames {s['frames']:5d}  " + "  ".join(
            f"{k} {v['mean']:.3f} ({v['q25']:.2f}-{v['q75']:.2f})" for k, v in s.items() if k != "frames"))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
