"""PatchMatch-style propagation of slanted planes on top of the plane sweep (the CPU dense path).

The fronto-parallel sweep of :mod:`fvgen.priors.mvs` matches a window as if the surface faced the
camera; on slanted surfaces and wide baselines the window's footprint in a source view is
sheared, the NCC drops and the pixel is rejected. Here every reference pixel carries a plane
hypothesis (unit normal ``n`` in camera coordinates, facing the camera, and offset
``c = n . X``, so depth along the pixel's ray ``r`` (z = 1) is ``c / (n . r)``), initialised
from the sweep's winner-take-all depth with a fronto-parallel normal, and improved by:

- propagation, red-black (checkerboard): each pass updates the pixels of one colour from the
  planes of neighbours of the other colour, near (1 px) and far (``propagation_far`` px) along
  rows and columns, so good planes travel across the image within a few passes;
- random refinement: perturbed depth, perturbed normal, both (the perturbation halves every
  iteration);
- a cost like the sweep's, for the slanted window: windowed NCC on grey values with each source
  view (the window sampled every ``propagation_window_step`` px, optionally bilateral-weighted),
  the mean of the best ``propagation_top_k_sources``; then a geometric stage that also scores
  the forward-backward reprojection error through the other views' depth maps (COLMAP's
  geometric consistency);
- multi-scale: ``propagation_scales`` pyramid levels (coarsest first); each level's planes are
  upsampled to start the next one;
- optionally a texture-adaptive window: the propagation's window is ``propagation_window`` (0:
  ``window``, the sweep's); with ``propagation_wide_window`` wider than it, pixels whose grey std
  over their window's samples is under ``propagation_wide_texture`` (weakly textured surfaces,
  where a small window's NCC is noise) match with the wider window (``propagation_wide_pick``
  "texture") or keep the higher NCC of both ("ncc"), the others keep the small one (fine
  structure that a wide window blurs over). Measured: more coverage on the warps, a worse fit
  (benchmarks/RESULTS.md), so off in every preset.

Everything is batched torch (``grid_sample`` over [pixels, window samples]); the consistency
checks (NCC threshold, texture, geometric forward-backward, triangulation angle) stay those of
:mod:`fvgen.priors.mvs`, applied by its caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.cameras import Camera


def _rays(cam: Camera, h: int, w: int, device) -> torch.Tensor:
    """Camera-frame rays with z = 1 of every pixel centre, [3, H, W] float32."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float64),
                            torch.arange(w, device=device, dtype=torch.float64), indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)]).reshape(3, -1)
    return (torch.as_tensor(np.linalg.inv(cam.K), device=device) @ pix).float().view(3, h, w)


def _window_offsets(window: int, step: int, device) -> torch.Tensor:
    """Integer (dx, dy) offsets of the sampled window, [S, 2]; centred, spacing ``step``."""
    half = (window // 2) // step * step
    r = torch.arange(-half, half + 1, step, device=device)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], 1)


