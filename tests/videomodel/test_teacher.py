"""The teacher (issue 3) on CPU with tiny random models: training, I/O, sampler, data, generate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from fvgen.core.errors import FvgenError  # noqa: E402
from fvgen.videomodel import data as tdata  # noqa: E402
from fvgen.core.datasets import check_not_eval  # noqa: E402
from fvgen.videomodel.configs import PRESETS  # noqa: E402
from fvgen.videomodel.model import TeacherModel, read_model_config, resolve_model, weights_hash  # noqa: E402
from fvgen.videomodel.sample import make_scheduler, run_steps, sample_latents, trailing_timesteps, windows  # noqa: E402

from fvgen.core.datasets import EVAL_ROOT, TRAIN_ROOT  # noqa: E402


def _batch(p, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    F, H, W = p.frames, p.height, p.width
    return {"gt": torch.rand(B, F, 3, H, W, generator=g) * 2 - 1, "warp": torch.rand(B, F, 3, H, W, generator=g) * 2 - 1,
            "mask": (torch.rand(B, F, 1, H, W, generator=g) > 0.4).float(), "ref": torch.rand(B, 3, H, W, generator=g) * 2 - 1}


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(2)
    return TeacherModel.random("tiny", seed=0)


def _fit_fixed_batch(m: TeacherModel, steps: int) -> list[float]:
    """Training losses of ``steps`` Adam steps of the denoiser on one fixed batch and noise draw."""
    from fvgen.videomodel.train.steps import Denoiser, diffusion_loss, encode_batch, make_train_scheduler

    den = Denoiser(m).train()
    opt = torch.optim.Adam(den.parameters(), lr=1e-3)
    sched = make_train_scheduler(m)
    lat = encode_batch(m, _batch(m.preset))
    losses = []
    for _ in range(steps):
        loss = diffusion_loss(m, den, lat, sched, cond_drop=0.0, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_training_lowers_loss_on_fixed_batch(tiny):
    losses = _fit_fixed_batch(TeacherModel.random("tiny", seed=1), 8)
    assert losses[-1] < 0.7 * losses[0], losses


def test_vae_loss_lowers(tiny):
    from fvgen.videomodel.vae import vae_loss

    m = TeacherModel.random("tiny", seed=2)
    x = _batch(m.preset)["gt"].flatten(0, 1)
    opt = torch.optim.Adam(m.vae.parameters(), lr=1e-3)
    first = None
    for _ in range(6):
        loss, _ = vae_loss(m.vae, x, generator=torch.Generator().manual_seed(0))
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first


def test_vae_augmentation_changes_colours_not_range():
    from fvgen.videomodel.vae import augment_frames

    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 24, 40, generator=g) * 2 - 1
    y = augment_frames(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype and y.min() >= -1 and y.max() <= 1
    assert (y - x).abs().mean() > 0.05  # every frame is altered
    assert torch.equal(y, augment_frames(x, torch.Generator().manual_seed(1)))  # seeded
    # a flat colour stays flat (crops and flips move no colour around) but takes a new colour
    flat = torch.zeros(8, 3, 24, 40)
    flat[:, 0] = 0.8
    z = augment_frames(flat, torch.Generator().manual_seed(2))
    assert z.std(dim=(2, 3)).max() < 1e-4 and not torch.allclose(z[:, :, 0, 0], flat[:, :, 0, 0])


def test_save_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m", dtype=None)
    m2 = TeacherModel.from_pretrained(tmp_path / "m")
    for name, mod in tiny.modules().items():
        a, b = mod.state_dict(), m2.modules()[name].state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert m2.preset == tiny.preset
    # the shipping format: bf16, shards <= 15 MB, a content hash that changes with the weights
    tiny.save_pretrained(tmp_path / "b")
    m3 = TeacherModel.from_pretrained(tmp_path / "b")
    k = next(iter(tiny.unet.state_dict()))
    assert torch.equal(m3.unet.state_dict()[k], tiny.unet.state_dict()[k].bfloat16().float())
    assert all(f.stat().st_size <= 15 * 10 ** 6 for f in (tmp_path / "b").rglob("*.safetensors"))
    assert weights_hash(tmp_path / "m") != weights_hash(tmp_path / "b")


def test_sampler_timesteps_are_trailing(tiny):
    for steps in (1, 7, 50):
        ts = [int(t) for t in make_scheduler(tiny, steps).timesteps]
        assert len(ts) == steps
        assert ts[0] == 999  # the terminal (zero-SNR) timestep is sampled
        assert ts == trailing_timesteps(steps)
        assert ts == sorted(ts, reverse=True)
    s = make_scheduler(tiny, 10)
    assert float(s.alphas_cumprod[-1]) == 0.0  # zero terminal SNR
    assert s.config.prediction_type == "v_prediction"


def test_cfg_on_off_shapes(tiny):
    p = tiny.preset
    b = _batch(p, B=1)
    for cfg in (1.0, 3.0):
        out = sample_latents(tiny, b["ref"], b["warp"], b["mask"], steps=2, cfg=cfg,
                             generator=torch.Generator().manual_seed(0))
        assert out.shape == (1, p.frames, 3, p.height, p.width)
        assert torch.isfinite(out).all() and out.abs().max() <= 1


@pytest.mark.parametrize("residual", [False, True])
def test_strength_starts_from_the_noised_fill(tiny, tiny_pixel, monkeypatch, residual):
    """SDEdit: strength s runs the last round(steps * s) trailing timesteps, starting from the fill
    (latent model: its encoding; residual model: a zero correction) noised to the first of them."""
    from fvgen.videomodel.fill import fill_holes

    m = tiny_pixel if residual else tiny
    b = _batch(m.preset, B=1)
    seen = []

    def record(noisy, t, cat, tokens, unet=None):
        seen.append((int(t), noisy.clone()))
        return torch.zeros_like(noisy)

    monkeypatch.setattr(m, "denoise", record)
    steps, strength = 10, 0.3
    sample_latents(m, b["ref"], b["warp"], b["mask"], steps=steps, cfg=1.0, strength=strength,
                   generator=torch.Generator().manual_seed(3))
    assert [t for t, _ in seen] == trailing_timesteps(steps)[-3:] and run_steps(steps, strength) == 3
    ab = float(make_scheduler(m, steps).alphas_cumprod[seen[0][0]])
    shape = seen[0][1].shape
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    if residual:
        start = torch.zeros(shape)
    else:
        B, Fr = b["warp"].shape[:2]
        valid = (b["mask"] > 0.5).float().flatten(0, 1)
        start = m.encode(fill_holes(m.preset.fill, b["warp"].flatten(0, 1), valid)).reshape(shape)
    assert 0 < ab < 1
    assert torch.allclose(seen[0][1], ab ** 0.5 * start + (1 - ab) ** 0.5 * noise, atol=1e-5)
    assert run_steps(50) == 50 and run_steps(4, 0.1) == 1
    with pytest.raises(ValueError):
        run_steps(10, 0.0)


def test_windows_cover_clip():
    assert windows(3, 4) == [(0, 3)]
    w = windows(10, 4)
    assert w[0][0] == 0 and w[-1][1] == 10 and all(b - a == 4 for a, b in w)


def test_paper_preset_loads_external_folder(tmp_path):
    p = replace(PRESETS["tiny"], name="paper", width=512, height=320, frames=16)
    TeacherModel.random(p).save_pretrained(tmp_path / "paper", info={"trained": True})
    m = TeacherModel.from_pretrained(tmp_path / "paper")
    assert (m.preset.width, m.preset.height, m.preset.frames) == (512, 320, 16)
    assert resolve_model(tmp_path / "paper") == tmp_path / "paper"
    x = torch.randn(1, 2, 4, 320 // 4, 512 // 4)
    cat = torch.zeros(1, 2, 9, 80, 128)
    v = m.denoise(x, torch.tensor([999]), cat, torch.zeros(1, 4, 32))
    assert v.shape == x.shape
    with pytest.raises(FvgenError, match="not found"):
        TeacherModel.from_pretrained(tmp_path / "missing")
    with pytest.raises(FvgenError, match="not found"):
        resolve_model(tmp_path / "missing")


def test_generate_refuses_without_weights(tmp_path):
    from fvgen.core.config import with_overrides
    from fvgen.pipeline import generate
    from fvgen.presets import load_preset

    def run(generator):
        generate(tmp_path / "out", with_overrides(load_preset("cpu"), **{"generate.generator": generator}), "cpu")

    with pytest.raises(FvgenError, match="no trained teacher weights"):
        run("teacher")
    with pytest.raises(FvgenError, match="unknown generator"):
        run(str(tmp_path / "nope"))
    TeacherModel.random("tiny").save_pretrained(tmp_path / "untrained")  # random weights are refused too
    with pytest.raises(FvgenError, match="untrained"):
        run(str(tmp_path / "untrained"))
    assert not (tmp_path / "out" / "generate").exists()


def test_eval_scene_guard(tmp_path):
    for name in ("fern", "dtu_scan24", "fox"):
        with pytest.raises(FvgenError, match="evaluation scene"):
            check_not_eval(EVAL_ROOT / name)
        with pytest.raises(FvgenError, match="evaluation scene"):
            check_not_eval(tmp_path / name)
    with pytest.raises(FvgenError, match="evaluation scene"):
        tdata.build(tmp_path / "shards", "tiny", [str(EVAL_ROOT / "fern")], per_scene=1)
    check_not_eval(tmp_path / "some_train_scene")
    imgs = sorted((EVAL_ROOT / "fern").rglob("*.png")) + sorted((EVAL_ROOT / "fern").rglob("*.JPG")) + \
        sorted((EVAL_ROOT / "fern").rglob("*.jpg"))
    if imgs:  # the same pixels under another name are refused too
        copy = tmp_path / "renamed" / "images" / "a.jpg"
        copy.parent.mkdir(parents=True)
        copy.write_bytes(imgs[0].read_bytes())
        with pytest.raises(FvgenError, match="evaluation scene"):
            check_not_eval(copy.parent.parent, [copy])


def test_data_builder_on_real_scene(tmp_path):
    scene = TRAIN_ROOT / "milk_carton"
    if not (scene / "cameras_opencv.json").is_file():
        pytest.skip("shared/datasets-train/milk_carton not present")
    from fvgen.presets import load_preset

    imgs, cams, names = tdata.load_posed_scene(scene, max_size=160)
    assert len(imgs) == len(cams) >= 8 and imgs.shape[-1] == 3
    p = PRESETS["tiny"]
    sparse, clip = tdata.pick_views(len(imgs), p.frames, np.random.default_rng(0), sparse=2)
    assert sparse[0] == clip[0] and len(clip) == p.frames and len(sparse) == 2
    ex = tdata.make_example(imgs, cams, names, sparse, clip, p.width, p.height, load_preset("cpu").priors,
                            source="datasets-train/milk_carton")
    assert ex["gt"].shape == ex["warp"].shape == (p.frames, p.height, p.width, 3)
    assert ex["mask"].shape == (p.frames, p.height, p.width) and ex["ref"].shape == (p.height, p.width, 3)
    cov = ex["mask"].astype(float).mean() / 255
    assert 0.01 < cov < 0.99  # sparse-view clouds leave holes, and cover something
    assert ex["mask"][0].mean() / 255 >= cov - 0.05  # the first frame is an input view
    assert 5.0 < ex["meta"]["warp_psnr"] < 40.0
    tdata.save_example(tmp_path / "e.npz", ex)
    back = tdata.load_example(tmp_path / "e.npz")
    assert np.array_equal(back["mask"], ex["mask"]) and back["meta"]["clip"] == ex["meta"]["clip"]
    assert np.abs(back["gt"].astype(int) - ex["gt"]).mean() < 3  # JPEG q92


def test_draw_new_views_never_repeats_a_draw():
    made: set = set()
    rng = np.random.default_rng(0)
    draws = [tdata.draw_new_views(16, 16, rng, made, tries=50) for _ in range(200)]  # one clip position only
    got = [(tuple(s), tuple(c)) for s, c in (d for d in draws if d is not None)]
    assert len(got) == len(set(got)) == len(made) > 2
    assert draws[-1] is None  # exhausted: the builder skips instead of writing a duplicate
    assert all(c in (tuple(range(16)), tuple(range(15, -1, -1))) for _, c in got)


def test_warp_psnr_scores_covered_pixels_only():
    g = np.random.default_rng(0)
    gt = g.uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    masks = [np.zeros((8, 8), bool) for _ in range(4)]
    assert tdata.warp_psnr(list(gt), masks, gt) is None  # nothing covered
    masks[1][2:5, 2:5] = True
    frames = gt.copy()
    frames[~np.stack(masks)] = 0.0  # holes are black: they must not count
    frames[1][2:5, 2:5] += 0.1
    assert abs(tdata.warp_psnr(list(frames), masks, gt * 255) - 20.0) < 1e-3  # uint8-range truth too


def test_build_skips_untrustworthy_warps(tmp_path):
    from fvgen.presets import load_preset
    from fvgen.videomodel.configs import PRESETS as P

    cpu = load_preset("cpu").priors
    kept = tdata.build(tmp_path / "a", preset="tiny", scenes=[], per_scene=0, procedural=1, max_size=128, seed=1,
                       priors=cpu, log=lambda m: None)
    assert len(kept) == 1 and tdata.load_example(kept[0])["meta"]["warp_psnr"] > 0
    assert P["tiny"].frames == len(tdata.load_example(kept[0])["gt"])
    none = tdata.build(tmp_path / "b", preset="tiny", scenes=[], per_scene=0, procedural=1, max_size=128, seed=1,
                       priors=cpu, min_warp_psnr=99.0, retries=0, log=lambda m: None)
    assert none == []


def test_path_order_follows_the_capture_path():
    from fvgen.core.cameras import Camera, look_at

    K = [[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]]
    angles = np.linspace(0, 1.5, 12)  # an arc of cameras around the origin
    cams = [Camera(K, look_at(np.array([3 * np.sin(a), 0.2, 3 * np.cos(a)]), np.zeros(3), np.array([0.0, -1.0, 0.0])),
                   64, 48, name=f"IMG_{i}.jpg") for i, a in enumerate(angles)]
    shuffled = [cams[i] for i in (3, 11, 0, 7, 5, 1, 9, 2, 10, 4, 8, 6)]  # e.g. files listed by name
    order = tdata.path_order(shuffled)
    names = [shuffled[i].name for i in order]
    expect = [c.name for c in cams]
    assert names == expect or names == expect[::-1]


def test_pick_views_keeps_inputs_on_the_clip_path():
    rng = np.random.default_rng(3)
    for _ in range(50):
        sparse, clip = tdata.pick_views(40, 16, rng)
        assert sparse[0] == clip[0] and set(sparse) <= set(clip) and len(set(sparse)) == len(sparse)
        assert all(abs(b - a) == 1 for a, b in zip(clip, clip[1:]))
        pos = sorted(clip.index(v) for v in sparse)  # inputs apart: neighbouring frames fit any depth
        assert len(sparse) >= 2 and all(b - a >= 4 for a, b in zip(pos, pos[1:]))
        c = tdata.clip_from(sparse[-1], 40, 16, 1, rng)
        assert c is not None and c[0] == sparse[-1] and len(c) == 16 and all(0 <= i < 40 for i in c)
    assert tdata.clip_from(20, 30, 16, 2, rng) is None  # a long scene: neither direction fits from frame 20
    short = tdata.clip_from(5, 10, 16, 1, rng)  # a scene shorter than a clip: there and back
    assert len(short) == 16 and short[0] == 5 and all(abs(b - a) == 1 for a, b in zip(short, short[1:]))


def test_sample_video_failure_does_not_stop_training(tmp_path, monkeypatch):
    import fvgen.core.video
    from fvgen.videomodel.train import train_teacher

    def broken(*a, **k):
        raise RuntimeError("no ffmpeg here")

    monkeypatch.setattr(fvgen.core.video, "write_mp4", broken)
    _fake_shards(tmp_path / "shards", 4, PRESETS["tiny"])
    r = train_teacher("tiny", tmp_path / "run", data=(str(tmp_path / "shards"),), vae_steps=1, unet_steps=2,
                      sample_every=1)
    assert r["status"] == "done" and r["step"] == 2
    assert (tmp_path / "run" / "samples" / "step_0000001.png").is_file()
    assert not list((tmp_path / "run" / "samples").glob(".*tmp*"))
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("sample video not written" in x.get("warning", "") for x in log)


def _fake_shards(folder: Path, n: int, p, source: str = "procedural/test", first: int = 0) -> None:
    rng = np.random.default_rng(first)
    for i in range(first, first + n):
        gt = rng.integers(0, 255, (p.frames, p.height, p.width, 3), dtype=np.uint8)
        mask = (rng.random((p.frames, p.height, p.width)) > 0.3).astype(np.uint8) * 255
        tdata.save_example(folder / f"ex{i}.npz", {"gt": gt, "warp": gt * (mask[..., None] > 0), "mask": mask,
                                                   "ref": gt[0], "meta": {"source": source}})


def test_example_bank_matches_to_tensors(tmp_path):
    p = PRESETS["tiny"]
    _fake_shards(tmp_path / "s", 3, p)
    bank = tdata.ExampleBank([tmp_path / "s"], p.frames)
    assert len(bank) == 3
    b = bank.batch([2, 0], flip=torch.tensor([True, False]))
    for j, (i, flip) in enumerate(((2, True), (0, False))):
        ref = tdata.to_tensors(tdata.load_example(bank.files[i]), p.frames, flip=flip)
        for k in ("gt", "warp", "mask", "ref"):
            assert b[k][j].shape == ref[k].shape
            assert torch.allclose(b[k][j], ref[k], atol=1e-6), k


def test_example_bank_caches_the_fill(tmp_path):
    """A residual preset's bank makes each warp's fill once; batches hand it out (flipped with the
    rest), equal to the fill of the batch's own warp up to uint8 rounding."""
    from fvgen.videomodel.fill import fill_holes

    p = PRESETS["tiny-pixel"]
    _fake_shards(tmp_path / "s", 3, p)
    bank = tdata.ExampleBank([tmp_path / "s"], p.frames, fill=p.fill)
    b = bank.batch([2, 0], flip=torch.tensor([True, False]))
    B, Fr = b["warp"].shape[:2]
    ref = fill_holes(p.fill, b["warp"].flatten(0, 1), (b["mask"].flatten(0, 1) > 0.5).float()).reshape(b["warp"].shape)
    assert (b["fill"] - ref).abs().max() <= 2.5 / 255  # [-1, 1] units: one uint8 step is 2/255
    assert "fill" not in tdata.ExampleBank([tmp_path / "s"], p.frames).batch([0])


