"""Stage 4, fit: 3D Gaussian Splatting on the input views (and generated views, when given).

Reads ``OUT/priors/`` (images, cameras, dense points for the initialisation) and optionally
generated views (a generate stage folder: frames, cameras, per-pixel confidence masks); writes
``OUT/fit/``: ``scene.ply`` (INRIA layout, input cameras' frame), ``cameras.json`` (the input
cameras the splats were fitted to, in the priors' ``cameras_opencv.json`` schema: refined with
``fit.pose_refine``, else the priors' own), ``renders/*.png`` at those cameras and the fit's
figures (``train_psnr`` is over the input views only; with ``fit.pose_refine`` also
``pose_refine``: per input camera its change in degrees and scene units). How generated views
enter the fit (share of steps, weight, window) is :class:`fvgen.fit.FitConf`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.cache import StageResult, cache_key, run_stage
from ..core.cameras import Camera, read_cameras_opencv_json, write_cameras_opencv_json
from ..core.metrics import psnr
from ..core.video import write_pngs
from ..fit import FitConf, FitViews, fit_gaussians
from ..render.gaussians import render_splats
from ..render.splats import save_ply
from . import priors as priors_stage

VERSION = "1"
NAME = "fit"


@dataclass(frozen=True)
class ExtraViews:
    """Views beside the inputs (e.g. generated ones): a stage folder with ``rgb/``, ``mask/`` (soft
    per-pixel confidence) and ``cameras.json``, its stage token (``StageResult.token``), and a factor
    on its images' loss weight (on top of ``FitConf.generated_weight``)."""

    folder: Path
    key: str
    weight: float = 1.0


GENERATED_FIELDS = ("input_share", "generated_weight", "generated_weight_end", "generated_start", "generated_stop",
                    "generated_norm", "input_steps")
POSE_FIELDS = ("pose_refine", "pose_lr", "pose_refine_start")


def key(conf: FitConf, priors_result: StageResult, extra: Sequence[ExtraViews], device: str) -> str:
    """The fit's cache key; the settings of generated views enter it only when there are some, and
    those of pose refinement only when it is on, so a fit without them keeps the key it had before
    they existed."""
    settings = asdict(conf)
    if not extra:
        settings = {k: v for k, v in settings.items() if k not in GENERATED_FIELDS}
    if settings.get("input_steps") == "shared":  # added later: fits from before it keep their keys
        del settings["input_steps"]
    if not conf.pose_refine:
        settings = {k: v for k, v in settings.items() if k not in POSE_FIELDS}
    return cache_key(NAME, VERSION, settings, priors_result.token, *[e.key for e in extra],
                     weights=[e.weight for e in extra], device=device)


def _load_extra(extra: ExtraViews, size: tuple[int, int]):
    from ..render.warp import read_view_folder

    cams, imgs, masks = read_view_folder(extra.folder, size)
    return cams, np.stack(imgs), np.stack(masks)


def main(conf: FitConf, priors_result: StageResult, root: Path, device: str = "cpu",
         extra: Sequence[ExtraViews] = (), force: bool = False, progress=None) -> StageResult:
    k = key(conf, priors_result, extra, device)

    def compute(tmp: Path) -> dict:
        pri, imgs = priors_stage.load(priors_result.path)
        cams: list[Camera] = list(pri.cameras)
        images = torch.from_numpy(imgs)
        weights = torch.ones(len(cams))
        masks = torch.ones(images.shape[:3])
        dropped, used = 0, []
        for e in extra:
            ecams, eimgs, emasks = _load_extra(e, (cams[0].width, cams[0].height))
            keep = [i for i, m in enumerate(emasks) if m.max() > 0]  # confidence 0 everywhere: nothing to learn
            dropped += len(ecams) - len(keep)
            ecams, eimgs, emasks = [ecams[i] for i in keep], eimgs[keep], emasks[keep]
            used += [c.name for c in ecams]
            cams += ecams
            images = torch.cat([images, torch.from_numpy(eimgs)])
            weights = torch.cat([weights, torch.full((len(ecams),), e.weight)])
            masks = torch.cat([masks, torch.from_numpy(emasks).float()])
        views = FitViews(images, cams, weights, masks if extra else None, inputs=len(pri.cameras))
        splats, figures, input_cams = fit_gaussians(views, pri.points, conf, device, progress)
        save_ply(splats, tmp / "scene.ply")
        write_cameras_opencv_json(input_cams, tmp / "cameras.json")
        n_in = len(pri.cameras)
        with torch.no_grad():
            dev_splats = {k: v.to(device) for k, v in splats.items()}
            renders = [render_splats(dev_splats, [c])[0][0].clamp(0, 1).cpu() for c in input_cams]
        write_pngs(tmp / "renders", [r.numpy() for r in renders], [Path(c.name).stem for c in input_cams])
        figures["train_psnr"] = float(np.mean([psnr(r, images[i]) for i, r in enumerate(renders)]))
        figures["input_views"] = n_in
        figures["extra_views"] = len(cams) - n_in
        if extra:
            figures["extra_views_dropped"] = dropped
            figures["extra_views_used"] = used  # names, so the export lists only what the splats saw
        return figures

    return run_stage(root, NAME, k, compute, force)


def generated_views_used(fit_result: StageResult) -> set[str] | None:
    """Names of the generated views the fit learned from (views of zero confidence are left out);
    None for a fit folder written before the fit recorded them (all were used then)."""
    used = fit_result.figures.get("extra_views_used")
    return None if used is None else set(used)


def input_cameras(fit_result: StageResult, priors_cameras: Sequence[Camera]) -> list[Camera]:
    """The input cameras the fit's splats belong to: ``fit/cameras.json`` (refined by
    ``fit.pose_refine``, else the priors' own); the priors' cameras for a fit folder written before
    that file existed."""
    path = Path(fit_result.path) / "cameras.json"
    if not path.exists():
        return list(priors_cameras)
    cams = read_cameras_opencv_json(path)
    if len(cams) != len(priors_cameras):
        from ..core.errors import FvgenError

        raise FvgenError(f"{path} lists {len(cams)} cameras, the priors {len(priors_cameras)}: rerun with --force fit")
    return cams