def _shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``x[..., y + dy, x + dx]`` with replicated borders, same shape as ``x`` [..., H, W]."""
    H, W = x.shape[-2:]
    ys = (torch.arange(H, device=x.device) + dy).clamp(0, H - 1)
    xs = (torch.arange(W, device=x.device) + dx).clamp(0, W - 1)
    return x[..., ys, :][..., :, xs]


def _window_weights(samples: torch.Tensor, offsets: torch.Tensor, ref_img: torch.Tensor, window: int,
                    sigma_color: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The NCC window's weights [S, HW] (summing to 1 per pixel: flat, or bilateral on grey values
    with a Gaussian of ``window // 2`` px in space when ``sigma_color`` > 0) and the reference samples
    [S, HW] at ``offsets`` [S, 2] centred on their weighted mean."""
    if sigma_color > 0:
        spatial = (offsets.float() ** 2).sum(1)
        sigma_s = max(window // 2, 1)
        dcol = samples - ref_img.view(1, -1)
        wgt = torch.exp(-dcol ** 2 / (2 * sigma_color ** 2) - spatial[:, None] / (2 * sigma_s ** 2))
    else:
        wgt = torch.ones_like(samples)
    wgt = wgt / wgt.sum(0, keepdim=True)
    return wgt, samples - (wgt * samples).sum(0, keepdim=True)


class _View:
    """One reference view at one pyramid level, split by checkerboard colour: per colour the
    pixels' window rays, reference window samples (centred) and weights, and for each source
    view the window rays mapped into it, so a hypothesis costs a few elementwise ops, one
    ``grid_sample`` per source and three weighted sums.

    With ``wide_window`` > ``window``, pixels whose grey std over the ``window`` samples is below
    ``wide_texture`` (``self.wide`` [HW] marks them) also get the wider window: the ``window``
    samples plus a ring of wider ones (same step), so the others pay nothing extra. Their NCC is
    the wide window's (``wide_pick`` "texture") or the higher of both windows' ("ncc")."""

    def __init__(self, ref: int, gray: torch.Tensor, cams: Sequence[Camera], sources: list[int],
                 window: int, step: int, sigma_color: float, wide_window: int = 0, wide_texture: float = 0.0,
                 wide_pick: str = "texture"):
        device = gray.device
        H, W = gray.shape[1:]
        self.H, self.W = H, W
        self.rays = _rays(cams[ref], H, W, device)  # [3, H, W]
        off = _window_offsets(window, step, device)  # [S, 2]
        self.S = S = off.shape[0]
        self.centre = S // 2
        Kinv = torch.as_tensor(np.linalg.inv(cams[ref].K), device=device).float()
        dray = Kinv[:, :2] @ off.float().T  # [3, S]: r_q = r_p + Kinv @ (dx, dy, 0)
        ref_img = gray[ref]
        samples = torch.stack([_shift(ref_img, int(dx), int(dy)) for dx, dy in off.tolist()]).view(S, -1)
        wgt, centred = _window_weights(samples, off, ref_img, window, sigma_color)  # [S, HW] each
        # the wide window's pixels: its samples outside the small window are a ring (same step)
        self.wide_pick = wide_pick
        wide_off = _window_offsets(wide_window, step, device) if wide_window > window else off
        ring_off = wide_off[~(wide_off[:, None, :] == off[None]).all(-1).any(1)]  # [R, 2]
        self.wide = torch.zeros(H * W, dtype=torch.bool, device=device)
        if ring_off.shape[0] > 0:
            self.wide = samples.std(0, correction=0) < wide_texture
        if bool(self.wide.any()):
            ring = torch.stack([_shift(ref_img, int(dx), int(dy)) for dx, dy in ring_off.tolist()]).view(-1, H * W)
            wgt_w, centred_w = _window_weights(torch.cat([samples, ring]), torch.cat([off, ring_off]), ref_img,
                                               wide_window, sigma_color)
            rv_w = (wgt_w * centred_w ** 2).sum(0)
            ring_dray = Kinv[:, :2] @ ring_off.float().T  # [3, R]
        ys, xs = torch.meshgrid(torch.arange(H, device=device), torch.arange(W, device=device), indexing="ij")
        colour = ((ys + xs) % 2).reshape(-1)
        c2w_r = torch.as_tensor(cams[ref].c2w, device=device)
        proj = []
        for s in sources:
            T = torch.as_tensor(cams[s].w2c, device=device) @ c2w_r
            Ks = torch.as_tensor(cams[s].K, device=device)
            # rows mapped so that row0 / row2 and row1 / row2 are grid_sample's [-1, 1] coordinates
            norm = torch.tensor([[2.0 / (W - 1), 0, -1], [0, 2.0 / (H - 1), -1], [0, 0, 1]],
                                device=device, dtype=torch.float64)
            proj.append(((norm @ Ks @ T[:3, :3]).float(), (norm @ Ks @ T[:3, 3]).float()))
        self.src_images = [gray[s][None, None] for s in sources]
        self.sources = list(sources)
        # source pixel (from grid coordinates) -> reference pixel, for the geometric term:
        # X_ref = R_rs d Ks^-1 [u, v, 1] + t_rs, projected by K_ref
        self.back = []
        for s in sources:
            T = torch.as_tensor(cams[ref].w2c, device=device) @ torch.as_tensor(cams[s].c2w, device=device)
            Kr = torch.as_tensor(cams[ref].K, device=device)
            denorm = torch.tensor([[(W - 1) / 2.0, 0, (W - 1) / 2.0], [0, (H - 1) / 2.0, (H - 1) / 2.0], [0, 0, 1]],
                                  device=device, dtype=torch.float64)
            Ksi = torch.as_tensor(np.linalg.inv(cams[s].K), device=device)
            self.back.append(((Kr @ T[:3, :3] @ Ksi @ denorm).float(), (Kr @ T[:3, 3]).float()))
        self.colours = []
        for col in (0, 1):
            idx = torch.nonzero(colour == col)[:, 0]
            r = self.rays.view(3, -1)[:, idx]  # [3, P]
            rq = r[:, :, None] + dray[:, None, :]  # [3, P, S]
            A = [torch.einsum("ij,jps->ips", M, rq) for M, _ in proj]  # [3, P, S] per source
            self.colours.append({
                "idx": idx, "rays": r, "rq": rq,
                "A01": [a[:2].permute(1, 2, 0).contiguous() for a in A], "A2": [a[2].contiguous() for a in A],
                "b01": [b[:2] for _, b in proj], "b2": [float(b[2]) for _, b in proj],
                "w_rc": torch.stack([wgt[:, idx].T, (wgt * centred)[:, idx].T], 1).contiguous(),  # [P, 2, S]
                "w": wgt[:, idx].T.contiguous()[:, None],  # [P, 1, S]
                "rv": (wgt * centred ** 2).sum(0)[idx],
                "rq_norm_c": rq[:, :, self.centre].norm(dim=0),
                "xy": torch.stack([idx % W, torch.div(idx, W, rounding_mode="floor")]).float(),
                "ring": None,
            })
            sub = torch.nonzero(self.wide[idx])[:, 0]  # this colour's wide pixels, positions in idx
            if sub.numel() > 0:
                widx = idx[sub]
                rq_r = r[:, sub, None] + ring_dray[:, None, :]  # [3, Pw, R]
                A_r = [torch.einsum("ij,jps->ips", M, rq_r) for M, _ in proj]
                w_in, w_ring = wgt_w[:S, widx].T, wgt_w[S:, widx].T  # [Pw, S], [Pw, R]
                self.colours[-1]["ring"] = {
                    "sub": sub, "rq": rq_r,
                    "A01": [a[:2].permute(1, 2, 0).contiguous() for a in A_r], "A2": [a[2].contiguous() for a in A_r],
                    # the wide window's weighted sums: over the small window's samples and over the ring's
                    "w_rc_in": torch.stack([w_in, w_in * centred_w[:S, widx].T], 1).contiguous(),
                    "w_in": w_in.contiguous()[:, None],
                    "w_rc": torch.stack([w_ring, w_ring * centred_w[S:, widx].T], 1).contiguous(),
                    "w": w_ring.contiguous()[:, None],
                    "rv": rv_w[widx],
                }

    def cost(self, normal: torch.Tensor, offset: torch.Tensor, col: int, top_k: int,
             geo: tuple[list[torch.Tensor], float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Score and aggregated NCC of plane hypotheses at the pixels of checkerboard colour
        ``col``: ``normal`` [3, P], ``offset`` [P]. NCC [P] in [-1, 1]; -1 where the plane does not
        face the camera or the window centre falls outside a source view. The score is the NCC
        minus, when ``geo`` = (source depth maps [H, W], weight, max error) is given, weight x the
        forward-backward reprojection error (px, capped) through the best-agreeing source."""
        d = self.colours[col]
        rq, c = d["rq"], self.centre
        denom = normal[0, :, None] * rq[0]
        denom.addcmul_(normal[1, :, None], rq[1]).addcmul_(normal[2, :, None], rq[2])  # n . r_q [P, S]
        facing = denom[:, c] < -0.1 * d["rq_norm_c"]
        z = offset[:, None] / denom.clamp_(max=-1e-9)  # depth of each window sample's ray
        facing &= z[:, c] > 0
        rv = d["rv"]
        ring = d["ring"]
        if ring is not None:  # the wide pixels' outer samples: their depths on the same planes
            sub = ring["sub"]
            rq_r = ring["rq"]
            n_r = normal[:, sub, None]
            denom_r = n_r[0] * rq_r[0]
            denom_r.addcmul_(n_r[1], rq_r[1]).addcmul_(n_r[2], rq_r[2])
            z_r = offset[sub, None] / denom_r.clamp_(max=-1e-9)  # [Pw, R]
        nccs, fb_err = [], []
        for si, img in enumerate(self.src_images):
            hz = torch.addcmul(torch.full_like(z, d["b2"][si]), z, d["A2"][si])
            inside = hz[:, c] > 1e-6
            inv_hz = hz.clamp_(min=1e-6).reciprocal_()
            grid = (z[..., None] * d["A01"][si]).add_(d["b01"][si]).mul_(inv_hz[..., None])  # [P, S, 2]
            gc = grid[:, c]
            inside &= (gc.abs() <= 1.0 + 1e-3).all(-1)
            t = F.grid_sample(img, grid.clamp_(-2, 2)[None], mode="bilinear", padding_mode="border",
                              align_corners=True)[0, 0]  # [P, S]
            mu_cov = torch.bmm(d["w_rc"], t[..., None])[..., 0]  # [P, 2]: weighted mean, covariance
            m2 = torch.bmm(d["w"], (t * t)[..., None])[:, 0, 0]
            var_t = (m2 - mu_cov[:, 0] ** 2).clamp_min(0)
            ncc = mu_cov[:, 1] / (rv * var_t + 1e-8).sqrt()
            if ring is not None:  # the wide window: sums over the small window's samples plus the ring's
                hz_r = torch.addcmul(torch.full_like(z_r, d["b2"][si]), z_r, ring["A2"][si]).clamp_(min=1e-6)
                grid_r = (z_r[..., None] * ring["A01"][si]).add_(d["b01"][si]).div_(hz_r[..., None])
                t_r = F.grid_sample(img, grid_r.clamp_(-2, 2)[None], mode="bilinear", padding_mode="border",
                                    align_corners=True)[0, 0]  # [Pw, R]
                t_in = t[sub]
                mu_cov_w = (torch.bmm(ring["w_rc_in"], t_in[..., None])
                            + torch.bmm(ring["w_rc"], t_r[..., None]))[..., 0]
                m2_w = (torch.bmm(ring["w_in"], (t_in * t_in)[..., None])
                        + torch.bmm(ring["w"], (t_r * t_r)[..., None]))[:, 0, 0]
                ncc_w = mu_cov_w[:, 1] / (ring["rv"] * (m2_w - mu_cov_w[:, 0] ** 2).clamp_min(0) + 1e-8).sqrt()
                if self.wide_pick == "ncc":
                    ncc_w = torch.maximum(ncc_w, ncc[sub])
                ncc = ncc.index_copy(0, sub, ncc_w)
            nccs.append(torch.where(inside & facing, ncc, torch.full_like(ncc, -1.0)))
            if geo is not None:
                depth_s = geo[0][si]
                ds = F.grid_sample(depth_s[None, None], gc.clamp(-2, 2)[None, None], mode="nearest",
                                   padding_mode="zeros", align_corners=True)[0, 0, 0]  # [P]
                Mb, tb = self.back[si]
                q = (Mb @ torch.stack([gc[:, 0], gc[:, 1], torch.ones_like(ds)])) * ds[None] + tb[:, None]
                xy = q[:2] / q[2:].clamp_min(1e-6)
                err = ((xy - d["xy"]) ** 2).sum(0).sqrt()
                ok = inside & facing & (ds > 0) & (q[2] > 1e-6)
                fb_err.append(torch.where(ok, err.clamp(max=geo[2]), torch.full_like(err, geo[2])))
        st = torch.stack(nccs)
        k = min(top_k, st.shape[0])
        if k < st.shape[0]:
            st = st.topk(k, dim=0).values
        ncc = st.mean(0)
        if geo is None:
            return ncc, ncc
        return ncc - geo[1] * torch.stack(fb_err).min(0).values, ncc


def _normalize_facing(n: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """Unit normals [3, P] flipped to face the camera along ``rays`` [3, P] (n . r < 0)."""
    n = n * (n * n).sum(0, keepdim=True).clamp_min(1e-18).rsqrt()
    flip = (n * rays).sum(0) > 0
    return torch.where(flip[None], -n, n)


_NEIGHBOURS_NEAR = [(0, -1), (0, 1), (-1, 0), (1, 0)]


def _far_neighbours(far: int) -> list[tuple[int, int]]:
    return [(0, -far), (0, far), (-far, 0), (far, 0)] if far > 1 else []


def _red_black(view: _View, normal: torch.Tensor, offset: torch.Tensor, iters: int,
               inv_range: tuple[float, float], conf, gen: torch.Generator, geo=None,
               scale0: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``iters`` red-black iterations on the planes ``normal`` [3, HW], ``offset`` [HW] (updated
    in place). Each colour pass tries, per pixel, the planes of the ``propagation_candidates``
    best-scoring neighbours of the other colour (near and far ones) and three random
    perturbations of its own plane, and keeps the best score. Returns (normal, offset, ncc [HW])."""
    device = normal.device
    h, w = view.H, view.W
    inv_near, inv_far = inv_range
    span = inv_near - inv_far
    score = torch.empty(h * w, device=device)
    ncc = torch.empty(h * w, device=device)
    for col in (0, 1):
        idx = view.colours[col]["idx"]
        score[idx], ncc[idx] = view.cost(normal[:, idx], offset[idx], col, conf.propagation_top_k_sources, geo)
    nb = _NEIGHBOURS_NEAR + _far_neighbours(int(conf.propagation_far))
    n_cand = max(1, min(int(conf.propagation_candidates), len(nb)))
    for it in range(iters):
        scale = scale0 * 0.5 ** it
        for col in (0, 1):
            idx = view.colours[col]["idx"]
            r = view.colours[col]["rays"]
            P = idx.numel()
            planes = torch.cat([normal, offset[None], score[None]]).view(5, h, w)
            shifted = torch.stack([_shift(planes, dx, dy).view(5, -1)[:, idx] for dx, dy in nb])  # [B, 5, P]
            pick = shifted[:, 4].topk(n_cand, dim=0).indices  # best-scoring neighbours first
            best_n, best_c, best_s, best_ncc = normal[:, idx], offset[idx], score[idx], ncc[idx]
            cands = [shifted.gather(0, pick[j][None, None].expand(1, 5, P))[0, :4] for j in range(n_cand)]
            cands = [(p[:3], p[3]) for p in cands]
            cur_inv = ((best_n * r).sum(0) / best_c).clamp(inv_far, inv_near)
            rnd = torch.randn(4, P, generator=gen).to(device)
            new_inv = (cur_inv + rnd[0] * conf.propagation_depth_step * scale * span).clamp(inv_far, inv_near)
            new_n = _normalize_facing(best_n + rnd[1:] * conf.propagation_normal_step * scale, r)
            for n_, i_ in ((best_n, new_inv), (new_n, cur_inv), (new_n, new_inv)):
                cands.append((n_, (n_ * r).sum(0) / i_))
            for n_, c_ in cands:
                i_ = (n_ * r).sum(0) / c_  # hypotheses stay inside the depth range
                ok = (i_ <= inv_near) & (i_ >= inv_far)
                sc, nc = view.cost(n_, c_, col, conf.propagation_top_k_sources, geo)
                better = ok & (sc > best_s)
                best_s = torch.where(better, sc, best_s)
                best_ncc = torch.where(better, nc, best_ncc)
                best_n = torch.where(better[None], n_, best_n)
                best_c = torch.where(better, c_, best_c)
            normal[:, idx], offset[idx], score[idx], ncc[idx] = best_n, best_c, best_s, best_ncc
    return normal, offset, ncc


@torch.no_grad()
def propagate_planes(gray: torch.Tensor, cams: Sequence[Camera], sources: list[list[int]],
                     depths: list[torch.Tensor], inv_ranges: list[tuple[float, float]], conf,
                     seed: int = 0) -> list[dict]:
    """Slanted-plane PatchMatch for every view, started from the sweep's depths.

    Photometric stage: per view, ``propagation_iters`` red-black iterations at each of
    ``propagation_scales`` pyramid levels (coarsest first). Geometric stage (COLMAP's
    "geom_consistency"): ``propagation_geom_iters`` more iterations per view at full resolution,
    scored by the NCC minus ``propagation_geom_weight`` x the forward-backward reprojection error
    (px, capped at 3) through the other views' current depth maps, so that the views' depths
    agree where the matching allows it.

    Args:
        gray: [N, H, W] grey images at the stereo resolution; ``cams`` scaled to them.
        sources: per view, the source views it is matched against.
        depths: per view [H, W], the starting depth (the sweep's winner-take-all depth).
        inv_ranges: per view (inv_near, inv_far), the range hypotheses must stay in.
        conf: :class:`fvgen.priors.mvs.MvsConf`.

    Returns:
        per view a dict with ``depth`` [H, W], ``normal`` [3, H, W] (camera frame, facing the
        camera), ``ncc`` [H, W] (aggregated photometric NCC of the final plane) and ``wide``
        [H, W] (bool: the pixel was given ``propagation_wide_window``; all False when off).
    """
    device = gray.device
    N, H, W = gray.shape
    scales = max(1, int(conf.propagation_scales))
    sizes = [(max(8, round(W / 2 ** l)), max(8, round(H / 2 ** l))) for l in range(scales - 1, -1, -1)]
    out, views = [], []
    for ref in range(N):
        gen = torch.Generator(device="cpu").manual_seed(seed * 7919 + ref)
        normal = inv = prev_hw = None
        for (w, h) in sizes:
            if (w, h) != (W, H):
                g = F.interpolate(gray[:, None], size=(h, w), mode="area")[:, 0]
                cs = [c.scaled(w, h) for c in cams]
            else:
                g, cs = gray, list(cams)
            view = _View(ref, g, cs, sources[ref], int(conf.propagation_window or conf.window),
                         conf.propagation_window_step, conf.propagation_sigma_color, int(conf.propagation_wide_window),
                         float(conf.propagation_wide_texture), conf.propagation_wide_pick)
            rays = view.rays.view(3, -1)
            if normal is None:  # start: the sweep's depth, fronto-parallel
                d0 = depths[ref]
                if (w, h) != (W, H):
                    d0 = 1.0 / F.interpolate((1.0 / d0)[None, None], size=(h, w), mode="area")[0, 0]
                inv = (1.0 / d0.clamp_min(1e-9)).reshape(-1)
                normal = torch.zeros(3, h * w, device=device)
                normal[2] = -1.0
            else:  # the coarser level's planes, upsampled
                normal = _normalize_facing(F.interpolate(normal.view(1, 3, *prev_hw), size=(h, w),
                                                         mode="nearest")[0].reshape(3, -1), rays)
                inv = F.interpolate(inv.view(1, 1, *prev_hw), size=(h, w), mode="bilinear",
                                    align_corners=False).reshape(-1)
            inv = inv.clamp(inv_ranges[ref][1], inv_ranges[ref][0])
            prev_hw = (h, w)
            offset = (normal * rays).sum(0) / inv  # c = n . X, X = r / inv
            normal, offset, ncc = _red_black(view, normal, offset, int(conf.propagation_iters),
                                             inv_ranges[ref], conf, gen)
            inv = ((normal * rays).sum(0) / offset).clamp(inv_ranges[ref][1], inv_ranges[ref][0])
        views.append((view, gen))
        out.append({"normal": normal, "offset": offset, "ncc": ncc, "depth": (1.0 / inv).view(H, W),
                    "wide": view.wide.view(H, W)})
    geo_iters = int(conf.propagation_geom_iters)
    if geo_iters > 0 and N > 1:
        for ref in range(N):
            view, gen = views[ref]
            geo = ([out[s]["depth"] for s in sources[ref]], float(conf.propagation_geom_weight), 3.0)
            o = out[ref]
            # the planes are converged photometrically: refine with a quarter of the first steps
            normal, offset, ncc = _red_black(view, o["normal"], o["offset"], geo_iters, inv_ranges[ref],
                                             conf, gen, geo, scale0=0.25)
            inv = ((normal * view.rays.view(3, -1)).sum(0) / offset).clamp(inv_ranges[ref][1], inv_ranges[ref][0])
            out[ref] = {"normal": normal, "offset": offset, "ncc": ncc, "depth": (1.0 / inv).view(H, W),
                        "wide": o["wide"]}
    return [{"depth": o["depth"], "normal": o["normal"].view(3, H, W), "ncc": o["ncc"].view(H, W),
             "wide": o["wide"]} for o in out]


__all__ = ["propagate_planes"]
