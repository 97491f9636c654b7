"""Global alignment of pairwise pointmaps (the DUSt3R objective, our implementation).

Unknowns: for each view n a camera-to-world pose (quaternion, translation), a focal length
(principal point fixed at the image centre) and a log-depth per pixel, giving the view's world
pointmap ``chi_n(p) = R_n D_n(p) K_n^-1 p~ + t_n``; for each directed pair e = (i, j) a
similarity (sigma_e, R_e, t_e) taking the pair's frame to the world. The loss is

    sum_e sum_{v in {i, j}} sum_p w_{v,e}(p) || chi_v(p) - (sigma_e R_e X_{v,e}(p) + t_e) ||

with ``w = log(confidence)``, divided by the total weight; the scale gauge is fixed by keeping the
mean of ``log sigma_e`` at zero. Adam with a cosine learning-rate schedule.

Initialisation: a maximum spanning tree over pairs (edge weight: product of the two mean
confidences) is walked from its strongest edge, chaining confidence-weighted Procrustes
(similarity) fits so every view gets a world pointmap; each view's focal comes from its own-frame
pointmap (robust Weiszfeld fit of ``pixel = f * (X / Z, Y / Z)``), its pose and depth from a
Procrustes fit of that pointmap onto its world pointmap, and every pair similarity from a
Procrustes fit of the pair's two pointmaps onto the views' initial world pointmaps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...core.errors import FvgenError
from .pairs import DisjointSets


@dataclass
class AlignmentResult:
    c2w: np.ndarray  # [N, 4, 4] float64, OpenCV camera-to-world
    focal: np.ndarray  # [N] focal lengths in the pairs' pixel units
    depth: np.ndarray  # [N, P] float32, depth along the optical axis
    pts: np.ndarray  # [N, P, 3] float32 world pointmaps
    conf: np.ndarray  # [N, P] float32, best confidence of the view's pixel over its pairs
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- small geometry


def quat_to_rot(q: torch.Tensor) -> torch.Tensor:
    """[..., 4] (w, x, y, z), any norm -> [..., 3, 3]."""
    q = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], -1).reshape(q.shape[:-1] + (3, 3))


def rot_to_quat(R: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [..., 4] (w, x, y, z), numerically safe branch per matrix."""
    R = R.double()
    m = R.reshape(-1, 3, 3)
    out = torch.empty(len(m), 4, dtype=R.dtype, device=R.device)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    diag = torch.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], 1)
    best = diag.argmax(1)
    for k in range(4):
        sel = best == k
        if not sel.any():
            continue
        a = m[sel]
        if k == 0:
            s = torch.sqrt((1 + a[:, 0, 0] + a[:, 1, 1] + a[:, 2, 2]).clamp(min=1e-12)) * 2
            q = torch.stack([0.25 * s, (a[:, 2, 1] - a[:, 1, 2]) / s, (a[:, 0, 2] - a[:, 2, 0]) / s,
                             (a[:, 1, 0] - a[:, 0, 1]) / s], 1)
        elif k == 1:
            s = torch.sqrt((1 + a[:, 0, 0] - a[:, 1, 1] - a[:, 2, 2]).clamp(min=1e-12)) * 2
            q = torch.stack([(a[:, 2, 1] - a[:, 1, 2]) / s, 0.25 * s, (a[:, 0, 1] + a[:, 1, 0]) / s,
                             (a[:, 0, 2] + a[:, 2, 0]) / s], 1)
        elif k == 2:
            s = torch.sqrt((1 + a[:, 1, 1] - a[:, 0, 0] - a[:, 2, 2]).clamp(min=1e-12)) * 2
            q = torch.stack([(a[:, 0, 2] - a[:, 2, 0]) / s, (a[:, 0, 1] + a[:, 1, 0]) / s, 0.25 * s,
                             (a[:, 1, 2] + a[:, 2, 1]) / s], 1)
        else:
            s = torch.sqrt((1 + a[:, 2, 2] - a[:, 0, 0] - a[:, 1, 1]).clamp(min=1e-12)) * 2
            q = torch.stack([(a[:, 1, 0] - a[:, 0, 1]) / s, (a[:, 0, 2] + a[:, 2, 0]) / s,
                             (a[:, 1, 2] + a[:, 2, 1]) / s, 0.25 * s], 1)
        out[sel] = q
    out = out * torch.where(out[:, :1] < 0, -1.0, 1.0)
    return out.reshape(R.shape[:-2] + (4,))


