"""Camera trajectories for warping and rendering: orbit, spiral, interp, or a JSON camera path.

All trajectories are built from the input cameras (and, where useful, the scene's points) and
share the input cameras' mean intrinsics and image size.

- ``orbit``: cameras on a circle around the scene centre, looking at it, in the plane of the
  input cameras; object-centric captures (inputs spread over more than 120 degrees around the
  centre) get a full turn, forward-facing ones an arc of twice their spread (30 to 90 degrees),
  centred on the inputs, so the path stays where the prior has content.
- ``spiral``: the LLFF/NeRF spiral around the mean input pose, radii from the spread of the
  input centres, focused at the scene's median depth.
- ``interp``: a Catmull-Rom spline through the input camera centres (in input order) with
  spherical interpolation of their orientations.
- ``PATH.json``: a ``cameras_opencv.json`` or ``transforms.json`` file; its cameras are used as
  given (scaled to the output size).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .cameras import Camera, axes_convergence, look_at, project_to_so3, read_camera_file
from .errors import FvgenError

NAMED = ("orbit", "spiral", "interp")
PLANNED = ("coverage",)  # planned from the prior by fvgen.render.coverage, not from the cameras alone


def scene_centre(cameras: Sequence[Camera], points: np.ndarray | None = None) -> np.ndarray:
    """The point the cameras look at: least-squares closest point to their optical axes, falling
    back to the points' median when the axes are near parallel (forward-facing captures)."""
    centres = np.stack([c.center for c in cameras])
    x, cond = axes_convergence(cameras)
    if cond < 1e4:
        # Must be in front of the cameras on average.
        if np.mean([(x - c.center) @ c.c2w[:3, 2] for c in cameras]) > 0:
            return x
    if points is not None and len(points):
        return np.median(points, axis=0)
    fwd = np.mean([c.c2w[:3, 2] for c in cameras], axis=0)
    return centres.mean(0) + fwd * max(np.linalg.norm(centres - centres.mean(0), axis=1).mean(), 1.0)


def world_up(cameras: Sequence[Camera]) -> np.ndarray:
    up = -np.mean([c.c2w[:3, 1] for c in cameras], axis=0)
    return up / np.linalg.norm(up)


def mean_intrinsics(cameras: Sequence[Camera]) -> Camera:
    ref = cameras[0]
    K = np.mean([c.scaled(ref.width, ref.height).K for c in cameras], axis=0)
    return replace(ref, K=K, dist=None)


def orbit(cameras: Sequence[Camera], frames: int, points: np.ndarray | None = None,
          degrees: float | None = None) -> list[Camera]:
    centre = scene_centre(cameras, points)
    up = world_up(cameras)
    offs = np.stack([c.center - centre for c in cameras])
    radius = float(np.mean(np.linalg.norm(offs, axis=1)))
    height = float(np.mean(offs @ up))
    # In-plane basis: e1 towards the mean input direction, e2 completes it.
    mean_dir = offs.mean(0) - (offs.mean(0) @ up) * up
    if np.linalg.norm(mean_dir) < 1e-6 * radius:
        mean_dir = offs[0] - (offs[0] @ up) * up
    e1 = mean_dir / np.linalg.norm(mean_dir)
    e2 = np.cross(up, e1)
    az = np.arctan2(offs @ e2, offs @ e1)
    spread = float(np.degrees(az.max() - az.min()))
    if degrees is None:
        degrees = 360.0 if spread > 120 else float(np.clip(2 * spread, 30, 90))
    ring = np.sqrt(max(radius ** 2 - height ** 2, 1e-12))
    if degrees >= 359.9:
        angles = np.linspace(0, 2 * np.pi, frames, endpoint=False) + az.mean()
    else:
        half = np.radians(degrees) / 2
        angles = np.linspace(-half, half, frames) + 0.5 * (az.max() + az.min())
    base = mean_intrinsics(cameras)
    out = []
    for i, a in enumerate(angles):
        eye = centre + height * up + ring * (np.cos(a) * e1 + np.sin(a) * e2)
        out.append(replace(base, c2w=look_at(eye, centre, up), name=f"frame_{i:04d}"))
    return out