def test_colour_augment_transforms_a_clip_consistently(tmp_path):
    """One colour transform per clip, the same for gt, warp, reference and the cached fill, which
    stays the fill of the transformed warp; a training run with it goes through."""
    from fvgen.videomodel.fill import fill_holes
    from fvgen.videomodel.train import train_teacher
    from fvgen.videomodel.train.steps import colour_augment

    p = PRESETS["tiny-pixel"]
    _fake_shards(tmp_path / "s", 4, p)
    b = tdata.ExampleBank([tmp_path / "s"], p.frames, fill=p.fill).batch([0, 1, 2, 3])
    a = colour_augment(b, 0.3, torch.Generator().manual_seed(0))
    assert torch.allclose(a["ref"], a["gt"][:, 0], atol=1e-6)  # the fake shards' reference is frame 0
    assert torch.equal(a["mask"], b["mask"]) and not torch.allclose(a["gt"], b["gt"])
    valid = (a["mask"].flatten(0, 1) > 0.5).float()
    refill = fill_holes(p.fill, a["warp"].flatten(0, 1), valid).reshape(a["warp"].shape)
    assert (a["fill"] - refill).abs().max() < 4 / 255  # uint8 rounding of the cached fill, times the gain
    # the transform is affine per clip: gt and its transform are exactly linearly related per channel
    x, y = b["gt"][1].permute(1, 0, 2, 3).reshape(3, -1), a["gt"][1].permute(1, 0, 2, 3).reshape(3, -1)
    corr = torch.corrcoef(torch.cat([x, y]))[3:, :3].abs().amax(1)
    assert torch.all(corr > 0.999)
    # inversion (x -> 1 - x in [0, 1] units, -x in [-1, 1]): the cached fill is still the fill
    inv = colour_augment(b, 0.0, torch.Generator().manual_seed(1), invert=1.0)
    for k in ("gt", "warp", "ref", "fill"):  # up to the channel order, which half the clips shuffle
        assert torch.allclose((-inv[k]).sort(dim=-3).values, b[k].sort(dim=-3).values, atol=1e-6)
    refill = fill_holes(p.fill, inv["warp"].flatten(0, 1), valid).reshape(inv["warp"].shape)
    assert (inv["fill"] - refill).abs().max() < 2 / 255
    kept = colour_augment(b, 0.0, torch.Generator().manual_seed(1), invert=0.0)
    assert torch.allclose(kept["gt"].sort(dim=-3).values, b["gt"].sort(dim=-3).values, atol=1e-6)
    r = train_teacher("tiny-pixel", tmp_path / "run", data=(str(tmp_path / "s"),), unet_steps=2, sample_every=0,
                      colour_augment=0.2, colour_invert=0.5)
    assert r["status"] == "done"


