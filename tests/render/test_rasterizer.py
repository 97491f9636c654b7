"""Tests for fvgen.render.gaussians (our torch rasterizer) against a naive pure-torch oracle."""

import math

import pytest
import torch

from fvgen.render.gaussians import rasterize, spherical_harmonics

W, H = 24, 20


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: intra-op threads only add overhead (and stall badly on a busy machine)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _scene(n=30, seed=0, dtype=torch.float64, C=1):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([0.6, 0.5, 0.6], dtype=dtype)
    means[:, 2] += 3.0
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.25 + 0.03
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.08
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    viewmats, Ks = [], []
    for c in range(C):
        ang = 0.15 * c
        R = torch.tensor([[math.cos(ang), 0, math.sin(ang)], [0, 1, 0],
                          [-math.sin(ang), 0, math.cos(ang)]], dtype=dtype)
        vm = torch.eye(4, dtype=dtype)
        vm[:3, :3] = R
        vm[:3, 3] = torch.tensor([0.05 * c, -0.03 * c, 0.1 * c], dtype=dtype)
        viewmats.append(vm)
        Ks.append(torch.tensor([[28.0 + c, 0, W / 2], [0, 28.0 + c, H / 2], [0, 0, 1]], dtype=dtype))
    return means, quats, scales, opac, colors, torch.stack(viewmats), torch.stack(Ks)


def _oracle(means, quats, scales, opac, colors, viewmats, Ks, width, height, backgrounds=None,
            near=0.01, far=1e10, eps2d=0.3):
    """Every Gaussian against every pixel, gsplat's per-pixel loop written out in torch.

    Projection: gsplat's own pure-torch reference (_fully_fused_projection)."""
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    _, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near, far_plane=far)
    C = viewmats.shape[0]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype),
                            torch.arange(width, dtype=means.dtype), indexing="ij")
    px = xs.reshape(-1) + 0.5
    py = ys.reshape(-1) + 0.5
    out_c, out_a = [], []
    for c in range(C):
        ok = (depths[c] >= near) & (depths[c] <= far)
        order = torch.argsort(depths[c])
        T = torch.ones_like(px)
        done = torch.zeros_like(px, dtype=torch.bool)
        acc = torch.zeros(px.shape[0], colors.shape[-1], dtype=means.dtype)
        for i in order.tolist():
            if not bool(ok[i]):
                continue
            dx = means2d[c, i, 0] - px
            dy = means2d[c, i, 1] - py
            a_, b_, c_ = conics[c, i]
            sigma = 0.5 * (a_ * dx * dx + c_ * dy * dy) + b_ * dx * dy
            alpha = torch.clamp_max(opac[i] * torch.exp(-sigma), 0.999)
            use = (sigma >= 0) & (alpha >= 1.0 / 255.0) & ~done
            next_T = T * (1 - alpha)
            stop = use & (next_T <= 1e-4)
            done = done | stop
            use = use & ~stop
            acc = acc + torch.where(use[:, None], (alpha * T)[:, None] * colors[i], 0.0)
            T = torch.where(use, next_T, T)
        col = acc
        if backgrounds is not None:
            col = col + T[:, None] * backgrounds[c]
        out_c.append(col.reshape(height, width, -1))
        out_a.append((1 - T).reshape(height, width, 1))
    return torch.stack(out_c), torch.stack(out_a)


def _params(dtype=torch.float64, **kw):
    return [t.clone().requires_grad_(True) if i < 5 else t for i, t in enumerate(_scene(dtype=dtype, **kw))]


@pytest.mark.parametrize("C", [1, 2])
def test_forward_matches_oracle_float32(C):
    means, quats, scales, opac, colors, vm, K = _scene(dtype=torch.float32, C=C)
    c_ours, a_ours, info = rasterize(means, quats, scales, opac, colors, vm, K, W, H)
    c_ref, a_ref = _oracle(means, quats, scales, opac, colors, vm, K, W, H)
    assert c_ours.shape == (C, H, W, 3) and a_ours.shape == (C, H, W, 1)
    assert info["n_pairs"] > 200  # the scene is not trivially empty
    assert a_ref.max() > 0.9  # ... and has opaque regions (exercises the early stop)
    assert (c_ours - c_ref).abs().max() < 1e-4
    assert (a_ours - a_ref).abs().max() < 1e-4


