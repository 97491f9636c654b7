"""Removing OpenCV (k1, k2, p1, p2) lens distortion, so every stage after loading sees pinholes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from .cameras import Camera


def undistort_image(img: np.ndarray, cam: Camera) -> tuple[np.ndarray, Camera]:
    """Resample ``img`` [H, W, C] as seen by the same camera without distortion (same K).

    For each output pixel the distortion model is applied forward (no inversion needed) to find
    where it lies in the distorted image, which is then sampled bilinearly.
    """
    if not cam.dist:
        return img, cam
    if img.shape[1] != cam.width or img.shape[0] != cam.height:
        cam = cam.scaled(img.shape[1], img.shape[0])
    k1, k2, p1, p2 = cam.dist
    K = cam.K
    h, w = img.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    ud = xd * K[0, 0] + K[0, 2]
    vd = yd * K[1, 1] + K[1, 2]
    grid = torch.from_numpy(np.stack([(ud + 0.5) / w * 2 - 1, (vd + 0.5) / h * 2 - 1], -1)).float()[None]
    src = torch.from_numpy(np.ascontiguousarray(img)).float().permute(2, 0, 1)[None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).numpy().astype(img.dtype), replace(cam, dist=None)