def test_lr_schedule_warms_up_then_decays_to_its_floor():
    from fvgen.videomodel.configs import TrainConf
    from fvgen.videomodel.train.steps import lr_at

    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1) and lr_at(9, 1.0, 10, 100) == 1.0
    assert lr_at(99, 1.0, 10, 100) == 1.0  # constant after the warmup
    cos = [lr_at(s, 1.0, 10, 100, "cosine", 0.2) for s in range(150)]
    assert cos[10] == 1.0 and cos[55] == pytest.approx(0.6) and cos[100] == pytest.approx(0.2) and cos[149] == cos[100]
    assert all(a >= b for a, b in zip(cos[10:], cos[11:]))  # never rises after the warmup
    with pytest.raises(FvgenError, match="lr_schedule"):  # an unknown name stops at the config
        TrainConf(lr_schedule="linear")


def test_train_config_files_chain_their_bases(tmp_path):
    """A TOML config may start from another TOML (relative to itself), so a variant repeats only what it
    changes; the two widths of issue 18 differ in their name and preset alone."""
    import dataclasses

    from fvgen.videomodel.configs import load_train_config

    repo = Path(__file__).resolve().parents[2] / "configs"
    wide, narrow = (load_train_config(str(repo / f)) for f in ("teacher_embedded_curve.toml",
                                                               "teacher_embedded_narrow.toml"))
    differ = {f.name for f in dataclasses.fields(wide) if getattr(wide, f.name) != getattr(narrow, f.name)}
    assert differ == {"name", "preset"} and narrow.preset == "embedded-narrow"
    (tmp_path / "a.toml").write_text('base = "tiny"\nunet_steps = 7\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.toml").write_text('base = "../a.toml"\nbatch_size = 3\n')
    b = load_train_config(str(tmp_path / "sub" / "b.toml"), warmup=5)
    assert (b.preset, b.unet_steps, b.batch_size, b.warmup, b.name) == ("tiny", 7, 3, 5, "b")
    (tmp_path / "c.toml").write_text('base = "d.toml"\n')
    (tmp_path / "d.toml").write_text('base = "c.toml"\n')
    with pytest.raises(FvgenError, match="comes back to itself"):
        load_train_config(str(tmp_path / "c.toml"))
    (tmp_path / "e.toml").write_text('base = "huge"\n')
    with pytest.raises(FvgenError, match="base must be one of"):
        load_train_config(str(tmp_path / "e.toml"))


def test_narrow_preset_is_the_embedded_model_at_half_width():
    from fvgen.videomodel.configs import get_preset

    wide, narrow = TeacherModel.random("embedded"), TeacherModel.random("embedded-narrow")
    count = lambda m: sum(p.numel() for p in m.unet.parameters())  # noqa: E731
    assert 0.2 < count(narrow) / count(wide) < 0.3
    same = ("width", "height", "frames", "space", "patch", "residual", "fill", "prediction")
    assert all(getattr(get_preset("embedded"), k) == getattr(get_preset("embedded-narrow"), k) for k in same)


def test_held_out_source_is_scored_not_trained(tmp_path):
    from fvgen.videomodel.train import train_teacher

    p = PRESETS["tiny"]
    _fake_shards(tmp_path / "shards", 4, p)
    _fake_shards(tmp_path / "shards", 2, p, source="datasets-train/held", first=4)
    with pytest.raises(FvgenError, match="source filter"):
        tdata.ExampleBank([tmp_path / "shards"], p.frames, source_filter=lambda src: "nowhere" in src)
    r = train_teacher("tiny", tmp_path / "run", data=(str(tmp_path / "shards"),), vae_steps=2, unet_steps=2,
                      sample_every=0, val_source="datasets-train/held")
    assert r["status"] == "done"
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    data = [x for x in log if x.get("event") == "data"][0]
    assert data["examples"] == 4 and data["held_out"] == 2
    vals = [x for x in log if "val_psnr" in x or "val_loss" in x]
    assert {x["phase"] for x in vals} == {"vae", "unet"}
    assert all(np.isfinite(x.get("val_psnr", x.get("val_loss"))) for x in vals)


def test_train_teacher_resume_and_budget(tmp_path):
    from fvgen.videomodel.train import train_teacher

    _fake_shards(tmp_path / "shards", 4, PRESETS["tiny"])
    data = (str(tmp_path / "shards"),)
    r = train_teacher("tiny", tmp_path / "run", data=data, vae_steps=2, unet_steps=3, sample_every=3,
                      vae_augment=True)
    assert r["status"] == "done" and r["phase"] == "unet" and r["step"] == 3
    _, meta = read_model_config(tmp_path / "run" / "model")
    assert meta["trained"] is True and meta["unet_steps"] == 3 and meta["ema"] is True
    assert (tmp_path / "run" / "samples" / "step_0000003.mp4").is_file()
    assert all(f.stat().st_size <= 16 * 2 ** 20 for f in (tmp_path / "run").rglob("*") if f.is_file())
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(x.get("phase") == "vae" for x in log) and any(x.get("phase") == "unet" for x in log)
    state = json.loads((tmp_path / "run" / "ckpt" / "state.json").read_text())
    r = train_teacher("tiny", tmp_path / "run", data=data, vae_steps=2, unet_steps=5, sample_every=0)
    assert r["step"] == 5  # resumed, not restarted
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log if x.get("phase") == "unet" and "loss" in x][-2:] == [4, 5]
    assert (tmp_path / "run" / "ckpt" / "optim" / "optim.json").is_file() and state["step"] == 3
    # a time budget: checkpoint after the first step and report "paused"
    r = train_teacher("tiny", tmp_path / "run2", data=data, max_minutes=1e-6, vae_steps=3, unet_steps=3)
    assert r["status"] == "paused" and r["phase"] == "vae" and r["step"] == 1
    b = train_teacher("tiny", tmp_path / "bench", benchmark=1)
    assert b["samples_per_s"] > 0