def test_gradients_match_oracle():
    p_ours = _params()
    p_ref = _params()
    bg = torch.tensor([[0.2, 0.4, 0.6]], dtype=torch.float64)
    w_c = torch.rand(1, H, W, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w_a = torch.rand(1, H, W, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    c, a, _ = rasterize(*p_ours, W, H, backgrounds=bg)
    ((c * w_c).sum() + (a * w_a).sum()).backward()
    c2, a2 = _oracle(*p_ref, W, H, backgrounds=bg)
    ((c2 * w_c).sum() + (a2 * w_a).sum()).backward()
    assert (c - c2).abs().max() < 1e-9
    names = ["means", "quats", "scales", "opacities", "colors"]
    for name, x, y in zip(names, p_ours[:5], p_ref[:5]):
        err = (x.grad - y.grad).norm() / y.grad.norm().clamp_min(1e-12)
        assert err < 1e-6, (name, float(err))


def test_gradients_float32_close():
    p_ours = _params(dtype=torch.float32)
    p_ref = _params(dtype=torch.float32)
    c, a, _ = rasterize(*p_ours, W, H)
    (c.square().sum() + a.sum()).backward()
    c2, a2 = _oracle(*p_ref, W, H)
    (c2.square().sum() + a2.sum()).backward()
    for x, y in zip(p_ours[:5], p_ref[:5]):
        err = (x.grad - y.grad).norm() / y.grad.norm().clamp_min(1e-12)
        assert err < 1e-3, float(err)


def test_early_termination_matches_oracle():
    """Stacked near-opaque Gaussians: pixels hit gsplat's T <= 1e-4 stop."""
    g = torch.Generator().manual_seed(7)
    n = 12
    dtype = torch.float64
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.1
    means[:, 2] = 3.0 + torch.arange(n, dtype=dtype) * 0.2
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.5 + 1.0
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.04 + 0.95
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    vm = torch.eye(4, dtype=dtype)[None]
    K = torch.tensor([[[20.0, 0, W / 2], [0, 20.0, H / 2], [0, 0, 1]]], dtype=dtype)
    p1 = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    p2 = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    c, a, _ = rasterize(*p1, vm, K, W, H)
    c2, a2 = _oracle(*p2, vm, K, W, H)
    assert (a2 > 1 - 1e-3).float().mean() > 0.3  # many pixels terminated early
    assert (c - c2).abs().max() < 1e-9 and (a - a2).abs().max() < 1e-9
    # without the stop, the deeper Gaussians would still change the colour noticeably
    c_all = _oracle_no_stop(means, quats, scales, opac, colors, vm, K)
    assert (c_all - c2).abs().max() > 1e-5
    (c.square().sum() + a.sum()).backward()
    (c2.square().sum() + a2.sum()).backward()
    for x, y in zip(p1, p2):
        assert (x.grad - y.grad).norm() <= 1e-6 * y.grad.norm() + 1e-12


def _oracle_no_stop(means, quats, scales, opac, colors, vm, K):
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    _, m2, d, con, _ = _fully_fused_projection(means, covars, vm, K, W, H)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=means.dtype), torch.arange(W, dtype=means.dtype),
                            indexing="ij")
    px, py = xs.reshape(-1) + 0.5, ys.reshape(-1) + 0.5
    T = torch.ones_like(px)
    acc = torch.zeros(px.shape[0], 3, dtype=means.dtype)
    for i in torch.argsort(d[0]).tolist():
        dx, dy = m2[0, i, 0] - px, m2[0, i, 1] - py
        sig = 0.5 * (con[0, i, 0] * dx * dx + con[0, i, 2] * dy * dy) + con[0, i, 1] * dx * dy
        al = torch.clamp_max(opac[i] * torch.exp(-sig), 0.999)
        al = torch.where(al >= 1 / 255, al, 0.0)
        acc = acc + (al * T)[:, None] * colors[i]
        T = T * (1 - al)
    return acc.reshape(1, H, W, 3)


def test_chunking_invariance():
    means, quats, scales, opac, colors, vm, K = _scene(dtype=torch.float32, C=2)
    outs = []
    for chunk in [1, 100, 1000, 1 << 20]:
        ps = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
        c, a, info = rasterize(*ps, vm, K, W, H, max_pairs_per_chunk=chunk, tile_size=8)
        (c.sum() + 2 * a.sum()).backward()
        outs.append((c.detach(), a.detach(), [p.grad for p in ps]))
    for c, a, grads in outs[1:]:
        assert torch.equal(c, outs[0][0]) and torch.equal(a, outs[0][1])
        for g, g0 in zip(grads, outs[0][2]):  # equal up to float32 summation order
            assert (g - g0).norm() <= 1e-5 * g0.norm()


