"""Which dense-stereo backend makes the priors' point cloud: ``MvsConf.backend``.

- ``"sweep"``: :func:`fvgen.priors.mvs.dense_point_cloud` (plane sweep, optionally with
  slanted-plane propagation), any device.
- ``"colmap"``: COLMAP's PatchMatch stereo + fusion (:func:`fvgen.priors.colmap_mvs.colmap_dense`,
  settings ``priors.colmap``), which needs pycolmap built with CUDA (pycolmap-cuda12) and a CUDA
  GPU. Requested where it cannot run, it is a one-line error before any work, never a silent
  fallback (without a GPU COLMAP's PatchMatch aborts the whole process instead of raising).
- ``"auto"``: ``"colmap"`` where it can run, else ``"sweep"``.

The backend actually used is recorded in the priors' info (``info["mvs"]["backend"]``) and in
run.json's priors figures (``mvs_backend``); the priors cache key holds both the setting (the
conf is hashed) and the backend it resolves to, so the same conf on a GPU host and on a CPU host
does not share a cache entry.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import FvgenError

BACKENDS = ("auto", "colmap", "sweep")


def colmap_unavailable_reason() -> str | None:
    """Why COLMAP PatchMatch cannot run here (one line), or None when it can."""
    from .colmap_mvs import colmap_available

    ok, reason = colmap_available()
    return None if ok else reason


def select_backend(requested: str) -> str:
    """The backend to run for ``MvsConf.backend`` = ``requested``: "colmap" or "sweep"."""
    if requested not in BACKENDS:
        raise FvgenError(f"unknown priors.mvs.backend {requested!r}: use {', '.join(BACKENDS)}")
    if requested == "sweep":
        return "sweep"
    reason = colmap_unavailable_reason()
    if requested == "colmap" and reason is not None:
        raise FvgenError(f"priors.mvs.backend = \"colmap\" cannot run: {reason}; use \"sweep\" or \"auto\"")
    return "sweep" if reason is not None else "colmap"


def dense_cloud(images: np.ndarray, cameras, sparse, conf, colmap_conf=None, device="cpu", **kw):
    """The dense cloud by the backend ``conf.backend`` (a :class:`fvgen.priors.mvs.MvsConf`)
    selects: same arguments and output as :func:`fvgen.priors.mvs.dense_point_cloud`
    (``(cloud, info)``), ``colmap_conf`` the :class:`fvgen.priors.colmap_mvs.ColmapMvsConf` of the
    COLMAP backend; ``info["backend"]`` is the one used."""
    chosen = select_backend(conf.backend)
    if chosen == "colmap":
        from .colmap_mvs import ColmapMvsConf, colmap_dense

        cloud, info = colmap_dense(images, cameras, sparse, colmap_conf or ColmapMvsConf(), device=device, **kw)
    else:
        from .mvs import dense_point_cloud

        cloud, info = dense_point_cloud(images, cameras, sparse, conf, device=device, **kw)
    info["backend"] = chosen
    return cloud, info


__all__ = ["BACKENDS", "colmap_unavailable_reason", "dense_cloud", "select_backend"]