@pytest.mark.parametrize("config", ["tiny", "tiny-pixel"])
def test_generate_stage_end_to_end(tmp_path, config):
    """A tiny *trained* (a few steps) model through `generate`, latent and pixel-space residual:
    files, cameras, the cache."""
    from fvgen.core.cameras import look_at, Camera
    from fvgen.core.config import with_overrides
    from fvgen.presets import load_preset
    from fvgen.core.images import save_image
    from fvgen.core.pointcloud import PointCloud
    from fvgen.priors.prior import Priors
    from fvgen.pipeline import generate
    from fvgen.videomodel.train import train_teacher

    _fake_shards(tmp_path / "shards", 2, PRESETS[config])
    r = train_teacher(config, tmp_path / "run", data=(str(tmp_path / "shards"),), vae_steps=1, unet_steps=1,
                      sample_every=0)
    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    K = [[60, 0, 39.5], [0, 60, 29.5], [0, 0, 1]]
    cams = [Camera(K, look_at(np.array([x, 0.0, -3.0]), np.zeros(3), np.array([0.0, -1.0, 0.0])), 80, 60,
                   name=f"v{i}.png") for i, x in enumerate((-0.5, 0.0, 0.5))]
    Priors(cams, PointCloud(rng.uniform(-1, 1, (3000, 3)), rng.random((3000, 3)))).save(out / "priors")
    for c in cams:
        save_image(out / "priors" / "images" / c.name, rng.random((60, 80, 3)))
    (out / "priors" / "stage.json").write_text(json.dumps({"key": "test", "figures": {}}))

    def interp5(steps, strength=1.0):
        return with_overrides(load_preset("cpu"), **{"generate.generator": r["model"], "generate.trajectory": "interp",
                                                     "generate.views": 5, "generate.steps": steps,
                                                     "generate.strength": strength})

    res = generate(out, interp5(2), device="cpu")
    assert res.status == "computed"
    assert len(list((res.path / "rgb").glob("*.png"))) == 5
    for f in ("rgb.mp4", "compare.mp4", "cameras.json", "transforms.json"):
        assert (res.path / f).is_file()
    assert len(list((res.path / "mask").glob("*.png"))) == 5  # the views' confidence for the fit
    again = generate(out, interp5(2), device="cpu")
    assert again.status == "cached"
    other = generate(out, interp5(3), device="cpu")
    assert other.status == "computed"  # steps are part of the key
    sdedit = generate(out, interp5(3, 0.5), device="cpu")
    assert sdedit.status == "computed" and sdedit.key != other.key  # so is the strength
    with pytest.raises(FvgenError, match="--strength"):
        interp5(3, 0.0)


