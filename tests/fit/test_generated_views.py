"""How generated views enter the fit: weights that really weigh, the photos' guaranteed share of
steps, soft confidence masks, the window and decay of their weight, and the cache key of a fit of
the photos alone."""

import dataclasses

import numpy as np
import pytest
import torch

from fvgen.core.errors import FvgenError
from fvgen.fit import FitConf, masked_loss
from fvgen.fit.optimize import ViewSampler


def test_a_weight_scales_the_loss_even_alone_in_its_batch():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(1, 16, 16, 3, generator=g, requires_grad=True)
    target = torch.rand(1, 16, 16, 3, generator=g)
    full = masked_loss(pred, target, None, torch.ones(1), 0.2)
    light = masked_loss(pred, target, None, torch.full((1,), 0.3), 0.2)
    assert float(light) == pytest.approx(0.3 * float(full), rel=1e-6)
    (g_full,) = torch.autograd.grad(full, pred)
    (g_light,) = torch.autograd.grad(light, pred)
    assert torch.allclose(g_light, 0.3 * g_full, atol=1e-7)


def test_soft_masks_weigh_pixels():
    pred = torch.zeros(1, 8, 8, 3)
    target = torch.zeros(1, 8, 8, 3)
    target[:, :, 4:] = 1.0  # the right half is wrong
    left = torch.zeros(1, 8, 8)
    left[:, :, :4] = 1.0
    assert float(masked_loss(pred, target, left, None, 0.0)) == 0.0
    soft = torch.full((1, 8, 8), 0.5)
    assert float(masked_loss(pred, target, soft, None, 0.0)) == pytest.approx(0.5)


def test_pixel_norm_weighs_a_view_by_its_mean_confidence():
    g = torch.Generator().manual_seed(1)
    pred = torch.rand(2, 8, 8, 3, generator=g)
    target = torch.rand(2, 8, 8, 3, generator=g)
    ones = torch.ones(2, 8, 8)
    # the photos (mask of ones, or none) score the same under both norms
    for mask in (None, ones):
        assert float(masked_loss(pred, target, mask, None, 0.2, "pixels")) == \
            float(masked_loss(pred, target, mask, None, 0.2, "confidence"))
    # a view seen over a quarter of its pixels: "confidence" averages over that quarter,
    # "pixels" counts it a quarter as much
    quarter = torch.zeros(2, 8, 8)
    quarter[:, :4, :4] = 1.0
    by_conf = masked_loss(pred, target, quarter, None, 0.2, "confidence")
    by_pixels = masked_loss(pred, target, quarter, None, 0.2, "pixels")
    assert float(by_pixels) == pytest.approx(0.25 * float(by_conf), rel=1e-5)
    # a uniformly low confidence (a view far from the photos) no longer cancels out
    far = torch.full((2, 8, 8), 0.2)
    assert float(masked_loss(pred, target, far, None, 0.2, "confidence")) == \
        pytest.approx(float(masked_loss(pred, target, None, None, 0.2)), rel=1e-5)
    assert float(masked_loss(pred, target, far, None, 0.2, "pixels")) == \
        pytest.approx(0.2 * float(masked_loss(pred, target, None, None, 0.2)), rel=1e-5)


