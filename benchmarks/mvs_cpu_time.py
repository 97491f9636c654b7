"""CPU time of the dense stereo alone (no rendering), plane sweep vs sweep + propagation.

Same inputs as ``warp_quality.py`` (3 train views, ground-truth cameras, no sparse points):
per scene and setting, the process CPU time of :func:`fvgen.priors.mvs.dense_point_cloud` (on a shared
machine the wall time is inflated by other jobs; with one torch thread the process time is
about the wall time the run would take alone), its split into range / sweep / propagation
wall seconds, and the fraction of each view's pixels kept after the geometric check.

Usage: ``python benchmarks/mvs_cpu_time.py [--scenes ...] [--max-image-size 320 --planes 64]
[--mvs KEY=VALUE ...]``; runs the sweep and then the sweep with the ``--mvs`` settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fvgen.core.cameras import read_cameras_opencv_json
from fvgen.core.config import from_dict, parse_assignments
from fvgen.core.datasets import EVAL_ROOT as DATASETS, split
from fvgen.priors.mvs import MvsConf, dense_point_cloud
from warp_quality import load_view, scene_image_size

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", nargs="+", default=["fern", "dtu_scan24", "fox"])
    ap.add_argument("--max-image-size", type=int, default=320)
    ap.add_argument("--planes", type=int, default=64)
    ap.add_argument("--mvs", nargs="*", default=["propagation_iters=2"], metavar="KEY=VALUE")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mvs_cpu_time.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = {"max_image_size": args.max_image_size, "num_planes": args.planes}
    prop = {**base, **parse_assignments(args.mvs)}
    rows = []
    for name in args.scenes:
        root = DATASETS / name
        cams = read_cameras_opencv_json(root / "cameras_opencv.json")
        train, _ = split(name, cams)
        tr = [load_view(root, cams[i], scene_image_size(name)) for i in train]
        imgs = np.stack([t[0] for t in tr])
        for label, kw in (("sweep", base), ("propagation", prop)):
            conf = from_dict(MvsConf, kw)
            c0, t0 = time.process_time(), time.time()
            cloud, info = dense_point_cloud(imgs, [t[1] for t in tr], None, conf)
            row = {"scene": name, "setting": label, "mvs": kw, "cpu_seconds": round(time.process_time() - c0, 2),
                   "wall_seconds": round(time.time() - t0, 2), "points": len(cloud),
                   **{k: info[k] for k in ("seconds_range", "seconds_sweep", "seconds_propagation",
                                           "valid_fraction", "stereo_size")}}
            rows.append(row)
            print(f"{name} {label}: {row['cpu_seconds']:.1f} s CPU, {row['wall_seconds']:.1f} s wall, kept "
                  f"{np.mean(row['valid_fraction']):.3f}", flush=True)
    Path(args.out).write_text(json.dumps({"command": "python " + " ".join(sys.argv), "threads": 1,
                                          "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
