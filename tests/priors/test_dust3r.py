"""DUSt3R backend: network, checkpoint loading, scene graphs, preprocessing, global alignment,
and the whole backend end to end with a tiny random-weight network (all on CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fvgen.core.cameras import look_at, rotation_angle_deg
from fvgen.core.errors import FvgenError
from fvgen.core.images import LoadedImages
from fvgen.priors.prior import Priors
from fvgen.priors.dust3r import Dust3rConf, dust3r_priors, priors_from_model, voxel_downsample
from fvgen.priors.dust3r.alignment import global_align, procrustes, quat_to_rot, rot_to_quat
from fvgen.priors.dust3r.checkpoint import load_model, load_state_dict_strict, read_checkpoint, save_checkpoint
from fvgen.priors.dust3r.inference import infer_pairs, network_geometry, preprocess
from fvgen.priors.dust3r.model import Dust3rModelConfig, RoPE2D, build_model, count_parameters
from fvgen.priors.dust3r.pairs import is_connected, make_pairs


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(Dust3rModelConfig.tiny()).eval()


def _images(n=3, w=80, h=60, seed=0):
    rng = np.random.default_rng(seed)
    low = rng.random((n, 3, 4, 5))
    img = torch.nn.functional.interpolate(torch.tensor(low, dtype=torch.float32), size=(h, w), mode="bilinear")
    arr = img.permute(0, 2, 3, 1).numpy().clip(0, 1)
    return LoadedImages([f"v{i}.png" for i in range(n)], arr.astype(np.float32), [(w, h)] * n)


# ----------------------------------------------------------------------------- network pieces


def test_configs_and_parameter_count():
    cfg = Dust3rModelConfig.large_512()
    assert (cfg.enc_embed_dim, cfg.enc_depth, cfg.dec_embed_dim, cfg.dec_depth) == (1024, 24, 768, 12)
    assert cfg.hooks == (0, 6, 9, 12)
    m = build_model(cfg, "meta")
    assert count_parameters(m) == 571_170_440
    with pytest.raises(Exception):
        cfg.enc_depth = 3  # frozen
    with pytest.raises(ValueError):
        Dust3rModelConfig(enc_embed_dim=30, enc_num_heads=3)


def test_rope_is_relative():
    rope = RoPE2D(100.0)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 1, 16, generator=g), torch.randn(1, 2, 1, 16, generator=g)

    def score(pq, pk):
        return (rope(q, torch.tensor([[pq]])) * rope(k, torch.tensor([[pk]]))).sum(-1)

    a = score((2, 3), (5, 1))
    b = score((7, 9), (10, 7))  # same offset
    c = score((2, 3), (5, 2))
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)


def test_tiny_forward_shapes_portrait_and_landscape(tiny):
    for h, w in ((48, 64), (64, 48)):
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            p1, c1, p2, c2 = tiny(x, x.flip(0))
        assert p1.shape == p2.shape == (2, h, w, 3) and c1.shape == c2.shape == (2, h, w)
        assert (c1 >= 1).all() and torch.isfinite(p1).all()


# ----------------------------------------------------------------------------- checkpoints


def test_tiny_checkpoint_roundtrip_and_errors(tiny, tmp_path):
    cfg = Dust3rModelConfig.tiny()
    path = tmp_path / "tiny.pth"
    save_checkpoint(tiny, path, args="AsymmetricCroCo3DStereo(head_type='dpt', output_mode='pts3d', "
                                      "enc_embed_dim=32, enc_depth=2, dec_embed_dim=32, dec_depth=4)")
    model, info = load_model(path, cfg)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        for a, b in zip(tiny(x, x.roll(1, -1)), model(x, x.roll(1, -1))):
            assert torch.equal(a, b)
    assert info["keys"] == len(tiny.state_dict())

    # missing, empty, truncated, not a checkpoint, wrong layout
    with pytest.raises(FvgenError, match="not found"):
        load_model(tmp_path / "nope.pth", cfg)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(FvgenError, match="empty"):
        load_model(tmp_path / "empty.pth", cfg)
    data = path.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(FvgenError, match="truncated") as e:
        load_model(tmp_path / "trunc.pth", cfg)
    assert "\n" not in str(e.value)
    (tmp_path / "junk.pth").write_bytes(b"hello, this is not a checkpoint" * 10)
    with pytest.raises(FvgenError, match="truncated, corrupt or not a torch checkpoint"):
        load_model(tmp_path / "junk.pth", cfg)
    torch.save({"state": 1}, tmp_path / "odd.pth")
    with pytest.raises(FvgenError, match="not a DUSt3R checkpoint"):
        load_model(tmp_path / "odd.pth", cfg)
    # a different published model is named as such
    save_checkpoint(tiny, tmp_path / "lin.pth", args="AsymmetricCroCo3DStereo(head_type='linear', enc_embed_dim=32)")
    with pytest.raises(FvgenError, match="different model.*head_type=linear"):
        load_model(tmp_path / "lin.pth", cfg)
    # numpy extras next to the weights (epoch, scores) load without trusting the pickle
    torch.save({"model": tiny.state_dict(), "args": "", "epoch": np.int64(3), "best": np.float64(0.5)},
               tmp_path / "extras.pth")
    load_model(tmp_path / "extras.pth", cfg)
    # a bare state dict and DDP / alias spellings load too
    sd = {f"module.{k}": v for k, v in tiny.state_dict().items()}
    sd["module.downstream_head1.dpt.scratch.layer_rn.0.weight"] = sd["module.downstream_head1.dpt.scratch.layer1_rn.weight"]
    sd["module.mask_token"] = torch.zeros(1, 1, 32)
    torch.save(sd, tmp_path / "bare.pth")
    model2, info2 = load_model(tmp_path / "bare.pth", cfg)
    assert info2["aliases_folded"] == 2
    # safetensors
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(tmp_path / "m.safetensors"))
    load_model(tmp_path / "m.safetensors", cfg)


def test_strict_loader_reports_all_problems_in_one_line(tiny):
    sd = dict(tiny.state_dict())
    del sd["enc_norm.weight"]
    sd["extra.weight"] = torch.zeros(3)
    sd["decoder_embed.bias"] = torch.zeros(7)
    with pytest.raises(FvgenError) as e:
        load_state_dict_strict(build_model(Dust3rModelConfig.tiny(), "meta"), sd, "ckpt.pth")
    msg = str(e.value)
    assert "\n" not in msg
    assert "1 missing (enc_norm.weight)" in msg and "1 unexpected (extra.weight)" in msg
    assert "1 shape mismatch (decoder_embed.bias [7] vs [32])" in msg


@pytest.fixture(scope="module")
def full_model():
    """The full-size network, once per module, with cheap deterministic weights."""
    m = build_model(Dust3rModelConfig.large_512(), "meta")
    m = m.to_empty(device="cpu")
    with torch.no_grad():  # a distinct constant per tensor (fast) and a random corner: swaps would show
        for k, p in enumerate(m.parameters()):
            p.fill_(1e-4 * (k + 1))
            p.view(-1)[:64].uniform_(-1, 1)
    return m.eval()


def test_full_size_state_dict_save_reload_strict(full_model, tmp_path):
    sd = full_model.state_dict()
    spots = {  # shapes of the published checkpoint
        "patch_embed.proj.weight": (1024, 3, 16, 16),
        "enc_blocks.23.attn.qkv.weight": (3072, 1024),
        "enc_blocks.23.mlp.fc1.weight": (4096, 1024),
        "decoder_embed.weight": (768, 1024),
        "dec_blocks.11.cross_attn.projk.weight": (768, 768),
        "dec_blocks2.11.norm_y.weight": (768,),
        "dec_norm.weight": (768,),
        "downstream_head1.dpt.act_postprocess.0.1.weight": (96, 96, 4, 4),
        "downstream_head2.dpt.act_postprocess.3.1.weight": (768, 768, 3, 3),
        "downstream_head1.dpt.scratch.layer4_rn.weight": (256, 768, 3, 3),
        "downstream_head2.dpt.scratch.refinenet4.resConfUnit1.conv2.weight": (256, 256, 3, 3),
        "downstream_head2.dpt.head.4.weight": (4, 128, 1, 1),
    }
    for k, shape in spots.items():
        assert tuple(sd[k].shape) == shape, k
    assert len(sd) == 1000 and not any("pos_embed" in k or "mask_token" in k for k in sd)
    path = tmp_path / "DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth"
    save_checkpoint(full_model, path)
    raw, args = read_checkpoint(path)
    assert args.startswith("AsymmetricCroCo3DStereo(") and len(raw) == 1000
    del raw
    model, info = load_model(path)  # strict, weights_only, onto a meta-built network
    sd2 = model.state_dict()
    assert info["keys"] == 1000 and set(sd2) == set(sd)
    for k in ("patch_embed.proj.weight", "dec_blocks2.7.mlp.fc2.bias", "downstream_head2.dpt.head.0.weight"):
        assert torch.equal(sd[k], sd2[k])
    # a corrupted copy of the full state dict is refused with one line
    bad = dict(sd)
    bad.pop("dec_blocks2.3.norm3.bias")
    with pytest.raises(FvgenError, match=r"^\S+ does not match the DUSt3R network: 1 missing \(dec_blocks2.3.norm3.bias\)$"):
        load_state_dict_strict(build_model(Dust3rModelConfig.large_512(), "meta"), bad, "x.pth")


def test_conf_validation():
    with pytest.raises(FvgenError, match="scene graph"):
        Dust3rConf(scene_graph="ring")
    with pytest.raises(FvgenError, match="batch_size"):
        Dust3rConf(batch_size=0)
    with pytest.raises(FvgenError, match="multiple of 16"):
        Dust3rConf(image_size=500)
    assert hash(Dust3rConf()) == hash(Dust3rConf())  # frozen, usable in cache keys


def test_dust3r_priors_needs_a_checkpoint(monkeypatch, tmp_path):
    monkeypatch.delenv("FVGEN_DUST3R_CHECKPOINT", raising=False)
    with pytest.raises(FvgenError, match="needs a checkpoint"):
        dust3r_priors(_images(2), Dust3rConf(), None, "cpu")
    with pytest.raises(FvgenError, match="not found"):
        dust3r_priors(_images(2), Dust3rConf(), tmp_path / "missing.pth", "cpu")


# ----------------------------------------------------------------------------- pairs, preprocessing


def test_scene_graphs():
    assert len(make_pairs(5, "complete")) == 20
    sw = make_pairs(6, "swin", winsize=2)
    assert len(sw) == 24 and (5, 0) in sw and (0, 5) in sw and is_connected(6, sw)
    assert len(make_pairs(6, "swin-2", cyclic=False)) == 18
    assert len(make_pairs(3, "swin-5")) == 6  # window larger than the set: complete
    one = make_pairs(5, "oneref-2")
    assert len(one) == 8 and all(2 in p for p in one)
    for p in (sw, one):
        assert all((j, i) in p for i, j in p)
    for bad in ("star", "swin-x", "oneref-9"):
        with pytest.raises(FvgenError):
            make_pairs(5, bad)
    with pytest.raises(FvgenError):
        make_pairs(1)


def test_preprocessing_geometry():
    g = network_geometry(1024, 768)
    assert g.net_size == (512, 384) and g.crop_offset == (0, 0)
    assert network_geometry(768, 1024).net_size == (384, 512)
    assert network_geometry(1920, 1080).net_size == (512, 288)
    sq = network_geometry(600, 600)
    assert sq.net_size == (512, 384) and sq.crop_offset == (0, 64)
    assert network_geometry(600, 600, square_ok=True).net_size == (512, 512)
    g = network_geometry(1000, 700)  # 512 x 358 -> cropped to 352
    assert g.net_size == (512, 352) and g.crop_offset == (0, 3)
    K = g.intrinsics(400.0)
    assert K[0, 2] == pytest.approx((1000 - 1) / 2, abs=1e-9)
    assert K[1, 2] == pytest.approx((700 - 1) / 2, abs=0.01)
    assert K[0, 0] == pytest.approx(400.0 * 1000 / 512) and K[1, 1] == pytest.approx(400.0 * 700 / 358)
    x, rgb, g = preprocess(np.random.default_rng(0).random((2, 700, 1000, 3)).astype(np.float32))
    assert x.shape == (2, 3, 352, 512) and x.min() >= -1 and x.max() <= 1 and rgb.shape == (2, 352, 512, 3)


def test_inference_batches_match_and_stride(tiny):
    x, _, _ = preprocess(_images(3).images, 64)
    pairs = make_pairs(3)
    a = infer_pairs(tiny, x, pairs, batch_size=1)
    b = infer_pairs(tiny, x, pairs, batch_size=4, stride=2)
    assert a.pts_i.shape == (6, 48, 64, 3) and b.pts_i.shape == (6, 24, 32, 3)
    assert torch.allclose(a.pts_j[:, ::2, ::2], b.pts_j, atol=1e-5)
    assert torch.allclose(a.conf_i[:, ::2, ::2], b.conf_i, atol=1e-5)
    assert b.pixel_grid()[33].tolist() == [2.0, 2.0]


# ----------------------------------------------------------------------------- alignment


def test_procrustes_and_quaternions():
    g = torch.Generator().manual_seed(1)
    R = quat_to_rot(torch.randn(5, 4, generator=g, dtype=torch.float64))
    assert torch.allclose(quat_to_rot(rot_to_quat(R)), R, atol=1e-10)
    src = torch.randn(5, 50, 3, generator=g, dtype=torch.float64)
    s0 = torch.rand(5, dtype=torch.float64) + 0.5
    t0 = torch.randn(5, 3, dtype=torch.float64)
    dst = s0[:, None, None] * src @ R.transpose(1, 2) + t0[:, None]
    s, R2, t = procrustes(src, dst, torch.rand(5, 50, dtype=torch.float64) + 0.1)
    assert torch.allclose(s, s0) and torch.allclose(R2, R, atol=1e-9) and torch.allclose(t, t0, atol=1e-9)


def _raycast(c2w, f, W, H):
    """Camera-frame points of a scene: a unit sphere at the origin, a floor and a back wall."""
    v, u = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    d = np.stack([(u - (W - 1) / 2) / f, (v - (H - 1) / 2) / f, np.ones((H, W))], -1).reshape(-1, 3)
    dw, o = d @ c2w[:3, :3].T, c2w[:3, 3]
    b, a, cc = dw @ o, (dw * dw).sum(1), o @ o - 1.0
    disc = b * b - a * cc
    ts = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    tf = np.where(dw[:, 1] > 1e-6, (1.2 - o[1]) / np.maximum(dw[:, 1], 1e-6), np.inf)
    tb = np.where(dw[:, 2] > 1e-6, (2.5 - o[2]) / np.maximum(dw[:, 2], 1e-6), np.inf)
    t = np.minimum(ts, np.minimum(tf, tb))
    t = np.where(np.isfinite(t), t, 20.0)
    return d * t[:, None]


def _synthetic_pairs(n=4, W=48, H=36, seed=0, noise=0.005):
    """Pairwise pointmaps as DUSt3R would give them: both views in the first view's camera frame,
    with per-pair scale, a small per-pair rigid perturbation, noise, and low-confidence outliers."""
    rng = np.random.default_rng(seed)
    cams, fs = [], []
    for k in range(n):
        ang = math.radians(-30 + 60 * k / max(1, n - 1))
        eye = np.array([4 * math.sin(ang), -0.8 + 0.2 * rng.standard_normal(), -4 * math.cos(ang)])
        cams.append(look_at(eye, np.zeros(3), np.array([0, -1.0, 0])))
        fs.append(42.0 * (1 + 0.1 * rng.standard_normal()))
    world = [_raycast(c, f, W, H) @ c[:3, :3].T + c[:3, 3] for c, f in zip(cams, fs)]
    pairs = make_pairs(n, "complete")
    E, P = len(pairs), W * H
    Xi, Xj, Ci, Cj = np.zeros((E, P, 3)), np.zeros((E, P, 3)), np.zeros((E, P)), np.zeros((E, P))
    for e, (i, j) in enumerate(pairs):
        w2c = np.linalg.inv(cams[i])
        ax = rng.standard_normal(3)
        ax /= np.linalg.norm(ax)
        th = math.radians(2.0) * rng.random()
        Kx = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
        Rp = np.eye(3) + math.sin(th) * Kx + (1 - math.cos(th)) * Kx @ Kx
        tp, s = 0.05 * rng.standard_normal(3), math.exp(rng.uniform(-0.7, 0.7))
        for X, C, v in ((Xi, Ci, i), (Xj, Cj, j)):
            pc = world[v] @ w2c[:3, :3].T + w2c[:3, 3]
            pc = pc + noise * np.linalg.norm(pc, axis=1, keepdims=True) * rng.standard_normal(pc.shape)
            c = 1 + 4 * rng.random(P)
            out = rng.random(P) < 0.03
            pc[out] += rng.standard_normal((out.sum(), 3))
            c[out] = 1.05
            X[e], C[e] = s * (pc @ Rp.T + tp), c
    v, u = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    pix = np.stack([u.ravel(), v.ravel()], 1)
    t = [torch.tensor(a, dtype=torch.float32) for a in (Xi, Ci, Xj, Cj)]
    return cams, np.array(fs), pairs, t, pix, (W, H)


def test_global_alignment_recovers_poses_and_focals():
    cams, fs, pairs, (Xi, Ci, Xj, Cj), pix, size = _synthetic_pairs()
    res = global_align(len(cams), pairs, Xi, Ci, Xj, Cj, pix, size, niter=300)
    assert res.info["loss_final"] < res.info["loss_init"]
    assert np.abs(res.focal / fs - 1).max() < 0.02
    for i in range(len(cams)):
        for j in range(i + 1, len(cams)):
            rel_e = np.linalg.inv(res.c2w[j]) @ res.c2w[i]
            rel_t = np.linalg.inv(cams[j]) @ cams[i]
            assert rotation_angle_deg(rel_e[:3, :3] @ rel_t[:3, :3].T) < 1.0
            cos = rel_e[:3, 3] @ rel_t[:3, 3] / np.linalg.norm(rel_e[:3, 3]) / np.linalg.norm(rel_t[:3, 3])
            assert math.degrees(math.acos(min(1.0, cos))) < 1.0
    # the world pointmaps are the scene up to one similarity
    gt = np.concatenate([_raycast(c, f, *size) @ c[:3, :3].T + c[:3, 3] for c, f in zip(cams, fs)])
    est = res.pts.reshape(-1, 3)
    s, R, t = procrustes(torch.tensor(est)[None], torch.tensor(gt)[None], torch.ones(1, len(gt)))
    err = np.linalg.norm((s[0] * torch.tensor(est, dtype=torch.float64) @ R[0].T + t[0]).numpy() - gt, axis=1)
    assert np.median(err) < 0.02


def test_voxel_downsample():
    xyz = np.array([[0, 0, 0], [0.01, 0, 0], [1, 1, 1]], np.float32)
    rgb = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], np.float32)
    x, c, f = voxel_downsample(xyz, rgb, np.array([1, 3, 2], np.float32), 0.1)
    assert len(x) == 2
    k = int(np.argmin(x[:, 0]))
    assert np.allclose(x[k], [0.005, 0, 0]) and np.allclose(c[k], [0.5, 0, 0.5]) and f[k] == 3


# ----------------------------------------------------------------------------- end to end


def test_tiny_backend_end_to_end(tiny, tmp_path):
    imgs = _images(3, 80, 60)
    conf = Dust3rConf(image_size=64, niter=30, min_conf=1.0)
    pri = priors_from_model(imgs, conf, tiny, "cpu")
    assert len(pri.cameras) == 3 and [c.name for c in pri.cameras] == imgs.names
    for c in pri.cameras:
        assert (c.width, c.height) == (80, 60)
        assert c.K[0, 2] == pytest.approx(39.5) and c.K[1, 2] == pytest.approx(29.5)
        assert c.fx > 0 and np.isfinite(c.c2w).all()
        assert np.allclose(c.c2w[:3, :3] @ c.c2w[:3, :3].T, np.eye(3), atol=1e-5)
    assert np.allclose(pri.cameras[0].c2w, np.eye(4), atol=1e-6)
    assert len(pri.points) > 50 and np.isfinite(pri.points.xyz).all()
    assert pri.points.rgb.min() >= 0 and pri.points.rgb.max() <= 1 and pri.points.conf is not None
    assert pri.info["backend"] == "dust3r" and pri.info["pairs"] == 6
    pri.save(tmp_path / "priors")
    back = Priors.load(tmp_path / "priors")
    assert len(back.cameras) == 3 and len(back.points) == len(pri.points)
    # swin graph and one shared focal
    pri2 = priors_from_model(_images(4), Dust3rConf(image_size=64, niter=5, scene_graph="swin-1",
                                                     shared_focal=True), tiny, "cpu")
    assert pri2.info["pairs"] == 8 and len({round(c.fx, 6) for c in pri2.cameras}) == 1


def test_dust3r_priors_from_a_checkpoint_file(tiny, tmp_path):
    path = tmp_path / "tiny.pth"
    save_checkpoint(tiny, path, args="")
    pri = dust3r_priors(_images(2, 64, 64), Dust3rConf(image_size=64, niter=10), path, "cpu",
                        model_cfg=Dust3rModelConfig.tiny())
    assert pri.info["checkpoint"] == str(path) and pri.info["network_size"] == [64, 48]  # square -> 4:3 crop
    assert all(c.K[1, 2] == pytest.approx(31.5) for c in pri.cameras)


def test_benchmark_script_tiny_smoke(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "dust3r_bench", Path(__file__).resolve().parents[2] / "benchmarks" / "dust3r_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--tiny", "--sizes", "3", "--niter", "3", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["graph"] for r in data["results"]] == ["complete", "swin-3-cyclic"]
    assert all(r["outputs_finite"] and r["inference_s"] > 0 for r in data["results"])