def test_biharmonic_baseline_fills_holes():
    from fvgen.videomodel.fill import biharmonic_fill
    from fvgen.core.metrics import clip_metrics

    yy, xx = np.mgrid[0:48, 0:64] / 64.0
    img = np.stack([xx, yy, 0.5 * (xx + yy)], -1).astype(np.float32)
    mask = np.ones((48, 64), bool)
    mask[10:20, 20:40] = False
    filled = biharmonic_fill(img * mask[..., None], mask)
    assert np.abs(filled - img)[~mask].mean() < 0.02
    m = clip_metrics([filled], [img], [mask.astype(np.float32)])
    warp = clip_metrics([img * mask[..., None]], [img], [mask.astype(np.float32)])
    assert m["psnr_holes"] > warp["psnr_holes"] + 10 and 0 < m["hole_fraction"] < 1


def test_push_pull_fill_keeps_valid_pixels_and_fills_smoothly():
    from fvgen.videomodel.fill import push_pull_fill

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 37), torch.linspace(0, 1, 53), indexing="ij")
    img = torch.stack([xx, yy, 0.5 * (xx + yy)])[None]  # odd sizes: ceil-mode pooling
    mask = torch.ones(1, 1, 37, 53)
    mask[..., 10:22, 15:35] = 0
    filled = push_pull_fill(img * mask, mask)
    assert torch.equal(filled[mask.expand_as(img) > 0], img[mask.expand_as(img) > 0])
    hole = mask.expand_as(img) == 0
    # push-pull blends the surrounding colours (it does not extrapolate a gradient as biharmonic does)
    assert (filled - img)[hole].abs().mean() < 0.1
    assert (img * mask - img)[hole].abs().mean() > 0.3
    flat = torch.full((2, 3, 16, 24), 0.3)
    sparse = (torch.rand(2, 1, 16, 24, generator=torch.Generator().manual_seed(0)) > 0.9).float()
    assert torch.allclose(push_pull_fill(flat * sparse, sparse), flat, atol=1e-6)  # one colour stays that colour
    assert torch.equal(push_pull_fill(flat, torch.zeros(2, 1, 16, 24)), torch.zeros_like(flat))


