"""Dense point cloud from a few registered views: plane-sweep multi-view stereo + fusion.

Pipeline (all in torch, on ``device``; open3d, or scipy without it, for the final outlier removal):

1. Images are undistorted when cameras carry ``dist`` (to a pinhole with the same ``K``) and
   resized so the long side is at most ``MvsConf.max_image_size``.
2. Depth range per reference view: ``depth_range`` when given, else from the sparse points that
   project into it (1-99 % percentiles), else (no or too few sparse points) from a coarse sweep at
   low resolution over every depth the baseline can resolve (parallel cameras) or a factor 4 around
   the depth where the optical axes converge (converging cameras), keeping the depths a second
   view confirms. The range is padded by ``depth_margin`` in inverse depth.
3. Plane sweep: for each reference view and each of ``num_planes`` fronto-parallel planes evenly
   spaced in inverse depth, each source view is warped into the reference by the plane homography
   (``grid_sample``) and compared with windowed NCC on grey values; the per-source NCCs are
   aggregated as the mean of the best ``top_k_sources`` (robust to occlusion). Planes are done in
   chunks, so memory is ``O(chunk * sources * H * W)`` plus the ``[D, H, W]`` cost volume.
4. Winner-take-all with a parabolic sub-plane refinement; confidence = softmax mass of the cost
   curve within +-2 planes of the winner. Pixels need NCC >= ``ncc_threshold``, confidence >=
   ``conf_threshold`` and some texture.
4b. With ``propagation_iters`` > 0, slanted-plane PatchMatch propagation (:mod:`fvgen.priors.patchmatch`)
   starts from every pixel's winner-take-all depth and replaces the depth maps; its pixels need
   NCC >= ``ncc_threshold``, texture and a depth inside the range (its score has no peakedness);
   with ``propagation_keep_sweep`` the sweep's confirmed pixels keep the sweep's depth. With
   ``propagation_wide_window``, weakly textured pixels match (and are texture-checked) with that
   wider window.
5. Geometric consistency: each depth map is reprojected into every other view and back; a pixel
   counts a view as consistent when the round trip lands within ``geo_pixel_threshold`` px and
   ``geo_depth_threshold`` relative depth. Pixels with at least ``min_consistent_views`` (capped at
   ``N - 1``) survive and are fused as the mean of the consistent 3D points, coloured by the
   reference pixel.
6. Cleaning: statistical outlier removal (open3d) and voxel averaging (numpy; keeps confidence),
   voxel = ``voxel_fraction`` of the robust scene extent.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.cameras import Camera, axes_convergence
from ..core.errors import FvgenError
from ..core.pointcloud import PointCloud
from ..core.undistort import undistort_image


WIDE_PICKS = ("texture", "ncc")  # MvsConf.propagation_wide_pick
BACKUP_PICKS = ("fill", "ncc")  # MvsConf.propagation_backup_pick


@dataclass(frozen=True)
class MvsConf:
    max_image_size: int = 400  # long side of the images the stereo runs on
    num_planes: int = 96  # depth planes of the fine sweep (even in inverse depth)
    window: int = 11  # NCC window (odd, pixels)
    ncc_threshold: float = 0.45  # min aggregated NCC at the chosen depth
    conf_threshold: float = 0.25  # min softmax mass of the cost curve around the winner
    softmax_beta: float = 20.0  # sharpness of that softmax (on NCC in [-1, 1])
    min_texture: float = 0.004  # min grey std in the window (reference) to trust a match
    max_sources: int = 4  # source views per reference (closest camera centres)
    top_k_sources: int = 2  # aggregate the best k source NCCs
    geo_pixel_threshold: float = 1.0  # round-trip reprojection error (px) for consistency
    geo_depth_threshold: float = 0.015  # relative depth error for consistency
    min_consistent_views: int = 1  # other views that must agree (capped at N - 1)
    # a view only confirms a point it sees under at least this triangulation angle (degrees): two
    # near-identical views "agree" on any depth (measured: adjacent video frames as inputs gave
    # clouds that reproject well into those frames and into nothing else)
    min_triangulation_angle: float = 1.0
    depth_margin: float = 0.15  # range padding, as a fraction of the inverse-depth span
    coarse_size: int = 160  # long side of the range-finding sweep (no sparse points)
    coarse_planes: int = 64
    coarse_max_disparity: float = 0.5  # nearest depth searched: disparity of this image fraction
    plane_chunk: int = 16  # planes per batch (memory bound)
    voxel_fraction: float = 0.001  # voxel size, fraction of the robust scene extent (0: off)
    outlier_neighbors: int = 16  # statistical outlier removal (0: off)
    outlier_std_ratio: float = 2.5
    # where the dense cloud comes from: "sweep" (this module, CPU or GPU), "colmap" (COLMAP's
    # PatchMatch stereo, needs pycolmap built with CUDA and a GPU), "sweep+colmap" (both, their clouds'
    # union cleaned once more; needs what colmap needs), "auto" (colmap when it can run, else sweep);
    # see fvgen.priors.mvs_backend
    backend: str = "auto"
    # slanted-plane PatchMatch propagation on top of the sweep (fvgen.priors.patchmatch): red-black
    # iterations per pyramid level; 0 = the plain sweep
    propagation_iters: int = 0
    propagation_scales: int = 2  # pyramid levels (coarsest first, each half the size of the next)
    # > 0: a second propagation with this many levels, whose depth a pixel takes where the first one's
    # fails the checks below and this one's passes (e.g. 3 levels first for weakly textured surfaces,
    # 2 as the backup for fine structure); 0: one propagation
    propagation_backup_scales: int = 0
    # which pixels take the backup's depth: "fill" those the first propagation leaves; "ncc" those too
    # where both pass and the backup's NCC is the higher
    propagation_backup_pick: str = "fill"
    # the propagation's NCC window (0: ``window``): the sweep's and the texture check's window can be
    # wider (fern keeps its leaves with 11 px here, DTU places more with 15 px in the sweep)
    propagation_window: int = 0
    propagation_window_step: int = 2  # the NCC window sampled every this many pixels
    propagation_far: int = 5  # distance (px) of the far neighbours propagated from
    propagation_sigma_color: float = 0.0  # bilateral weight of the window on grey values (0: flat)
    # source views whose NCCs are averaged for a plane's score (the best ones): 1 lets a pixel
    # that only one source sees be matched (wide baselines, occlusions); the geometric check still
    # needs another view to confirm it
    propagation_top_k_sources: int = 1
    propagation_candidates: int = 4  # neighbour planes tried per pixel and pass (the best-scoring)
    propagation_depth_step: float = 0.05  # random refinement: inverse-depth step, fraction of the range
    propagation_normal_step: float = 0.3  # random refinement: normal perturbation (radians, about)
    propagation_geom_iters: int = 1  # then iterations scored with the views' forward-backward error
    propagation_geom_weight: float = 0.2  # NCC given up per pixel of that error (capped at 3 px)
    # keep the sweep's depth where it passed its checks and another view confirms it, propagation
    # only adding pixels. Off: on a 50-degree plane it keeps the sweep's 4x larger depth error
    # (tests/test_mvs.py), and on fern it covered no more of the held-out views (RESULTS.md)
    propagation_keep_sweep: bool = False
    # texture-adaptive NCC window of the propagation: pixels whose grey std over their propagation
    # window's samples is under ``propagation_wide_texture`` also get this wider window (their texture
    # check passes on either window); with ``propagation_wide_pick`` "texture" they match with it,
    # with "ncc" each hypothesis keeps the higher NCC of both windows (a texture of 1.0 gives every
    # pixel the choice). A wide window everywhere places DTU's weakly textured surfaces but costs
    # fern's fine leaves (benchmarks/RESULTS.md, docs/experiments/priors.md). 0 = off
    propagation_wide_window: int = 0
    propagation_wide_texture: float = 0.02
    propagation_wide_pick: str = "texture"

    def __post_init__(self):  # when the conf is made, not after the sweep has run
        for name, allowed in (("propagation_backup_pick", BACKUP_PICKS), ("propagation_wide_pick", WIDE_PICKS)):
            value = getattr(self, name)
            if value not in allowed:
                raise FvgenError(f"priors.mvs.{name} must be " + " or ".join(f'"{a}"' for a in allowed)
                                 + f", got {value!r}")


# ----------------------------------------------------------------------------- small helpers


def stereo_views(images, cameras: Sequence[Camera]) -> tuple[np.ndarray, list[Camera]]:
    """The views a dense-stereo backend works on: images [N, H, W, 3] float32 and one camera each,
    scaled to the images' size and undistorted; one-line errors for anything else."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise FvgenError(f"dense stereo needs images as [N, H, W, 3], got {images.shape}")
    N, H0, W0 = images.shape[:3]
    if N < 2 or len(cameras) != N:
        raise FvgenError(f"dense stereo needs at least 2 views with one camera each "
                         f"(got {N} images, {len(cameras)} cameras)")
    cams = [c.scaled(W0, H0) if (c.width, c.height) != (W0, H0) else c for c in cameras]
    if any(c.dist for c in cams):
        und = [undistort_image(im, c) for im, c in zip(images, cams)]
        images = np.stack([u[0] for u in und])
        cams = [u[1] for u in und]
    return images, cams


