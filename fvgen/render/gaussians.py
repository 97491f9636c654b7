"""3D Gaussian Splatting rasterization: gsplat's CUDA kernels on GPU, our own torch path on CPU.

:func:`rasterize` mirrors ``gsplat.rasterization`` (gsplat 1.5.3, ``packed=False``): same
arguments, same image formation, same ``info`` (meta) keys, so gsplat's ``DefaultStrategy``
works unchanged on CPU with our ``info`` (``MCMCStrategy`` reads only its parameters, but its
relocate / add / noise steps call two gsplat CUDA kernels: call :func:`enable_cpu_mcmc` once
to give them pure-torch CPU fallbacks).

Conventions (gsplat's):

* ``viewmats`` are world-to-camera, OpenCV axes (x right, y down, z forward).
* ``Ks`` are pinhole intrinsics with pixel *centres* at ``(j + 0.5, i + 0.5)``, i.e. a pixel
  grid whose top-left corner is (0, 0). (Intrinsics with centres at integers need
  ``cx += 0.5, cy += 0.5`` first.)
* ``quats`` are wxyz, need not be normalised; ``scales`` and ``opacities`` are activated
  (exp / sigmoid already applied).

Image formation of the torch path (identical to gsplat's CUDA kernels):

* EWA projection with the ``eps2d`` low-pass (added to the 2D covariance), gsplat's
  frustum clamp of the Jacobian (1.3 x the field of view), near/far culling on camera z,
  opacity-aware screen radius ``ceil(min(3.33, sqrt(2 ln(255 opacity))) * sqrt(cov2d_ii))``
  (``radii`` in ``info`` are these integer half extents, 0 = culled), ``radius_clip``.
* A Gaussian contributes to a pixel iff ``sigma >= 0`` and
  ``alpha = min(0.999, opacity * exp(-sigma)) >= 1/255``; contributions are composited
  front to back in camera-z order; a pixel stops (exclusive) at the first Gaussian that would
  bring its transmittance to ``<= 1e-4``. This early stop is reproduced *exactly* (it is a
  per-pixel prefix of the depth-sorted list), not approximated.

Our torch path works on (Gaussian, pixel) pairs rather than dense (tile x 256 pixel) blocks:
each visible Gaussian is intersected with the tiles its pixel box touches; tiles are grouped
into chunks of at most about ``max_pairs_per_chunk`` candidate pairs; inside a chunk, the pairs
with ``alpha >= 1/255`` are enumerated exactly (per pixel row, an x-interval from the conic),
sorted by (pixel, depth) (a stable int32 sort: pairs are generated depth-ordered), pairs that
gsplat never reaches (behind a pixel's early stop) are dropped when they are many, and the
rest are composited with a segmented exclusive cumulative sum of ``log(1 - alpha)`` in
float64. Gradients come from torch autograd (all per-pair gathers are 1D ``index_select``,
whose backward is a fast 1D ``index_add``). Cost is proportional to the number of pairs.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..core.cameras import Camera

__all__ = ["rasterize", "spherical_harmonics", "project_gaussians", "ALPHA_THRESHOLD",
           "compute_relocation_torch", "enable_cpu_mcmc", "gsplat_camera", "render_splats", "rasterize_at"]

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
ALPHA_MAX = 0.999  # gsplat clamps alpha to this
T_MIN = 1e-4  # gsplat stops a pixel when the transmittance would drop to <= this
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
DEFAULT_MAX_PAIRS_PER_CHUNK = 1 << 19  # ~0.5M pairs: fast on CPU caches, ~100 MB for autograd


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    tile_size: int = 16,
    absgrad: bool = False,
    backend: str = "auto",
    render_mode: str = "RGB",
    rasterize_mode: str = "classic",
    max_pairs_per_chunk: int = DEFAULT_MAX_PAIRS_PER_CHUNK,
    checkpoint_chunks: bool = False,
) -> Tuple[Tensor, Tensor, Dict[str, Any]]:
    """Rasterize N 3D Gaussians into C images.

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] rotations, wxyz, normalised internally.
        scales: [N, 3] activated (positive) scales.
        opacities: [N] activated opacities in [0, 1].
        colors: if ``sh_degree is None``: features [N, D] or per camera [C, N, D];
            otherwise SH coefficients [N, K, 3] or [C, N, K, 3] with ``(sh_degree+1)**2 <= K``
            (colour = ``max(SH(dir) + 0.5, 0)``, dir = mean - camera centre, like gsplat).
        viewmats: [C, 4, 4] world-to-camera (OpenCV).
        Ks: [C, 3, 3] intrinsics, gsplat convention (pixel centres at +0.5).
        width, height: image size in pixels.
        sh_degree: active SH degree, or None for plain features.
        backgrounds: [C, D] colour composited behind (D = feature channels, without depth).
        near_plane, far_plane: cull Gaussians whose camera z is outside [near, far].
        radius_clip: cull Gaussians whose screen radii are both <= this (pixels).
        eps2d: low-pass added to the diagonal of the 2D covariance.
        tile_size: tile edge in pixels (gsplat's; here also the chunking granularity).
        absgrad: also accumulate ``info["means2d"].absgrad`` (sum over pixels of |dL/dmean2d|).
        backend: "auto" (gsplat CUDA kernels when ``means`` is on CUDA, else "torch"),
            "torch" (ours, any device) or "gsplat" (alias "cuda": ``gsplat.rasterization`` with
            ``packed=False``, CUDA tensors only).
        render_mode: "RGB", "D", "ED", "RGB+D" or "RGB+ED" (depth = camera z, appended as
            the last channel; "ED" divides by the alpha, clamped at 1e-10).
        rasterize_mode: "classic" or "antialiased" (opacity x sqrt(det(cov)/det(cov+eps2d))).
        max_pairs_per_chunk: torch path only: bound on the (Gaussian, pixel) candidate pairs
            processed at once (a chunk may exceed it by at most one tile's pairs). Without
            grad (or with ``checkpoint_chunks``) this bounds the peak memory of compositing;
            with autograd each chunk keeps ~100 bytes per pair for the backward.
        checkpoint_chunks: torch path only: recompute each chunk in the backward
            (``torch.utils.checkpoint``) so that training memory is bounded by the chunk size
            too, at the price of a second compositing forward. Ignored with ``absgrad``.

    Returns:
        colors: [C, H, W, D'] (D' = D, D + 1 with depth, or 1 for depth only),
        alphas: [C, H, W, 1] accumulated opacity,
        info: gsplat's meta dict (non-packed layout): ``means2d`` [C, N, 2] (requires grad when
            the inputs do, and retains its grad), ``radii`` [C, N, 2] int32, ``depths`` [C, N],
            ``conics`` [C, N, 3], ``opacities`` [C, N], ``width``, ``height``, ``n_cameras``,
            ``n_batches``, ``tile_size``, ``tile_width``, ``tile_height``,
            ``tiles_per_gauss`` [C, N], ``isect_ids``, ``flatten_ids``, ``isect_offsets``,
            ``gaussian_ids``/``camera_ids``/``batch_ids`` = None, plus ``backend`` and (torch
            path) ``n_pairs``, the number of (Gaussian, pixel) pairs composited.
    """
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "torch"
    if backend in ("gsplat", "cuda"):
        return _rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree,
            backgrounds, near_plane, far_plane, radius_clip, eps2d, tile_size, absgrad,
            render_mode, rasterize_mode,
        )
    if backend != "torch":
        raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")
    return _rasterize_torch(
        means, quats, scales, opacities, colors, viewmats, Ks, int(width), int(height), sh_degree,
        backgrounds, near_plane, far_plane, radius_clip, eps2d, int(tile_size), absgrad,
        render_mode, rasterize_mode, int(max_pairs_per_chunk), bool(checkpoint_chunks),
    )


def _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                      sh_degree, backgrounds, near_plane, far_plane, radius_clip, eps2d, tile_size,
                      absgrad, render_mode, rasterize_mode):
    if not means.is_cuda:
        raise ValueError("backend='gsplat' needs CUDA tensors; use backend='torch' on CPU")
    from gsplat import (
        rasterization,  # lazy: importing gsplat may JIT-compile / probe CUDA
    )

    render_colors, render_alphas, meta = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, int(width), int(height),
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d,
        sh_degree=sh_degree, packed=False, tile_size=int(tile_size), backgrounds=backgrounds,
        render_mode=render_mode, absgrad=absgrad, rasterize_mode=rasterize_mode,
    )
    meta["backend"] = "gsplat"
    return render_colors, render_alphas, meta


# ----------------------------------------------------------------------------------------------
# projection
# ----------------------------------------------------------------------------------------------


def _quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] wxyz (any norm) -> [..., 3, 3]."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(quats.shape[:-1] + (3, 3))


def project_gaussians(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor,
    width: int, height: int, eps2d: float = 0.3, near_plane: float = 0.01,
    far_plane: float = 1e10, radius_clip: float = 0.0, calc_compensations: bool = False,
):
    """EWA pinhole projection, as gsplat's ``fully_fused_projection`` (non-packed, with
    opacities for the tight radius).

    Returns radii [C, N, 2] int32 (0 = culled), means2d [C, N, 2], depths [C, N],
    conics [C, N, 3] (inverse 2D covariance: xx, xy, yy), compensations [C, N] or None.
    Culled entries hold finite values (and get zero gradient)."""
    R = viewmats[:, :3, :3]  # [C, 3, 3]
    t = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # [C, N, 3]
    x, y, z = means_c.unbind(-1)  # [C, N]
    depths = z
    z_ok = ~((z < near_plane) | (z > far_plane))
    zs = torch.where(z_ok, z, torch.ones_like(z))  # keep culled entries finite

    fx = Ks[:, 0, 0, None]
    fy = Ks[:, 1, 1, None]
    cx = Ks[:, 0, 2, None]
    cy = Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / zs
    tx = zs * torch.minimum(torch.maximum(x * rz, -lim_x_neg), lim_x_pos)
    ty = zs * torch.minimum(torch.maximum(y * rz, -lim_y_neg), lim_y_pos)
    rz2 = rz * rz

    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)  # [C, N, 2]

    # J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]];  cov2d = (J R M)(J R M)^T, M = Rq S
    zero = torch.zeros_like(rz)
    J = torch.stack([fx * rz, zero, -fx * tx * rz2, zero, fy * rz, -fy * ty * rz2], -1)
    J = J.reshape(J.shape[:-1] + (2, 3))  # [C, N, 2, 3]
    M = _quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3]
    JR = torch.einsum("cnij,cjk->cnik", J, R)  # [C, N, 2, 3]
    A = torch.einsum("cnik,nkl->cnil", JR, M)  # [C, N, 2, 3]
    a0, a1 = A[..., 0, :], A[..., 1, :]
    cxx = (a0 * a0).sum(-1)
    cxy = (a0 * a1).sum(-1)
    cyy = (a1 * a1).sum(-1)
    det_orig = cxx * cyy - cxy * cxy
    cxx = cxx + eps2d
    cyy = cyy + eps2d
    det = cxx * cyy - cxy * cxy
    det_ok = det > 0
    det_s = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([cyy / det_s, -cxy / det_s, cxx / det_s], dim=-1)  # [C, N, 3]
    compensations = None
    if calc_compensations:
        compensations = torch.sqrt(torch.clamp(det_orig / det_s, min=0.0))

    with torch.no_grad():
        op = opacities.detach()[None, :].expand_as(z)
        if compensations is not None:
            op = op * compensations.detach()
        op_ok = op >= ALPHA_THRESHOLD
        extend = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = extend.clamp(max=3.33)
        rx = torch.ceil(extend * torch.sqrt(cxx.detach().clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(cyy.detach().clamp_min(0)))
        mx, my = means2d.detach().unbind(-1)
        valid = z_ok & det_ok & op_ok
        valid &= ~((rx <= radius_clip) & (ry <= radius_clip))
        valid &= ~((mx + rx <= 0) | (mx - rx >= width) | (my + ry <= 0) | (my - ry >= height))
        radii = torch.stack([rx, ry], dim=-1)
        radii = torch.where(valid[..., None], radii, torch.zeros_like(radii)).to(torch.int32)
    return radii, means2d, depths, conics, compensations


# ----------------------------------------------------------------------------------------------
# spherical harmonics (gsplat's basis, Sloan's real SH with the same sign conventions)
# ----------------------------------------------------------------------------------------------


def _sh_bases(n_bases: int, d: Tensor) -> Tensor:
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, 0.2820947917738781)]
    if n_bases > 1:
        a = -0.48860251190292
        out += [a * y, -a * z, a * x]
    if n_bases > 4:
        z2 = z * z
        tb = -1.092548430592079 * z
        ta = 0.5462742152960395
        c1 = x * x - y * y
        s1 = 2 * x * y
        out += [ta * s1, tb * y, 0.9461746957575601 * z2 - 0.3153915652525201, tb * x, ta * c1]
    if n_bases > 9:
        tc = -2.285228997322329 * z2 + 0.4570457994644658
        tb = 1.445305721320277 * z
        ta = -0.5900435899266435
        c2 = x * c1 - y * s1
        s2 = x * s1 + y * c1
        out += [ta * s2, tb * s1, tc * y, z * (1.865881662950577 * z2 - 1.119528997770346),
                tc * x, tb * c1, ta * c2]
    if n_bases > 16:
        td = z * (-4.683325804901025 * z2 + 2.007139630671868)
        tc = 3.31161143515146 * z2 - 0.47308734787878
        tb = -1.770130769779931 * z
        ta = 0.6258357354491763
        c3 = x * c2 - y * s2
        s3 = x * s2 + y * c2
        out += [ta * s3, tb * s2, tc * s1, td * y,
                1.984313483298443 * z2 * (1.865881662950577 * z2 - 1.119528997770346)
                - 1.006230589874905 * (0.9461746957575601 * z2 - 0.3153915652525201),
                td * x, tc * c1, tb * c2, ta * c3]
    return torch.stack(out[:n_bases], dim=-1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH of ``degree`` (0..4) at ``dirs`` [..., 3] (any norm) with coefficients
    [..., K, 3] -> [..., 3]; same basis as gsplat's ``spherical_harmonics``."""
    if not 0 <= degree <= 4:
        raise ValueError(f"sh_degree must be in 0..4, got {degree}")
    n = (degree + 1) ** 2
    if coeffs.shape[-2] < n:
        raise ValueError(f"need >= {n} SH coefficients for degree {degree}, got {coeffs.shape}")
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    bases = _sh_bases(n, d)  # [..., n]
    return (bases[..., None] * coeffs[..., :n, :]).sum(dim=-2)