def test_checkpointed_chunks_same_result():
    means, quats, scales, opac, colors, vm, K = _scene(dtype=torch.float32, C=2)
    outs = []
    for ckpt in (False, True):
        ps = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
        c, a, info = rasterize(*ps, vm, K, W, H, max_pairs_per_chunk=300, checkpoint_chunks=ckpt)
        (c.square().sum() - a.sum()).backward()
        outs.append((c.detach(), a.detach(), [p.grad for p in ps] + [info["means2d"].grad]))
    (c0, a0, g0), (c1, a1, g1) = outs
    assert torch.equal(c0, c1) and torch.equal(a0, a1)
    for x, y in zip(g0, g1):
        assert torch.allclose(x, y, rtol=1e-6, atol=1e-7)


def test_tile_size_invariance():
    scene = _scene(dtype=torch.float32)
    c16, a16, _ = rasterize(*scene, W, H, tile_size=16)
    c5, a5, _ = rasterize(*scene, W, H, tile_size=5)
    assert torch.equal(c16, c5) and torch.equal(a16, a5)


def test_background():
    means, quats, scales, opac, colors, vm, K = _scene(dtype=torch.float32, C=2)
    bg = torch.tensor([[1.0, 0.0, 0.5], [0.1, 0.2, 0.3]])
    c0, a0, _ = rasterize(means, quats, scales, opac, colors, vm, K, W, H)
    c1, a1, _ = rasterize(means, quats, scales, opac, colors, vm, K, W, H, backgrounds=bg)
    assert torch.allclose(c1, c0 + (1 - a0) * bg[:, None, None, :], atol=1e-6)
    assert torch.equal(a0, a1)
    # empty scene -> background everywhere
    far = means + torch.tensor([0, 0, -10.0])
    c2, a2, _ = rasterize(far, quats, scales, opac, colors, vm, K, W, H, backgrounds=bg)
    assert torch.allclose(c2, bg[:, None, None, :].expand(2, H, W, 3))
    assert a2.abs().max() == 0


def test_behind_camera_ignored():
    means, quats, scales, opac, colors, vm, K = _scene(dtype=torch.float32)
    c0, a0, info0 = rasterize(means, quats, scales, opac, colors, vm, K, W, H)
    # add big, opaque Gaussians behind the camera, mirrored from visible ones, and one at z=0
    behind = means[:5] * torch.tensor([1.0, 1.0, -1.0])
    at_zero = torch.tensor([[0.0, 0.0, 0.0]])
    m2 = torch.cat([means, behind, at_zero]).requires_grad_(True)
    q2 = torch.cat([quats, quats[:6]])
    s2 = torch.cat([scales, torch.full((6, 3), 1.0)])
    o2 = torch.cat([opac, torch.full((6,), 0.99)])
    c2_ = torch.cat([colors, torch.ones(6, 3)])
    c1, a1, info = rasterize(m2, q2, s2, o2, c2_, vm, K, W, H)
    assert torch.allclose(c0, c1) and torch.allclose(a0, a1)
    assert (info["radii"][0, -6:] == 0).all()
    (c1.sum() + a1.sum()).backward()
    assert torch.isfinite(m2.grad).all() and (m2.grad[-6:] == 0).all()


def test_info_keys_and_shapes():
    means, quats, scales, opac, colors, vm, K = _params(dtype=torch.float32, C=2)
    c, a, info = rasterize(means, quats, scales, opac, colors, vm, K, W, H)
    N = means.shape[0]
    assert info["means2d"].shape == (2, N, 2) and info["means2d"].requires_grad
    assert info["radii"].shape == (2, N, 2) and info["radii"].dtype == torch.int32
    assert info["depths"].shape == (2, N) and info["conics"].shape == (2, N, 3)
    assert info["opacities"].shape == (2, N)
    assert info["width"] == W and info["height"] == H and info["n_cameras"] == 2
    assert info["gaussian_ids"] is None and info["tile_size"] == 16
    assert info["isect_offsets"].shape == (2, info["tile_height"], info["tile_width"])
    assert info["flatten_ids"].numel() == info["isect_ids"].numel() == int(info["tiles_per_gauss"].sum())
    c.sum().backward()
    g = info["means2d"].grad
    assert g is not None and g.shape == (2, N, 2)
    visible = (info["radii"] > 0).all(-1)
    assert (g[~visible] == 0).all() and g[visible].abs().sum() > 0