def _laplace_solve(img: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Oracle: the harmonic fill by a sparse direct solve (scipy), reflecting borders: each unknown
    pixel equals the mean of its in-frame 4-neighbours."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    H, W = known.shape
    idx = -np.ones((H, W), int)
    unk = np.argwhere(~known)
    idx[~known] = np.arange(len(unk))
    A = lil_matrix((len(unk), len(unk)))
    b = np.zeros((len(unk), img.shape[-1]))
    for k, (y, x) in enumerate(unk):
        nb = [(y + dy, x + dx) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)) if 0 <= y + dy < H and 0 <= x + dx < W]
        A[k, k] = len(nb)
        for yy, xx in nb:
            if known[yy, xx]:
                b[k] += img[yy, xx]
            else:
                A[k, idx[yy, xx]] -= 1
    out = img.copy()
    out[~known] = spsolve(A.tocsr(), b)
    return out


def test_harmonic_fill_matches_a_sparse_solve_and_keeps_ramps():
    from fvgen.videomodel.fill import fill_holes, harmonic_fill

    rng = np.random.default_rng(0)
    img = rng.random((23, 31, 3))
    known = rng.random((23, 31)) > 0.7
    known[5:15, 8:25] = False  # a large hole as well as scattered ones
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    m = torch.from_numpy(known.astype(np.float32))[None, None]
    out = harmonic_fill(t, m, iters=400)[0].permute(1, 2, 0).numpy()
    assert np.abs(out - _laplace_solve(img, known)).max() < 1e-3
    assert torch.equal(harmonic_fill(t, m)[m.expand_as(t) > 0], t[m.expand_as(t) > 0])  # seen pixels untouched
    # a linear ramp is harmonic: an interior hole is filled with the ramp itself, already at the default sweeps
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    ramp = torch.stack([xx, yy, 0.3 * xx + 0.5 * yy])[None]
    hole = torch.ones(1, 1, 48, 64)
    hole[..., 10:38, 12:50] = 0
    assert (harmonic_fill(ramp * hole, hole) - ramp).abs().max() < 0.01
    with pytest.raises(ValueError, match="unknown fill"):
        fill_holes("bilinear", ramp, hole)