def statistical_inliers(xyz: np.ndarray, neighbors: int, std_ratio: float) -> np.ndarray:
    """Indices of the points kept by statistical outlier removal: open3d's
    ``remove_statistical_outlier`` where open3d is installed; elsewhere (e.g. GPU hosts without
    it) the same rule with scipy's k-d tree: drop points whose mean distance to their
    ``neighbors`` nearest neighbours exceeds the mean of that over the cloud by ``std_ratio``
    standard deviations."""
    try:
        import open3d as o3d
    except ImportError:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(xyz).query(xyz, k=neighbors + 1, workers=-1)
        mean_d = d[:, 1:].mean(1)
        keep = mean_d <= mean_d.mean() + std_ratio * mean_d.std(ddof=1)
        return np.flatnonzero(keep).astype(np.int64)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, np.float64)))
    _, ind = pcd.remove_statistical_outlier(nb_neighbors=neighbors, std_ratio=std_ratio)
    return np.asarray(ind, dtype=np.int64)


def _box(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k window (separable, same size, edge windows shrink) of [B, H, W]."""
    p = k // 2
    x = F.avg_pool2d(x[:, None], (1, k), stride=1, padding=(0, p), count_include_pad=False)
    x = F.avg_pool2d(x, (k, 1), stride=1, padding=(p, 0), count_include_pad=False)
    return x[:, 0]


def _box_std(x: torch.Tensor, k: int) -> torch.Tensor:
    """Standard deviation of ``x`` [N, H, W] over k x k windows (the texture check's measure)."""
    return (_box(x * x, k) - _box(x, k) ** 2).clamp_min(0).sqrt()


def _gray(img: torch.Tensor) -> torch.Tensor:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def _pixels(h: int, w: int, device) -> torch.Tensor:
    """Homogeneous pixel coordinates [3, H*W] (float64)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float64),
                            torch.arange(w, device=device, dtype=torch.float64), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(h * w, device=device,
                                                                     dtype=torch.float64)])


def _select_sources(cams: Sequence[Camera], ref: int, k: int) -> list[int]:
    others = [j for j in range(len(cams)) if j != ref]
    d = [np.linalg.norm(cams[j].center - cams[ref].center) for j in others]
    order = np.argsort(d)
    return [others[i] for i in order[:k]]


# ----------------------------------------------------------------------------- plane sweep


@torch.no_grad()
def _sweep(ref: int, gray: torch.Tensor, cams: Sequence[Camera], sources: list[int],
           inv_planes: torch.Tensor, conf: MvsConf) -> dict:
    """Plane sweep for one reference view. ``gray`` [N, H, W]; ``inv_planes`` [D] (descending
    inverse depth, i.e. near to far). Returns depth, best NCC and confidence maps [H, W]."""
    device = gray.device
    N, H, W = gray.shape
    D = inv_planes.numel()
    k = conf.window
    R_ = gray[ref][None]
    mu_r = _box(R_, k)
    var_r = (_box(R_ * R_, k) - mu_r ** 2).clamp_min(0)
    std_r = var_r.sqrt()
    pix = _pixels(H, W, device)
    Kr_inv = torch.as_tensor(np.linalg.inv(cams[ref].K), device=device)
    rays = Kr_inv @ pix  # [3, HW], z = 1
    c2w_r = torch.as_tensor(cams[ref].c2w, device=device)
    cost = torch.empty(D, H, W, device=device)
    kk = min(conf.top_k_sources, len(sources))
    geo = []
    for s in sources:
        T = torch.as_tensor(cams[s].w2c, device=device) @ c2w_r
        Ks = torch.as_tensor(cams[s].K, device=device)
        A = (Ks @ T[:3, :3] @ rays).float()  # [3, HW]
        b = (Ks @ T[:3, 3]).float()  # [3]
        geo.append((A, b))
    for d0 in range(0, D, conf.plane_chunk):
        inv = inv_planes[d0:d0 + conf.plane_chunk].float()
        nd = inv.numel()
        nccs = []
        for si, s in enumerate(sources):
            A, b = geo[si]
            q = A[None] + inv[:, None, None] * b[None, :, None]  # [nd, 3, HW]
            z = q[:, 2]
            zc = z.clamp_min(1e-6)
            u = q[:, 0] / zc
            v = q[:, 1] / zc
            valid = (z > 1e-6) & (u >= -0.5) & (u <= W - 0.5) & (v >= -0.5) & (v <= H - 0.5)
            grid = torch.stack([u / (W - 1) * 2 - 1, v / (H - 1) * 2 - 1], -1).view(nd, H, W, 2)
            grid = grid.clamp(-2, 2)
            S = F.grid_sample(gray[s][None, None].expand(nd, 1, H, W), grid, mode="bilinear",
                              padding_mode="border", align_corners=True)[:, 0]
            mu_s, m_ss, m_rs = _box(torch.cat([S, S * S, S * R_]), k).split(nd)
            var_s = (m_ss - mu_s ** 2).clamp_min(0)
            cov = m_rs - mu_s * mu_r
            ncc = cov / (var_s * var_r + 1e-8).sqrt()
            ncc = torch.where(valid.view(nd, H, W), ncc, torch.full_like(ncc, -1.0))
            nccs.append(ncc)
        st = torch.stack(nccs)  # [S, nd, H, W]
        if kk < st.shape[0]:
            st = st.topk(kk, dim=0).values
        cost[d0:d0 + nd] = st.mean(0)

    best, idx = cost.max(0)
    # parabolic refinement in plane index
    im1 = (idx - 1).clamp(0, D - 1)
    ip1 = (idx + 1).clamp(0, D - 1)
    c0 = best
    cm = cost.gather(0, im1[None])[0]
    cp = cost.gather(0, ip1[None])[0]
    denom = cm - 2 * c0 + cp
    off = torch.where(denom < -1e-6, 0.5 * (cm - cp) / denom.clamp(max=-1e-6), torch.zeros_like(c0))
    off = torch.where((idx > 0) & (idx < D - 1), off.clamp(-0.5, 0.5), torch.zeros_like(off))
    fidx = idx.float() + off
    step = (inv_planes[-1] - inv_planes[0]).float() / max(D - 1, 1)
    inv_d = inv_planes[0].float() + fidx * step
    depth = 1.0 / inv_d.clamp_min(1e-12)
    # confidence: softmax mass near the winner
    p = torch.softmax(cost * conf.softmax_beta, dim=0)
    csum = torch.cat([torch.zeros(1, H, W, device=device), p.cumsum(0)])
    lo = (idx - 2).clamp(0, D)
    hi = (idx + 3).clamp(0, D)
    pconf = csum.gather(0, hi[None])[0] - csum.gather(0, lo[None])[0]
    ok = (best >= conf.ncc_threshold) & (pconf >= conf.conf_threshold) & (std_r[0] >= conf.min_texture)
    ok &= (idx > 0) & (idx < D - 1)  # winners on the range boundary are unreliable
    return {"depth": depth, "ncc": best, "conf": pconf, "valid": ok}


def _propagate(gray: torch.Tensor, cams: Sequence[Camera], depths: list[torch.Tensor],
               valids: list[torch.Tensor], confs: list[torch.Tensor], inv_ranges: list[tuple[float, float]],
               conf: MvsConf):
    """The sweep's depths improved by slanted-plane propagation (:mod:`fvgen.priors.patchmatch`), with
    the sweep's photometric checks: NCC >= ``ncc_threshold``, texture, and a depth strictly inside
    the range. The sweep's confidence (its cost curve's peakedness) has no counterpart for a
    plane found by propagation: the NCC alone is the confidence. With ``propagation_keep_sweep``,
    pixels where the sweep passed its checks and another view confirms its depth keep the sweep's
    depth and confidence. With ``propagation_backup_scales``, pixels that fail the checks take a
    second propagation's depth (at that many pyramid levels) where it passes them. Returns (depths,
    valids, confs)."""
    sources = [_select_sources(cams, r, conf.max_sources) for r in range(len(cams))]
    out_d, out_v, out_c = _checked_planes(gray, cams, sources, depths, inv_ranges, conf)
    if conf.propagation_backup_scales > 0:
        backup = _checked_planes(gray, cams, sources, depths, inv_ranges,
                                 replace(conf, propagation_scales=conf.propagation_backup_scales))
        for r, (d_b, ok_b, c_b) in enumerate(zip(*backup)):
            take = ok_b & ~out_v[r]
            if conf.propagation_backup_pick == "ncc":
                take |= ok_b & out_v[r] & (c_b > out_c[r])
            out_d[r] = torch.where(take, d_b, out_d[r])
            out_c[r] = torch.where(take, c_b, out_c[r])
            out_v[r] = out_v[r] | ok_b
    if conf.propagation_keep_sweep:
        for r, (keep, _, _) in enumerate(_geometric_fusion(depths, valids, cams, conf)):
            out_d[r] = torch.where(keep, depths[r], out_d[r])
            out_v[r] = out_v[r] | keep
            out_c[r] = torch.where(keep, confs[r], out_c[r])
    return out_d, out_v, out_c


def _checked_planes(gray: torch.Tensor, cams: Sequence[Camera], sources: list[list[int]], depths: list[torch.Tensor],
                    inv_ranges: list[tuple[float, float]], conf: MvsConf):
    """One slanted-plane propagation from the sweep's depths and its photometric checks: per view the
    depth, whether it passes (NCC, texture, strictly inside the range) and the NCC as its confidence."""
    from .patchmatch import propagate_planes

    pms = propagate_planes(gray, cams, sources, depths, inv_ranges, conf)
    k = conf.window
    std = _box_std(gray, k)
    if conf.propagation_wide_window > k:  # a pixel given the wide window passes on the texture of either
        std_w = _box_std(gray, conf.propagation_wide_window)
        std = torch.stack([torch.where(pm["wide"], torch.maximum(std_w[r], std[r]), std[r])
                           for r, pm in enumerate(pms)])
    out_d, out_v, out_c = [], [], []
    for r, pm in enumerate(pms):
        inv = 1.0 / pm["depth"]
        inv_near, inv_far = inv_ranges[r]
        margin = 1e-3 * (inv_near - inv_far)
        ok = (pm["ncc"] >= conf.ncc_threshold) & (std[r] >= conf.min_texture)
        ok &= (inv < inv_near - margin) & (inv > inv_far + margin)
        out_d.append(pm["depth"])
        out_v.append(ok)
        out_c.append(pm["ncc"].clamp(0, 1))
    return out_d, out_v, out_c


def _sparse_range(sparse: PointCloud, cam: Camera) -> tuple[float, float] | None:
    if sparse is None or len(sparse) == 0:
        return None
    w2c = cam.w2c
    X = sparse.xyz.astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    z = X[:, 2]
    front = z > 1e-9
    if front.sum() < 20:
        return None
    uv = X[front, :2] / z[front, None] @ cam.K[:2, :2].T + cam.K[:2, 2]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= cam.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= cam.height - 1)
    zz = z[front][inside]
    if len(zz) < 20:
        return None
    return float(np.percentile(zz, 1)), float(np.percentile(zz, 99))


def _pad_range(lo: float, hi: float, margin: float) -> torch.Tensor:
    """(near, far) padded in inverse depth -> (inv_near, inv_far)."""
    a, b = 1.0 / lo, 1.0 / hi
    span = a - b
    a, b = a + margin * span, max(b - margin * span, 0.05 * b)
    return a, b


def _resize_stack(images: np.ndarray, cams: Sequence[Camera], max_size: int, device):
    from ..core.images import fit_size, resize_image

    H, W = images.shape[1:3]
    w, h = fit_size(W, H, max_size)
    imgs = np.stack([resize_image(im, w, h) for im in images])
    return (torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.float32)).to(device),
            [c.scaled(w, h) for c in cams])


def _axes_convergence_depth(cams: Sequence[Camera], ref: int) -> float | None:
    """Depth in ``ref`` of the point closest to all optical axes, if in front of every camera."""
    X, cond = axes_convergence(cams)
    if cond > 1e6:
        return None
    depths = [float((c.w2c[:3, :3] @ X + c.w2c[:3, 3])[2]) for c in cams]
    if min(depths) <= 0:
        return None
    return depths[ref]


def _wide_inverse_range(cams: Sequence[Camera], ref: int, src: list[int], size: int,
                        conf: MvsConf) -> tuple[float, float]:
    """(inv_near, inv_far) for the coarse sweep. Parallel-ish cameras: every depth from a
    disparity of ``coarse_max_disparity`` of the image down to a quarter pixel. Converging cameras
    (optical axes meet in front of all of them, within 20 baselines): from a quarter of the
    convergence depth to four times it (or the quarter-pixel bound, if nearer)."""
    base = float(np.median([np.linalg.norm(cams[s].center - cams[ref].center) for s in src]))
    f = cams[ref].fx
    inv_near = conf.coarse_max_disparity * size / (f * base)  # disparity f*B/z
    inv_far = 0.25 / (f * base)
    zc = _axes_convergence_depth(cams, ref)
    if zc is not None and zc < 20 * base:
        inv_near = 4.0 / zc
        inv_far = max(inv_far, 1.0 / (4.0 * zc))
    return inv_near, inv_far


@torch.no_grad()
def _coarse_ranges(images, cams, conf: MvsConf, device) -> list[tuple[float, float] | None]:
    """Per-view (near, far) from a coarse, wide sweep."""
    size = min(conf.coarse_size, max(32, conf.max_image_size // 2))
    img, cs = _resize_stack(images, cams, size, device)
    gray = _gray(img)
    N, H, W = gray.shape
    depths, valids = [], []
    for r in range(N):
        src = _select_sources(cs, r, conf.max_sources)
        inv_near, inv_far = _wide_inverse_range(cs, r, src, max(W, H), conf)
        planes = torch.linspace(inv_near, inv_far, conf.coarse_planes, device=device,
                                dtype=torch.float64)
        res = _sweep(r, gray, cs, src, planes, replace(conf, ncc_threshold=max(conf.ncc_threshold, 0.5)))
        depths.append(res["depth"])
        valids.append(res["valid"])
    # keep depths that another view confirms (loose thresholds: coarse planes)
    loose = replace(conf, geo_pixel_threshold=2.0, geo_depth_threshold=0.05, min_consistent_views=1)
    out = []
    for r, (keep, _, _) in enumerate(_geometric_fusion(depths, valids, cs, loose)):
        d = depths[r][keep]
        if d.numel() < 50:
            out.append(None)
            continue
        pick = torch.randperm(d.numel(), generator=torch.Generator().manual_seed(0))[:100000]
        q = torch.quantile(d.float().cpu()[pick], torch.tensor([0.01, 0.99]))
        out.append((float(q[0]), float(q[1])))
    return out


# ----------------------------------------------------------------------------- consistency / fusion


@torch.no_grad()
def _geometric_fusion(depths: list[torch.Tensor], valid: list[torch.Tensor], cams: Sequence[Camera],
                      conf: MvsConf):
    """For each view: consistent-view count and the fused (mean) world point per pixel."""
    N = len(depths)
    H, W = depths[0].shape
    device = depths[0].device
    pix = _pixels(H, W, device)
    need = max(1, min(conf.min_consistent_views, N - 1))
    results = []
    for r in range(N):
        dr = depths[r].reshape(-1).double()
        Kr_inv = torch.as_tensor(np.linalg.inv(cams[r].K), device=device)
        c2w_r = torch.as_tensor(cams[r].c2w, device=device)
        Xc = Kr_inv @ pix * dr[None]
        Xw = c2w_r[:3, :3] @ Xc + c2w_r[:3, 3:4]  # [3, HW]
        acc = Xw.clone()
        count = torch.zeros(H * W, device=device, dtype=torch.int32)
        for s in range(N):
            if s == r:
                continue
            w2c_s = torch.as_tensor(cams[s].w2c, device=device)
            Ks = torch.as_tensor(cams[s].K, device=device)
            Xs = w2c_s[:3, :3] @ Xw + w2c_s[:3, 3:4]
            zs = Xs[2]
            uv = (Ks @ Xs)[:2] / zs.clamp_min(1e-9)
            grid = torch.stack([uv[0] / (W - 1) * 2 - 1, uv[1] / (H - 1) * 2 - 1], -1).float()
            grid = grid.clamp(-2, 2).view(1, H, W, 2)
            ds = F.grid_sample(depths[s][None, None] * valid[s][None, None], grid, mode="nearest",
                               padding_mode="zeros", align_corners=True).reshape(-1).double()
            Xs2 = torch.as_tensor(np.linalg.inv(cams[s].K), device=device) @ torch.stack(
                [uv[0], uv[1], torch.ones_like(uv[0])]) * ds[None]
            c2w_s = torch.as_tensor(cams[s].c2w, device=device)
            Xw2 = c2w_s[:3, :3] @ Xs2 + c2w_s[:3, 3:4]
            w2c_r = torch.as_tensor(cams[r].w2c, device=device)
            Xr2 = w2c_r[:3, :3] @ Xw2 + w2c_r[:3, 3:4]
            zr2 = Xr2[2]
            uv2 = (torch.as_tensor(cams[r].K, device=device) @ Xr2)[:2] / zr2.clamp_min(1e-9)
            err = (uv2 - pix[:2]).norm(dim=0)
            rel = (zr2 - dr).abs() / dr.clamp_min(1e-9)
            ok = (zs > 1e-9) & (ds > 0) & (zr2 > 0) & (err < conf.geo_pixel_threshold) & (
                rel < conf.geo_depth_threshold)
            if conf.min_triangulation_angle > 0:
                ray_r = c2w_r[:3, 3:4] - Xw
                ray_s = c2w_s[:3, 3:4] - Xw
                cos = (ray_r * ray_s).sum(0) / (ray_r.norm(dim=0) * ray_s.norm(dim=0)).clamp_min(1e-12)
                ok &= cos <= math.cos(math.radians(conf.min_triangulation_angle))
            count += ok.int()
            acc += Xw2 * ok[None]
        keep = valid[r].reshape(-1) & (count >= need)
        fused = acc / (count[None] + 1).double()
        results.append((keep.view(H, W), count.view(H, W), fused.T.float().view(H, W, 3)))
    return results


def clean_cloud(xyz: np.ndarray, rgb: np.ndarray, conf_values: np.ndarray, conf) -> tuple[PointCloud, dict]:
    """The fused points of a dense-stereo backend, cleaned as every backend does: statistical
    outlier removal (``conf.outlier_neighbors``, ``outlier_std_ratio``), then averaging per voxel of
    ``conf.voxel_fraction`` x the cloud's 2-98 % extent. ``xyz`` (N, 3), ``rgb`` (N, 3) in [0, 1],
    ``conf_values`` (N,). Returns the cloud and its point counts for the stage's record."""
    n_fused, voxel = len(xyz), 0.0
    xyz = np.asarray(xyz, np.float64)
    if n_fused and conf.outlier_neighbors > 0 and n_fused > conf.outlier_neighbors + 1:
        ind = statistical_inliers(xyz, conf.outlier_neighbors, conf.outlier_std_ratio)
        xyz, rgb, conf_values = xyz[ind], rgb[ind], conf_values[ind]
    n_sor = len(xyz)
    if len(xyz) and conf.voxel_fraction > 0:
        lo, hi = np.percentile(xyz, 2, axis=0), np.percentile(xyz, 98, axis=0)
        voxel = conf.voxel_fraction * float(np.linalg.norm(hi - lo))
        if voxel > 0:
            xyz, rgb, conf_values = _voxel_average(xyz, rgb, conf_values, voxel)
    cloud = PointCloud(xyz.astype(np.float32), np.clip(rgb, 0, 1).astype(np.float32),
                       np.clip(conf_values, 1e-3, 1).astype(np.float32))
    return cloud, {"points_fused": int(n_fused), "points_after_outliers": int(n_sor), "points": int(len(cloud)),
                   "voxel_size": float(voxel)}


