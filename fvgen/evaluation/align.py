"""Test-camera alignment on a frozen scene (the protocol of pose-free sparse-view methods such as
InstantSplat): before a held-out view is scored, its camera's pose -- 6 degrees of freedom, nothing
else -- is optimised against its ground-truth image while every splat stays fixed.

With estimated poses the test cameras are mapped into the scene's frame by the similarity of the
train cameras (:func:`fvgen.evaluation.heldout.map_test_cameras`); that similarity is a
least-squares fit over 2-3 cameras, so the mapped test cameras land a pixel or two off and the
score measures that offset more than the scene. Aligning each test camera on the frozen scene
removes the offset and nothing else: the splats, the intrinsics and the image are untouched.

The pose update is a left-multiplied rigid motion in the camera's own frame,
``w2c = [exp(omega) | tau] @ w2c_start`` (axis-angle ``omega`` in radians, ``tau`` in units of the
scene's median depth in that view so that one learning rate fits every scene scale), optimised
with Adam on L1 + 0.2 (1 - SSIM), coarse to fine (half, then full resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.cameras import Camera, rotation_angle_deg
from ..core.metrics import ssim_map
from ..render.gaussians import gsplat_camera, rasterize_at


@dataclass(frozen=True)
class EvalConf:
    """``[eval]`` of a preset: how ``fvgen eval`` scores held-out views."""
    align_test_poses: bool = False  # headline = scores after test-camera alignment (both are reported)
    align_steps: int = 150  # Adam steps per test camera, spread over the coarse-to-fine levels
    align_lr: float = 1e-2  # Adam start (decays to 1/30 of it): rotation in radians, translation x median depth


def axis_angle_to_matrix(omega: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation [3, 3] of an axis-angle vector [3] (differentiable, also at 0)."""
    theta2 = (omega * omega).sum()
    theta = torch.sqrt(theta2 + 1e-24)
    K = torch.zeros(3, 3, dtype=omega.dtype, device=omega.device)
    K[0, 1], K[0, 2], K[1, 2] = -omega[2], omega[1], -omega[0]
    K = K - K.T
    # sin(t)/t and (1-cos(t))/t^2 by their Taylor series near 0, where the closed forms are 0/0.
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-24))
    return torch.eye(3, dtype=omega.dtype, device=omega.device) + a * K + b * (K @ K)


def _median_depth(splats: dict[str, torch.Tensor], viewmat: torch.Tensor) -> float:
    z = splats["means"] @ viewmat[:3, 2] + viewmat[2, 3]
    z = z[z > 0]
    return float(z.median()) if len(z) else 1.0


def align_camera(splats: dict[str, torch.Tensor], camera: Camera, target: np.ndarray, steps: int = 150,
                 lr: float = 1e-2, levels: Sequence[float] = (0.5, 1.0),
                 progress: Callable[[int, dict], None] | None = None) -> tuple[Camera, dict]:
    """``camera`` (no distortion) with its pose optimised so that ``splats`` (frozen) rendered
    there match ``target`` [H, W, 3] float in [0, 1] (H, W = the camera's size).

    Returns the aligned camera and ``{"steps", "rotation_deg", "translation", "loss_start",
    "loss_end"}`` (the pose change: angle in degrees, translation in scene units)."""
    device = splats["means"].device
    frozen = {k: v.detach() for k, v in splats.items()}
    viewmat0, K0 = gsplat_camera([camera], device)
    viewmat0, K0 = viewmat0[0], K0[0]
    depth = _median_depth(frozen, viewmat0)
    omega = torch.zeros(3, device=device, requires_grad=True)
    tau = torch.zeros(3, device=device, requires_grad=True)
    opt = torch.optim.Adam([omega, tau], lr=lr)
    # exponential decay to lr / 30 over the run: large early steps, a settled end
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: (1 / 30) ** (i / max(1, steps - 1)))
    full = torch.as_tensor(np.asarray(target, np.float32), device=device).permute(2, 0, 1)[None]  # [1, 3, H, W]
    W, H = camera.width, camera.height
    per_level = [steps // len(levels) + (1 if i < steps % len(levels) else 0) for i in range(len(levels))]

    def pose() -> torch.Tensor:
        delta = torch.eye(4, device=device)
        delta = torch.cat([torch.cat([axis_angle_to_matrix(omega), (tau * depth)[:, None]], 1), delta[3:]], 0)
        return delta @ viewmat0

    def loss_at(scale: float) -> torch.Tensor:
        w, h = max(8, round(W * scale)), max(8, round(H * scale))
        K = K0.clone()
        K[0] *= w / W
        K[1] *= h / H
        tgt = full if (w, h) == (W, H) else torch.nn.functional.interpolate(full, size=(h, w), mode="area")
        img = rasterize_at(frozen, pose()[None], K[None], w, h)[0][0].permute(2, 0, 1)[None]  # [1, 3, h, w]
        return (img - tgt).abs().mean() + 0.2 * (1 - ssim_map(img.clamp(0, 1), tgt).mean())

    with torch.no_grad():
        loss_start = float(loss_at(1.0))
    done = 0
    for scale, n in zip(levels, per_level):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss = loss_at(scale)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if progress is not None:
                progress(done, {"loss": float(loss.detach())})
    with torch.no_grad():
        loss_end = float(loss_at(1.0))
        w2c = pose().double().cpu().numpy()
    if not loss_end <= loss_start:  # never report a camera that matches worse than where it started
        return camera, {"steps": done, "rotation_deg": 0.0, "translation": 0.0, "loss_start": loss_start,
                        "loss_end": loss_start, "kept_start": True}
    c2w = np.linalg.inv(w2c)
    moved = np.linalg.norm(c2w[:3, 3] - camera.c2w[:3, 3])
    rot = rotation_angle_deg(c2w[:3, :3] @ camera.c2w[:3, :3].T)
    return replace(camera, c2w=c2w), {"steps": done, "rotation_deg": float(rot), "translation": float(moved),
                                      "loss_start": loss_start, "loss_end": loss_end, "kept_start": False}
