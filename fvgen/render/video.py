"""Splat scenes rendered along camera paths: frames for ``fvgen render`` and the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.cameras import Camera
from .gaussians import render_splats


@dataclass(frozen=True)
class RenderConf:
    frames: int = 60  # frames along a named trajectory
    fps: int = 20


@torch.no_grad()
def render_frames(splats: dict[str, torch.Tensor], cameras: Sequence[Camera],
                  progress: Callable[[int, dict], None] | None = None) -> list[np.ndarray]:
    """Frames [H, W, 3] float32 in [0, 1] of ``splats`` at ``cameras``, all drawn at the first
    camera's size."""
    out = []
    for i, c in enumerate(cameras):
        img = render_splats(splats, [c.scaled(cameras[0].width, cameras[0].height)])[0][0]
        out.append(img.clamp(0, 1).cpu().numpy().astype(np.float32))
        if progress is not None:
            progress(i + 1, {})
    return out
