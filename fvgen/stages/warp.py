"""Stage 2, warp: the dense prior rendered along a camera trajectory, with a validity mask.

Reads ``OUT/priors/``; writes ``OUT/warp/<traj>/``: ``rgb/*.png`` and ``mask/*.png`` per frame
(mask 255 where the point cloud covers the pixel, 0 in holes), ``rgb.mp4``, ``mask.mp4`` and the
per-frame cameras as ``transforms.json`` and ``cameras.json``. This is what the generation stage
turns into photo-real frames.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import FvgenError
from ..cache import StageResult, cache_key, run_stage
from ..cameras import Camera, write_cameras_opencv_json, write_transforms_json
from ..config import WarpConf
from ..prior import Priors
from ..trajectories import NAMED, make_trajectory
from ..video import write_mp4, write_pngs

VERSION = "1"


def traj_name(spec: str) -> str:
    if spec in NAMED:
        return spec
    p = Path(spec)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:8] if p.is_file() else "missing"
    return f"{p.stem}-{digest}"


def _point_renderer(name: str, device: str):
    """gsplat's rasterizer for ``gsplat`` (or ``auto`` on CUDA with gsplat installed); None: ours."""
    if name not in ("auto", "torch", "gsplat"):
        raise FvgenError(f"warp renderer {name!r}: use auto, torch or gsplat")
    if name == "torch" or (name == "auto" and not str(device).startswith("cuda")):
        return None
    try:
        import gsplat  # noqa: F401
    except ImportError:
        if name == "gsplat":
            raise FvgenError("warp renderer gsplat: gsplat is not installed (pip install gsplat)") from None
        return None
    if not str(device).startswith("cuda"):
        raise FvgenError("warp renderer gsplat needs a CUDA device (--device cuda)")
    from ..render.points import render_points_gsplat

    return render_points_gsplat


def render_warp(priors: Priors, cameras: list[Camera], conf: WarpConf, device: str = "cpu",
                progress=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB frames [H, W, 3] and masks [H, W] (bool) of the point cloud at ``cameras``."""
    from ..render.points import SPACING_TO_RADIUS, render_points, typical_spacing

    render_points = _point_renderer(conf.renderer, device) or render_points
    xyz = torch.as_tensor(priors.points.xyz, device=device)
    rgb = torch.as_tensor(priors.points.rgb, device=device)
    radius = SPACING_TO_RADIUS * typical_spacing(priors.points.xyz)  # once, not per frame
    frames, masks = [], []
    for i, cam in enumerate(cameras):
        kwargs = ({"radius_px": conf.point_radius_px} if conf.point_radius_px > 0 else {"world_radius": radius})
        img, mask, _ = render_points(xyz, rgb, torch.as_tensor(cam.K, dtype=torch.float32, device=device),
                                     torch.as_tensor(cam.w2c, dtype=torch.float32, device=device),
                                     cam.width, cam.height, **kwargs)
        frames.append(img.cpu().numpy())
        masks.append(mask.cpu().numpy())
        if progress is not None:
            progress(i + 1, {})
    return frames, masks


def main(conf: WarpConf, priors_result: StageResult, root: Path, device: str = "cpu",
         force: bool = False, progress=None) -> StageResult:
    name = traj_name(conf.traj)
    k = cache_key("warp", VERSION, conf, priors_result.token, traj=name)

    def compute(tmp: Path) -> dict:
        priors = Priors.load(priors_result.path)
        cams = make_trajectory(conf.traj, priors.cameras, conf.frames, priors.points.xyz)
        if conf.width and conf.height:
            cams = [c.scaled(conf.width, conf.height) for c in cams]
        frames, masks = render_warp(priors, cams, conf, device, progress)
        names = [c.name for c in cams]
        write_pngs(tmp / "rgb", frames, names)
        write_pngs(tmp / "mask", [m.astype(np.float32) for m in masks], names)
        write_mp4(tmp / "rgb.mp4", frames, conf.fps)
        write_mp4(tmp / "mask.mp4", [m.astype(np.float32) for m in masks], conf.fps)
        write_transforms_json([replace(c, name=f"{c.name}.png") for c in cams], tmp / "transforms.json",
                              file_prefix="rgb/", extra={"mask_prefix": "mask/"})
        write_cameras_opencv_json(cams, tmp / "cameras.json")
        cov = [float(m.mean()) for m in masks]
        return {"trajectory": name, "frames": len(cams), "coverage_mean": float(np.mean(cov)),
                "coverage_min": float(np.min(cov))}

    return run_stage(root, f"warp/{name}", k, compute, force)