def test_sor_sweeps_update_only_their_colour_bit_for_bit():
    """The in-place sweep is exactly the masked update it replaces (the teacher's conditioning must not move)."""
    import torch.nn.functional as F

    from fvgen.videomodel.fill import _red_black, _sor

    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 3, 21, 34, generator=g)
    known = (torch.rand(2, 1, 21, 34, generator=g) > 0.6).expand_as(u)
    colours = _red_black(known)
    ref = u.clone()
    for _ in range(5):
        for c in colours:
            p = F.pad(ref, (1, 1, 1, 1), mode="replicate")
            avg = (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) * 0.25
            ref = torch.where(c, ref + 1.9 * (avg - ref), ref)
    before = u.clone()
    out = _sor(u, colours, 5, 1.9)
    assert torch.equal(out, ref) and torch.equal(u, before)  # exact, and the input is left alone
    assert torch.equal(out[known], u[known]) and not torch.equal(out, u)


def test_fusable_sweep_is_the_masked_update_and_cpu_fills_stay_eager():
    """The out-of-place sweep torch.compile fuses is the same update; on CPU tensors compiled_sweeps
    changes nothing (bit for bit) and the block restores the eager sweeps after it."""
    import torch.nn.functional as F

    from fvgen.videomodel import fill
    from fvgen.videomodel.fill import _red_black, _sweep, compiled_sweeps, harmonic_fill

    g = torch.Generator().manual_seed(1)
    u = torch.rand(2, 3, 19, 26, generator=g)
    known = (torch.rand(2, 1, 19, 26, generator=g) > 0.6).expand_as(u)
    red, _ = _red_black(known)
    p = F.pad(u, (1, 1, 1, 1), mode="replicate")
    avg = (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) * 0.25
    assert torch.allclose(_sweep(u, red.float() * 1.9), torch.where(red, u + 1.9 * (avg - u), u), atol=1e-6)
    m = known[:, :1].float()
    eager = harmonic_fill(u, m)
    with compiled_sweeps():
        assert torch.equal(harmonic_fill(u, m), eager)  # CPU tensors: the eager sweeps
    assert fill._fused_sweep is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused sweeps run on CUDA only")
def test_fused_sweeps_fill_as_the_eager_ones_on_cuda():
    from fvgen.videomodel import fill
    from fvgen.videomodel.fill import compiled_sweeps, harmonic_fill

    g = torch.Generator().manual_seed(2)
    img = torch.rand(4, 3, 160, 256, generator=g).cuda()
    m = (torch.rand(4, 1, 160, 256, generator=g) > 0.5).float().cuda()
    eager = harmonic_fill(img, m)
    with compiled_sweeps():
        assert fill._fused_sweep is not None
        fused = harmonic_fill(img, m)
        again = harmonic_fill(img[:2, :, :96, :128], m[:2, :, :96, :128])  # another size: no new failure
    assert (fused - eager).abs().max() < 1e-4
    assert (again - harmonic_fill(img[:2, :, :96, :128], m[:2, :, :96, :128])).abs().max() < 1e-4


@pytest.fixture(scope="module")
def tiny_pixel():
    return TeacherModel.random("tiny-pixel", seed=0)