def test_projection_matches_gsplat_reference():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    means, quats, scales, opac, colors, vm, K = _scene(dtype=torch.float64, C=2)
    _, _, info = rasterize(means, quats, scales, opac, colors, vm, K, W, H)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    _, m2, d, con, _ = _fully_fused_projection(means, covars, vm, K, W, H)
    assert torch.allclose(info["means2d"], m2, atol=1e-9)
    assert torch.allclose(info["depths"], d, atol=1e-12)
    assert torch.allclose(info["conics"], con, rtol=1e-9, atol=1e-12)
    # gsplat CUDA's opacity-aware radius
    cov_xx = 1.0 / (con[..., 0] - con[..., 1] ** 2 / con[..., 2])  # (cov2d + eps)_xx
    ext = torch.sqrt(2 * torch.log(opac * 255.0)).clamp(max=3.33)
    rx = torch.ceil(ext * cov_xx.sqrt())
    vis = (info["radii"] > 0).all(-1)
    assert vis.sum() > 10
    assert torch.equal(info["radii"][..., 0][vis].double(), rx[vis])


def test_sh_matches_gsplat_reference():
    from gsplat.cuda._torch_impl import _spherical_harmonics

    g = torch.Generator().manual_seed(3)
    dirs = torch.randn(50, 3, generator=g, dtype=torch.float64)
    coeffs = torch.randn(50, 25, 3, generator=g, dtype=torch.float64)
    for deg in range(5):
        ours = spherical_harmonics(deg, dirs, coeffs)
        ref = _spherical_harmonics(deg, dirs, coeffs)
        assert torch.allclose(ours, ref, atol=1e-12), deg


