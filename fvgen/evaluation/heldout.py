"""Scoring a fitted scene on held-out views of a posed scene (what ``fvgen eval`` reports).

``--poses estimated`` runs the priors from the train images alone; :func:`map_test_cameras` then
maps the ground-truth test cameras into the estimated frame by the similarity that aligns the
ground-truth train cameras to the estimated ones (:func:`fvgen.core.cameras.align_cameras`) --
the train cameras the splats were fitted to, i.e. as the fit refined them with
``fit.pose_refine`` (``fvgen.stages.fit.input_cameras``); test
intrinsics are the ground truth's, with the train views' estimated/true focal ratio.
:func:`score_views` renders the test cameras and writes ``compare/<view>.png`` (ground truth |
render | |error| x4) with per-view PSNR / SSIM (and LPIPS when its weights are installed);
:func:`score_heldout` adds, with ``[eval] align_test_poses`` / ``--align-test-poses``, the scores
after each test camera was aligned on the frozen scene (:mod:`fvgen.evaluation.align`).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.cameras import Camera, align_cameras
from ..core.errors import FvgenError
from ..core.images import find_scene_images, save_image
from ..core.metrics import lpips_status, psnr, ssim
from ..render.gaussians import render_splats
from .align import EvalConf

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


def map_test_cameras(gt_train: Sequence[Camera], est_train: Sequence[Camera],
                     gt_test: Sequence[Camera]) -> tuple[list[Camera], dict]:
    """Ground-truth test cameras in the frame of the estimated train cameras, and how they were mapped.
    ``est_train`` must be the cameras the scene was fitted to (refined ones when the fit refined them)."""
    sim = align_cameras(gt_train, est_train)
    resid = [float(np.linalg.norm(sim.apply_points(g.center) - e.center)) for g, e in zip(gt_train, est_train)]
    # The scene was fitted with the estimated focal: test views use the ground-truth intrinsics
    # scaled by the train views' estimated/true focal ratio.
    focal_ratio = float(np.mean([e.K[0, 0] / g.K[0, 0] for e, g in zip(est_train, gt_train)]))
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
    return test_cams, alignment


def score_views(splats: dict[str, torch.Tensor], cameras: Sequence[Camera], targets: Sequence[np.ndarray],
                names: Sequence[str], compare_dir: Path) -> dict:
    """Render ``splats`` at ``cameras`` and score against ``targets`` [H, W, 3] float in [0, 1].

    Returns ``{"per_view": [...], "results": {psnr, ssim, lpips}, "lpips_reason", "implementation"}``
    and writes ``compare_dir/<name>.png`` (replacing what an earlier run left there)."""
    lp_model, lp_impl = lpips_status()
    compare_dir = Path(compare_dir)
    shutil.rmtree(compare_dir, ignore_errors=True)  # no images left from another --test
    per_view = []
    for name, cam, img in zip(names, cameras, targets):
        with torch.no_grad():
            render = render_splats(splats, [replace(cam, dist=None)])[0][0].clamp(0, 1).cpu()
        target = torch.as_tensor(np.asarray(img, np.float32))
        row = {"view": name, "psnr": psnr(render, target), "ssim": ssim(render, target), "lpips": None}
        if lp_model is not None:
            with torch.no_grad():
                to = lambda x: x.permute(2, 0, 1)[None] * 2 - 1  # noqa: E731
                row["lpips"] = float(lp_model(to(render), to(target)))
        per_view.append(row)
        err = (render - target).abs().clamp(0, 0.25) * 4
        save_image(compare_dir / f"{Path(name).stem}.png", torch.cat([target, render, err], 1).numpy())
    mean = lambda k: float(np.mean([r[k] for r in per_view]))  # noqa: E731
    return {"per_view": per_view,
            "results": {"psnr": mean("psnr"), "ssim": mean("ssim"), "lpips": mean("lpips") if lp_model else None},
            "lpips_reason": None if lp_model is not None else lp_impl,
            "implementation": {"psnr": PSNR_IMPL, "ssim": SSIM_IMPL, "lpips": lp_impl}}


def score_heldout(splats: dict[str, torch.Tensor], cameras: Sequence[Camera], targets: Sequence[np.ndarray],
                  names: Sequence[str], out: Path, conf: EvalConf) -> dict:
    """The held-out scores of ``fvgen eval``: ``results_raw`` at ``cameras`` and, with
    ``conf.align_test_poses``, ``results_aligned`` after each test camera's pose was aligned on the
    frozen splats (:mod:`fvgen.evaluation.align`); ``results`` is the headline (aligned when
    asked for). The headline's comparison images go to ``out/compare/``, the other's to
    ``out/compare_raw/``."""
    from .align import align_camera

    cameras = [replace(c, dist=None) for c in cameras]
    if not conf.align_test_poses:
        shutil.rmtree(Path(out) / "compare_raw", ignore_errors=True)
        raw = score_views(splats, cameras, targets, names, Path(out) / "compare")
        return {**raw, "results_raw": raw["results"], "results_aligned": None, "headline": "raw",
                "pose_alignment": None}
    raw = score_views(splats, cameras, targets, names, Path(out) / "compare_raw")
    from ..core.progress import progress_bar

    aligned_cams, moves = [], []
    steps = conf.align_steps
    with progress_bar("align test poses", len(cameras) * steps) as update:
        for i, (cam, img, name) in enumerate(zip(cameras, targets, names)):
            cam2, info = align_camera(splats, cam, img, steps, conf.align_lr,
                                      progress=lambda done, fields, i=i: update(i * steps + done, fields))
            aligned_cams.append(cam2)
            moves.append({"view": name, **info})
    aligned = score_views(splats, aligned_cams, targets, names, Path(out) / "compare")
    for row, r in zip(aligned["per_view"], raw["per_view"]):
        row["raw"] = {k: r[k] for k in ("psnr", "ssim", "lpips")}
    return {**aligned, "results_raw": raw["results"], "results_aligned": aligned["results"], "headline": "aligned",
            "pose_alignment": {"method": "per test camera: 6-DoF pose (left-multiplied axis-angle + translation) "
                                         "optimised on the frozen splats, Adam on L1 + 0.2 (1 - SSIM), coarse to "
                                         "fine (1/2 then full resolution), lr decaying 30x, from the mapped start",
                               "steps": conf.align_steps, "lr": conf.align_lr, "per_view": moves}}
