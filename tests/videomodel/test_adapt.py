"""Test-time adaptation (fvgen.videomodel.adapt): low-rank adapters merge exactly, the loop on a tiny
model lowers the leave-one-out loss, the input model stays as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fvgen.core.cameras import Camera, look_at
from fvgen.core.errors import FvgenError
from fvgen.videomodel import adapt as ad


def test_low_rank_adapters_start_at_zero_and_merge_exactly():
    torch.manual_seed(0)
    model = nn.ModuleDict({"conv_in": nn.Conv2d(3, 6, 3, padding=1), "attn": nn.ModuleDict({"to_q": nn.Linear(5, 7)})})
    x, y = torch.randn(2, 3, 9, 9), torch.randn(4, 5)
    ref_c, ref_l = model["conv_in"](x), model["attn"]["to_q"](y)
    added = ad.add_low_rank(model, rank=2, alpha=2.0, targets=("conv_in", "to_q"))
    assert len(added) == 2 and isinstance(model["conv_in"], ad.LowRank)
    assert torch.equal(model["conv_in"](x), ref_c) and torch.equal(model["attn"]["to_q"](y), ref_l)  # up = 0
    for a in added:
        nn.init.normal_(a.up.weight)
    wrapped_c, wrapped_l = model["conv_in"](x), model["attn"]["to_q"](y)
    assert not torch.allclose(wrapped_c, ref_c)
    assert ad.merge_low_rank(model) == 2 and isinstance(model["conv_in"], nn.Conv2d)
    assert torch.allclose(model["conv_in"](x), wrapped_c, atol=1e-5)
    assert torch.allclose(model["attn"]["to_q"](y), wrapped_l, atol=1e-5)


def scene(n_views: int = 3, W: int = 64, H: int = 40):
    """A textured room corner as a dense cloud, seen by ``n_views`` cameras on an arc: images drawn
    by the point renderer, and the cloud as the prior."""
    from fvgen.core.pointcloud import PointCloud
    from fvgen.priors.prior import Priors
    from fvgen.render.points import render_points

    g = np.random.default_rng(0)
    u, v = np.meshgrid(np.linspace(-1.5, 1.5, 220), np.linspace(-1, 1, 150))
    back = np.stack([u, v, np.full_like(u, 3.0)], -1).reshape(-1, 3)
    floor = np.stack([u, np.full_like(u, 1.0), 1.5 + (v + 1) * 0.75], -1).reshape(-1, 3)
    box = np.stack([0.3 * u - 0.2, 0.3 * v + 0.3, np.full_like(u, 2.0)], -1).reshape(-1, 3)
    xyz = np.concatenate([back, floor, box]).astype(np.float32)
    rgb = np.clip(0.5 + 0.3 * np.sin(xyz[:, :1] * np.array([[7.0, 5.0, 3.0]]) + xyz[:, 1:2] * 4)
                  + 0.05 * g.standard_normal((len(xyz), 3)), 0, 1).astype(np.float32)
    K = [[60.0, 0, (W - 1) / 2], [0, 60.0, (H - 1) / 2], [0, 0, 1]]
    cams, imgs = [], []
    for k, a in enumerate(np.linspace(-0.25, 0.25, n_views)):
        eye = np.array([np.sin(a) * 2.5, 0.0, 2.5 - np.cos(a) * 2.5])
        c = Camera(K, look_at(eye, np.array([0.0, 0.3, 2.5]), np.array([0.0, -1.0, 0.0])), W, H, name=f"v{k}.png")
        img, _, _ = render_points(xyz, rgb, c.K, c.w2c, W, H, radius_px=1.5, background=0.5)
        cams.append(c)
        imgs.append(img.numpy())
    return np.stack(imgs), cams, Priors(cams, PointCloud(xyz, rgb), None, {})


def test_leave_one_out_pairs_hold_out_the_view(one_thread):
    imgs, cams, pri = scene()
    pairs = ad.leave_one_out_pairs(imgs, cams, pri, ad.AdaptConf(prior="visibility"))
    assert [p["view"] for p in pairs] == [0, 1, 2]
    for p in pairs:
        assert np.array_equal(p["gt"], imgs[p["view"]]) and not np.array_equal(p["ref"], p["gt"])
        assert 0.3 < p["coverage"] < 1.0  # the others miss part of each view: there are holes to learn from
    with pytest.raises(FvgenError, match="3 or more"):
        ad.leave_one_out_cloud(imgs[:2], cams[:2], pri, 0, "mvs")
    clips = ad.pair_clips(pairs[0], 3, 4, 32, 16, ad.AdaptConf(), np.random.default_rng(0))
    assert clips[0]["warp"].shape == (4, 3, 16, 32) and clips[0]["mask"].shape == (4, 1, 16, 32)
    assert clips[0]["ref"].shape == (3, 16, 32) and -1 <= float(clips[0]["gt"].min()) <= float(clips[0]["gt"].max()) <= 1
    assert not torch.equal(clips[0]["gt"][0], clips[0]["gt"][-1])  # the crop window moves


def test_adaptation_lowers_the_leave_one_out_loss(one_thread):
    from fvgen.videomodel.model import TeacherModel

    imgs, cams, pri = scene()
    model = TeacherModel.random("tiny-pixel", seed=0)
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    pairs = ad.leave_one_out_pairs(imgs, cams, pri, ad.AdaptConf(prior="visibility"))
    conf = ad.AdaptConf(steps=10, lr=3e-3, rank=4, batch=2, clips_per_view=2, prior="visibility")
    tuned, rep = ad.adapt(model, imgs, cams, pri, conf, pairs=pairs)
    assert rep["loss_after"] < 0.95 * rep["loss_before"], rep  # measured: 0.37 -> 0.32 after 8 steps
    assert rep["trainable"] < 0.1 * rep["weights"] and rep["merged_layers"] > 10
    assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in before.items())  # the input model is untouched
    assert set(tuned.unet.state_dict()) == set(before)  # merged: the same architecture, loadable as any teacher
    _, rep0 = ad.adapt(model, imgs, cams, pri, ad.AdaptConf(steps=0), pairs=pairs)
    assert rep0["loss_after"] == rep0["loss_before"] == rep["loss_before"]  # the same held clips, no change
    full, rep_full = ad.adapt(model, imgs, cams, pri, ad.AdaptConf(steps=1, rank=0, batch=1), pairs=pairs)
    assert rep_full["trainable"] == rep_full["weights"]  # rank 0: every UNet and reference-encoder weight
    assert any(not torch.equal(v, full.unet.state_dict()[k]) for k, v in before.items())
