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


def test_bad_generated_settings_are_one_line_errors():
    for bad in ({"input_share": 1.5}, {"generated_start": -0.1}, {"generated_weight": -1.0},
                {"generated_start": 0.8, "generated_stop": 0.2}):
        with pytest.raises(FvgenError, match="fit."):
            FitConf(**bad)


def test_photo_only_fit_key_ignores_generated_settings(tmp_path):
    from fvgen.core.cache import StageResult
    from fvgen.stages.fit import ExtraViews, key

    pri = StageResult("priors", "k", tmp_path, "cached", 0.0, {}, "r")
    a, b = FitConf(), dataclasses.replace(FitConf(), generated_weight=0.9, input_share=0.2)
    assert key(a, pri, [], "cpu") == key(b, pri, [], "cpu")
    extra = [ExtraViews(tmp_path, "gen.1")]
    assert key(a, pri, extra, "cpu") != key(b, pri, extra, "cpu")
