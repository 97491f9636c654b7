"""Removing OpenCV (k1, k2, p1, p2) lens distortion, so every stage after loading sees pinholes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from .cameras import Camera


def undistort_image(image: np.ndarray, cam: Camera) -> tuple[np.ndarray, Camera]:
    """Resample an image taken through ``cam`` (with OpenCV ``dist``) to the pinhole camera of the
    same ``K`` and size. Returns ``(image, camera without dist)``; unchanged when ``dist`` is None.

    For each output pixel the distortion model is applied forward (no inversion needed) to find
    where it lies in the distorted image, which is then sampled bilinearly."""
    if not cam.dist:
        return image, cam
    h, w = image.shape[:2]
    c = cam.scaled(w, h) if (cam.width, cam.height) != (w, h) else cam
    k1, k2, p1, p2 = c.dist
    K = c.K
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    y = (yy - K[1, 2]) / K[1, 1]
    x = (xx - K[0, 2] - K[0, 1] * y) / K[0, 0]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    u = K[0, 0] * xd + K[0, 1] * yd + K[0, 2]
    v = K[1, 1] * yd + K[1, 2]
    grid = np.stack([u / (w - 1) * 2 - 1, v / (h - 1) * 2 - 1], -1)[None].astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.grid_sample(t, torch.from_numpy(grid), mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out[0].permute(1, 2, 0).numpy(), replace(c, dist=None)