def test_sh_colors_and_depth_modes():
    means, quats, scales, opac, _, vm, K = _scene(dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    sh = torch.randn(means.shape[0], 16, 3, generator=g, dtype=torch.float64) * 0.3
    c, a, _ = rasterize(means, quats, scales, opac, sh, vm, K, W, H, sh_degree=3)
    campos = torch.linalg.inv(vm)[0, :3, 3]
    from gsplat.cuda._torch_impl import _spherical_harmonics
    rgb = torch.clamp_min(_spherical_harmonics(3, means - campos, sh) + 0.5, 0.0)
    c_ref, a_ref = _oracle(means, quats, scales, opac, rgb, vm, K, W, H)
    assert (c - c_ref).abs().max() < 1e-9
    # expected depth: sum(w z) / sum(w)
    c_ed, a_ed, info = rasterize(means, quats, scales, opac, rgb, vm, K, W, H, render_mode="RGB+ED")
    assert c_ed.shape == (1, H, W, 4)
    assert torch.allclose(c_ed[..., :3], c_ref, atol=1e-9)
    z = info["depths"][0]
    d_ref, _ = _oracle(means, quats, scales, opac, z[:, None], vm, K, W, H)
    assert torch.allclose(c_ed[..., 3:], d_ref / a_ref.clamp_min(1e-10), atol=1e-7)
    c_d, _, _ = rasterize(means, quats, scales, opac, rgb, vm, K, W, H, render_mode="D")
    assert torch.allclose(c_d, d_ref, atol=1e-9)


def test_absgrad():
    ps = _params(dtype=torch.float32)
    c, a, info = rasterize(*ps, W, H, absgrad=True)
    (c.sum() - a.sum()).backward()
    m2 = info["means2d"]
    assert m2.absgrad.shape == m2.grad.shape
    assert (m2.absgrad >= m2.grad.abs() - 1e-5).all()
    assert (m2.absgrad > m2.grad.abs() + 1e-3).any()


def test_default_strategy_densifies_on_cpu():
    from gsplat.strategy import DefaultStrategy

    torch.manual_seed(0)
    means, quats, scales, opac, colors, vm, K = _scene(n=20, dtype=torch.float32, C=2)
    target, _, _ = rasterize(means, quats, scales, opac, colors, vm, K, W, H)
    g = torch.Generator().manual_seed(5)
    params = torch.nn.ParameterDict({
        "means": means + 0.1 * torch.randn(means.shape, generator=g),
        "scales": torch.log(scales * 1.5),
        "quats": quats.clone(),
        "opacities": torch.logit(torch.full_like(opac, 0.5)),
        "colors": torch.full_like(colors, 0.5),
    })
    optimizers = {k: torch.optim.Adam([p], lr=1e-2) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=2, refine_every=3, grow_grad2d=1e-6,
                               grow_scale3d=0.05, reset_every=1000, prune_opa=0.001)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    n0 = params["means"].shape[0]
    losses = []
    for step in range(10):
        c, a, info = rasterize(params["means"], params["quats"], torch.exp(params["scales"]),
                               torch.sigmoid(params["opacities"]), params["colors"], vm, K, W, H)
        strategy.step_pre_backward(params, optimizers, state, step, info)
        loss = (c - target).abs().mean()
        loss.backward()
        losses.append(float(loss))
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
    assert params["means"].shape[0] > n0
    assert all(p.shape[0] == params["means"].shape[0] for p in params.values())
    assert losses[-1] < losses[0]


def test_bad_inputs():
    means, quats, scales, opac, colors, vm, K = _scene(dtype=torch.float32)
    with pytest.raises(ValueError):
        rasterize(means, quats, scales, opac[:, None], colors, vm, K, W, H)
    with pytest.raises(ValueError):
        rasterize(means, quats, scales, opac, colors, vm, K, W, H, render_mode="XYZ")
    with pytest.raises(ValueError):
        rasterize(means, quats, scales, opac, colors, vm, K, W, H, backend="gsplat")


def test_edge_cases_empty_and_single():
    means, quats, scales, opac, colors, vm, K = _scene(dtype=torch.float32)
    for n in (0, 1):
        ps = [t[:n].clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
        c, a, info = rasterize(*ps, vm, K, 17, 9, tile_size=4)
        assert c.shape == (1, 9, 17, 3) and a.shape == (1, 9, 17, 1)
        (c.sum() + a.sum()).backward()
        assert info["means2d"].grad is not None
        if n == 1:
            c_ref, a_ref = _oracle(*[p.detach() for p in ps], vm, K, 17, 9)
            assert (c - c_ref).abs().max() < 1e-5 and (a - a_ref).abs().max() < 1e-5
    with torch.no_grad():  # inference renders work without autograd
        c, a, info = rasterize(means, quats, scales, opac, colors, vm, K, W, H)
    assert not c.requires_grad and not info["means2d"].requires_grad


def test_relocation_torch_formula():
    from fvgen.render.gaussians import compute_relocation_torch

    n_max = 51
    binoms = torch.zeros(n_max, n_max)
    for n in range(n_max):
        for k in range(n + 1):
            binoms[n, k] = math.comb(n, k)
    op = torch.tensor([0.3, 0.3, 0.8, 0.05])
    sc = torch.rand(4, 3) + 0.1
    ratios = torch.tensor([1, 2, 2, 0], dtype=torch.int32)
    new_op, new_sc = compute_relocation_torch(op, sc, ratios, binoms)
    assert ratios.tolist() == [1, 2, 2, 1]  # clamped in place, like gsplat
    assert torch.allclose(new_op[[0, 3]], op[[0, 3]]) and torch.allclose(new_sc[[0, 3]], sc[[0, 3]])
    o2 = 1 - torch.sqrt(1 - op[1:3])
    assert torch.allclose(new_op[1:3], o2)
    coeff = op[1:3] / (2 * o2 - o2 ** 2 / math.sqrt(2))
    assert torch.allclose(new_sc[1:3], coeff[:, None] * sc[1:3], rtol=1e-5)


def test_mcmc_strategy_on_cpu():
    from gsplat.strategy import MCMCStrategy

    from fvgen.render.gaussians import enable_cpu_mcmc

    enable_cpu_mcmc()
    torch.manual_seed(0)
    means, quats, scales, opac, colors, vm, K = _scene(n=20, dtype=torch.float32, C=2)
    target, _, _ = rasterize(means, quats, scales, opac, colors, vm, K, W, H)
    params = torch.nn.ParameterDict({
        "means": means.clone(), "scales": torch.log(scales), "quats": quats.clone(),
        "opacities": torch.logit(opac.clamp(0.01, 0.99)), "colors": torch.full_like(colors, 0.5),
    })
    optimizers = {k: torch.optim.Adam([p], lr=1e-2) for k, p in params.items()}
    strategy = MCMCStrategy(cap_max=30, refine_start_iter=2, refine_every=2, min_opacity=0.2)
    state = strategy.initialize_state()
    for step in range(8):
        c, a, info = rasterize(params["means"], params["quats"], torch.exp(params["scales"]),
                               torch.sigmoid(params["opacities"]), params["colors"], vm, K, W, H)
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (c - target).abs().mean().backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, optimizers, state, step, info, lr=1e-2)
    assert 20 < params["means"].shape[0] <= 30  # sample_add (-> compute_relocation) ran
    assert all(torch.isfinite(p).all() for p in params.values())
