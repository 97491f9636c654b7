"""Distilling our ViewCrafter-compatible model (issue 21, item 3) on CPU with a tiny random
ViewCrafter saved as a ViewCrafter model folder: v -> x0 against the scheduler, the student's chain
against the pipeline's sampler, the encoder features, the data at the model's size, one update of
each stage, the CLI run end to end (stages, resume, export) and the exported student as a
generator; a missing checkpoint is one line."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from fvgen.core.errors import FvgenError  # noqa: E402
from fvgen.videomodel import data as tdata  # noqa: E402
from fvgen.videomodel.distill.networks import student_sample  # noqa: E402
from fvgen.videomodel.distill.teachers import ViewCrafterTeacher, load_teacher  # noqa: E402
from fvgen.videomodel.distill.train import Distiller, load_distill_config, train_distill  # noqa: E402
from fvgen.videomodel.viewcrafter import (  # noqa: E402
    ViewCrafterConditions,
    ViewCrafterConfig,
    ViewCrafterVariant,
    build_networks,
    ddim_sample,
    ddim_step,
    dynamic_rescale_table,
    make_scheduler,
    read_viewcrafter_config,
    save_viewcrafter_folder,
)

VARIANT = ViewCrafterVariant("tiny", 32, 48, 2, 0.7)  # 2 frames of 32x48 (latents 4x6)
SHARD_SIZE = (3, 40, 56)  # frames, height, width of the example shards: cropped and resized to 32x48


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def vc_dir(tmp_path_factory):
    """A tiny random ViewCrafter (zero-initialised layers randomised so every path counts) saved as
    a ViewCrafter model folder, with random prompt tokens."""
    torch.manual_seed(0)
    nets = build_networks(ViewCrafterConfig.tiny(frames=VARIANT.frames))
    g = gen(0)
    for m in nets.values():
        for p in m.parameters():
            if p.ndim and not p.abs().sum():
                p.data = torch.randn(p.shape, generator=g) * 0.05
    d = tmp_path_factory.mktemp("vc") / "teacher"
    save_viewcrafter_folder(d, nets, VARIANT, torch.randn(1, 77, 32, generator=g), torch.randn(1, 77, 32, generator=g),
                            provenance={"trained": False, "note": "tiny random"})
    return d


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vc_shards")
    rng = np.random.default_rng(0)
    F, H, W = SHARD_SIZE
    for i in range(4):
        gt = rng.integers(0, 255, (F, H, W, 3), dtype=np.uint8)
        mask = (rng.random((F, H, W)) > 0.3).astype(np.uint8) * 255
        tdata.save_example(folder / f"ex{i}.npz", {"gt": gt, "warp": gt * (mask[..., None] > 0), "mask": mask,
                                                   "ref": gt[0], "meta": {"source": "procedural/test"}})
    return folder


@pytest.fixture
def teacher(vc_dir, one_thread) -> ViewCrafterTeacher:
    return load_teacher(f"viewcrafter:{vc_dir}", "cpu")


def _batch(B=2, seed=0):
    g = gen(seed)
    F, H, W = SHARD_SIZE
    gt = torch.rand(B, VARIANT.frames, 3, H, W, generator=g) * 2 - 1
    mask = (torch.rand(B, VARIANT.frames, 1, H, W, generator=g) > 0.4).float()
    return {"gt": gt, "warp": gt * mask, "mask": mask, "ref": gt[:, 0]}


class Fixed(torch.nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, *a):
        return self.out


def test_v_to_x0_and_the_noising_are_exact_against_the_scheduler(teacher):
    """x_t = √ᾱ s(t) x0 + √(1-ᾱ) ε (the official dynamic rescale) is the scheduler's add_noise of
    s(t) x0, and the v the scheduler gives for it converts back to x0 exactly, at t = 0, in the
    rescale ramp, past it and at the zero-SNR end."""
    sched = make_scheduler()
    scale = dynamic_rescale_table(VARIANT.base_scale)
    x0 = torch.randn(4, 2, 4, 4, 6, generator=gen(0), dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=gen(1), dtype=torch.float64)
    t = torch.tensor([0, 200, 700, 999])
    s = scale[t].double().reshape(-1, 1, 1, 1, 1)
    xt = teacher.add_noise(x0, noise, t)
    assert torch.allclose(xt, sched.add_noise(s * x0, noise, t), atol=1e-6)
    v = sched.get_velocity(s * x0, noise, t)
    out = teacher.x0_net(Fixed(v))(xt, t, None, None, None)
    assert torch.allclose(out, x0, atol=1e-5)
    # without the rescale it would not be x0 in the ramp (the conversion does use s(t))
    a = sched.alphas_cumprod[t].double().reshape(-1, 1, 1, 1, 1)
    assert not torch.allclose(a.sqrt() * xt - (1 - a).sqrt() * v, x0, atol=1e-2)
    # the student's DDIM step on x0 is the pipeline's (official) step on v, eta 0, with the rescale
    x = torch.randn(1, 2, 4, 4, 6, generator=gen(2))
    for t_, t_prev in ((999, 749), (499, 249), (249, -1)):
        v1 = torch.randn(x.shape, generator=gen(t_))
        ref_prev, _ = ddim_step(sched.alphas_cumprod, v1, t_, t_prev, x, 0.0, None, scale)
        x0_hat = teacher.x0_net(Fixed(v1))(x, torch.tensor([t_]), None, None, None)
        assert torch.allclose(teacher.chain_step(x0_hat, t_, t_prev, x), ref_prev, atol=1e-5), t_


def test_student_chain_is_the_pipelines_4_step_sampler(teacher):
    """Backward simulation feeds the UNet exactly what the ViewCrafter sampler (``ddim_sample``:
    the official DDIM with dynamic rescale; eta 0, guidance 1) feeds it on 999, 749, 499, 249."""
    assert teacher.chain(4) == [999, 749, 499, 249]
    lat = teacher.encode_batch(_batch(B=1))
    calls = []
    unet = teacher.pipe.unet
    hook = unet.register_forward_pre_hook(
        lambda m, args: calls.append((int(torch.as_tensor(args[1]).reshape(-1)[0]), args[0][:, :4].clone(),
                                      args[2].clone())))
    den = teacher.denoiser()
    noise = torch.randn(lat["x0"].shape, generator=gen(5))
    try:
        with torch.no_grad():
            x0, t = student_sample(teacher.x0_net(den), teacher, lat, 4, 3, noise, grad=False)
            ours, calls[:] = list(calls), []
            pipe = teacher.pipe
            conditions = ViewCrafterConditions(lat["cat"].transpose(1, 2), den.context(lat["ref"]), None,
                                               torch.full((1,), VARIANT.fs))
            ddim_sample(lambda x, step: pipe.predict_v(x, step, conditions, guidance_scale=1.0),
                        noise.transpose(1, 2), teacher.chain(4), teacher.sched.alphas_cumprod, teacher.scale, eta=0.0)
    finally:
        hook.remove()
    assert t == 249 and x0.shape == lat["x0"].shape
    assert [c[0] for c in ours] == [c[0] for c in calls] == [999, 749, 499, 249]
    for (_, a, ca), (_, b, cb) in zip(ours, calls):  # [B, C, T, h, w]: the noisy latent, then the context
        assert torch.allclose(a, b, atol=1e-4) and torch.allclose(ca, cb)


def test_real_score_guidance_is_the_official_samplers(teacher):
    """The teacher's guided x0 (default guidance 7.5, rescale 0.7) is the pipeline's guided v
    (``predict_v``, unconditional pass: the empty prompt and the CLIP tokens of a zero image, the
    same render latents) read as x0; guidance 1 is the conditional prediction."""
    from fvgen.videomodel.distill.teachers import x0_from_v

    b = _batch()
    lat = teacher.encode_batch(b)
    ref = teacher.model_clips(b)["ref"]
    pipe = teacher.pipe
    conditions = ViewCrafterConditions(
        lat["cat"].transpose(1, 2), torch.cat([pipe.encode_prompt("Rotating view of a scene", 2), pipe.encode_image(ref)], 1),
        torch.cat([pipe.encode_prompt("", 2), pipe.encode_image(torch.zeros_like(ref))], 1), torch.full((2,), VARIANT.fs))
    x = torch.randn(lat["x0"].shape, generator=gen(0))
    t = torch.tensor([300, 800])
    dd = Distiller(load_distill_config("tiny-viewcrafter", teacher=teacher.spec), teacher)
    assert dd.real_cfg == 7.5 and dd.conf.guidance_rescale == 0.7
    with torch.no_grad():
        for cfg in (7.5, 1.0):
            v = pipe.predict_v(x.transpose(1, 2), t, conditions, cfg, 0.7).transpose(1, 2)
            expect = x0_from_v(v, x, t, teacher.sched.alphas_cumprod, teacher.scale)
            assert torch.allclose(teacher.real_x0(x, t, lat, cfg, 0.7), expect, atol=1e-4), cfg
        cond = teacher.real_x0(x, t, lat, 1.0, 0.7)
        assert not torch.allclose(teacher.real_x0(x, t, lat, 7.5, 0.7), cond, atol=1e-3)


def test_encoder_features_are_the_level_and_middle_outputs(teacher):
    unet = teacher.pipe.unet
    # the tiny UNet: conv_in, res (level 0), downsample, res (level 1); then the middle block
    levels = [unet.input_blocks[1], unet.input_blocks[3], unet.middle_block]
    seen = []
    hooks = [b.register_forward_hook(lambda m, i, o: seen.append(o)) for b in levels]
    x = torch.randn(2, 8, 2, 4, 6, generator=gen(0))
    ctx = torch.randn(2, 77 + 8, 32, generator=gen(1))
    with torch.no_grad():
        unet(x, torch.tensor([300, 700]), ctx, 10)
        for h in hooks:
            h.remove()
        feats = unet.encoder_features(x, torch.tensor([300, 700]), ctx, 10)
    assert [f.shape[1] for f in feats] == list(unet.feature_channels()) == [32, 64, 64]
    assert len(feats) == len(seen) == 3
    for a, b in zip(feats, seen):
        assert a.shape[0] == 2 * 2 and torch.allclose(a, b, atol=1e-5)


def test_batches_are_brought_to_the_model_size_as_the_generator_does(teacher):
    b = _batch()
    b["mask"][:, 1] = 0  # a frame with nothing rendered: black, as the official renders
    m = teacher.model_clips(b)
    assert m["gt"].shape == (2, 2, 3, 32, 48) and m["ref"].shape == (2, 3, 32, 48)
    assert torch.allclose(m["renders"][:, 1], torch.tensor(-1.0), atol=1e-5)
    from fvgen.videomodel.viewcrafter.generate import crop_box

    top, left, h, w = crop_box(40, 56, 32, 48, "crop")
    assert (top, left, h, w) == (1, 0, 37, 56)  # the 56x40 shard frames: cropped to 48:32, then shrunk
    ref = torch.nn.functional.interpolate(b["gt"][:, 0, :, top:top + h, left:left + w], size=(32, 48), mode="bilinear",
                                          antialias=True, align_corners=False).clamp(-1, 1)
    assert torch.allclose(m["gt"][:, 0], ref, atol=1e-6)
    lat = teacher.encode_batch(b)
    assert lat["x0"].shape == lat["cat"].shape == (2, 2, 4, 4, 6) and lat["ref"].shape[:2] == (2, 5)


def test_stage_steps_train_unet_and_resampler_and_leave_the_teacher_alone(vc_dir, teacher):
    conf = load_distill_config("tiny-viewcrafter", teacher=f"viewcrafter:{vc_dir}")
    dd = Distiller(conf, teacher)
    lat = teacher.encode_batch(_batch())
    frozen = {k: v.clone() for k, v in teacher.pipe.unet.state_dict().items()}
    s0 = {k: {n: v.clone() for n, v in m.state_dict().items()} for k, m in dd.student_parts.items()}
    out = dd.gan_step(lat, gen(0), nullcontext)
    assert {"loss_gen", "loss_disc", "d_real", "d_fake"} <= set(out)
    out = dd.dmd_step(lat, gen(1), nullcontext)
    assert {"loss_fake", "loss_dmd", "weight"} <= set(out) and all(np.isfinite(v) for v in out.values())
    assert all(p.grad is None for p in teacher.pipe.unet.parameters())
    assert all(p.grad is None for p in teacher.pipe.image_encoder.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in teacher.pipe.unet.state_dict().items())
    for k, m in dd.student_parts.items():  # the UNet and the resampler both learn
        assert any(not torch.equal(v, s0[k][n]) for n, v in m.state_dict().items()), k


def test_a_missing_viewcrafter_checkpoint_is_one_line(tmp_path, vc_dir):
    from typer.testing import CliRunner

    from fvgen.cli import app

    for spec, msg in ((f"viewcrafter:{tmp_path / 'ViewCrafter_25.ckpt'}", "checkpoint not found"),
                      ("viewcrafter:", "checkpoint not found"),
                      (f"viewcrafter:{tmp_path}", "not a ViewCrafter model folder")):
        with pytest.raises(FvgenError, match=msg) as e:
            train_distill(spec, tmp_path / "o", config="tiny-viewcrafter", data=(str(tmp_path),))
        assert "\n" not in str(e.value) and "viewcrafter:PATH/ViewCrafter_25.ckpt" in str(e.value)
        assert not (tmp_path / "o").exists()
    res = CliRunner().invoke(app, ["train", "distill", "--teacher", f"viewcrafter:{tmp_path / 'nope.ckpt'}",
                                   "--out", str(tmp_path / "o"), "--data", str(tmp_path)])
    lines = res.output.strip().splitlines()
    assert res.exit_code != 0 and len(lines) == 1 and "checkpoint not found" in lines[0], res.output


def _log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def test_cli_distills_a_viewcrafter_teacher_resumes_and_the_student_generates(vc_dir, shards, tmp_path, one_thread):
    from typer.testing import CliRunner

    from fvgen.cli import app
    from fvgen.videomodel.distill.train import DistillRun
    from fvgen.videomodel.generators import GenerateConf, ViewCrafterGenerator, make_generator
    from fvgen.videomodel.train.distributed import Dist
    from fvgen.videomodel.viewcrafter import ImageResampler, ViewCrafterUNet, load_viewcrafter

    run = tmp_path / "run"
    common = ["train", "distill", "--teacher", f"viewcrafter:{vc_dir}", "--out", str(run), "--data", str(shards),
              "--config", "tiny-viewcrafter", "--gan-steps", "2", "--dmd-steps", "3"]
    res = CliRunner().invoke(app, common + ["--stage", "gan"])
    assert res.exit_code == 0, res.output
    state = json.loads((run / "ckpt" / "state.json").read_text())
    assert state["stage"] == "dmd" and state["step"] == 0 and state["config"]["teacher"] == f"viewcrafter:{vc_dir}"
    # a time budget: the DMD stage checkpoints after its first step
    res = CliRunner().invoke(app, common + ["--stage", "dmd", "--max-minutes", "1e-6"])
    assert res.exit_code == 0, res.output
    state = json.loads((run / "ckpt" / "state.json").read_text())
    assert state["stage"] == "dmd" and state["step"] == 1 and state["updates"] == 3
    assert {p.name for p in (run / "ckpt").iterdir()} >= {"student", "fake_unet", "fake_resampler", "ema_unet",
                                                          "ema_resampler", "disc", "optim_student"}
    # the round trip: a resumed run holds exactly the checkpointed weights and optimiser states
    conf = load_distill_config("tiny-viewcrafter", teacher=f"viewcrafter:{vc_dir}", data=(str(shards),),
                               gan_steps=2, dmd_steps=3)
    resumed = DistillRun(conf, run, True, None, Dist())
    saved, _ = load_viewcrafter(run / "ckpt" / "student", device="cpu", dtype=torch.float32)
    for name, net in (("unet", saved.unet), ("resampler", saved.resampler)):
        assert all(torch.equal(a, b) for a, b in zip(resumed.dd.student_parts[name].parameters(), net.parameters()))
    fake = ViewCrafterUNet.from_pretrained(run / "ckpt" / "fake_unet")
    assert all(torch.equal(a, b) for a, b in zip(resumed.dd.fake_parts["unet"].parameters(), fake.parameters()))
    ema = ImageResampler.from_pretrained(run / "ckpt" / "ema_resampler")
    assert all(torch.equal(a, b) for a, b in zip(resumed.dd.ema["resampler"].parameters(), ema.parameters()))
    assert all(len(o.state) > 0 for o in resumed.dd.opt.values())
    resumed.log_f.close()
    r = train_distill(f"viewcrafter:{vc_dir}", run, "all", config="tiny-viewcrafter", data=(str(shards),),
                      gan_steps=2, dmd_steps=3)
    assert r == {"status": "done", "stage": "done", "step": 0, "model": str(run / "model")}
    log = _log(run)
    assert [x["step"] for x in log if x.get("stage") == "gan" and "event" not in x] == [1, 2]
    assert [x["step"] for x in log if x.get("stage") == "dmd" and "event" not in x] == [1, 2, 3]  # resumed
    assert all(np.isfinite(x[k]) for x in log for k in x if k.startswith("loss"))
    assert (run / "samples" / "dmd_0000003.png").is_file()  # warp | student | ground truth at 32x48

    # the student: a ViewCrafter model folder that the ViewCrafter generator runs with 4 steps, CFG 1, eta 0
    variant, _, meta = read_viewcrafter_config(run / "model")
    assert variant == VARIANT and meta["trained"] is True and meta["teacher"] == f"viewcrafter:{vc_dir}"
    assert meta["student"]["steps"] == 4 and meta["student"]["cfg"] == 1.0 and meta["student"]["eta"] == 0.0
    assert meta["student"]["timesteps"] == [999, 749, 499, 249] and meta["student"]["dmd_steps"] == 3
    assert meta["student"]["real_cfg"] == 7.5  # the official guidance, the teacher sampler's own
    assert all(f.stat().st_size <= 15 * 2 ** 20 for f in run.rglob("*.safetensors"))
    for g in (make_generator(GenerateConf(generator="viewcrafter", checkpoint=str(run / "model"))),
              make_generator(GenerateConf(generator=str(run / "model")))):
        assert isinstance(g, ViewCrafterGenerator)
        assert (g.conf.steps, g.guidance, g.eta) == (4, 1.0, 0.0)
    with pytest.raises(FvgenError, match="untrained"):  # the random teacher folder, or a checkpoint's student
        make_generator(GenerateConf(generator=str(vc_dir)))
    g = make_generator(GenerateConf(generator=str(run / "model"), steps=2))
    assert (g.conf.steps, g.guidance) == (2, 3.0)  # steps set: the CFG is the one given (the default)
    rng = np.random.default_rng(1)
    frames = [rng.random((40, 50, 3), dtype=np.float32) for _ in range(2)]
    masks = [np.ones((40, 50), np.float32)] * 2
    calls = []
    out = make_generator(GenerateConf(generator=str(run / "model")))(
        frames, masks, [None] * 2, lambda i: frames[0], progress=lambda i, d: calls.append(i))
    assert len(out) == 2 and out[0].shape == (40, 50, 3) and np.isfinite(out[0]).all()
    assert calls == [1, 2, 3, 4]  # one window, 4 steps
