"""Joint refinement of the input cameras' poses during the 3DGS fit (as InstantSplat and gsplat's
``pose_opt``), for estimated poses whose errors (a degree or two at 3 views) keep the splats from
reproducing the photos at all.

Each input camera but the first gets a learnable delta of 9 numbers: a translation (3, in units
of the scene scale, so one learning rate fits every scene) and a rotation in the continuous 6-D
representation of Zhou et al. (CVPR 2019: two vectors Gram-Schmidt-orthonormalised into the
first two rows of a rotation), stored as an offset from the identity so that all zeros is no
change. The delta acts in the camera's own frame, ``c2w' = c2w @ [dR | dt]``.

Gauge: the first input camera stays where it is (its pose fixes the world frame), and the refined
camera centres are rescaled about it so that their summed distance from it stays the original
one: the refinement can never change the scene's scale (which a fit from a few views leaves
free). Generated views keep their cameras.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from ..core.cameras import Camera, rotation_angle_deg

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Rotations [..., 3, 3] from 6-D vectors [..., 6]: the two halves orthonormalised (Gram-Schmidt)
    into the first two rows, the third their cross product. ``IDENTITY_6D`` gives the identity."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


class InputPoseRefiner(torch.nn.Module):
    """Learnable pose deltas of input cameras 1..n-1 (camera 0 is the gauge).

    ``c2w`` [n, 4, 4] (OpenCV camera-to-world of the input cameras), ``scale``: the scene scale
    that translation deltas are measured in. ``delta`` [n - 1, 9]: translation (3) then the 6-D
    rotation's offset from the identity (6)."""

    def __init__(self, c2w: torch.Tensor, scale: float):
        super().__init__()
        c2w = c2w.detach().to(torch.float64)
        self.register_buffer("c2w0", c2w)
        self.scale = float(scale)
        self.delta = torch.nn.Parameter(torch.zeros(len(c2w) - 1, 9, dtype=torch.float32, device=c2w.device))
        self.register_buffer("identity", torch.tensor(IDENTITY_6D, dtype=torch.float64, device=c2w.device))
        offsets = c2w[1:, :3, 3] - c2w[:1, :3, 3]
        self.spread0 = float(offsets.norm(dim=-1).sum())  # summed distance from camera 0, kept

    def c2w(self) -> torch.Tensor:
        """The refined input cameras' c2w [n, 4, 4] (float64; row 0 is the original camera 0)."""
        d = self.delta.to(torch.float64)
        R0, c0 = self.c2w0[1:, :3, :3], self.c2w0[1:, :3, 3]
        dR = rotation_6d_to_matrix(self.identity + d[:, 3:])
        R = R0 @ dR
        c = c0 + (R0 @ (d[:, :3] * self.scale)[..., None])[..., 0]
        origin = self.c2w0[0, :3, 3]
        if self.spread0 > 1e-12:  # no scale to keep when every camera sits at one centre
            spread = (c - origin).norm(dim=-1).sum()
            c = origin + (c - origin) * (self.spread0 / spread.clamp_min(1e-12))
        bottom = self.c2w0[1:, 3:, :]
        rest = torch.cat([torch.cat([R, c[..., None]], -1), bottom], -2)
        return torch.cat([self.c2w0[:1], rest], 0)

    def viewmats(self) -> torch.Tensor:
        """World-to-camera [n, 4, 4] float32 of the refined cameras (gsplat's ``viewmats``),
        differentiable in ``delta``; the rigid inverse ``[R^T | -R^T c]``."""
        c2w = self.c2w()
        Rt = c2w[:, :3, :3].transpose(-1, -2)
        t = -(Rt @ c2w[:, :3, 3:])
        w2c = torch.cat([torch.cat([Rt, t], -1), c2w[:, 3:, :]], -2)
        return w2c.to(torch.float32)

    def refined_cameras(self, cameras: Sequence[Camera]) -> list[Camera]:
        """``cameras`` (the n inputs) with their refined poses; camera 0 is returned as given."""
        with torch.no_grad():
            c2w = self.c2w().cpu().numpy()
        return [cameras[0]] + [replace(cam, c2w=m) for cam, m in zip(cameras[1:], c2w[1:])]


def pose_changes(before: Sequence[Camera], after: Sequence[Camera]) -> dict:
    """Per camera, how far refinement moved it: rotation in degrees, centre in scene units."""
    rot = [rotation_angle_deg(a.c2w[:3, :3].T @ b.c2w[:3, :3]) for a, b in zip(before, after)]
    trans = [float(np.linalg.norm(b.center - a.center)) for a, b in zip(before, after)]
    return {"rotation_deg": [round(r, 4) for r in rot], "translation": [round(t, 6) for t in trans],
            "max_rotation_deg": round(max(rot), 4), "max_translation": round(max(trans), 6)}