def test_pixel_space_is_lossless_and_residual_targets_the_fill(tiny_pixel):
    from fvgen.videomodel.fill import fill_holes
    from fvgen.videomodel.train.steps import encode_batch

    m = tiny_pixel
    assert m.vae is None and "vae" not in m.modules()
    b = _batch(m.preset)
    assert torch.equal(m.decode(m.encode(b["gt"])), b["gt"])
    lat = encode_batch(m, b)
    B, Fr = b["gt"].shape[:2]
    flat = lambda t: t.flatten(0, 1)  # noqa: E731
    fill = fill_holes(m.preset.fill, flat(b["warp"]), (flat(b["mask"]) > 0.5).float()).reshape(b["gt"].shape)
    assert torch.allclose(m.decode(lat["x0"]), b["gt"] - fill, atol=1e-5)  # the target is the correction
    c = m.preset.latent_channels
    assert lat["cat"].shape[2] == m.preset.cond_channels - c and lat["ref"].shape[1] == c


def test_pixel_residual_model_trains_saves_and_samples(tiny_pixel, tmp_path):
    m = TeacherModel.random("tiny-pixel", seed=1)
    losses = _fit_fixed_batch(m, 16)
    assert losses[-1] < 0.7 * losses[0], losses
    m.save_pretrained(tmp_path / "px", dtype=None)
    assert not (tmp_path / "px" / "vae").exists()
    m2 = TeacherModel.from_pretrained(tmp_path / "px")
    assert m2.vae is None and m2.preset == m.preset
    b = _batch(m.preset, B=1)
    for cfg in (1.0, 3.0):
        out = sample_latents(m2, b["ref"], b["warp"], b["mask"], steps=2, cfg=cfg, generator=torch.Generator().manual_seed(0))
        assert out.shape == (1, m.preset.frames, 3, m.preset.height, m.preset.width) and out.abs().max() <= 1


def test_residual_output_is_the_fill_at_output_size_plus_the_correction(tiny_pixel, monkeypatch):
    """A zero correction returns the preset's fill made at the *output* size (the warp's valid
    pixels exactly), not a resized copy; a constant correction shifts every pixel by it."""
    from fvgen.videomodel import sample as tsample
    from fvgen.videomodel.fill import fill_holes

    rng = np.random.default_rng(0)
    frames = [rng.random((45, 70, 3)).astype(np.float32) * 0.5 + 0.25 for _ in range(3)]
    masks = [rng.random((45, 70)) > 0.5 for _ in range(3)]
    p = tiny_pixel.preset
    for shift in (0.0, 0.2):
        def fake(model, ref, warp, mask, *a, correction=False, **k):
            assert correction
            return torch.full((1, warp.shape[1], 3, p.height, p.width), shift)
        monkeypatch.setattr(tsample, "sample_latents", fake)
        out = tsample.generate_clip(tiny_pixel, lambda i: frames[0], frames, masks, steps=1)
        for f, mk, o in zip(frames, masks, out):
            t = torch.from_numpy(f).permute(2, 0, 1)[None]
            valid = torch.from_numpy(mk.astype(np.float32))[None, None]
            fill = fill_holes(p.fill, t, valid)[0].permute(1, 2, 0).numpy()
            assert np.allclose(o, fill + shift / 2, atol=1e-5)  # [-1, 1] units: half in [0, 1]


def test_train_teacher_pixel_preset_skips_the_autoencoder(tmp_path):
    from fvgen.videomodel.train import train_teacher

    _fake_shards(tmp_path / "shards", 4, PRESETS["tiny-pixel"])
    r = train_teacher("tiny-pixel", tmp_path / "run", data=(str(tmp_path / "shards"),), vae_steps=5, unet_steps=2,
                      sample_every=2)
    assert r["status"] == "done" and r["phase"] == "unet" and r["step"] == 2
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert not any(x.get("phase") == "vae" for x in log)
    m = TeacherModel.from_pretrained(Path(r["model"]))
    assert m.vae is None and m.info["vae_steps"] == 0


def test_x0_prediction_loss_is_the_v_loss_of_its_implied_v(tiny_pixel):
    """An x0-predicting model is trained on |v_hat - v|^2 with v_hat implied by its x0_hat (the
    diffusers v for the same noise), except where sigma_t^2 < 0.05, whose weight is capped."""
    from fvgen.videomodel.train.steps import diffusion_loss, encode_batch, make_train_scheduler

    m = tiny_pixel
    assert m.preset.prediction == "x0" and m.scheduler_config["prediction_type"] == "sample"
    sched = make_train_scheduler(m)
    lat = encode_batch(m, _batch(m.preset))
    x0_hat = lat["x0"] + 0.1 * torch.randn(lat["x0"].shape, generator=torch.Generator().manual_seed(5))

    class Fixed(torch.nn.Module):
        def forward(self, noisy, t, cat, ref, keep):
            self.seen = (noisy, t)
            return x0_hat

    den = Fixed()
    loss = diffusion_loss(m, den, lat, sched, 0.0, torch.Generator().manual_seed(3))
    noisy, t = den.seen
    a = sched.alphas_cumprod[t].reshape(-1, 1, 1, 1, 1)
    v_hat = (a.sqrt() * noisy - x0_hat) / (1 - a).sqrt()
    noise = (noisy - a.sqrt() * lat["x0"]) / (1 - a).sqrt()
    v = sched.get_velocity(lat["x0"], noise, t)
    assert (1 - a).min() < 0.05 < (1 - a).max()  # this draw has one capped and one plain timestep
    cap = (1 - a) / (1 - a).clamp_min(0.05)
    assert torch.allclose(loss, (cap * (v_hat - v) ** 2).mean(), rtol=1e-3)