def test_photos_alone_draw_views_as_before():
    conf = FitConf(iterations=30, seed=3)
    a = ViewSampler(3, 3, conf, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    order: list[int] = []
    for step in range(30):  # the fit loop as it was before generated views
        if not order:
            order = list(rng.permutation(3)) + order
        idx, w = a.draw(step, 1)
        assert idx == [order.pop()] and w is None


def test_inputs_keep_their_share_and_generated_views_their_window():
    conf = FitConf(iterations=1000, input_share=0.7, generated_weight=0.4, generated_weight_end=0.1,
                   generated_start=0.2, generated_stop=0.9)
    s = ViewSampler(3, 27, conf, np.random.default_rng(0))
    picks = [s.draw(step, 1) for step in range(1000)]
    before = [i for (i,), _ in picks[:200]]
    after = [i for (i,), _ in picks[900:]]
    assert max(before) < 3 and max(after) < 3  # photos only outside the window
    window = picks[200:900]
    share = np.mean([i < 3 for (i,), _ in window])
    assert 0.65 < share < 0.75
    weights = [w[0] for (i,), w in window if i >= 3]
    assert weights[0] == pytest.approx(0.4, abs=0.01) and weights[-1] == pytest.approx(0.1, abs=0.01)
    assert all(w == 1.0 for (i,), (w,) in window if i < 3)
    assert {i for (i,), _ in window if i >= 3} == set(range(3, 27))  # every generated view is used


def test_kept_input_steps_give_the_photos_the_steps_of_a_photos_alone_fit():
    conf = FitConf(iterations=1000, input_share=0.75, generated_start=0.0, generated_stop=0.4, input_steps="kept")
    total = conf.total_iterations(True)
    assert total == round(1000 / (1 - 0.4 * 0.25)) and conf.total_iterations(False) == 1000
    assert FitConf(iterations=1000).total_iterations(True) == 1000  # "shared": the run keeps its length
    run = dataclasses.replace(conf, iterations=total)  # as fit_gaussians runs it
    photo_steps = []
    for seed in range(4):
        sampler = ViewSampler(3, 27, dataclasses.replace(run, seed=seed), np.random.default_rng(seed))
        photo_steps.append(sum(sampler.draw(step, 1)[0][0] < 3 for step in range(total)))
    assert abs(np.mean(photo_steps) - 1000) < 20  # the photos' expected steps: iterations


def test_kept_input_steps_lengthen_only_a_fit_with_generated_views(one_thread):
    from fvgen.core.cameras import Camera, look_at
    from fvgen.core.pointcloud import PointCloud
    from fvgen.fit import FitViews, fit_gaussians

    W, H = 12, 9
    K = np.array([[11.0, 0, (W - 1) / 2], [0, 11.0, (H - 1) / 2], [0, 0, 1]])
    cams = [Camera(K, look_at(np.array([0.3 * i, 0.0, -3.0]), np.zeros(3), np.array([0, -1.0, 0])), W, H, f"v{i}.png")
            for i in range(4)]
    rng = np.random.default_rng(0)
    init = PointCloud(rng.uniform(-1, 1, (200, 3)), rng.uniform(0, 1, (200, 3)))
    images = torch.rand(4, H, W, 3)
    conf = FitConf(iterations=20, sh_degree=0, strategy="none", input_share=0.5, generated_stop=1.0,
                   input_steps="kept")
    _, photos, _ = fit_gaussians(FitViews(images[:3], cams[:3], inputs=3), init, conf)
    _, mixed, _ = fit_gaussians(FitViews(images, cams, None, torch.ones(4, H, W), inputs=3), init, conf)
    assert photos["iterations"] == 20 and mixed["iterations"] == 40


def test_bad_generated_settings_are_one_line_errors():
    with pytest.raises(FvgenError, match="fit.input_steps"):
        FitConf(input_share=0.0, generated_stop=1.0, input_steps="kept")
    for bad in ({"input_share": 1.5}, {"generated_start": -0.1}, {"generated_weight": -1.0},
                {"generated_start": 0.8, "generated_stop": 0.2}, {"generated_norm": "mean"},
                {"input_steps": "all"}):
        with pytest.raises(FvgenError, match="fit."):
            FitConf(**bad)


def test_photo_only_fit_key_ignores_generated_settings(tmp_path):
    from fvgen.core.cache import StageResult
    from fvgen.stages.fit import ExtraViews, key

    pri = StageResult("priors", "k", tmp_path, "cached", 0.0, {}, "r")
    a, b = FitConf(), dataclasses.replace(FitConf(), generated_weight=0.9, input_share=0.2, generated_norm="pixels")
    assert key(a, pri, [], "cpu") == key(b, pri, [], "cpu")
    extra = [ExtraViews(tmp_path, "gen.1")]
    assert key(a, pri, extra, "cpu") != key(b, pri, extra, "cpu")
    kept = dataclasses.replace(a, input_steps="kept")
    assert key(kept, pri, [], "cpu") == key(a, pri, [], "cpu")
    assert key(kept, pri, extra, "cpu") != key(a, pri, extra, "cpu")


def test_pixel_norm_lets_a_faint_wrong_view_pull_less(one_thread):
    """A fit of 3 photos of a textured sheet plus 3 generated views that are flat grey with a faint
    confidence (0.05 everywhere): under "confidence" the faintness cancels and the grey views pull
    the photos' PSNR down; under "pixels" they weigh 0.05x and the photos keep more of theirs."""
    import math

    from fvgen.core.cameras import Camera, look_at
    from fvgen.core.metrics import psnr
    from fvgen.core.pointcloud import PointCloud
    from fvgen.fit import FitViews, fit_gaussians
    from fvgen.render.gaussians import render_splats
    from fvgen.render.splats import init_splats

    W, H = 40, 30
    K = np.array([[38.0, 0, (W - 1) / 2], [0, 38.0, (H - 1) / 2], [0, 0, 1]])
    cams = [Camera(K, look_at(np.array([3 * math.sin(a), 0.1 * i, -3 * math.cos(a)]), np.zeros(3),
                              np.array([0, -1.0, 0])), W, H, f"v{i}.png")
            for i, a in enumerate(np.linspace(-0.6, 0.6, 6))]
    u = np.random.default_rng(0).uniform(-1, 1, (500, 2))
    xyz = np.c_[u, 0.3 * np.sin(3 * u[:, 0])]
    rgb = (0.5 + 0.5 * np.c_[np.sin(7 * u[:, 0]), np.cos(9 * u[:, 1]), np.sin(5 * u.sum(1))]).clip(0, 1)
    with torch.no_grad():
        truth = render_splats(init_splats(xyz, rgb, 0, 0.9, 1.0, "cpu"), cams[::2])[0].clamp(0, 1)
    images = torch.cat([truth, torch.full((3, H, W, 3), 0.5)])
    masks = torch.cat([torch.ones(3, H, W), torch.full((3, H, W), 0.05)])
    cams = cams[::2] + cams[1::2]
    init = PointCloud(xyz + np.random.default_rng(1).normal(0, 0.02, xyz.shape), rgb)

    def photo_psnr(norm: str) -> float:
        conf = FitConf(iterations=120, sh_degree=0, strategy="none", input_share=0.5, generated_weight=1.0,
                       generated_weight_end=1.0, generated_stop=1.0, generated_norm=norm)
        splats, _, _ = fit_gaussians(FitViews(images, cams, None, masks, inputs=3), init, conf)
        with torch.no_grad():
            renders = render_splats(splats, cams[:3])[0].clamp(0, 1)
        return float(np.mean([psnr(r, t) for r, t in zip(renders, truth)]))

    assert photo_psnr("pixels") > photo_psnr("confidence") + 1.0


def test_a_fit_leaves_its_initial_cloud_as_it_was(one_thread):
    """The splats' positions are a copy of the cloud's: a fit must not move the caller's points (two
    fits from one cloud would start from different places)."""
    import math

    from fvgen.core.cameras import Camera, look_at
    from fvgen.core.pointcloud import PointCloud
    from fvgen.fit import FitViews, fit_gaussians

    W, H = 16, 12
    K = np.array([[15.0, 0, (W - 1) / 2], [0, 15.0, (H - 1) / 2], [0, 0, 1]])
    cams = [Camera(K, look_at(np.array([3 * math.sin(a), 0.0, -3 * math.cos(a)]), np.zeros(3),
                              np.array([0, -1.0, 0])), W, H, f"v{i}.png") for i, a in enumerate((-0.3, 0.3))]
    rng = np.random.default_rng(0)
    init = PointCloud(rng.uniform(-0.5, 0.5, (100, 3)), rng.uniform(0, 1, (100, 3)))
    before = init.xyz.copy()
    splats, _, _ = fit_gaussians(FitViews(torch.rand(2, H, W, 3), cams), init,
                                 FitConf(iterations=10, sh_degree=0, strategy="none"))
    assert np.array_equal(init.xyz, before)
    assert not np.array_equal(splats["means"].numpy(), before)  # the fit did move its own copy