# ----------------------------------------------------------------------------------------------
# torch rasterizer
# ----------------------------------------------------------------------------------------------


def _rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                     sh_degree, backgrounds, near_plane, far_plane, radius_clip, eps2d, tile_size,
                     absgrad, render_mode, rasterize_mode, max_pairs_per_chunk,
                     checkpoint_chunks=False):
    N = means.shape[0]
    C = viewmats.shape[0]
    if means.shape != (N, 3) or quats.shape != (N, 4) or scales.shape != (N, 3):
        raise ValueError(f"bad shapes: means {tuple(means.shape)}, quats {tuple(quats.shape)}, "
                         f"scales {tuple(scales.shape)} (batch dims are not supported)")
    if opacities.shape != (N,):
        raise ValueError(f"opacities must be [N], got {tuple(opacities.shape)}")
    if viewmats.shape != (C, 4, 4) or Ks.shape != (C, 3, 3):
        raise ValueError(f"viewmats [C,4,4] and Ks [C,3,3] expected, got {tuple(viewmats.shape)},"
                         f" {tuple(Ks.shape)}")
    if width <= 0 or height <= 0 or tile_size <= 0:
        raise ValueError("width, height and tile_size must be positive")
    dtype = means.dtype
    viewmats = viewmats.to(dtype)
    Ks = Ks.to(dtype)

    radii, means2d, depths, conics, comps = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip,
        calc_compensations=(rasterize_mode == "antialiased"),
    )
    if means2d.requires_grad:
        means2d.retain_grad()
    opac_cn = opacities[None, :].expand(C, N)
    if comps is not None:
        opac_cn = opac_cn * comps

    # colours -> [C, N, D]
    if sh_degree is None:
        if colors.dim() == 2 and colors.shape[0] == N:
            feats = colors[None].expand(C, N, colors.shape[-1])
        elif colors.dim() == 3 and colors.shape[:2] == (C, N):
            feats = colors
        else:
            raise ValueError(f"colors must be [N, D] or [C, N, D] when sh_degree is None, got "
                             f"{tuple(colors.shape)}")
    else:
        if colors.dim() == 3 and colors.shape[0] == N and colors.shape[-1] == 3:
            coeffs = colors[None].expand((C,) + tuple(colors.shape))
        elif colors.dim() == 4 and colors.shape[:2] == (C, N) and colors.shape[-1] == 3:
            coeffs = colors
        else:
            raise ValueError(f"SH colors must be [N, K, 3] or [C, N, K, 3], got "
                             f"{tuple(colors.shape)}")
        campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
        dirs = means[None, :, :] - campos[:, None, :]  # [C, N, 3]
        feats = torch.clamp_min(spherical_harmonics(sh_degree, dirs, coeffs) + 0.5, 0.0)

    if backgrounds is not None:
        backgrounds = backgrounds.to(dtype)
        if backgrounds.dim() == 1:
            backgrounds = backgrounds[None].expand(C, -1)
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        feats = depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)
    D = feats.shape[-1]
    if backgrounds is not None and backgrounds.shape != (C, D):
        raise ValueError(f"backgrounds must be [C, {D}], got {tuple(backgrounds.shape)}")

    out_colors, out_alphas, tiles_info = _composite(
        means2d, conics, opac_cn, feats, radii, depths, width, height, tile_size,
        max_pairs_per_chunk, absgrad, checkpoint_chunks,
    )
    out_colors = out_colors.reshape(C, height, width, D)
    out_alphas = out_alphas.reshape(C, height, width, 1)
    if backgrounds is not None:
        out_colors = out_colors + backgrounds[:, None, None, :] * (1.0 - out_alphas)
    if render_mode in ("ED", "RGB+ED"):
        out_colors = torch.cat(
            [out_colors[..., :-1], out_colors[..., -1:] / out_alphas.clamp(min=1e-10)], dim=-1)

    info: Dict[str, Any] = {
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opac_cn,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_batches": 1,
        "n_cameras": C,
        "backend": "torch",
    }
    info.update(tiles_info)
    return out_colors, out_alphas, info


