"""Are the seen pixels along hole edges darker than the truth, and how much of the needed hole
correction (hole_bias.py) does that make?

1. ``gt - warp`` on seen pixels within 2 px of a hole, against deeper inside, per channel: for
   training shards (frames 0 and 8 of every ``--every``-th example) and the evaluation clips (last
   frame, made at full size without a resize);
2. ``--fill``: the needed correction in the holes with the harmonic fill made from the mask as
   stored, against the fill made only from the seen pixels 2 px or more inside (frame 8).

    python benchmarks/hole_edge_check.py --clips /tmp/teval --examples /tmp/pool31 --every 4 --fill \\
        --json benchmarks/results/hole_bias_pool31_edge_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_erosion

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from teacher_eval import load_clip  # noqa: E402


def edge_and_inside(warp, gt, mask):
    inner = binary_erosion(mask, iterations=2)
    edge = mask & ~inner
    d = gt - warp
    return (d[edge].mean(0) if edge.any() else None), (d[inner].mean(0) if inner.any() else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path)
    ap.add_argument("--examples", type=Path, nargs="*", default=[])
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--fill", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from fvgen.videomodel.fill import harmonic_fill_np
    from fvgen.videomodel.data import example_files, load_example

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return np.mean(xs, 0).round(3).tolist() if xs else None

    res = {}
    if a.clips:
        pairs = [edge_and_inside(w[-1], g, m[-1]) for _, _, w, m, g in (load_clip(f) for f in sorted(a.clips.glob("*.npz")))]
        res["evaluation"] = {"n": len(pairs), "edge": mean([p[0] for p in pairs]), "inside": mean([p[1] for p in pairs])}
    for folder in a.examples:
        pairs, stored, eroded = [], [], []
        for f in example_files([folder])[::a.every]:
            ex = load_example(f)
            for j in (0, 8):
                w, g, m = ex["warp"][j] / 255.0, ex["gt"][j] / 255.0, ex["mask"][j] > 127
                pairs.append(edge_and_inside(w, g, m))
                me = binary_erosion(m, iterations=2)
                if a.fill and j == 8 and me.any() and not m.all():
                    stored.append((g - harmonic_fill_np(w, m))[~m].mean(0))
                    eroded.append((g - harmonic_fill_np(w, me))[~m].mean(0))
        res[str(folder)] = {"frames": len(pairs), "edge": mean([p[0] for p in pairs]), "inside": mean([p[1] for p in pairs])}
        if a.fill:
            res[str(folder)].update(fill_frames=len(stored), needed_mask_as_stored=mean(stored),
                                    needed_fill_from_2px_inside=mean(eroded))
        print(folder, json.dumps(res[str(folder)]), flush=True)
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