def _voxel_average(xyz: np.ndarray, rgb: np.ndarray, cf: np.ndarray, voxel: float):
    q = np.floor((xyz - xyz.min(0)) / voxel).astype(np.int64)
    dims = q.max(0) + 1
    key = (q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2]
    _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    m = len(cnt)

    def avg(a):
        sums = [np.bincount(inv, weights=a[:, j], minlength=m) for j in range(a.shape[1])]
        return np.stack(sums, 1) / cnt[:, None]

    return avg(xyz.astype(np.float64)), avg(rgb.astype(np.float64)), avg(cf[:, None].astype(np.float64))[:, 0]


# ----------------------------------------------------------------------------- entry point


@torch.no_grad()
def dense_point_cloud(images: np.ndarray, cameras: list[Camera], sparse: PointCloud | None,
                      conf: MvsConf = MvsConf(), device: str | torch.device = "cpu",
                      depth_range: tuple[float, float] | None = None,
                      return_depths: bool = False) -> tuple[PointCloud, dict]:
    """Dense coloured point cloud of registered views (see module docstring).

    Args:
        images: [N, H, W, 3] float in [0, 1] (2 <= N).
        cameras: one per image (any size: scaled to the images); ``dist`` is undistorted away.
        sparse: SfM points in the same world frame, used for the depth range (optional).
        conf: :class:`MvsConf`.
        device: torch device the sweep runs on.
        depth_range: (near, far) camera depth for every view, overriding sparse/coarse ranges.
        return_depths: put per-view depth maps/masks (numpy, stereo resolution) in info["depths"].

    Returns:
        ``(cloud, info)``: cloud in the cameras' world frame with ``conf`` in (0, 1]; info with
        ``points_fused``, ``points_after_outliers``, ``points``, ``voxel_size``, ``seconds``,
        ``valid_fraction_photometric``, ``valid_fraction`` (per view), ``depth_ranges``,
        ``stereo_size``, ``range_source``.
    """
    t0 = time.time()
    images, cams = stereo_views(images, cameras)
    N, H0, W0 = images.shape[:3]
    device = torch.device(device)

    # depth ranges
    if depth_range is not None:
        ranges = [tuple(map(float, depth_range))] * N
        source = "given"
    else:
        ranges = [_sparse_range(sparse, c) for c in cams]
        source = "sparse"
        if any(r is None for r in ranges):
            coarse = _coarse_ranges(images, cams, conf, device)
            ranges = [r if r is not None else c for r, c in zip(ranges, coarse)]
            source = "coarse sweep" if sparse is None or len(sparse) == 0 else "sparse+coarse sweep"
        good = [r for r in ranges if r is not None]
        if not good:
            raise FvgenError("dense stereo found no depth range: the views do not overlap or "
                             "have no texture")
        fallback = (min(r[0] for r in good), max(r[1] for r in good))
        ranges = [r if r is not None else fallback for r in ranges]
    t_range = time.time() - t0

    img, cs = _resize_stack(images, cams, conf.max_image_size, device)
    gray = _gray(img)
    _, H, W = gray.shape
    depths, valids, confs, inv_ranges = [], [], [], []
    for r in range(N):
        inv_near, inv_far = _pad_range(ranges[r][0], ranges[r][1], conf.depth_margin)
        planes = torch.linspace(inv_near, inv_far, conf.num_planes, device=device, dtype=torch.float64)
        sources = _select_sources(cs, r, conf.max_sources)
        res = _sweep(r, gray, cs, sources, planes, conf)
        depths.append(res["depth"])
        valids.append(res["valid"])
        confs.append(res["conf"] * res["ncc"].clamp(0, 1))
        inv_ranges.append((inv_near, inv_far))
    t_prop = time.time()
    if conf.propagation_iters > 0:
        depths, valids, confs = _propagate(gray, cs, depths, valids, confs, inv_ranges, conf)
    t_prop = time.time() - t_prop
    t_sweep = time.time() - t0 - t_range

    fused = _geometric_fusion(depths, valids, cs, conf)
    xyz, rgb, cf = [], [], []
    for r, (keep, count, X) in enumerate(fused):
        xyz.append(X[keep])
        rgb.append(img[r][keep])
        cf.append(confs[r][keep] * (count[keep].float() / max(N - 1, 1)).clamp(max=1.0))
    xyz = torch.cat(xyz).cpu().numpy().astype(np.float64)
    rgb = torch.cat(rgb).cpu().numpy()
    cf = torch.cat(cf).cpu().numpy()
    cloud, info = clean_cloud(xyz, rgb, cf, conf)
    info.update({
        "stereo_size": [int(W), int(H)],
        "range_source": source,
        "depth_ranges": [[float(a), float(b)] for a, b in ranges],
        "valid_fraction_photometric": [float(v.float().mean()) for v in valids],
        "valid_fraction": [float(k.float().mean()) for k, _, _ in fused],
        "seconds_range": round(t_range, 3),
        "seconds_sweep": round(t_sweep, 3),  # propagation included
        "seconds_propagation": round(t_prop, 3),
        "seconds": round(time.time() - t0, 3),
        "conf": asdict(conf),
    })
    if return_depths:
        info["depths"] = [d.cpu().numpy() for d in depths]
        info["masks"] = [k.cpu().numpy() for k, _, _ in fused]
        info["stereo_cameras"] = cs
    if len(cloud) == 0:
        raise FvgenError(f"dense stereo produced no points: the views do not overlap enough, or are too close "
                         f"together (under {conf.min_triangulation_angle:g} deg of triangulation angle) to give depth")
    return cloud, info


__all__ = ["MvsConf", "dense_point_cloud"]
