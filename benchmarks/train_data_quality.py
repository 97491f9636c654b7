"""How trustworthy are the warps in the teacher's training examples? For each training scene, a
few examples are made as ``fvgen data build`` makes them (dense prior of 2-3
sparse views on a 16-frame clip, without SfM triangulation as on the GPU host, drawn along the
clip) and scored: coverage and PSNR of the warp against the real frames on the covered pixels.
Two knobs are compared: the frame gap between the sparse views (``--min-gap``) and the MVS
fusion's minimum triangulation angle (``--min-angle``).

    python benchmarks/train_data_quality.py --min-gap 1 --min-angle 0 --json benchmarks/results/train_data_quality_before.json
    python benchmarks/train_data_quality.py --min-gap 4 --min-angle 1 --json benchmarks/results/train_data_quality_after.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-scene", type=int, default=3)
    ap.add_argument("--min-gap", type=int, default=4)
    ap.add_argument("--min-angle", type=float, default=1.0)
    ap.add_argument("--max-size", type=int, default=320)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    import torch

    from fvgen.presets import load_preset
    from fvgen.core.errors import FvgenError
    from fvgen.videomodel import data as tdata
    from fvgen.videomodel.configs import get_preset

    torch.set_num_threads(2)
    p = get_preset("embedded")
    pconf = load_preset("cpu").priors
    pconf = replace(pconf, mvs=replace(pconf.mvs, min_triangulation_angle=a.min_angle))
    rows = []
    t0 = time.time()
    for scene in tdata.train_scenes():
        imgs, cams, names = tdata.load_posed_scene(scene, a.max_size)
        rng = np.random.default_rng([a.seed, len(rows)])
        for k in range(a.per_scene):
            sparse, clip = tdata.pick_views(len(imgs), p.frames, rng, min_gap=a.min_gap)
            try:
                priors = tdata.make_priors(imgs, cams, names, sparse, pconf, "cpu", triangulate=False)
            except FvgenError as e:
                rows.append({"scene": scene.name, "sparse": sparse, "error": str(e)})
                continue
            ex = tdata.clip_example(priors, imgs, cams, names, sparse, clip, p.width, p.height, "cpu", scene.name)
            m = ex["meta"]
            rows.append({"scene": scene.name, "sparse": [clip.index(v) for v in sparse], "coverage": m["coverage"],
                         "warp_psnr": m["warp_psnr"], "points": m["points"]})
            print(json.dumps(rows[-1]), flush=True)
    ok = [r for r in rows if r.get("warp_psnr") is not None]
    summary = {"examples": len(ok), "failed": len(rows) - len(ok),
               "coverage_mean": float(np.mean([r["coverage"] for r in ok])),
               "warp_psnr_mean": float(np.mean([r["warp_psnr"] for r in ok])),
               "warp_psnr_median": float(np.median([r["warp_psnr"] for r in ok]))}
    print("| scene | examples | coverage | warp PSNR covered |\n|---|---|---|---|")
    for s in sorted({r["scene"] for r in ok}):
        rs = [r for r in ok if r["scene"] == s]
        print(f"| {s} | {len(rs)} | {np.mean([r['coverage'] for r in rs]):.2f} | "
              f"{np.mean([r['warp_psnr'] for r in rs]):.2f} |")
    print(f"| all | {summary['examples']} | {summary['coverage_mean']:.2f} | {summary['warp_psnr_mean']:.2f} |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": " ".join(sys.argv), "host": platform.node(),
                                      "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - t0, 1),
                                      "min_gap": a.min_gap, "min_angle": a.min_angle, "summary": summary,
                                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
