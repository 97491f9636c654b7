"""Warp quality of the dense prior: MVS cloud from 3 train views, splatted into held-out views.

With ground-truth (dataset) cameras, builds the dense cloud with :func:`fvgen.priors.mvs.dense_point_cloud`
from the standard 3-view train split (no sparse points: the depth range comes from the coarse
sweep, as in a run without SfM points), renders it with :func:`fvgen.render.points.render_points`
at each test camera and reports coverage (fraction of pixels the warp fills, i.e. the validity
mask's mean), PSNR over the covered pixels only, PSNR/SSIM of the whole frame once the warp's holes
are filled (``--fill``: biharmonic inpainting, or the harmonic fill that is the evaluation's classical
baseline) (the measure that compares clouds of different coverage: a
denser cloud only helps if what it adds beats interpolating around it), plus timings. Two splat sizes are measured:
``tight`` = one world radius, 1.5 x the cloud's typical (median nearest-neighbour) spacing, and
``adaptive`` = per-point radius, the distance to the 4th nearest neighbour (fills more, blurs more).

Splits (see /work/shared/datasets/README.md):
- fern: train 1, 10, 19; test 0, 8, 16 (504x378).
- dtu_scan24: train 25, 22, 28; all 25 listed test views (384x384, unmasked).
- fox: the video rasters over the head at three elevations; among the frames within 10 deg of the
  median elevation (about world up, around the point the optical axes converge on), train = the
  frames nearest 20 / 50 / 80 % of their azimuth span; test = every 8th of the remaining frames (in file
  order). Images are downscaled to 540x960 and undistorted (OpenCV k1, k2, p1, p2) to pinhole
  cameras with the same K; test images are undistorted the same way and compared in that space.

With ``--priors-runs DIR``, the clouds are instead the pipeline's own priors folders, as
``eval_scenes.py --priors-only --preset P --poses gt estimated --out DIR`` leaves them
(``DIR/<scene>-<poses>-<P>/priors``): SfM's sparse points, its cameras when estimated, the preset's
stereo. With estimated cameras the held-out cameras are mapped into the cloud's frame as ``fvgen
eval`` maps them (:func:`fvgen.evaluation.heldout.map_test_cameras`: the train cameras' similarity,
focal scaled by the estimated / true ratio; no per-view alignment), so the scores include the
cameras' error, as a user's novel views do.

Usage: ``python benchmarks/warp_quality.py [--scenes fern dtu_scan24 fox] [--threads N] [--out FILE]
[--fill harmonic] [--max-image-size 320 --planes 64] [--mvs propagation_iters=2 ...]``, or
``--priors-runs DIR [--preset default] [--poses gt estimated]``.
Writes ``benchmarks/results/warp_quality.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from fvgen.core.cameras import Camera, read_cameras_opencv_json  # noqa: E402
from fvgen.core.datasets import EVAL_ROOT as DATASETS, split  # noqa: E402
from fvgen.core.images import read_image, resize_image  # noqa: E402
from fvgen.priors.mvs import MvsConf, dense_point_cloud  # noqa: E402
from fvgen.core.config import from_dict, parse_assignments  # noqa: E402
from fvgen.videomodel.fill import biharmonic_fill, harmonic_fill_np  # noqa: E402
from fvgen.core.metrics import psnr, ssim  # noqa: E402
from fvgen.core.undistort import undistort_image  # noqa: E402
from fvgen.render.points import SPACING_TO_RADIUS, point_radii, render_points, typical_spacing



def load_view(root: Path, cam: Camera, size: tuple[int, int] | None) -> tuple[np.ndarray, Camera]:
    img = read_image(root / cam.name)
    if size is not None and (img.shape[1], img.shape[0]) != size:
        img = resize_image(img, *size)
    c = cam.scaled(img.shape[1], img.shape[0])
    if c.dist:
        img, c = undistort_image(img, c)
    return img, c


def scene_image_size(name: str) -> tuple[int, int] | None:
    """(width, height) the scene's images are evaluated at; None: as stored."""
    return (540, 960) if name == "fox" else None


FILLS = {"biharmonic": biharmonic_fill, "harmonic": harmonic_fill_np}


