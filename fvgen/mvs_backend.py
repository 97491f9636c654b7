"""Which dense-stereo backend makes the priors' point cloud: ``MvsConf.backend``.

- ``"sweep"``: :func:`fvgen.mvs.dense_point_cloud` (plane sweep, optionally with slanted-plane
  propagation), any device.
- ``"colmap"``: COLMAP's PatchMatch stereo + fusion (``colmap_dense`` of the ``colmap_mvs``
  module), which needs pycolmap built with CUDA (``pycolmap-cuda12``, the ``fvgen[cuda]`` extra)
  and a CUDA GPU. Requested where it cannot run, it is a one-line error, never a silent
  fallback. The check is made before COLMAP is called: without a GPU its PatchMatch aborts the
  whole process instead of raising (shared/notes/dense-mvs.md).
- ``"auto"``: ``"colmap"`` where it can run, else ``"sweep"``.

The backend actually used is recorded in the priors' info (``info["mvs"]["backend"]``) and in
run.json's priors figures; ``MvsConf`` is part of the priors cache key, so changing the backend
recomputes the priors.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np

from .errors import FvgenError

BACKENDS = ("auto", "colmap", "sweep")
# where the COLMAP backend lives: its place after the layered layout, then before it
_COLMAP_MODULES = ("fvgen.priors.colmap_mvs", "fvgen.colmap_mvs")


def _colmap_module():
    """The module holding ``colmap_dense``, or None when this fvgen has none."""
    for name in _COLMAP_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                return importlib.import_module(name)
        except ModuleNotFoundError:  # parent package absent
            continue
    return None


def colmap_unavailable_reason() -> str | None:
    """Why COLMAP PatchMatch cannot run here (one line), or None when it can."""
    mod = _colmap_module()
    if mod is None:
        return "this fvgen has no COLMAP stereo backend (fvgen/priors/colmap_mvs.py)"
    try:
        import pycolmap
    except ImportError:
        return "pycolmap is not installed (pip install 'fvgen[cuda]' for the CUDA build)"
    if not getattr(pycolmap, "has_cuda", False):
        return ("pycolmap is not built with CUDA: pip uninstall pycolmap && "
                "pip install 'fvgen[cuda]' (pycolmap-cuda12)")
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if hasattr(mod, "colmap_available") and not mod.colmap_available():
        return "the COLMAP backend reports it cannot run here"
    return None


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


def dense_cloud(images: np.ndarray, cameras, sparse, conf, device="cpu", **kw):
    """The dense cloud by the backend ``conf.backend`` selects; same arguments and output as
    :func:`fvgen.mvs.dense_point_cloud` (``(cloud, info)``), with ``info["backend"]`` the one used."""
    chosen = select_backend(conf.backend)
    if chosen == "colmap":
        cloud, info = _colmap_module().colmap_dense(images, cameras, sparse, conf, device=device, **kw)
    else:
        from .mvs import dense_point_cloud

        cloud, info = dense_point_cloud(images, cameras, sparse, conf, device=device, **kw)
    info["backend"] = chosen
    return cloud, info


__all__ = ["BACKENDS", "colmap_unavailable_reason", "dense_cloud", "select_backend"]
