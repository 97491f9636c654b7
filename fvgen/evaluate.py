"""``fvgen eval``: fit on some views of a posed scene, render the held-out views, score them.

``--poses gt`` runs the priors with the scene's own cameras (triangulation and dense stereo only).
``--poses estimated`` runs the priors from the train images alone, then maps the ground-truth test
cameras into the estimated frame by the similarity that aligns the ground-truth train cameras to
the estimated ones (:func:`fvgen.cameras.align_cameras`); test intrinsics are the ground truth's.
Writes ``OUT/metrics.json`` (per view and mean PSNR/SSIM, LPIPS or the reason it is absent, the
implementations used) and ``OUT/compare/<view>.png`` (ground truth | render | |error| x4).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import __version__
from .cache import run_lock, write_run_json
from .cameras import align_cameras, load_poses
from .config import PipelineConf
from .errors import FvgenError
from .fit import render_splats
from .images import find_scene_images, read_image, resize_image, save_image
from .metrics import lpips_status, psnr, ssim
from .pipeline import command_line, fit_with_progress, check_force, resolve_device
from .splats import load_ply
from .stages import priors as priors_stage
from .undistort import undistort_image

SSIM_IMPL = "kornia.metrics.ssim: 11x11 Gaussian window (sigma 1.5), 'same' padding, mean over pixels and channels"
PSNR_IMPL = "-10 log10(MSE) over all pixels and RGB channels, images in [0, 1]"


def scene_image_files(scene_dir: Path) -> list[Path]:
    scene_dir = Path(scene_dir)
    if not scene_dir.is_dir():
        raise FvgenError(f"scene folder not found: {scene_dir}")
    files = find_scene_images(scene_dir)
    if not files:
        raise FvgenError(f"no images in {scene_dir} or its images/ folder")
    return files


def parse_indices(text: str, n: int, what: str) -> list[int]:
    try:
        idx = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise FvgenError(f"--{what} takes comma-separated image indices, got {text!r}") from None
    if len(set(idx)) != len(idx):
        raise FvgenError(f"--{what} lists a view twice: {text}")
    bad = [i for i in idx if not 0 <= i < n]
    if bad or not idx:
        raise FvgenError(f"--{what} indices {bad or text!r} out of range: the scene has {n} images (0..{n - 1})")
    return idx


def evaluate(scene_dir: Path, train: Sequence[int], test: Sequence[int], poses: str, out: Path,
             conf: PipelineConf, device: str = "auto", force: Sequence[str] = ()) -> dict:
    if poses not in ("gt", "estimated"):
        raise FvgenError(f"--poses takes gt or estimated, not {poses!r}")
    device = resolve_device(device)
    force = check_force(force, ("priors", "fit"))
    scene_dir, out = Path(scene_dir), Path(out)
    files = scene_image_files(scene_dir)
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise FvgenError(f"views {overlap} are in both --train and --test")
    if len(train) < 2:
        raise FvgenError("--train needs at least 2 views")
    train_files = [files[i] for i in train]
    test_files = [files[i] for i in test]
    start = time.perf_counter()
    with run_lock(out):
        inputs = priors_stage.PriorsInputs(tuple(train_files), scene_dir if poses == "gt" else None)
        pri_res = priors_stage.main(conf.images, conf.priors, inputs, out, device, force="priors" in force)
        fit_res = fit_with_progress(conf, pri_res, out, device, force)
        pri, _ = priors_stage.load(pri_res.path)
        size = (pri.cameras[0].width, pri.cameras[0].height)
        gt_test = load_poses(scene_dir, [f.name for f in test_files], size)
        alignment = None
        if poses == "estimated":
            gt_train = load_poses(scene_dir, [f.name for f in train_files], size)
            sim = align_cameras(gt_train, pri.cameras)
            resid = [float(np.linalg.norm(sim.apply_points(g.center) - e.center))
                     for g, e in zip(gt_train, pri.cameras)]
            # The scene was fitted with the estimated focal: test views use the ground-truth
            # intrinsics scaled by the train views' estimated/true focal ratio.
            focal_ratio = float(np.mean([e.K[0, 0] / g.K[0, 0] for e, g in zip(pri.cameras, gt_train)]))
            alignment = {"method": "least-squares similarity (centres and camera axes) aligning the ground-truth "
                                   "train cameras to the estimated ones; test cameras mapped by it; test "
                                   "intrinsics = ground truth with focal x estimated/true train focal ratio",
                         "scale": sim.scale, "focal_ratio": focal_ratio, "train_centre_residuals": resid}
            test_cams = []
            for c in gt_test:
                K = c.K.copy()
                K[0, 0] *= focal_ratio
                K[1, 1] *= focal_ratio
                test_cams.append(replace(c, c2w=sim.apply_c2w(c.c2w), K=K))
        else:
            test_cams = gt_test
        splats = load_ply(fit_res.path / "scene.ply", device=device)
        lp_model, lp_impl = lpips_status()
        shutil.rmtree(out / "compare", ignore_errors=True)  # no images left from another --test
        per_view = []
        for f, cam, cam_gt in zip(test_files, test_cams, gt_test):
            img = resize_image(read_image(f), *size)
            img, _ = undistort_image(img, cam_gt)
            cam = replace(cam, dist=None)
            with torch.no_grad():
                render = render_splats(splats, [cam])[0][0].clamp(0, 1).cpu()
            target = torch.from_numpy(img)
            row = {"view": f.name, "psnr": psnr(render, target), "ssim": ssim(render, target), "lpips": None}
            if lp_model is not None:
                with torch.no_grad():
                    to = lambda x: x.permute(2, 0, 1)[None] * 2 - 1  # noqa: E731
                    row["lpips"] = float(lp_model(to(render), to(target)))
            per_view.append(row)
            err = (render - target).abs().clamp(0, 0.25) * 4
            save_image(out / "compare" / f"{f.stem}.png", torch.cat([target, render, err], 1).numpy())
        mean = lambda k: float(np.mean([r[k] for r in per_view]))  # noqa: E731
        metrics = {
            "fvgen": __version__,
            "scene": str(scene_dir),
            "preset": conf.name,
            "poses": poses,
            "train": [f.name for f in train_files],
            "test": [f.name for f in test_files],
            "image_size": list(size),
            "results": {"psnr": mean("psnr"), "ssim": mean("ssim"),
                        "lpips": mean("lpips") if lp_model is not None else None},
            "lpips_reason": None if lp_model is not None else lp_impl,
            "implementation": {"psnr": PSNR_IMPL, "ssim": SSIM_IMPL, "lpips": lp_impl},
            "alignment": alignment,
            "per_view": per_view,
            "fit": fit_res.figures,
            "priors": pri_res.figures,
            "device": device,
            "seconds": round(time.perf_counter() - start, 2),
        }
        tmp = out / ".metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=1))
        os.replace(tmp, out / "metrics.json")
        write_run_json(out, command_line(), [pri_res, fit_res], {"preset": conf.name, "device": device})
    return metrics