def _repeat_ranges(counts: Tensor) -> Tuple[Tensor, Tensor]:
    """For counts [K] (int64): owner [sum] (which k) and local [sum] (0..counts[k]-1)."""
    total = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts,
                                    output_size=total)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=counts.device) - starts.index_select(0, owner)
    return owner, local


def _composite(means2d, conics, opac, feats, radii, depths, width, height, tile_size,
               max_pairs, absgrad, checkpoint=False):
    """Alpha-composite [C, N] projected Gaussians into [C*H*W, D] colours and [C*H*W, 1] alphas.

    Pairs (Gaussian, pixel) are enumerated exactly: for each (Gaussian, tile) intersection and
    each pixel row of it, the pixels whose centre has ``alpha >= 1/255`` form an interval found
    from the conic (a quadratic in x), so no candidate pair is generated only to be rejected."""
    C, N = depths.shape
    D = feats.shape[-1]
    device = means2d.device
    dtype = means2d.dtype
    HW = height * width
    tw = (width + tile_size - 1) // tile_size
    th = (height + tile_size - 1) // tile_size
    n_tiles = tw * th
    if C * HW >= 2**31:
        raise ValueError("too many pixels for one call (C * H * W must be < 2**31)")

    # per-Gaussian 1D attributes (1D gathers / index_adds are much faster than 2D on CPU)
    m2f = means2d.reshape(C * N, 2)
    cof = conics.reshape(C * N, 3)
    mx_f, my_f = m2f[:, 0].contiguous(), m2f[:, 1].contiguous()
    ha_f = (0.5 * cof[:, 0]).contiguous()
    b_f = cof[:, 1].contiguous()
    hc_f = (0.5 * cof[:, 2]).contiguous()
    op_f = opac.reshape(C * N).contiguous()
    ff = feats.reshape(C * N, D)
    per_channel = D <= 4
    feat_cols = [ff[:, k].contiguous() for k in range(D)] if per_channel else None

    absbuf = None
    if absgrad and means2d.requires_grad:
        absbuf = torch.zeros(C * N, 2, dtype=dtype, device=device)
        means2d.absgrad = absbuf.view(C, N, 2)

    with torch.no_grad():
        # ---- visible Gaussians, sorted by (camera, depth)
        valid = (radii > 0).all(dim=-1).reshape(-1)
        fid = torch.nonzero(valid).squeeze(1)  # flat index c*N+g
        dep = depths.detach().reshape(-1).index_select(0, fid)
        fid = fid.index_select(0, torch.argsort(dep, stable=True))
        if C > 1:
            fid = fid.index_select(0, torch.argsort(fid // N, stable=True))
        cam = fid // N
        mxv = mx_f.detach().index_select(0, fid)
        myv = my_f.detach().index_select(0, fid)
        r = radii.reshape(-1, 2).index_select(0, fid).to(dtype)
        # pixel box: pixel centres (j + 0.5) within [mean - radius, mean + radius]
        x0 = torch.ceil(mxv - r[:, 0] - 0.5 - 1e-3).clamp(min=0).long()
        x1 = torch.floor(mxv + r[:, 0] - 0.5 + 1e-3).clamp(max=width - 1).long()
        y0 = torch.ceil(myv - r[:, 1] - 0.5 - 1e-3).clamp(min=0).long()
        y1 = torch.floor(myv + r[:, 1] - 0.5 + 1e-3).clamp(max=height - 1).long()
        nonempty = (x1 >= x0) & (y1 >= y0)
        zero = torch.zeros_like(x0)
        x0, x1, y0, y1 = (torch.where(nonempty, v, zero) for v in (x0, x1, y0, y1))
        tx0, tx1 = x0 // tile_size, x1 // tile_size
        ty0, ty1 = y0 // tile_size, y1 // tile_size
        ntx = tx1 - tx0 + 1
        n_t = ntx * (ty1 - ty0 + 1) * nonempty.long()

        # ---- (Gaussian, tile) intersections, sorted by (camera, tile, depth)
        ig, loc = _repeat_ranges(n_t)
        ntx_i = ntx.index_select(0, ig)
        ity = ty0.index_select(0, ig) + loc // ntx_i
        itx = tx0.index_select(0, ig) + loc % ntx_i
        sx0 = torch.maximum(x0.index_select(0, ig), itx * tile_size)
        sx1 = torch.minimum(x1.index_select(0, ig), itx * tile_size + tile_size - 1)
        sy0 = torch.maximum(y0.index_select(0, ig), ity * tile_size)
        sy1 = torch.minimum(y1.index_select(0, ig), ity * tile_size + tile_size - 1)
        tile_key = cam.index_select(0, ig) * n_tiles + ity * tw + itx
        perm = torch.argsort(tile_key.to(torch.int32) if C * n_tiles < 2**31 else tile_key,
                             stable=True)
        ig, tile_key, sx0, sx1, sy0, sy1 = (
            v.index_select(0, perm) for v in (ig, tile_key, sx0, sx1, sy0, sy1))
        iflat = fid.index_select(0, ig)  # flat Gaussian index per intersection
        icount = (sx1 - sx0 + 1) * (sy1 - sy0 + 1)  # upper bound of its pairs

        # gsplat-style bookkeeping for info
        tiles_per_gauss = torch.zeros(C * N, dtype=torch.int32, device=device)
        tiles_per_gauss[fid] = n_t.to(torch.int32)
        tile_counts = torch.bincount(tile_key, minlength=C * n_tiles)
        isect_offsets = (torch.cumsum(tile_counts, 0) - tile_counts).to(torch.int32)
        tile_n_bits = n_tiles.bit_length()
        depth_bits = depths.detach().reshape(-1).index_select(0, iflat).float() \
            .view(torch.int32).long() & 0xFFFFFFFF
        isect_ids = ((tile_key // n_tiles) << (32 + tile_n_bits)) | (
            (tile_key % n_tiles) << 32) | depth_bits
        tiles_info = {
            "tile_width": tw,
            "tile_height": th,
            "tiles_per_gauss": tiles_per_gauss.view(C, N),
            "isect_ids": isect_ids,
            "flatten_ids": iflat.to(torch.int32),
            "isect_offsets": isect_offsets.view(C, th, tw),
        }

        # per-intersection conic data for the row spans
        i_mx = mx_f.detach().index_select(0, iflat)
        i_my = my_f.detach().index_select(0, iflat)
        i_a = 2.0 * ha_f.detach().index_select(0, iflat)
        i_b = b_f.detach().index_select(0, iflat)
        i_c = 2.0 * hc_f.detach().index_select(0, iflat)
        # alpha >= 1/255  <=>  sigma <= ln(255 * opacity)   (sigma >= 0 always: conic is PD)
        i_thr = torch.log(op_f.detach().index_select(0, iflat) / ALPHA_THRESHOLD).clamp_min(0)
        i_thr = i_thr * (1 + 1e-5) + 1e-6  # generous: the exact test is redone below

        # ---- chunks of whole tiles, about max_pairs candidate pairs each
        tile_pairs = torch.zeros(C * n_tiles, dtype=torch.long, device=device)
        tile_pairs.index_add_(0, tile_key, icount)
        tile_chunk = (torch.cumsum(tile_pairs, 0) - tile_pairs) // max(int(max_pairs), 1)
        isect_chunk = tile_chunk.index_select(0, tile_key)
        _, chunk_sizes = torch.unique_consecutive(isect_chunk, return_counts=True)
        bounds = [0] + torch.cumsum(chunk_sizes, 0).tolist()

    isect = (sx0, sx1, sy0, sy1, iflat, i_mx, i_my, i_a, i_b, i_c, i_thr)
    feats_arg = feat_cols if per_channel else ff
    use_ckpt = checkpoint and torch.is_grad_enabled() and absbuf is None
    seg_pix_list, seg_rgb_list, seg_logT_list = [], [], []
    n_pairs = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        sl = tuple(t[a:b] for t in isect)
        if use_ckpt:
            # recompute the whole chunk (pair lists included) in the backward: memory stays
            # bounded by the chunk size
            from torch.utils.checkpoint import checkpoint as _ckpt

            out = _ckpt(_chunk, sl, N, HW, width, mx_f, my_f, ha_f, b_f, hc_f, op_f, feats_arg,
                        None, use_reentrant=False, preserve_rng_state=False)
        else:
            out = _chunk(sl, N, HW, width, mx_f, my_f, ha_f, b_f, hc_f, op_f, feats_arg, absbuf)
        if out is None:
            continue
        seg_pix, rgb, logT, m = out
        n_pairs += m
        seg_pix_list.append(seg_pix)
        seg_rgb_list.append(rgb)
        seg_logT_list.append(logT)

    total = C * HW
    if seg_pix_list:
        seg_pix = torch.cat(seg_pix_list)
        rgb = torch.cat(seg_rgb_list)
        acc = 1.0 - torch.exp(torch.cat(seg_logT_list)).to(dtype)
        out_rgb = torch.zeros(total, D, dtype=dtype, device=device).index_put((seg_pix,), rgb)
        out_a = torch.zeros(total, dtype=dtype, device=device).index_put((seg_pix,), acc)
    else:
        # nothing visible: keep the outputs attached to the graph so backward() works and
        # means2d.grad exists (zeros), as with gsplat
        zero = (means2d.sum() + opac.sum() + feats.sum() + conics.sum()) * 0.0
        out_rgb = torch.zeros(total, D, dtype=dtype, device=device) + zero
        out_a = torch.zeros(total, dtype=dtype, device=device) + zero
    tiles_info["n_pairs"] = n_pairs
    return out_rgb, out_a[:, None], tiles_info


def _chunk_pairs(sl, N, HW, width, dtype):
    """(Gaussian, pixel) pairs of a run of whole tiles, sorted by (pixel, depth).

    For each (Gaussian, tile) intersection and each of its pixel rows, the pixels whose centre
    has ``sigma <= ln(255 opacity)`` form an x-interval (a quadratic inequality)."""
    sx0, sx1, sy0, sy1, iflat, i_mx, i_my, i_a, i_b, i_c, i_thr = sl
    device = sx0.device
    ro, ly = _repeat_ranges(sy1 - sy0 + 1)
    ry = sy0.index_select(0, ro) + ly
    ra = i_a.index_select(0, ro)
    rb = i_b.index_select(0, ro)
    rc = i_c.index_select(0, ro)
    v = ry.to(dtype) + 0.5 - i_my.index_select(0, ro)
    # 0.5 a u^2 + b v u + 0.5 c v^2 <= thr,  u = x + 0.5 - mx
    disc = 2.0 * ra * i_thr.index_select(0, ro) - v * v * (ra * rc - rb * rb)
    half = torch.sqrt(disc.clamp_min(0)) / ra
    ctr = i_mx.index_select(0, ro) - rb * v / ra - 0.5
    xl = torch.maximum(torch.ceil(ctr - half - 1e-3).long(), sx0.index_select(0, ro))
    xr = torch.minimum(torch.floor(ctr + half + 1e-3).long(), sx1.index_select(0, ro))
    cnt = torch.where(disc >= 0, (xr - xl + 1).clamp_min(0), torch.zeros_like(xl))
    po, lx = _repeat_ranges(cnt)
    if po.numel() == 0:
        return None
    g_row = iflat.index_select(0, ro)
    row_base = (g_row // N) * HW + ry * width  # pixel id of (camera, row, x=0)
    pix = (row_base + xl).to(torch.int32).index_select(0, po) + lx.to(torch.int32)
    # -> (pixel, depth) order: pairs are generated depth-ordered and the sort is stable
    pix, srt = torch.sort(pix, stable=True)
    po = po.index_select(0, srt)
    g = g_row.index_select(0, po)
    pxf = (pix - row_base.to(torch.int32).index_select(0, po)).to(dtype) + 0.5
    pyf = ry.to(dtype).index_select(0, po) + 0.5
    seg_pix, seg_len = torch.unique_consecutive(pix, return_counts=True)
    seg_id = torch.repeat_interleave(torch.arange(seg_pix.numel(), device=device), seg_len,
                                     output_size=pix.numel())
    seg_start = torch.cumsum(seg_len, 0) - seg_len
    return g, pxf, pyf, seg_pix.long(), seg_id, seg_start


def _pair_alpha(g, pxf, pyf, mx_f, my_f, ha_f, b_f, hc_f, op_f, means_gathered=False):
    if means_gathered:
        gmx, gmy = mx_f, my_f
    else:
        gmx, gmy = mx_f.index_select(0, g), my_f.index_select(0, g)
    dx = gmx - pxf
    dy = gmy - pyf
    sig = dx * (ha_f.index_select(0, g) * dx + b_f.index_select(0, g) * dy) \
        + hc_f.index_select(0, g) * (dy * dy)
    alpha = torch.clamp_max(op_f.index_select(0, g) * torch.exp(-sig), ALPHA_MAX)
    return sig, alpha


def _drop_hidden_pairs(pairs, mx_f, my_f, ha_f, b_f, hc_f, op_f, min_drop=0.05):
    """Drop the pairs that gsplat never reaches (behind a pixel's T <= 1e-4 stop, or below the
    1/255 threshold) when they are more than ``min_drop`` of the chunk: saves their autograd
    work (opaque scenes have many). Same arithmetic as the differentiable pass, so the kept
    pairs are exactly the ones it would use."""
    g, pxf, pyf, seg_pix, seg_id, seg_start = pairs
    # cheap bound first: with alpha <= opacity, no pixel can reach the stop if
    # sum log(1 - min(opacity, 0.999)) over its pairs stays above log(1e-4)
    lo = torch.log1p(-op_f.detach().clamp_max(ALPHA_MAX)).index_select(0, g).double()
    seg_sum = torch.zeros(seg_pix.numel(), dtype=torch.float64, device=g.device)
    seg_sum.index_add_(0, seg_id, lo)
    if bool((seg_sum > math.log(T_MIN)).all()):
        return pairs
    sig, alpha = _pair_alpha(g, pxf, pyf, mx_f.detach(), my_f.detach(), ha_f.detach(),
                             b_f.detach(), hc_f.detach(), op_f.detach())
    keep = (alpha >= ALPHA_THRESHOLD) & (sig >= 0)
    logt = torch.where(keep, torch.log1p(-alpha).double(), torch.zeros((), dtype=torch.float64,
                                                                        device=g.device))
    cs = torch.cumsum(logt, 0)
    base = (cs - logt).index_select(0, seg_start).index_select(0, seg_id)
    use = keep & ((cs - base) > math.log(T_MIN))
    n_use = int(use.sum())
    if n_use == 0:
        return None
    if n_use >= (1.0 - min_drop) * g.numel():
        return pairs
    idx = torch.nonzero(use).squeeze(1)
    g, pxf, pyf = g.index_select(0, idx), pxf.index_select(0, idx), pyf.index_select(0, idx)
    pix = seg_pix.index_select(0, seg_id.index_select(0, idx))
    seg_pix, seg_len = torch.unique_consecutive(pix, return_counts=True)
    seg_id = torch.repeat_interleave(torch.arange(seg_pix.numel(), device=g.device), seg_len,
                                     output_size=pix.numel())
    seg_start = torch.cumsum(seg_len, 0) - seg_len
    return g, pxf, pyf, seg_pix, seg_id, seg_start


def _chunk(sl, N, HW, width, mx_f, my_f, ha_f, b_f, hc_f, op_f, feats, absbuf):
    with torch.no_grad():
        pairs = _chunk_pairs(sl, N, HW, width, mx_f.dtype)
        if pairs is None:
            return None
        pairs = _drop_hidden_pairs(pairs, mx_f, my_f, ha_f, b_f, hc_f, op_f)
        if pairs is None:
            return None
    g, pxf, pyf, seg_pix, seg_id, seg_start = pairs
    gathered = False
    if absbuf is not None:
        mx_f, my_f = mx_f.index_select(0, g), my_f.index_select(0, g)
        gathered = True
        if mx_f.requires_grad:  # per-pair d/dmeans2d -> sum of |.| per Gaussian
            mx_f.register_hook(_absgrad_hook(absbuf[:, 0], g))
            my_f.register_hook(_absgrad_hook(absbuf[:, 1], g))
    rgb, logT = _chunk_composite(g, pxf, pyf, seg_id, seg_start, seg_pix.numel(), mx_f, my_f,
                                 ha_f, b_f, hc_f, op_f, feats, gathered)
    return seg_pix, rgb, logT, int(g.numel())


def _chunk_composite(g, pxf, pyf, seg_id, seg_start, S, mx_f, my_f, ha_f, b_f, hc_f, op_f,
                     feats, means_gathered=False):
    """Composite M (Gaussian g, pixel) pairs sorted by (pixel, depth) into S pixel segments.

    Returns rgb [S, D] and log transmittance [S] (float64). All gathers are 1D index_selects
    (their backward, a 1D index_add, is much faster on CPU than a 2D one)."""
    dtype, device = mx_f.dtype, mx_f.device
    sig, alpha = _pair_alpha(g, pxf, pyf, mx_f, my_f, ha_f, b_f, hc_f, op_f, means_gathered)
    logt = torch.log1p(-alpha).double()
    with torch.no_grad():
        keep = (alpha >= ALPHA_THRESHOLD) & (sig >= 0)  # exact gsplat test
        all_kept = bool(keep.all())
    if not all_kept:  # only pixels right on the 1/255 boundary
        logt = torch.where(keep, logt, torch.zeros_like(logt))
    # segmented exclusive cumulative sum of log(1 - alpha), in float64 (the running sum over a
    # whole chunk is large; float32 would lose the per-pixel differences)
    cs = torch.cumsum(logt, 0)
    cs_ex = cs - logt
    base = cs_ex.index_select(0, seg_start).index_select(0, seg_id)
    with torch.no_grad():
        # gsplat stops a pixel (exclusively) once next_T <= 1e-4; T is a per-pixel
        # non-increasing product, so "still alive" is an exact prefix of each segment
        # (and T_ex of the pairs before the stop does not depend on those after it)
        use = (cs - base) > math.log(T_MIN)
        if not all_kept:
            use &= keep
        all_used = bool(use.all())
    T_ex = torch.exp(cs_ex - base).to(dtype)
    if all_used:
        wgt = alpha * T_ex
    else:
        wgt = torch.where(use, alpha, torch.zeros_like(alpha)) * T_ex  # [M]
        logt = torch.where(use, logt, torch.zeros_like(logt))
    if isinstance(feats, (list, tuple)):
        rgb = torch.stack([
            torch.zeros(S, dtype=dtype, device=device).index_add(
                0, seg_id, wgt * col.index_select(0, g)) for col in feats], dim=-1)
    else:
        rgb = torch.zeros(S, feats.shape[-1], dtype=dtype, device=device).index_add(
            0, seg_id, wgt[:, None] * feats.index_select(0, g))
    logT = torch.zeros(S, dtype=torch.float64, device=device).index_add(0, seg_id, logt)
    return rgb, logT


def _absgrad_hook(buf: Tensor, idx: Tensor):
    def hook(grad: Tensor):
        buf.index_add_(0, idx, grad.detach().abs())
        return None

    return hook


# ----------------------------------------------------------------------------------------------
# CPU fallbacks for gsplat's MCMCStrategy (its ops call two gsplat CUDA kernels)
# ----------------------------------------------------------------------------------------------


def compute_relocation_torch(opacities: Tensor, scales: Tensor, ratios: Tensor,
                             binoms: Tensor) -> Tuple[Tensor, Tensor]:
    """Pure-torch ``gsplat.relocation.compute_relocation`` (MCMC paper, eq. 9): a Gaussian split
    into n copies gets opacity ``1 - (1 - o)^(1/n)`` and its scales times
    ``o / sum_{i=1..n} sum_{k<i} C(i-1, k) (-1)^k / sqrt(k+1) o_new^(k+1)``.
    Like gsplat's, clamps ``ratios`` in place to [1, n_max]."""
    n_max = binoms.shape[0]
    ratios.clamp_(min=1, max=n_max)
    n = ratios.long()
    new_op = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))
    k = torch.arange(n_max, device=opacities.device)
    # S[n-1, k] = sum_{i=1..n} C(i-1, k) [k <= i-1]
    S = torch.cumsum(torch.tril(binoms.to(opacities.dtype)), dim=0)
    sign = (1.0 - 2.0 * (k % 2)).to(opacities.dtype) / torch.sqrt((k + 1).to(opacities.dtype))
    powers = new_op[:, None] ** (k + 1).to(opacities.dtype)[None, :]  # [N, n_max]
    denom = (S.index_select(0, n - 1) * sign[None, :] * powers).sum(-1)
    new_scales = (opacities / denom)[:, None] * scales
    return new_op, new_scales


def enable_cpu_mcmc() -> None:
    """Let gsplat's ``MCMCStrategy`` run on CPU tensors: patch ``gsplat.strategy.ops`` so that
    ``compute_relocation`` and ``quat_scale_to_covar_preci`` fall back to pure torch for CPU
    tensors (CUDA tensors still use gsplat's kernels). Idempotent."""
    import gsplat.strategy.ops as ops

    if getattr(ops, "_fvgen_cpu_fallbacks", False):
        return
    orig_reloc = ops.compute_relocation
    orig_covar = ops.quat_scale_to_covar_preci

    def compute_relocation(opacities, scales, ratios, binoms):
        if opacities.is_cuda:
            return orig_reloc(opacities, scales, ratios, binoms)
        return compute_relocation_torch(opacities, scales, ratios, binoms)

    def quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=True,
                                  triu=False):
        if quats.is_cuda:
            return orig_covar(quats, scales, compute_covar, compute_preci, triu)
        from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

        return _quat_scale_to_covar_preci(quats, scales, compute_covar, compute_preci, triu)

    ops.compute_relocation = compute_relocation
    ops.quat_scale_to_covar_preci = quat_scale_to_covar_preci
    ops._fvgen_cpu_fallbacks = True


# ----------------------------------------------------------------------------- splat parameters

def gsplat_camera(cameras: Sequence[Camera], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Our cameras as gsplat's (viewmats [C, 4, 4] world-to-camera, Ks [C, 3, 3]); gsplat puts
    pixel centres at +0.5, ours at 0, hence the shift of the principal point."""
    viewmats = torch.tensor(np.stack([c.w2c for c in cameras]), dtype=torch.float32, device=device)
    Ks = np.stack([c.K for c in cameras]).copy()
    Ks[:, 0, 2] += 0.5
    Ks[:, 1, 2] += 0.5
    return viewmats, torch.tensor(Ks, dtype=torch.float32, device=device)


def render_splats(splats: dict[str, torch.Tensor], cameras: Sequence[Camera], sh_degree: int | None = None,
                  background: torch.Tensor | None = None, render_mode: str = "RGB"):
    """Render raw splat parameters at ``cameras`` (all of one size): colours [C, H, W, 3],
    alphas [C, H, W, 1] and the rasterizer's info dict."""
    viewmats, Ks = gsplat_camera(cameras, splats["means"].device)
    return rasterize_at(splats, viewmats, Ks, cameras[0].width, cameras[0].height, sh_degree, background,
                        render_mode)


def rasterize_at(splats: dict[str, torch.Tensor], viewmats: torch.Tensor, Ks: torch.Tensor, width: int,
                 height: int, sh_degree: int | None = None, background: torch.Tensor | None = None,
                 render_mode: str = "RGB"):
    """:func:`render_splats` for cameras already in gsplat's form (viewmats [C, 4, 4], Ks [C, 3, 3]
    on the splats' device): what the fit loop calls, with no per-step host-to-device copies.
    ``viewmats`` may carry gradients (the fit's pose refinement, :mod:`fvgen.fit.poses`): our torch
    rasterizer is plain autograd in them and gsplat's CUDA projection returns their gradient."""
    device = splats["means"].device
    colors = torch.cat([splats["sh0"], splats["shN"]], 1)
    if sh_degree is None:
        sh_degree = int(round(math.sqrt(colors.shape[1]))) - 1
    bg = None
    if background is not None:
        bg = background.to(device).float().expand(len(viewmats), -1)
    return rasterize(
        means=splats["means"], quats=splats["quats"], scales=torch.exp(splats["scales"]),
        opacities=torch.sigmoid(splats["opacities"]), colors=colors, viewmats=viewmats, Ks=Ks,
        width=width, height=height, sh_degree=sh_degree, backgrounds=bg,
        render_mode=render_mode,
    )
