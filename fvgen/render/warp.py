"""The warp: the dense prior drawn at novel cameras with a validity mask (holes where the cloud
saw nothing), by our z-buffer point renderer (:mod:`.points`) or gsplat's rasterizer.

This is what the warp stage writes and what the video model's training examples are made with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.cameras import Camera
from ..core.errors import FvgenError
from ..priors.prior import Priors


@dataclass(frozen=True)
class WarpConf:
    traj: str = "orbit"
    frames: int = 25
    width: int = 0  # 0: the input images' size
    height: int = 0
    point_radius_px: float = 0.0  # 0: from the cloud's point spacing
    fps: int = 10
    # torch: our z-buffer (any device); gsplat: gsplat's CUDA rasterizer with near-opaque splats;
    # auto: gsplat on CUDA when installed. The default stays torch: gsplat's splats are Gaussians, so
    # its validity mask is a superset of the z-buffer's (mask IoU 0.85-0.91, benchmarks/RESULTS.md;
    # tests/test_points_render.py), and the teacher's training warps are drawn by the z-buffer.
    renderer: str = "torch"


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
    from .points import render_points_gsplat

    return render_points_gsplat


def render_warp(priors: Priors, cameras: list[Camera], conf: WarpConf, device: str = "cpu",
                progress=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB frames [H, W, 3] and masks [H, W] (bool) of the point cloud at ``cameras``."""
    from .points import SPACING_TO_RADIUS, render_points, typical_spacing

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


def read_view_folder(folder: Path, size: tuple[int, int] | None = None
                     ) -> tuple[list[Camera], list[np.ndarray], list[np.ndarray]]:
    """The views of a warp or generate stage folder: cameras (``cameras.json``), frames
    (``rgb/<name>.png``, [H, W, 3] float in [0, 1]) and masks (``mask/<name>.png``, [H, W] float in
    [0, 1]: 1 where the point cloud saw the pixel; soft values are kept), all resized to ``size``
    (w, h) when given."""
    from ..core.cameras import read_cameras_opencv_json
    from ..core.images import read_image, resize_image

    folder = Path(folder)
    cams = read_cameras_opencv_json(folder / "cameras.json")
    if size is not None:
        cams = [c.scaled(*size) for c in cams]
    frames, masks = [], []
    for c in cams:
        stem = Path(c.name).stem
        img = read_image(folder / "rgb" / f"{stem}.png")
        m = read_image(folder / "mask" / f"{stem}.png")
        if size is not None and img.shape[:2] != (size[1], size[0]):
            img, m = resize_image(img, *size), resize_image(m, *size)
        frames.append(img)
        masks.append((m.mean(-1) if m.ndim == 3 else m).astype(np.float32))
    return cams, frames, masks