def spiral(cameras: Sequence[Camera], frames: int, points: np.ndarray | None = None,
           rotations: float = 2.0) -> list[Camera]:
    centres = np.stack([c.center for c in cameras])
    R_mean = project_to_so3(sum(c.c2w[:3, :3] for c in cameras))
    mean_c = centres.mean(0)
    local = (centres - mean_c) @ R_mean  # input centres in the mean camera's axes
    radii = np.maximum(np.percentile(np.abs(local), 90, axis=0), 1e-3 * np.ptp(centres) + 1e-9)
    if points is not None and len(points):
        focus = float(np.median((points - mean_c) @ R_mean[:, 2]))
    else:
        focus = float(np.linalg.norm(scene_centre(cameras) - mean_c))
    focus = max(focus, 1e-6)
    target = mean_c + focus * R_mean[:, 2]
    up = -R_mean[:, 1]
    base = mean_intrinsics(cameras)
    out = []
    for i, t in enumerate(np.linspace(0, 2 * np.pi * rotations, frames, endpoint=False)):
        offset = np.array([np.cos(t), -np.sin(t), -np.sin(0.5 * t)]) * radii
        eye = mean_c + R_mean @ offset
        out.append(replace(base, c2w=look_at(eye, target, up), name=f"frame_{i:04d}"))
    return out


def _slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    d = float(np.dot(q0, q1))
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(d)
    return (np.sin((1 - t) * th) * q0 + np.sin(t * th) * q1) / np.sin(th)


def _quat_to_rot(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def interp(cameras: Sequence[Camera], frames: int, extend: float = 0.0) -> list[Camera]:
    """A Catmull-Rom path through the camera centres (rotations slerped), in the given order;
    ``extend`` > 0 continues it that many camera gaps beyond the first and the last camera."""
    from .cameras import rotmat_to_quat_wxyz

    n = len(cameras)
    P = np.stack([c.center for c in cameras])
    Q = [rotmat_to_quat_wxyz(c.c2w[:3, :3]) for c in cameras]
    base = mean_intrinsics(cameras)
    out = []
    for i, s in enumerate(np.linspace(-extend, n - 1 + extend, frames)):
        k = min(max(int(np.floor(s)), 0), n - 2)
        t = s - k
        p0, p1, p2, p3 = P[max(k - 1, 0)], P[k], P[k + 1], P[min(k + 2, n - 1)]
        pos = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                     + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)
        c2w = np.eye(4)
        c2w[:3, :3] = _quat_to_rot(_slerp(Q[k], Q[k + 1], t))
        c2w[:3, 3] = pos
        out.append(replace(base, c2w=c2w, name=f"frame_{i:04d}"))
    return out


def from_json(path: Path, size: tuple[int, int] | None = None) -> list[Camera]:
    """A camera path from a cameras_opencv.json or transforms.json, frames renamed in order."""
    if not Path(path).is_file():
        raise FvgenError(f"trajectory file not found: {path}")
    cams = read_camera_file(path)
    if not cams:
        raise FvgenError(f"{path}: the camera path is empty")
    if size is not None:
        cams = [c.scaled(*size) for c in cams]
    return [replace(c, name=f"frame_{i:04d}") for i, c in enumerate(cams)]


def make_trajectory(spec: str, cameras: Sequence[Camera], frames: int,
                    points: np.ndarray | None = None) -> list[Camera]:
    """``spec`` is one of :data:`NAMED` or a path to a JSON camera path."""
    if frames < 2 and spec in NAMED:
        raise FvgenError(f"--frames must be at least 2 (got {frames})")
    if spec == "orbit":
        return orbit(cameras, frames, points)
    if spec == "spiral":
        return spiral(cameras, frames, points)
    if spec == "interp":
        if len(cameras) < 2:
            raise FvgenError("interp needs at least 2 input cameras")
        return interp(cameras, frames)
    if spec.endswith(".json") or Path(spec).exists():
        ref = cameras[0]
        return from_json(Path(spec), (ref.width, ref.height))
    raise FvgenError(f"unknown trajectory {spec!r}: use orbit, spiral, interp or a .json camera path")


def trajectory_name(spec: str) -> str:
    """The name a trajectory's outputs go under: a named one as is, a JSON path as
    ``<stem>-<hash of its content>`` (two different files of one name do not share a cache)."""
    if spec in NAMED or spec in PLANNED:
        return spec
    p = Path(spec)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:8] if p.is_file() else "missing"
    return f"{p.stem}-{digest}"
