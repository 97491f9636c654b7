"""Which dense-stereo backend makes the priors' point cloud: ``MvsConf.backend``.

- ``"sweep"``: :func:`fvgen.priors.mvs.dense_point_cloud` (plane sweep, optionally with
  slanted-plane propagation), any device.
- ``"colmap"``: COLMAP's PatchMatch stereo + fusion (:func:`fvgen.priors.colmap_mvs.colmap_dense`,
  settings ``priors.colmap``), which needs pycolmap built with CUDA (pycolmap-cuda12) and a CUDA
  GPU. Requested where it cannot run, it is a one-line error before any work, never a silent
  fallback (without a GPU COLMAP's PatchMatch aborts the whole process instead of raising).
- ``"sweep+colmap"``: both on the same views (the sweep with the conf's propagation settings,
  COLMAP with ``priors.colmap``), their clouds concatenated and cleaned once more as one backend's
  fused points (:func:`union_cloud`: outlier removal and one voxel grid, so that points both hold
  count once). Measured on one H100 at the held-out cameras (benchmarks/colmap_mvs.py ``--union
  sweep+colmap``): coverage 0.748 / 0.452 / 0.502 on fern / dtu_scan24 / fox against the sweep's
  0.722 / 0.380 / 0.514, filled-warp PSNR 18.96 / 13.17 / 16.96 dB against 18.96-19.03 / 12.26 /
  16.73; the end-to-end fit with it is not yet measured. Needs what ``"colmap"`` needs and is
  refused in the same one-line way where COLMAP cannot run.
- ``"auto"``: ``"colmap"`` where it can run, else ``"sweep"`` (never the union).

The backend actually used is recorded in the priors' info (``info["mvs"]["backend"]``) and in
run.json's priors figures (``mvs_backend``); the priors cache key holds both the setting (the
conf is hashed) and the backend it resolves to, so the same conf on a GPU host and on a CPU host
does not share a cache entry.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..core.errors import FvgenError
from ..core.pointcloud import PointCloud

BACKENDS = ("auto", "colmap", "sweep", "sweep+colmap")
NEEDS_COLMAP = ("colmap", "sweep+colmap")


def colmap_unavailable_reason() -> str | None:
    """Why COLMAP PatchMatch cannot run here (one line), or None when it can."""
    from .colmap_mvs import colmap_available

    ok, reason = colmap_available()
    return None if ok else reason


def select_backend(requested: str) -> str:
    """The backend to run for ``MvsConf.backend`` = ``requested``: "colmap", "sweep" or
    "sweep+colmap"."""
    if requested not in BACKENDS:
        raise FvgenError(f"unknown priors.mvs.backend {requested!r}: use {', '.join(BACKENDS)}")
    if requested == "sweep":
        return "sweep"
    reason = colmap_unavailable_reason()
    if requested in NEEDS_COLMAP:
        if reason is not None:
            raise FvgenError(f"priors.mvs.backend = \"{requested}\" cannot run: {reason}; use \"sweep\" or \"auto\"")
        return requested
    return "sweep" if reason is not None else "colmap"


def union_cloud(clouds: Sequence[PointCloud], conf) -> tuple[PointCloud, dict]:
    """One cloud from several backends' clouds: their points concatenated and cleaned as one
    backend's fused points with ``conf`` (a :class:`fvgen.priors.mvs.MvsConf`; statistical
    outliers, then one voxel grid), so that a surface both clouds hold counts once and the splat
    size follows the merged cloud's spacing, not twice its density. A cloud without confidences
    counts as confidence 1. Returns the cloud and :func:`fvgen.priors.mvs.clean_cloud`'s counts."""
    from .mvs import clean_cloud

    clouds = [c for c in clouds if len(c)]
    if not clouds:
        raise FvgenError("the union of the dense clouds has no points")
    confidences = [np.ones(len(c), np.float32) if c.conf is None else np.asarray(c.conf, np.float32) for c in clouds]
    return clean_cloud(np.concatenate([np.asarray(c.xyz, np.float64) for c in clouds]),
                       np.concatenate([c.rgb for c in clouds]), np.concatenate(confidences), conf)


def dense_cloud(images: np.ndarray, cameras, sparse, conf, colmap_conf=None, device="cpu", **kw):
    """The dense cloud by the backend ``conf.backend`` (a :class:`fvgen.priors.mvs.MvsConf`)
    selects: same arguments and output as :func:`fvgen.priors.mvs.dense_point_cloud`
    (``(cloud, info)``), ``colmap_conf`` the :class:`fvgen.priors.colmap_mvs.ColmapMvsConf` of the
    COLMAP backend; ``info["backend"]`` is the one used.

    For "sweep+colmap", ``info`` holds the union's counts (as :func:`union_cloud`), ``parts``
    (each backend's own info, with its ``points`` and ``seconds``), ``points_sweep``,
    ``points_colmap``, ``seconds_sweep``, ``seconds_colmap``, ``seconds_union`` (the final
    cleaning) and ``seconds`` (all of it); keyword arguments go to both backends."""
    chosen = select_backend(conf.backend)
    if chosen == "sweep+colmap":
        from .colmap_mvs import ColmapMvsConf, colmap_dense
        from .mvs import dense_point_cloud

        sweep_cloud, sweep_info = dense_point_cloud(images, cameras, sparse, conf, device=device, **kw)
        colmap_cloud, colmap_info = colmap_dense(images, cameras, sparse, colmap_conf or ColmapMvsConf(),
                                                 device=device, **kw)
        t0 = time.time()
        cloud, info = union_cloud([sweep_cloud, colmap_cloud], conf)
        seconds_union = time.time() - t0
        parts = {"sweep": sweep_info, "colmap": colmap_info}
        info.update({f"points_{k}": int(v["points"]) for k, v in parts.items()})
        info.update({f"seconds_{k}": v["seconds"] for k, v in parts.items()})
        info["seconds_union"] = round(seconds_union, 3)
        info["seconds"] = round(sum(v["seconds"] for v in parts.values()) + seconds_union, 3)
        info["parts"] = parts
    elif chosen == "colmap":
        from .colmap_mvs import ColmapMvsConf, colmap_dense

        cloud, info = colmap_dense(images, cameras, sparse, colmap_conf or ColmapMvsConf(), device=device, **kw)
    else:
        from .mvs import dense_point_cloud

        cloud, info = dense_point_cloud(images, cameras, sparse, conf, device=device, **kw)
    info["backend"] = chosen
    return cloud, info


__all__ = ["BACKENDS", "colmap_unavailable_reason", "dense_cloud", "select_backend", "union_cloud"]
