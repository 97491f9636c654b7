"""Benchmark of the weight-free pose priors (:mod:`fvgen.priors.sfm`) on standard 3-view splits.

Scenes (read from ``../shared/datasets`` beside the checkout, never copied):

- fern: LLFF train split, frames 1, 10, 19 (504x378 as stored).
- dtu_scan24: frames 25, 22, 28 (384x384 as stored; calibrated ground truth).
- fox: the 3 train frames of ``fvgen.core.datasets`` (azimuth 20/50/80 % among the frames near
  the median elevation). Fox has lens distortion (OPENCV k1, k2, p1, p2 in
  ``cameras_opencv.json``): images are NOT undistorted; registration uses them as stored with
  fvgen's default pinhole camera model (SIMPLE_PINHOLE), i.e. distortion is ignored. Its reference poses come from COLMAP
  themselves (so are fern's): errors of 0.1-0.3 deg are within the reference's noise.

Resolution: images are loaded with ``max_size`` (default 1024 px on the long side) and never
upscaled, so fern runs at 504x378, DTU at 384x384 and fox at 576x1024.

Grid: matcher {sift, xfeat-lighterglue} x focal {known (reference fx at the loaded size, principal
point at the image centre), unknown} x seeds (default 0, 1); the relaxed mapper (fvgen default).
Metrics: views registered, worst pairwise relative-rotation and translation-direction error (deg)
vs the reference (:func:`fvgen.core.cameras.pose_errors`), mean relative focal error, wall time of
:func:`fvgen.priors.sfm.estimate_poses` (all CPU cores; also CPU time and the 1-minute load average, since the
benchmark machine may be shared). Failed runs (a view does not register) count 0
views registered.

Usage: ``python benchmarks/poses.py [--max-size 1024] [--seeds 0 1] [--out benchmarks/results/poses.json]``
Writes JSON and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from fvgen.core.cameras import Camera, pose_errors, read_cameras_opencv_json  # noqa: E402
from fvgen.core.errors import FvgenError  # noqa: E402
from fvgen.core.images import load_images  # noqa: E402
from fvgen.priors.sfm import MATCHERS, SfmConf, estimate_poses  # noqa: E402
from fvgen.core.datasets import EVAL_ROOT as DATASETS, EVAL_SCENES as SPLITS, split  # noqa: E402



def scene_views(scene: str) -> tuple[list[Path], list[Camera], list[int]]:
    folder = DATASETS / scene
    cams = read_cameras_opencv_json(folder / "cameras_opencv.json")
    idx = split(scene, cams)[0]
    return [folder / cams[i].name for i in idx], [cams[i] for i in idx], idx


def run_one(files, ref_full, matcher, focal_known, seed, max_size, work):
    imgs = load_images(files, max_size=max_size)
    ref = [c.scaled(*imgs.size) for c in ref_full]
    conf = SfmConf(matcher=matcher, seed=seed)
    focal = float(np.mean([c.fx for c in ref])) if focal_known else None
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        cams, pts, info = estimate_poses(imgs, conf, work, focal_px=focal)
    except FvgenError as e:
        return {"registered": 0, "error": str(e), "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0, "size": list(imgs.size)}
    err = pose_errors(cams, ref)
    return {"registered": info["registered_views"], "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0, "load_avg_1min": os.getloadavg()[0],
            "size": list(imgs.size), "points": info["points"],
            "verified_matches": info["verified_matches"],
            "rot_deg": err["rotation_error_deg_max"],
            "trans_deg": err["translation_direction_error_deg_max"],
            "focal_rel": err["focal_error_rel_mean"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-size", type=int, default=1024)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--scenes", nargs="+", default=list(SPLITS))
    ap.add_argument("--matchers", nargs="+", default=list(MATCHERS))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "poses.json")
    ap.add_argument("--table-only", action="store_true", help="re-make the table from --out and print it")
    args = ap.parse_args(argv)
    if args.table_only:
        result = json.loads(args.out.read_text())
        scenes = list(dict.fromkeys(r["scene"] for r in result["runs"]))
        matchers = list(dict.fromkeys(r["matcher"] for r in result["runs"]))
        result["table_markdown"] = summary_table(result["runs"], scenes, matchers)
        args.out.write_text(json.dumps(result, indent=1))
        print(result["table_markdown"])
        return
    if not DATASETS.is_dir():
        sys.exit(f"datasets not found: {DATASETS}")

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for scene in args.scenes:
            files, ref, idx = scene_views(scene)
            for matcher in args.matchers:
                for focal_known in (True, False):
                    for seed in args.seeds:
                        r = run_one(files, ref, matcher, focal_known, seed, args.max_size, Path(tmp) / "w")
                        r.update(scene=scene, frames=idx, matcher=matcher,
                                 focal="known" if focal_known else "unknown", seed=seed)
                        runs.append(r)
                        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                          for k, v in r.items() if k != "verified_matches"}), flush=True)

    table = summary_table(runs, args.scenes, args.matchers)
    result = {"max_size": args.max_size, "seeds": args.seeds, "relaxed_mapper": True,
              "threads": os.cpu_count(), "machine": f"{platform.machine()}, {platform.processor() or ''}".strip(", "),
              "splits": {s: next(r["frames"] for r in runs if r["scene"] == s) for s in args.scenes},
              "fox_distortion": "ignored (images used as stored, pinhole model)",
              "camera_model": SfmConf().camera_model,
              "runs": runs, "table_markdown": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print()
    print(table)


def summary_table(runs, scenes, matchers) -> str:
    head = "| matcher | focal | " + " | ".join(scenes) + " |"
    lines = [head, "|" + "---|" * (2 + len(scenes))]
    for m in matchers:
        for f in ("known", "unknown"):
            cells = []
            for s in scenes:
                rs = [r for r in runs if r["scene"] == s and r["matcher"] == m and r["focal"] == f]
                ok = [r for r in rs if r["registered"] == 3]
                reg = "/".join(str(r["registered"]) for r in rs)
                t = np.mean([r["seconds"] for r in rs])
                cpu = np.mean([r.get("cpu_seconds", np.nan) for r in rs])
                if ok:
                    rot = max(r["rot_deg"] for r in ok)
                    tr = max(r["trans_deg"] for r in ok)
                    fe = "" if f == "known" else f", f {100 * np.mean([r['focal_rel'] for r in ok]):+.0f}%"
                    cells.append(f"{reg} views, {rot:.2f}/{tr:.2f} deg{fe}, {t:.0f} s ({cpu:.0f} s CPU)")
                else:
                    cells.append(f"**{reg} views**, {t:.0f} s ({cpu:.0f} s CPU)")
            lines.append(f"| {m} | {f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Cell: views registered per seed, worst (over pairs and seeds) rotation / "
                 "translation-direction error vs reference, mean focal error when estimated, mean wall time "
                 "(CPU time of the process in brackets).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