def evaluate_cloud(cloud, root: Path, cams: list[Camera], test: list[int],
                   size: tuple[int, int] | None, device: str, fill: str = "biharmonic",
                   render_cameras: list[Camera] | None = None) -> dict:
    """Warp metrics of a dense cloud at the held-out cameras ``test`` (indices into ``cams``):
    per view and averaged coverage / covered-pixel PSNR for the tight and adaptive splats, and the
    whole-frame PSNR / SSIM of the tight warp with its holes filled (``fill``: biharmonic or harmonic).
    ``render_cameras`` (one per test view, pinhole, at the view's evaluated size): where the cloud is
    drawn instead of the ground-truth camera (estimated cameras' frame)."""
    spacing = typical_spacing(cloud.xyz)
    t1 = time.time()
    radii = point_radii(cloud.xyz, k=4)
    t_radii = time.time() - t1
    splats = {  # two splat sizes: a tight one and one adapted to the local point density
        "tight": SPACING_TO_RADIUS * spacing,
        "adaptive": torch.from_numpy(radii).to(device),
    }
    xyz = torch.from_numpy(cloud.xyz).to(device)
    rgb = torch.from_numpy(cloud.rgb).to(device)
    views = []
    t_render = 0.0
    for j, i in enumerate(test):
        gt, c = load_view(root, cams[i], size)
        if render_cameras is not None:
            c = render_cameras[j]
        v = {"index": i, "file": cams[i].name}
        for mode, radius in splats.items():
            t1 = time.time()
            out, mask, _ = render_points(xyz, rgb, c.K, c.w2c, c.width, c.height, world_radius=radius)
            t_render += time.time() - t1
            out, mask = out.cpu().numpy(), mask.cpu().numpy()
            mse = float(((out - gt) ** 2)[mask].mean()) if mask.any() else float("nan")
            v[f"coverage_{mode}"] = float(mask.mean())
            v[f"psnr_covered_{mode}"] = float(-10 * np.log10(max(mse, 1e-10)))
            if mode == "tight":
                filled = torch.as_tensor(FILLS[fill](out, mask), dtype=torch.float32)
                g = torch.as_tensor(gt, dtype=torch.float32)
                v["psnr_filled_tight"] = float(psnr(filled, g))
                v["ssim_filled_tight"] = float(ssim(filled, g))
        views.append(v)
    h, w = gt.shape[:2]
    return {
        "image_size": [w, h],
        "points": len(cloud),
        "point_spacing": spacing,
        "splat_world_radius_tight": SPACING_TO_RADIUS * spacing,
        "splat_world_radius_adaptive_median": float(np.median(radii)),
        "radii_seconds": round(t_radii, 2),
        "render_ms_per_view": round(1000 * t_render / (2 * len(test)), 1),
        **{f"{m}_{mode}": float(np.mean([v[f"{m}_{mode}"] for v in views]))
           for mode in ("tight", "adaptive") for m in ("coverage", "psnr_covered")},
        **{f"{m}_tight": float(np.mean([v[f"{m}_tight"] for v in views])) for m in ("psnr_filled", "ssim_filled")},
        "views": views,
    }


def run_scene(name: str, conf: MvsConf, device: str, fill: str = "biharmonic", datasets: Path = DATASETS) -> dict:
    root = datasets / name
    cams = read_cameras_opencv_json(root / "cameras_opencv.json")
    train, test = split(name, cams)
    size = scene_image_size(name)
    tr = [load_view(root, cams[i], size) for i in train]
    imgs = np.stack([t[0] for t in tr])
    t0, c0 = time.time(), time.process_time()
    cloud, info = dense_point_cloud(imgs, [t[1] for t in tr], None, conf, device=device)
    t_mvs, c_mvs = time.time() - t0, time.process_time() - c0
    ev = evaluate_cloud(cloud, root, cams, test, size, device, fill)
    return {
        "scene": name,
        "train": train,
        "test": test,
        "mvs_seconds": round(t_mvs, 2),
        "mvs_cpu_seconds": round(c_mvs, 2),  # process CPU time: what a busy machine's wall time hides
        **ev,
        "mvs_info": {k: v for k, v in info.items() if k != "conf"},
    }


