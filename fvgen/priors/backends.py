"""The priors backends behind one call: poses and a dense coloured point cloud from the input
photos, by pycolmap SfM + multi-view stereo (``sfm``) or by DUSt3R (``dust3r``).

:func:`compute_priors` is what the priors stage runs and what the video model's training-example
builder runs with known poses, so training warps carry the artefacts of the real pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..core.cameras import load_poses
from ..core.errors import FvgenError
from ..core.images import LoadedImages
from ..core.undistort import undistort_image
from .dust3r import Dust3rConf
from .colmap_mvs import ColmapMvsConf
from .mvs import MvsConf
from .prior import Priors
from .sfm import SfmConf


@dataclass(frozen=True)
class PriorsConf:
    backend: str = "sfm"  # "sfm" (pycolmap + plane-sweep MVS) or "dust3r" (needs a checkpoint)
    checkpoint: str = ""  # DUSt3R checkpoint path (backend "dust3r")
    sfm: SfmConf = field(default_factory=SfmConf)
    mvs: MvsConf = field(default_factory=MvsConf)
    colmap: ColmapMvsConf = field(default_factory=ColmapMvsConf)  # mvs.backend "colmap" (or "auto" on a GPU)
    dust3r: Dust3rConf = field(default_factory=Dust3rConf)


def compute_priors(images: LoadedImages, conf: PriorsConf, work: Path, poses: Path | None,
                   device: str, progress=None, sfm_images: LoadedImages | None = None) -> tuple[Priors, LoadedImages]:
    """Run the configured backend; returns the priors and the (undistorted) images they refer to.
    ``progress(done, fields)`` is called after each of its two steps (poses, dense cloud).
    ``sfm_images``: the same photos at ``conf.sfm.max_image_size``, from which poses are estimated
    when none are given (their cameras are then scaled to ``images``)."""
    progress = progress or (lambda done, fields=None: None)
    known = load_poses(poses, images.names, images.size) if poses is not None else None
    if known is not None and any(c.dist for c in known):
        pairs = [undistort_image(im, c) for im, c in zip(images.images, known)]
        images = LoadedImages(images.names, np.stack([p[0] for p in pairs]), images.original_sizes)
        known = [p[1] for p in pairs]
    if conf.backend == "sfm":
        from .mvs_backend import dense_cloud
        from .sfm import estimate_poses

        if known is None and sfm_images is not None and sfm_images.size != images.size:
            cams, sparse, info = estimate_poses(sfm_images, conf.sfm, work / "sfm")
            cams = [c.scaled(*images.size) for c in cams]
            info["image_size"] = list(sfm_images.size)
        else:  # known cameras: SfM only triangulates sparse points, at the working size
            cams, sparse, info = estimate_poses(images, conf.sfm, work / "sfm", known_cameras=known)
            info["image_size"] = list(images.size)
        progress(1, {"step": "dense stereo"})
        if any(c.dist for c in cams):
            pairs = [undistort_image(im, c) for im, c in zip(images.images, cams)]
            images = LoadedImages(images.names, np.stack([p[0] for p in pairs]), images.original_sizes)
            cams = [p[1] for p in pairs]
        cams = [replace(c, name=n) for c, n in zip(cams, images.names)]
        dense, minfo = dense_cloud(images.images, cams, sparse, conf.mvs, conf.colmap, device=device)
        progress(2, {"points": len(dense)})
        info = {"backend": "sfm", "poses": "given" if known else "estimated", "sfm": info, "mvs": minfo}
        return Priors(cams, dense, sparse, info), images
    if conf.backend == "dust3r":
        from .dust3r import dust3r_priors

        pri = dust3r_priors(images, conf.dust3r, Path(conf.checkpoint), device)
        progress(2, {"points": len(pri.points)})
        return pri, images
    raise FvgenError(f"unknown priors backend {conf.backend!r}: use sfm or dust3r")
