"""Gaussian splats: parameters, initialisation from a point cloud, and the INRIA ``.ply`` layout.

Parameters are stored raw (pre-activation), as the original 3DGS code and gsplat's trainer do:
``means`` [N, 3], ``scales`` [N, 3] (log), ``quats`` [N, 4] (wxyz, unnormalised),
``opacities`` [N] (logit), ``sh0`` [N, 1, 3] and ``shN`` [N, K-1, 3] (SH coefficients, K =
(degree + 1)^2). The .ply holds exactly these values, per vertex: ``x y z nx ny nz f_dc_0..2
f_rest_* opacity scale_0..2 rot_0..3``, with ``f_rest`` channel-major (all of red's coefficients,
then green's, then blue's), in the input cameras' world frame.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..core.errors import FvgenError

SH_C0 = 0.28209479177387814
PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    return sh0 * SH_C0 + 0.5


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def knn_mean_distance(xyz: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Mean distance of each point to its ``k`` nearest neighbours (a k-d tree, scipy)."""
    from scipy.spatial import cKDTree

    n = len(xyz)
    if n <= 1:
        return torch.ones(n, dtype=xyz.dtype, device=xyz.device)
    k = min(k, n - 1)
    pts = xyz.detach().cpu().double().numpy()
    dist, _ = cKDTree(pts).query(pts, k=k + 1, workers=-1)  # column 0 is the point itself
    return torch.as_tensor(dist[:, 1:].mean(1), dtype=xyz.dtype, device=xyz.device)


def init_splats(xyz: np.ndarray, rgb: np.ndarray, sh_degree: int, init_opacity: float = 0.1,
                init_scale: float = 1.0, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Isotropic Gaussians at the points, sized by their 3 nearest neighbours (as 3DGS does)."""
    # a copy: the fit optimises these tensors in place, and as_tensor would share the caller's arrays
    means = torch.tensor(np.asarray(xyz), dtype=torch.float32, device=device)
    colors = torch.as_tensor(rgb, dtype=torch.float32, device=device).clamp(0, 1)
    n = len(means)
    dist = knn_mean_distance(means).clamp_min(1e-7)
    scales = torch.log(dist * init_scale)[:, None].repeat(1, 3)
    quats = torch.zeros(n, 4, device=device)
    quats[:, 0] = 1.0
    opacities = torch.logit(torch.full((n,), init_opacity, device=device))
    sh0 = rgb_to_sh0(colors)[:, None, :]
    shN = torch.zeros(n, num_sh_bases(sh_degree) - 1, 3, device=device)
    return {"means": means, "scales": scales, "quats": quats, "opacities": opacities,
            "sh0": sh0, "shN": shN}


def save_ply(splats: dict[str, torch.Tensor], path: Path) -> None:
    """Write the INRIA-layout binary little-endian .ply (raw parameter values)."""
    from plyfile import PlyData, PlyElement

    p = {k: splats[k].detach().float().cpu().numpy() for k in PARAM_NAMES}
    n = len(p["means"])
    rest = p["shN"].transpose(0, 2, 1).reshape(n, -1)  # channel-major, as INRIA
    names = (["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)]
             + [f"f_rest_{i}" for i in range(rest.shape[1])] + ["opacity"]
             + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
    cols = np.concatenate([p["means"], np.zeros((n, 3), np.float32), p["sh0"].reshape(n, 3), rest,
                           p["opacities"].reshape(n, 1), p["scales"], p["quats"]], axis=1)
    if not np.isfinite(cols).all():
        raise FvgenError("the fitted splats contain NaN or Inf values; refusing to write a broken .ply")
    # One contiguous float32 block viewed as the structured vertex array (no per-column copies).
    v = np.ascontiguousarray(cols, dtype="<f4").view(np.dtype([(name, "<f4") for name in names])).reshape(n)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(v, "vertex")], byte_order="<").write(str(path))


def load_ply(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read an INRIA-layout .ply back into raw parameters (inverse of :func:`save_ply`)."""
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise FvgenError(f"scene file not found: {path}")
    try:
        v = PlyData.read(str(path))["vertex"].data
    except Exception as e:
        raise FvgenError(f"cannot read {path} as a .ply file ({e})") from None
    names = v.dtype.names
    needed = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
              "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [k for k in needed if k not in names]
    if missing:
        raise FvgenError(f"{path} is not a Gaussian splat .ply (missing {', '.join(missing[:4])}); "
                         "point clouds are rendered with `fvgen warp`")
    n = len(v)
    col = lambda ks: np.stack([np.asarray(v[k], np.float32) for k in ks], 1)  # noqa: E731
    rest_names = sorted((k for k in names if k.startswith("f_rest_")), key=lambda s: int(s[7:]))
    n_rest = len(rest_names) // 3
    degree = int(round(math.sqrt(n_rest + 1))) - 1
    if (degree + 1) ** 2 != n_rest + 1:
        raise FvgenError(f"{path}: {len(rest_names)} f_rest properties do not form an SH degree")
    rest = col(rest_names).reshape(n, 3, n_rest).transpose(0, 2, 1) if n_rest else np.zeros((n, 0, 3), np.float32)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device)  # noqa: E731
    return {
        "means": t(col(["x", "y", "z"])),
        "scales": t(col(["scale_0", "scale_1", "scale_2"])),
        "quats": t(col(["rot_0", "rot_1", "rot_2", "rot_3"])),
        "opacities": t(np.asarray(v["opacity"], np.float32)),
        "sh0": t(col(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :]),
        "shN": t(rest),
    }