def procrustes(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor):
    """Weighted similarity (Umeyama): s, R, t minimising sum w ||s R src + t - dst||^2.

    Batched: src, dst [B, P, 3], w [B, P]. Computed in float64; the scale is kept positive.
    """
    src, dst, w = src.double(), dst.double(), w.double().clamp(min=0)
    wsum = w.sum(1, keepdim=True).clamp(min=1e-12)
    wn = (w / wsum)[..., None]
    ms, md = (wn * src).sum(1), (wn * dst).sum(1)
    a, b = src - ms[:, None], dst - md[:, None]
    cov = (wn * b).transpose(1, 2) @ a  # [B, 3, 3] = sum w b a^T
    U, S, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.det(U @ Vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], 1))
    R = U @ D @ Vh
    var = (wn[..., 0] * (a * a).sum(-1)).sum(1).clamp(min=1e-18)
    s = ((S * torch.diagonal(D, dim1=1, dim2=2)).sum(1) / var).clamp(min=1e-8)
    t = md - s[:, None] * (R @ ms[..., None])[..., 0]
    return s, R, t


def estimate_focal(pts: torch.Tensor, pix: torch.Tensor, w: torch.Tensor, f_min: float, f_max: float,
                   iters: int = 10) -> float:
    """Focal from an own-frame pointmap: robust fit of ``pix = f * (X/Z, Y/Z)`` (Weiszfeld on the
    L2 residual norm). ``pix`` are pixel coordinates relative to the principal point."""
    pts, pix, w = pts.double(), pix.double(), w.double()
    ok = (pts[:, 2] > 1e-8) & (w > 0)
    if ok.sum() < 8:
        return float(math.sqrt(f_min * f_max))
    proj = pts[ok, :2] / pts[ok, 2:3]
    p, ww = pix[ok], w[ok]
    f = (ww * (p * proj).sum(1)).sum() / (ww * (proj * proj).sum(1)).sum().clamp(min=1e-12)
    for _ in range(iters):
        r = (p - f * proj).norm(dim=1).clamp(min=1e-6 * max(1.0, abs(float(f))))
        wi = ww / r
        f = (wi * (p * proj).sum(1)).sum() / (wi * (proj * proj).sum(1)).sum().clamp(min=1e-12)
    f = float(f)
    if not math.isfinite(f):
        f = math.sqrt(f_min * f_max)
    return float(min(max(f, f_min), f_max))


def _max_spanning_tree(n: int, scores: dict[tuple[int, int], float]) -> list[tuple[int, int]]:
    """Kruskal: edges by decreasing score, kept when they join two components."""
    sets = DisjointSets(n)
    return [(i, j) for (i, j), _ in sorted(scores.items(), key=lambda kv: -kv[1]) if sets.union(i, j)]


def _cosine_lr(step: int, total: int, lr: float, lr_min: float) -> float:
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * step / max(1, total)))


# ----------------------------------------------------------------------------- alignment


