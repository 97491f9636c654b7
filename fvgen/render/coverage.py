"""Where to generate views: the ``coverage`` trajectory.

Candidate paths around the inputs -- the path through the input cameras continued a little beyond
both ends, the same path raised and lowered, an orbit arc at the inputs' distance and look-at, and a
spiral around them -- are cut into segments of consecutive frames (video models need continuous
clips). The dense prior is drawn at every candidate frame at low resolution, recording which points
each frame sees and how much of it is a hole. Segments are then picked greedily (ViewCrafter's
next-best-view idea, without re-generating in between): each pick maximises the prior points not
yet seen by the picked views plus ``hole_bonus`` x the segment's hole fraction, among segments whose
frames still mostly show the scene (coverage >= ``min_coverage``). Picked segments are returned in
order, one continuous clip each, ``budget`` frames in all.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from ..core.cameras import Camera, look_at
from ..core.trajectories import interp, orbit, scene_centre, spiral, world_up
from ..priors.prior import Priors
from .points import SPACING_TO_RADIUS, render_points, typical_spacing


def candidate_paths(inputs: Sequence[Camera], points: np.ndarray, frames: int) -> dict[str, list[Camera]]:
    """Camera paths around the inputs, ``frames`` frames each."""
    cams = list(inputs)
    spread = float(np.mean([np.linalg.norm(a.center - b.center) for a, b in zip(cams[:-1], cams[1:])])) \
        if len(cams) > 1 else 1.0
    up = world_up(cams)
    centre = scene_centre(cams, points)
    paths = {"through": interp(cams, frames, extend=0.35) if len(cams) > 1 else [],
             "orbit": orbit(cams, frames, points), "spiral": spiral(cams, frames, points)}
    for name, sign in (("above", 1.0), ("below", -1.0)):
        shifted = []
        for c in paths["through"] or cams:
            eye = c.center + sign * 0.4 * spread * up
            shifted.append(replace(c, c2w=look_at(eye, centre + sign * 0.2 * spread * up, up)))
        paths[name] = shifted
    return {k: v for k, v in paths.items() if v}


@torch.no_grad()
def frame_visibility(priors: Priors, cameras: Sequence[Camera], device: str = "cpu", max_size: int = 96
                     ) -> tuple[list[np.ndarray], np.ndarray]:
    """For each camera: the indices of the prior's points that win a pixel of its low-resolution
    z-buffer, and its coverage (fraction of pixels the cloud covers)."""
    xyz = torch.as_tensor(priors.points.xyz, device=device)
    ids = torch.arange(len(xyz), device=device, dtype=torch.float32)
    colour = torch.stack([ids, torch.zeros_like(ids), torch.zeros_like(ids)], 1)
    radius = SPACING_TO_RADIUS * typical_spacing(priors.points.xyz)
    seen, cov = [], []
    for cam in cameras:
        s = min(1.0, max_size / max(cam.width, cam.height))
        c = cam.scaled(max(8, round(cam.width * s)), max(8, round(cam.height * s)))
        img, mask, _ = render_points(xyz, colour, torch.as_tensor(c.K, dtype=torch.float32, device=device),
                                     torch.as_tensor(c.w2c, dtype=torch.float32, device=device), c.width, c.height,
                                     world_radius=radius, background=-1.0)
        win = img[..., 0][mask].round().long().unique().cpu().numpy()
        seen.append(win)
        cov.append(float(mask.float().mean()))
    return seen, np.array(cov)


def plan_coverage(priors: Priors, budget: int, segment: int = 8, device: str = "cpu", hole_bonus: float = 0.5,
                  min_coverage: float = 0.3) -> list[Camera]:
    """``budget`` cameras (rounded up to whole segments) where generated views add the most; see
    the module docstring. Names ``frame_0000``... in the returned order."""
    inputs = priors.cameras
    n_seg = max(1, int(np.ceil(budget / segment)))
    per_path = max(2 * segment, segment * int(np.ceil(2 * n_seg / 3)) + segment)
    paths = candidate_paths(inputs, priors.points.xyz, per_path)
    segments = [p[i:i + segment] for p in paths.values() for i in range(0, len(p) - segment + 1, segment)]
    flat = [c for s in segments for c in s]
    seen, cov = frame_visibility(priors, flat, device)
    seg_seen = [np.unique(np.concatenate(seen[i * segment:(i + 1) * segment])) for i in range(len(segments))]
    seg_cov = cov.reshape(len(segments), segment)
    usable = [i for i in range(len(segments)) if seg_cov[i].mean() >= min_coverage] or list(range(len(segments)))
    total = max(len(priors.points), 1)
    covered = np.zeros(total, bool)
    picked: list[int] = []
    while len(picked) < min(n_seg, len(usable)):
        best, best_score = None, -1.0
        for i in usable:
            if i in picked:
                continue
            new = (~covered[seg_seen[i]]).sum() / total
            score = new + hole_bonus * (1.0 - seg_cov[i].mean())
            if score > best_score:
                best, best_score = i, score
        picked.append(best)
        covered[seg_seen[best]] = True
    out = [c for i in picked for c in segments[i]][: max(budget, 1)]
    return [replace(c, name=f"frame_{k:04d}") for k, c in enumerate(out)]


def points_covered(priors: Priors, cameras: Sequence[Camera], device: str = "cpu") -> float:
    """Fraction of the prior's points that win a pixel in at least one of ``cameras``."""
    seen, _ = frame_visibility(priors, cameras, device)
    covered = np.zeros(len(priors.points), bool)
    for s in seen:
        covered[s] = True
    return float(covered.mean())