def run_priors(name: str, priors_dir: Path, device: str, fill: str = "biharmonic",
               datasets: Path = DATASETS) -> dict:
    """Warp metrics of a pipeline priors folder (see the module docstring) at the scene's held-out
    cameras, mapped into the folder's frame when its cameras were estimated."""
    from fvgen.evaluation.heldout import map_test_cameras
    from fvgen.stages import priors as priors_stage

    root = datasets / name
    cams = read_cameras_opencv_json(root / "cameras_opencv.json")
    train, test = split(name, cams)
    size = scene_image_size(name)
    pri, _ = priors_stage.load(priors_dir)
    by_name = {Path(c.name).stem: c for c in pri.cameras}
    est_train = [by_name[Path(cams[i].name).stem] for i in train]
    w, h = est_train[0].width, est_train[0].height
    # ground-truth cameras as the pipeline undistorts them: the same K, no distortion
    gt_train = [replace(cams[i].scaled(w, h), dist=None) for i in train]
    gt_test = [load_view(root, cams[i], size)[1] for i in test]
    mapped, alignment = map_test_cameras(gt_train, est_train, gt_test)
    ev = evaluate_cloud(pri.points, root, cams, test, size, device, fill, render_cameras=mapped)
    mvs = pri.info.get("mvs", {})
    return {
        "scene": name,
        "priors": str(priors_dir),
        "poses": pri.info.get("poses"),
        "train": train,
        "test": test,
        "mvs_seconds": mvs.get("seconds"),
        "sfm": {k: v for k, v in pri.info.get("sfm", {}).items() if k in ("matcher_tried", "image_size", "seconds")},
        "test_camera_mapping": alignment,
        **ev,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", nargs="+", default=["fern", "dtu_scan24", "fox"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-image-size", type=int, default=None)
    ap.add_argument("--planes", type=int, default=None)
    ap.add_argument("--datasets", type=Path, default=DATASETS, help="folder holding the scenes")
    ap.add_argument("--fill", choices=sorted(FILLS), default="biharmonic",
                    help="how the warp's holes are filled for the whole-frame PSNR/SSIM")
    ap.add_argument("--mvs", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other MvsConf settings, e.g. propagation_iters=2 (TOML values)")
    ap.add_argument("--priors-runs", type=Path, default=None,
                    help="score the pipeline's priors folders DIR/<scene>-<poses>-<preset>/priors instead")
    ap.add_argument("--preset", default="default", help="with --priors-runs: the preset the folders were made with")
    ap.add_argument("--poses", nargs="+", default=["gt", "estimated"], help="with --priors-runs")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "warp_quality.json"))
    args = ap.parse_args()
    if args.priors_runs is not None:
        return main_priors_runs(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.datasets.exists():
        raise SystemExit(f"datasets not found at {args.datasets}")
    kw = {}
    if args.max_image_size:
        kw["max_image_size"] = args.max_image_size
    if args.planes:
        kw["num_planes"] = args.planes
    kw.update(parse_assignments(args.mvs))
    conf = from_dict(MvsConf, kw)
    results = []
    for s in args.scenes:
        results.append(run_scene(s, conf, args.device, args.fill, args.datasets))
        r = results[-1]
        print(f"{s}: coverage {r['coverage_tight']:.3f}, PSNR covered {r['psnr_covered_tight']:.2f}, filled "
              f"{r['psnr_filled_tight']:.2f} / {r['ssim_filled_tight']:.3f}, MVS {r['mvs_seconds']:.1f} s "
              f"({r['mvs_cpu_seconds']:.1f} s CPU)", flush=True)
    out = {
        "command": "python " + " ".join([str(Path(sys.argv[0]).as_posix())] + sys.argv[1:]),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "machine": platform.machine(),
        "mvs_conf": asdict(conf),
        "fill": args.fill,
        "cameras": "ground truth (cameras_opencv.json); no sparse points (coarse-sweep depth range)",
        "scenes": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("| scene | train | test views | size | points | coverage (tight) | PSNR covered (tight) "
          "| coverage (adaptive) | PSNR covered (adaptive) | PSNR / SSIM filled (tight) | MVS s | render ms/view |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['scene']} | {','.join(map(str, r['train']))} | {len(r['test'])} | "
              f"{r['image_size'][0]}x{r['image_size'][1]} | {r['points']} | "
              f"{r['coverage_tight']:.3f} | {r['psnr_covered_tight']:.2f} | "
              f"{r['coverage_adaptive']:.3f} | {r['psnr_covered_adaptive']:.2f} | "
              f"{r['psnr_filled_tight']:.2f} / {r['ssim_filled_tight']:.3f} | "
              f"{r['mvs_seconds']:.1f} | {r['render_ms_per_view']:.0f} |")



def main_priors_runs(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for s in args.scenes:
        for poses in args.poses:
            folder = args.priors_runs / f"{s}-{poses}-{args.preset}" / "priors"
            if not (folder / "stage.json").exists():
                raise SystemExit(f"no finished priors folder {folder}: run eval_scenes.py --priors-only first")
            r = run_priors(s, folder, args.device, args.fill, args.datasets)
            results.append(r)
            print(f"{s} ({poses}): coverage {r['coverage_tight']:.3f}, PSNR covered {r['psnr_covered_tight']:.2f}, "
                  f"filled {r['psnr_filled_tight']:.2f} / {r['ssim_filled_tight']:.3f}", flush=True)
    out = {
        "command": "python " + " ".join([str(Path(sys.argv[0]).as_posix())] + sys.argv[1:]),
        "torch": torch.__version__,
        "device": args.device,
        "machine": platform.machine(),
        "preset": args.preset,
        "fill": args.fill,
        "cameras": "the priors folders' (ground truth, or SfM's with the held-out cameras mapped by the train "
                   "cameras' similarity and focal ratio, no per-view alignment)",
        "scenes": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("| scene | cameras | points | coverage | PSNR covered | PSNR / SSIM filled | MVS s | focal ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['scene']} | {r['poses']} | {r['points']} | {r['coverage_tight']:.3f} | "
              f"{r['psnr_covered_tight']:.2f} | {r['psnr_filled_tight']:.2f} / {r['ssim_filled_tight']:.3f} | "
              f"{r['mvs_seconds']} | {r['test_camera_mapping']['focal_ratio']:.3f} |")


if __name__ == "__main__":
    main()