def global_align(n_views: int, pairs: list[tuple[int, int]], pts_i: torch.Tensor, conf_i: torch.Tensor,
                 pts_j: torch.Tensor, conf_j: torch.Tensor, pix: np.ndarray, image_size: tuple[int, int],
                 niter: int = 300, lr: float = 0.01, lr_min: float = 1e-5, shared_focal: bool = False,
                 device: str | torch.device = "cpu", edge_chunk: int = 64, progress=None) -> AlignmentResult:
    """Align pairwise pointmaps into one scene.

    ``pts_*`` [E, P, 3] (any leading grid shape is flattened), ``conf_*`` [E, P] (>= 1, DUSt3R's
    confidences), ``pix`` [P, 2] pixel coordinates (u, v) of the P samples in an image of
    ``image_size`` (w, h) whose centre is the principal point; focals are returned in those pixels.
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    E = len(pairs)
    if E == 0:
        raise FvgenError("global alignment needs at least one image pair")
    ei = torch.tensor([p[0] for p in pairs], device=device)
    ej = torch.tensor([p[1] for p in pairs], device=device)
    Xi = pts_i.reshape(E, -1, 3).to(device, torch.float32)
    Xj = pts_j.reshape(E, -1, 3).to(device, torch.float32)
    P = Xi.shape[1]
    wi = torch.log(conf_i.reshape(E, P).to(device, torch.float32).clamp(min=1.0))
    wj = torch.log(conf_j.reshape(E, P).to(device, torch.float32).clamp(min=1.0))
    def _clean(X, W):  # non-finite samples get no weight (no in-place edits of the caller's tensors)
        ok = torch.isfinite(X).all(-1) & torch.isfinite(W)
        return torch.where(ok[..., None], X, torch.zeros_like(X)), torch.where(ok, W, torch.zeros_like(W))

    Xi, wi = _clean(Xi, wi)
    Xj, wj = _clean(Xj, wj)
    if float(wi.sum() + wj.sum()) <= 0:  # all confidences exactly 1: weigh pixels equally
        wi = torch.ones_like(wi)
        wj = torch.ones_like(wj)
    # per-pair normalisation to unit mean distance (the pair scale is free anyway)
    scale_e = ((wi * Xi.norm(dim=-1)).sum(1) + (wj * Xj.norm(dim=-1)).sum(1)) / (wi.sum(1) + wj.sum(1)).clamp(min=1e-12)
    scale_e = torch.where(scale_e > 1e-12, scale_e, torch.ones_like(scale_e))
    Xi = Xi / scale_e[:, None, None]
    Xj = Xj / scale_e[:, None, None]

    W_img, H_img = image_size
    c = torch.tensor([(W_img - 1) / 2.0, (H_img - 1) / 2.0], dtype=torch.float64, device=device)
    pixc = torch.as_tensor(pix, dtype=torch.float64, device=device).reshape(P, 2) - c
    focal_base = max(W_img, H_img) / (2 * math.tan(math.radians(30)))
    f_min, f_max = 0.2 * focal_base, 5.0 * focal_base

    # ---- initialisation
    mean_ci = conf_i.reshape(E, P).float().mean(1).tolist()
    mean_cj = conf_j.reshape(E, P).float().mean(1).tolist()
    edge_of = {p: k for k, p in enumerate(pairs)}
    scores: dict[tuple[int, int], float] = {}
    for k, (i, j) in enumerate(pairs):
        key = (min(i, j), max(i, j))
        scores[key] = max(scores.get(key, -1.0), mean_ci[k] * mean_cj[k])
    tree = _max_spanning_tree(n_views, scores)
    if len(tree) != n_views - 1:
        raise FvgenError("the DUSt3R scene graph does not connect all views; use a complete or larger swin graph")
    own = {}
    for k, (i, _) in enumerate(pairs):
        if i not in own or mean_ci[k] > mean_ci[own[i]]:
            own[i] = k
    root_edge = max(tree, key=lambda e: scores[e])
    root = root_edge[0]
    if root not in own:
        root = root_edge[1]
    world = torch.zeros(n_views, P, 3, dtype=torch.float64, device=device)
    wconf = torch.zeros(n_views, P, dtype=torch.float64, device=device)
    if root in own:
        world[root] = Xi[own[root]].double()
        wconf[root] = wi[own[root]].double()
    placed = {root}
    adj: dict[int, list[int]] = {v: [] for v in range(n_views)}
    for a, b in tree:
        adj[a].append(b)
        adj[b].append(a)
    queue = [root]
    while queue:
        a = queue.pop(0)
        for b in sorted(adj[a], key=lambda b: -scores[(min(a, b), max(a, b))]):
            if b in placed:
                continue
            if (a, b) in edge_of:
                k = edge_of[(a, b)]
                Xa, Xb, wa, wb = Xi[k], Xj[k], wi[k], wj[k]
            else:
                k = edge_of[(b, a)]
                Xa, Xb, wa, wb = Xj[k], Xi[k], wj[k], wi[k]
            s, R, t = procrustes(Xa[None], world[a][None], (wa.double() * wconf[a])[None] + 1e-12)
            world[b] = s[0] * Xb.double() @ R[0].T + t[0]
            wconf[b] = wb.double()
            placed.add(b)
            queue.append(b)

    c2w0 = torch.eye(4, dtype=torch.float64, device=device).repeat(n_views, 1, 1)
    focal0 = torch.empty(n_views, dtype=torch.float64, device=device)
    depth0 = torch.empty(n_views, P, dtype=torch.float64, device=device)
    for v in range(n_views):
        if v in own:
            cam = Xi[own[v]].double()
            wc = wi[own[v]].double()
        else:  # a view that is never first in a pair: use its pointmap in the partner's frame
            k = next(k for k, (_, j) in enumerate(pairs) if j == v)
            cam, wc = Xj[k].double(), wj[k].double()
        focal0[v] = estimate_focal(cam, pixc, wc, f_min, f_max)
        z = cam[:, 2]
        zpos = z[z > 0]
        zfloor = (zpos.median() if len(zpos) else z.abs().median().clamp(min=1e-6)) * 1e-2
        d = z.clamp(min=float(zfloor))
        rays = torch.cat([pixc / focal0[v], torch.ones(P, 1, dtype=torch.float64, device=device)], 1)
        s, R, t = procrustes((d[:, None] * rays)[None], world[v][None], (wc * wconf[v])[None] + 1e-12)
        c2w0[v, :3, :3], c2w0[v, :3, 3] = R[0], t[0]
        depth0[v] = s[0] * d

    rays_dir = pixc.float()  # centred pixels; rays = (pix / f, 1)
    def world_points(q, tr, logf, logd):
        R = quat_to_rot(q)
        f = logf.exp()
        f = f.expand(n_views) if f.numel() == 1 else f
        d = logd.exp()
        cam = torch.cat([rays_dir[None] / f[:, None, None], torch.ones(n_views, P, 1, device=device)], -1) * d[..., None]
        return cam @ R.transpose(1, 2) + tr[:, None]

    with torch.no_grad():
        chi0 = world_points(rot_to_quat(c2w0[:, :3, :3]).float(), c2w0[:, :3, 3].float(),
                            focal0.float().log(), depth0.float().log())
        es, eR, et = [], [], []
        for a in range(0, E, edge_chunk):
            sl = slice(a, a + edge_chunk)
            src = torch.cat([Xi[sl], Xj[sl]], 1)
            dst = torch.cat([chi0[ei[sl]], chi0[ej[sl]]], 1)
            s, R, t = procrustes(src, dst, torch.cat([wi[sl], wj[sl]], 1) + 1e-12)
            es.append(s), eR.append(R), et.append(t)
        es, eR, et = torch.cat(es), torch.cat(eR), torch.cat(et)
        g = es.log().mean().exp()  # fix the gauge: mean log sigma_e = 0
    # ---- parameters
    q_cam = rot_to_quat(c2w0[:, :3, :3]).float().clone().requires_grad_(True)
    t_cam = (c2w0[:, :3, 3] / g).float().clone().requires_grad_(True)
    logf0 = focal0.log().float()
    log_f = (logf0.mean().reshape(1) if shared_focal else logf0).clone().requires_grad_(True)
    log_d = (depth0 / g).log().float().clone().requires_grad_(True)
    q_e = rot_to_quat(eR).float().clone().requires_grad_(True)
    t_e = (et / g).float().clone().requires_grad_(True)
    logs_e = (es / g).log().float().clone().requires_grad_(True)
    params = [q_cam, t_cam, log_f, log_d, q_e, t_e, logs_e]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9))
    wsum = (wi.sum() + wj.sum()).clamp(min=1e-12)

    def loss_fn():
        chi = world_points(q_cam, t_cam, log_f, log_d)
        R = quat_to_rot(q_e)
        s = (logs_e - logs_e.mean()).exp()
        tot = 0.0
        for X, W, idx in ((Xi, wi, ei), (Xj, wj, ej)):
            A = s[:, None, None] * (X @ R.transpose(1, 2)) + t_e[:, None]
            r = ((chi[idx] - A).square().sum(-1) + 1e-12).sqrt()
            tot = tot + (W * r).sum()
        return tot / wsum

    with torch.no_grad():
        loss_init = float(loss_fn())
    t_init = time.perf_counter() - t0
    loss = torch.tensor(loss_init)
    for it in range(int(niter)):
        for gr in opt.param_groups:
            gr["lr"] = _cosine_lr(it, niter, lr, lr_min)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        if progress is not None and (it % 50 == 0 or it == niter - 1):
            progress(it + 1, niter, float(loss.detach()))
    with torch.no_grad():
        loss_final = float(loss_fn())
        chi = world_points(q_cam, t_cam, log_f, log_d)
        R = quat_to_rot(q_cam).double()
        c2w = torch.eye(4, dtype=torch.float64, device=device).repeat(n_views, 1, 1)
        c2w[:, :3, :3] = R
        c2w[:, :3, 3] = t_cam.double()
        f = log_f.exp().expand(n_views).double()
        conf = torch.ones(n_views, P, device=device)
        for C, idx in ((conf_i, ei), (conf_j, ej)):
            C = C.reshape(E, P).to(device, torch.float32)
            C = torch.where(torch.isfinite(C), C, torch.ones_like(C))
            conf = conf.scatter_reduce(0, idx[:, None].expand(-1, P), C, "amax", include_self=True)
    if not math.isfinite(loss_final):
        raise FvgenError("DUSt3R global alignment diverged (non-finite loss); try fewer iterations or a lower lr")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    info = {"pairs": E, "niter": int(niter), "lr": lr, "loss_init": loss_init, "loss_final": loss_final,
            "init_s": t_init, "align_s": time.perf_counter() - t0, "mst_root": int(root),
            "shared_focal": bool(shared_focal)}
    return AlignmentResult(c2w.cpu().numpy(), f.cpu().numpy(), log_d.detach().exp().cpu().numpy(),
                           chi.cpu().numpy(), conf.cpu().numpy(), info)
