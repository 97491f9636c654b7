"""The ViewCrafter-compatible model (issue 21) on CPU: official key names and shapes of the
full-size networks (built on ``meta``), strict checkpoint errors, tiny networks end to end, the
sampler against diffusers' DDIM, CFG, the tokenizer, the scene-size entry point."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")


from fvgen.core.errors import FvgenError
from fvgen.videomodel.viewcrafter import (
    VARIANTS,
    CLIPTokenizer,
    ViewCrafterConfig,
    ViewCrafterUNet,
    ViewCrafterVariant,
    build_networks,
    ddim_step,
    dynamic_rescale_table,
    guided_v,
    load_networks,
    make_pipeline,
    make_scheduler,
    official_keys,
    read_checkpoint,
    split_checkpoint,
)
from fvgen.videomodel.viewcrafter.generate import crop_box, viewcrafter_fill
from fvgen.videomodel.viewcrafter.vae import ldm_vae_to_diffusers

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "8408cd5a7ae66b7f6e8cdfda0b3d0c2996f8646d"


def shapes(module) -> dict:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def full_meta():
    return build_networks(ViewCrafterConfig.full(), "meta")


def official_state_dict(base_scale: float = 0.3) -> dict:
    """A fake official checkpoint: every listed tensor on ``meta`` under its official prefix, plus
    real schedule buffers (what the strict loader checks numerically)."""
    keys = official_keys()
    sd = {}
    for group, prefix in keys["prefixes"].items():
        for k, shape in keys["groups"][group].items():
            sd[prefix + k] = torch.empty(shape, device="meta")
    sd["alphas_cumprod"] = make_scheduler().alphas_cumprod.clone()
    sd["scale_arr"] = dynamic_rescale_table(base_scale)
    return sd


# ---- official names and shapes --------------------------------------------------------------------
def test_key_list_names_its_source_and_is_in_sync_with_the_enumerator():
    keys = official_keys()
    assert COMMIT in keys["source"]
    spec = importlib.util.spec_from_file_location("vc_keys", ROOT / "scripts" / "viewcrafter_official_keys.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert json.loads(json.dumps(mod.build())) == keys  # the committed file is what the enumerator writes


def test_full_size_networks_have_exactly_the_official_keys_and_shapes(full_meta):
    groups = official_keys()["groups"]
    assert shapes(full_meta["unet"]) == groups["unet"]
    assert shapes(full_meta["resampler"]) == groups["resampler"]
    assert shapes(full_meta["text_encoder"]) == groups["text"]
    visual = {k[len("visual."):]: v for k, v in groups["image"].items() if k.startswith("visual.")}
    assert shapes(full_meta["image_encoder"]) == visual
    # first stage: every latent-diffusion key maps onto exactly diffusers' AutoencoderKL
    ldm = {k: torch.empty(s, device="meta") for k, s in groups["vae"].items()}
    converted = ldm_vae_to_diffusers(ldm, full_meta["vae"])
    assert len(converted) == len(ldm)
    assert {k: list(v.shape) for k, v in converted.items()} == shapes(full_meta["vae"])
    # spot checks read off the official code, independent of both derivations
    u = groups["unet"]
    assert u["input_blocks.0.0.weight"] == [320, 8, 3, 3]
    assert u["init_attn.0.proj_in.weight"] == [512, 320, 1]  # 8 heads x 64, Conv1d
    assert u["input_blocks.1.0.temopral_conv.conv1.2.weight"] == [320, 320, 3, 1, 1]
    assert u["input_blocks.7.1.transformer_blocks.0.attn2.to_k_ip.weight"] == [1280, 1024]
    assert u["output_blocks.5.3.conv.weight"] == [1280, 1280, 3, 3]
    assert u["fps_embedding.2.weight"] == [1280, 1280]
    assert groups["resampler"]["latents"] == [1, 256, 1024]
    assert groups["image"]["visual.positional_embedding"] == [257, 1280]


def test_full_size_parameter_counts(full_meta):
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in full_meta.items()}
    assert counts["unet"] == 1_438_854_980
    assert counts["resampler"] == 48_787_456
    assert counts["vae"] == 83_653_863


def test_official_checkpoint_loads_strictly_and_tells_the_variant():
    nets, base = load_networks(official_state_dict(0.3), "ViewCrafter_25.ckpt")
    assert base == pytest.approx(0.3)
    assert all(p.is_meta for p in nets["unet"].parameters())
    assert nets["image_encoder"].mean.device == nets["image_encoder"].conv1.weight.device
    assert nets["text_encoder"].attn_mask.shape == (77, 77)


def test_full_size_forward_shapes_on_meta(full_meta):
    """The 1024 model's shapes through every UNet layer (25 frames, 72x128 latents: the shared
    image-token path), without memory; the 512 size is the same code at 40x64."""
    x = torch.empty(1, 8, 25, 72, 128, device="meta")
    ctx = torch.empty(1, 77 + 256, 1024, device="meta")
    assert full_meta["unet"](x, torch.empty(1, device="meta"), ctx).shape == (1, 4, 25, 72, 128)
    assert full_meta["resampler"](torch.empty(1, 257, 1280, device="meta")).shape == (1, 256, 1024)


def test_load_viewcrafter_picks_the_variant(monkeypatch, tmp_path):
    from fvgen.videomodel.viewcrafter import load as vc_load

    files = {"a.ckpt": official_state_dict(0.7), "ViewCrafter_25.ckpt": official_state_dict(0.3)}
    del files["ViewCrafter_25.ckpt"]["scale_arr"]  # no table: the file name tells
    files["model.ckpt"] = dict(files["ViewCrafter_25.ckpt"].items())
    monkeypatch.setattr(vc_load, "read_checkpoint", lambda p: files[Path(p).name])
    pipe, variant = vc_load.load_viewcrafter("a.ckpt", device="meta", require_tokenizer=False)
    assert variant.name == "512" and pipe.base_scale == pytest.approx(0.7) and pipe.tokenizer is None
    assert pipe.model_dtype == torch.bfloat16 and pipe.unet.config.model_channels == 320
    pipe, variant = vc_load.load_viewcrafter("ViewCrafter_25.ckpt", device="meta", require_tokenizer=False)
    assert (variant.name, variant.frames, variant.height, variant.width) == ("1024", 25, 576, 1024)
    assert "not the 1024 model" in one_line_error(
        lambda: vc_load.load_viewcrafter("a.ckpt", variant="1024", device="meta", require_tokenizer=False))
    assert "--variant 512 or 1024" in one_line_error(
        lambda: vc_load.load_viewcrafter("model.ckpt", device="meta", require_tokenizer=False))
    assert "clip-vocab" in one_line_error(lambda: vc_load.load_viewcrafter(
        "a.ckpt", device="meta", clip_vocab=None if importlib.util.find_spec("open_clip") is None else tmp_path / "x"))


# ---- strict loading errors ------------------------------------------------------------------------
def one_line_error(fn) -> str:
    with pytest.raises(FvgenError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_unexpected_and_mis_shaped_keys_are_one_line():
    sd = official_state_dict()
    del sd["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k_ip.weight"]
    msg = one_line_error(lambda: split_checkpoint(sd, "ck.ckpt"))
    assert "1 missing" in msg and "attn2.to_k_ip.weight" in msg and "model.diffusion_model." in msg

    sd = official_state_dict()
    sd["first_stage_model.encoder.conv_in.weight"] = torch.empty(64, 3, 3, 3, device="meta")
    msg = one_line_error(lambda: split_checkpoint(sd, "ck.ckpt"))
    assert "shape mismatch" in msg and "encoder.conv_in.weight [64, 3, 3, 3] vs [128, 3, 3, 3]" in msg

    sd = official_state_dict()
    sd["model_ema.decay"] = torch.tensor(0.999)
    assert "unexpected (model_ema.decay)" in one_line_error(lambda: split_checkpoint(sd, "ck.ckpt"))

    sd = official_state_dict()  # the official loader's rename is accepted
    sd = {k.replace("fps_embedding", "framestride_embed"): v for k, v in sd.items()}
    assert "fps_embedding.0.weight" in split_checkpoint(sd, "ck.ckpt").unet

    sd = official_state_dict()
    sd["alphas_cumprod"] = torch.linspace(0.99, 0.01, 1000)
    assert "noise schedule" in one_line_error(lambda: load_networks(sd, "ck.ckpt"))


def test_our_network_must_take_the_tensors_exactly():
    sd = official_state_dict()
    small = ViewCrafterConfig(unet={"model_channels": 64})
    msg = one_line_error(lambda: load_networks(sd, "ck.ckpt", small))
    assert "model.diffusion_model.* does not match our network" in msg and "shape mismatch" in msg


def test_checkpoint_file_errors(tmp_path):
    assert "--checkpoint" in one_line_error(lambda: read_checkpoint(None))
    msg = one_line_error(lambda: read_checkpoint(tmp_path / "ViewCrafter_25.ckpt"))
    assert "not found" in msg and "--checkpoint PATH/ViewCrafter_25.ckpt" in msg
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert "empty" in one_line_error(lambda: read_checkpoint(tmp_path / "empty.ckpt"))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint at all")
    assert "corrupt" in one_line_error(lambda: read_checkpoint(tmp_path / "junk.ckpt"))
    torch.save({"epoch": 3, "optimizer": {}}, tmp_path / "other.ckpt")
    assert "expected a 'state_dict'" in one_line_error(lambda: read_checkpoint(tmp_path / "other.ckpt"))
    torch.save({"state_dict": {"image_proj_model.latents": torch.zeros(1, 256, 1024)}}, tmp_path / "part.ckpt")
    sd = read_checkpoint(tmp_path / "part.ckpt")
    assert list(sd) == ["image_proj_model.latents"]
    assert "missing" in one_line_error(lambda: split_checkpoint(sd, "part.ckpt"))


# ---- tiny networks end to end ---------------------------------------------------------------------
def randomise(nets: dict, seed: int = 0) -> dict:
    """Break the zero initialisations so every path contributes to the output."""
    g = torch.Generator().manual_seed(seed)
    for m in nets.values():
        for p in m.parameters():
            if p.ndim and not p.abs().sum():
                p.data = torch.randn(p.shape, generator=g) * 0.05
    return nets


@pytest.fixture
def tiny(one_thread):
    torch.manual_seed(0)
    return randomise(build_networks(ViewCrafterConfig.tiny(frames=2)))


def test_tiny_unet_denoise_step_context_paths_and_roundtrip(tiny, tmp_path):
    unet: ViewCrafterUNet = tiny["unet"].eval()
    x = torch.randn(2, 8, 2, 8, 12)
    per_frame = torch.randn(2, 77 + 2 * 4, 32)  # 4 image tokens per frame
    with torch.no_grad():
        v = unet(x, torch.tensor([999, 10]), per_frame, torch.tensor([10, 10]))
        assert v.shape == (2, 4, 2, 8, 12) and torch.isfinite(v).all()
        # 77 + T * 4 tokens: each frame gets the text and its own 4 image tokens; otherwise all of them
        ctx = unet.frame_context(per_frame, 2)
        assert ctx.shape == (4, 81, 32) and torch.equal(ctx[1, 77:], per_frame[0, 81:85])
        shared = unet.frame_context(per_frame[:, :80], 2)
        assert shared.shape == (4, 80, 32) and torch.equal(shared[1], per_frame[0, :80])
        # fps conditioning and the timestep change the prediction
        assert not torch.allclose(v, unet(x, torch.tensor([999, 10]), per_frame, torch.tensor([3, 3])))
        assert not torch.allclose(v, unet(x, torch.tensor([500, 10]), per_frame, 10))
    unet.save_pretrained(tmp_path / "unet")
    again = ViewCrafterUNet.from_pretrained(tmp_path / "unet").eval()
    assert again.config.image_tokens_per_frame == 4
    with torch.no_grad():
        assert torch.equal(again(x, torch.tensor([999, 10]), per_frame, 10), unet(x, torch.tensor([999, 10]), per_frame, 10))
    with pytest.raises(ValueError, match="multiple"):
        unet(torch.randn(1, 8, 2, 7, 12), 5, per_frame[:1])


def test_tiny_pipeline_two_steps_with_cfg(tiny, tmp_path):
    vocab = tiny_vocab(tmp_path)
    pipe = make_pipeline(tiny, VARIANTS["512"], tokenizer=CLIPTokenizer(vocab))
    g = torch.Generator().manual_seed(0)
    renders = torch.rand(1, 3, 2, 32, 48, generator=g) * 2 - 1
    image = renders[:, :, 0]
    out = pipe(renders, image, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    assert out.shape == renders.shape and torch.isfinite(out).all() and out.abs().max() <= 1
    same = pipe(renders, image, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    other = pipe(renders, image, num_inference_steps=2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, same) and not torch.allclose(out, other)
    # CFG batched (one call of batch 2) and sequential give the same latents
    kw = {"num_inference_steps": 2, "output_type": "latent", "eta": 0.0}
    a = pipe(renders, image, generator=torch.Generator().manual_seed(3), batch_cfg=True, **kw)
    b = pipe(renders, image, generator=torch.Generator().manual_seed(3), batch_cfg=False, **kw)
    assert a.shape == (1, 4, 2, 4, 6) and torch.allclose(a, b, atol=1e-3)  # float32 sums in another order, x7.5
    # explicit timesteps; guidance off needs no negative prompt
    emb = torch.randn(1, 77, 32)
    c = pipe(renders, image, timesteps=[999, 500, 20], guidance_scale=1.0, prompt_embeds=emb, output_type="latent",
             generator=torch.Generator().manual_seed(0))
    assert c.shape == a.shape
    with pytest.raises(FvgenError, match="strictly decreasing"):
        pipe(renders, image, timesteps=[10, 500], prompt_embeds=emb, guidance_scale=1.0)
    with pytest.raises(FvgenError, match="multiple of 16"):
        pipe(renders[..., :40], image[..., :40])
    with pytest.raises(FvgenError, match=r"\[B, 3, T, H, W\]"):
        pipe(renders[:, :, 0], image)
    pipe.tokenizer = None
    with pytest.raises(FvgenError, match="clip-vocab"):
        pipe(renders, image, num_inference_steps=2)


# ---- sampler and CFG ----------------------------------------------------------------------------
def test_schedule_timesteps_and_rescale_table():
    s = make_scheduler()
    s.set_timesteps(50)
    ts = [int(t) for t in s.timesteps]
    assert ts[:3] == [999, 979, 959] and ts[-1] == 19 and len(ts) == 50  # the official "uniform_trailing"
    assert float(s.alphas_cumprod[-1]) < 1e-8  # zero terminal SNR
    assert float(s.final_alpha_cumprod) == pytest.approx(float(s.alphas_cumprod[0]))
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    assert float(s.alphas_cumprod[0]) == pytest.approx(1 - float(betas[0]), rel=1e-5)
    table = dynamic_rescale_table(0.7)
    assert table.shape == (1400,) and float(table[0]) == 1.0 and float(table[399]) == pytest.approx(0.7)
    assert float(table[999]) == pytest.approx(0.7) and float(table[200]) == pytest.approx(1 - 0.3 * 200 / 399)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_is_diffusers_ddim_without_rescale(eta):
    s = make_scheduler()
    s.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 5, 6, generator=g)
    for i, t in enumerate([int(t) for t in s.timesteps]):
        v = torch.randn(x.shape, generator=g)
        noise = torch.randn(x.shape, generator=g)
        t_prev = t - 100 if t >= 100 else -1
        ours, _ = ddim_step(s.alphas_cumprod, v, t, t_prev, x, eta, noise, scale=None)
        ref = s.step(v, t, x, eta=eta, variance_noise=noise).prev_sample
        if t == 999 and eta > 0:
            # zero terminal SNR: 1 - a_prev - sigma^2 is 0, and diffusers takes the square root of a
            # rounding-negative number (NaN); ours clamps it, as a real number it is 0
            assert torch.isfinite(ours).all()
            x = ours
            continue
        assert torch.allclose(ours, ref, atol=2e-5), (t, eta)
        x = ref


def test_dynamic_rescale_scales_the_x0_prediction():
    s = make_scheduler()
    x, v = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    _, x0_plain = ddim_step(s.alphas_cumprod, v, 599, 399, x, 0.0, None, None)
    _, x0 = ddim_step(s.alphas_cumprod, v, 599, 399, x, 0.0, None, dynamic_rescale_table(0.7))
    assert torch.allclose(x0, x0_plain, atol=1e-6)  # both timesteps past the turning step: ratio 1
    _, x0 = ddim_step(s.alphas_cumprod, v, 599, 199, x, 0.0, None, dynamic_rescale_table(0.7))
    ratio = float(dynamic_rescale_table(0.7)[199] / 0.7)
    assert torch.allclose(x0, x0_plain * ratio, atol=1e-5)


def test_cfg_and_guidance_rescale_shapes_and_maths():
    g = torch.Generator().manual_seed(0)
    vc, vu = torch.randn(3, 4, 2, 5, 5, generator=g), torch.randn(3, 4, 2, 5, 5, generator=g)
    plain = guided_v(vc, vu, 7.5, 0.0)
    assert plain.shape == vc.shape and torch.allclose(plain, vu + 7.5 * (vc - vu))
    full = guided_v(vc, vu, 7.5, 1.0)
    dims = (1, 2, 3, 4)
    assert torch.allclose(full.std(dim=dims), vc.std(dim=dims), rtol=1e-5)  # per sample
    mixed = guided_v(vc, vu, 7.5, 0.7)
    assert torch.allclose(mixed, 0.7 * full + 0.3 * plain, atol=1e-5)
    assert torch.isfinite(guided_v(torch.zeros_like(vc), torch.zeros_like(vu), 7.5, 0.7)).all()


# ---- tokenizer ----------------------------------------------------------------------------------
def tiny_vocab(tmp_path: Path) -> Path:
    p = tmp_path / "bpe_tiny.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("#version: tiny\nc a\nca t</w>\n")
    return p


def test_tokenizer_bpe_on_a_tiny_vocabulary(tmp_path):
    tok = CLIPTokenizer(tiny_vocab(tmp_path), context_length=8)
    a_id = 256 + 64  # "a</w>": printable bytes come first ("!" is 0, "a" is 64), then the "</w>" copies
    assert tok.sot == 514 and tok.eot == 515
    assert tok(["A  cat"])[0].tolist() == [514, a_id, 513, 515, 0, 0, 0, 0]
    assert tok("cab")[0, :4].tolist() == [514, 512, a_id + 1, 515]  # "ca" merged, "b</w>" left
    long = tok("a " * 20)[0].tolist()
    assert len(long) == 8 and long[0] == 514 and long[-1] == 515


def test_word_pattern_without_the_regex_package_agrees_on_ascii():
    from fvgen.videomodel.viewcrafter.clip import _word_pattern

    pytest.importorskip("regex")
    text = "rotating view of a scene, don't stop!! a_b 3d 42 <start_of_text> x!_!y 's"
    assert _word_pattern(False).findall(text) == _word_pattern(True).findall(text)


def test_missing_vocabulary_is_one_line(tmp_path):
    from fvgen.videomodel.viewcrafter import find_vocab

    assert "not found" in one_line_error(lambda: find_vocab(tmp_path / "nope.txt.gz"))


# ---- scene-size entry point ---------------------------------------------------------------------
def test_crop_box_keeps_the_model_aspect():
    assert crop_box(576, 1024, 576, 1024, "crop") == (0, 0, 576, 1024)
    top, left, h, w = crop_box(480, 640, 320, 512, "crop")
    assert (h, w) == (400, 640) and top == 40 and left == 0
    assert crop_box(480, 640, 320, 512, "stretch") == (0, 0, 480, 640)
    assert "unknown fit" in one_line_error(lambda: crop_box(4, 4, 4, 4, "pad"))


def test_viewcrafter_fill_maps_back_to_the_scene_size(tiny, tmp_path):
    pipe = make_pipeline(tiny, VARIANTS["512"], tokenizer=CLIPTokenizer(tiny_vocab(tmp_path)))
    variant = ViewCrafterVariant("tiny", 32, 48, 2, 0.7)
    rng = np.random.default_rng(0)
    warps = rng.random((3, 40, 50, 3), dtype=np.float32)
    masks = (rng.random((3, 40, 50)) > 0.3).astype(np.float32)
    calls = []
    out = viewcrafter_fill(pipe, variant, lambda i: warps[i], warps, masks, steps=2, seed=0,
                           progress=lambda i, n: calls.append((i, n)))
    assert out.shape == warps.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    top, left, h, w = crop_box(40, 50, 32, 48, "crop")
    assert (top, left, h, w) == (3, 0, 33, 50)
    # outside the crop the warp comes back; inside, generated pixels
    assert np.array_equal(out[:, :top], warps[:, :top]) and not np.allclose(out[:, top:top + h], warps[:, top:top + h])
    assert calls[-1] == (4, 4)  # two windows of 2 steps
    stretched = viewcrafter_fill(pipe, variant, warps[0], warps[:1], masks[:1], steps=2, fit="stretch")
    assert stretched.shape == (1, 40, 50, 3) and not np.allclose(stretched[:, :top], warps[:1, :top])
    assert "warps must be" in one_line_error(lambda: viewcrafter_fill(pipe, variant, warps[0], warps, masks[:2]))


def test_benchmark_script_tiny_smoke(tmp_path, one_thread):
    spec = importlib.util.spec_from_file_location("vc_speed", ROOT / "benchmarks" / "viewcrafter_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "vc.json"
    assert mod.main(["--device", "cpu", "--tiny", "--cases", "512,512_4step", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["cases"]) == {"512", "512_4step"}
    assert res["cases"]["512"]["cfg"] and not res["cases"]["512_4step"]["cfg"]
    assert res["cases"]["512_4step"]["steps"] == 4 and res["cases"]["512"]["seconds_total"] > 0
    assert mod.main(["--device", "cpu", "--json", str(out)]) == 2  # full size on the CPU is refused
