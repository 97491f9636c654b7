"""The sampler split into host preparation and one device function, and its CUDA-graph wrapper
(issue 19): on the CPU the wrapper runs eagerly and equals ``sample_latents`` exactly; on CUDA a
captured graph replays the eager clip (bf16 tolerance)."""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("diffusers")

from fvgen.videomodel.graphed import GraphedSampler  # noqa: E402
from fvgen.videomodel.model import TeacherModel  # noqa: E402
from fvgen.videomodel.sample import latent_shape, make_scheduler, noise_to_timestep, sample_latents  # noqa: E402


def _inputs(p, B=1, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(B, 3, p.height, p.width, generator=g) * 2 - 1
    warp = torch.rand(B, p.frames, 3, p.height, p.width, generator=g) * 2 - 1
    mask = (torch.rand(B, p.frames, 1, p.height, p.width, generator=g) > 0.4).float()
    return ref.to(device), warp.to(device), mask.to(device)


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    return {name: TeacherModel.random(name, seed=0).eval() for name in ("tiny", "tiny-pixel")}


@pytest.mark.parametrize("preset", ["tiny", "tiny-pixel"])
def test_latent_shape_is_the_conditionings(models, preset):
    m = models[preset]
    ref, warp, mask = _inputs(m.preset, B=2)
    with torch.no_grad():
        cat, _, _ = m.condition(ref, warp, mask)
    shape = latent_shape(m, warp.shape)
    assert shape[:2] == (2, m.preset.frames) and shape[-2:] == tuple(cat.shape[-2:])
    assert shape[2] == m.preset.latent_channels


def test_noise_to_timestep_is_diffusers_add_noise(models):
    sched = make_scheduler(models["tiny"], 10)
    g = torch.Generator().manual_seed(2)
    clean, noise = torch.randn(1, 4, 4, 8, 16, generator=g), torch.randn(1, 4, 4, 8, 16, generator=g)
    for t in sched.timesteps[[0, 3, 9]]:
        ours = noise_to_timestep(sched, clean, noise, t)
        assert sched.alphas_cumprod.device.type == "cpu"  # ours leaves the table where step() indexes it
        theirs = make_scheduler(models["tiny"], 10).add_noise(clean, noise, t[None])
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("preset,cfg,strength,correction", [
    ("tiny", 3.0, 1.0, False), ("tiny", 1.0, 0.5, False),
    ("tiny-pixel", 1.0, 1.0, True), ("tiny-pixel", 2.0, 0.5, True), ("tiny-pixel", 3.0, 1.0, False)])
def test_graphed_sampler_on_cpu_is_sample_latents(models, preset, cfg, strength, correction):
    """Eager on the CPU, and the same clips as sample_latents for the same generator, call after call
    (the noise is drawn the same way, so the generator advances alike)."""
    m = models[preset]
    ref, warp, mask = _inputs(m.preset)
    sampler = GraphedSampler(m, steps=4, cfg=cfg, guidance_rescale=0.7, correction=correction, strength=strength)
    assert not sampler.use_graphs
    g_ours, g_ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    outs = []
    for _ in range(2):
        ours = sampler(ref, warp, mask, g_ours)
        theirs = sample_latents(m, ref, warp, mask, steps=4, cfg=cfg, guidance_rescale=0.7, generator=g_ref,
                                correction=correction, strength=strength)
        assert torch.equal(ours, theirs)
        outs.append(ours)
    assert not torch.equal(outs[0], outs[1])  # a fresh draw each call, not a frozen noise buffer


def test_failed_capture_warns_once_and_samples_eagerly(models, monkeypatch):
    m = models["tiny-pixel"]
    ref, warp, mask = _inputs(m.preset)
    sampler = GraphedSampler(m, steps=2, cfg=1.0, correction=True)
    sampler.use_graphs = True  # as on CUDA; the capture itself is made to fail

    def fail(*args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(sampler, "_capture", fail)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    with pytest.warns(RuntimeWarning, match="capture of the sampler failed.*not permitted"):
        first = sampler(ref, warp, mask, torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = sampler(ref, warp, mask, torch.Generator().manual_seed(1))
    expected = sample_latents(m, ref, warp, mask, steps=2, cfg=1.0, correction=True,
                              generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert not sampler.use_graphs and "RuntimeError" in sampler.capture_error


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("preset,cfg,strength", [("tiny-pixel", 3.0, 1.0), ("tiny", 1.0, 0.5)])
def test_cuda_graph_replays_the_eager_clip(preset, cfg, strength):
    m = TeacherModel.random(preset, seed=0).to("cuda").eval()
    sampler = GraphedSampler(m, steps=3, cfg=cfg, correction=m.preset.residual, strength=strength)
    assert sampler.use_graphs
    for B, seed in ((1, 0), (1, 1), (2, 2)):  # capture, replay with new inputs and noise, a second shape
        ref, warp, mask = _inputs(m.preset, B=B, seed=seed, device="cuda")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a capture that falls back to eager fails here
            graphed = sampler(ref, warp, mask, torch.Generator().manual_seed(seed))
        eager = sample_latents(m, ref, warp, mask, steps=3, cfg=cfg, autocast=True, correction=m.preset.residual,
                               strength=strength, generator=torch.Generator().manual_seed(seed))
        assert graphed.shape == eager.shape
        scale = max(1.0, eager.abs().max().item())  # residual corrections are unclamped
        assert (graphed - eager).abs().max().item() <= 2e-2 * scale, f"B={B} seed={seed}"
    assert len(sampler.graphs) == 2 and sampler.capture_error is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("preset", ["tiny-pixel", "tiny"])
def test_bf16_weights_sample_the_clip_of_fp32_weights_on_cuda(preset):
    """inference_dtype: weights held in bf16 on CUDA (what autocast casts fp32 weights to) give the
    clip of the same bf16-valued weights held in fp32, eager and graphed."""
    from fvgen.videomodel.model import inference_dtype

    assert inference_dtype("cuda") == torch.bfloat16 and inference_dtype("cpu") == torch.float32
    m32 = TeacherModel.random(preset, seed=0).to("cuda", torch.bfloat16).to(dtype=torch.float32).eval()
    m16 = TeacherModel.random(preset, seed=0).to("cuda", torch.bfloat16).eval()
    ref, warp, mask = _inputs(m32.preset, B=1, seed=3, device="cuda")
    kw = dict(steps=3, cfg=2.0, autocast=True, correction=m32.preset.residual)
    a = sample_latents(m32, ref, warp, mask, generator=torch.Generator().manual_seed(0), **kw)
    b = sample_latents(m16, ref, warp, mask, generator=torch.Generator().manual_seed(0), **kw)
    g = GraphedSampler(m16, steps=3, cfg=2.0, correction=m32.preset.residual)(ref, warp, mask,
                                                                              torch.Generator().manual_seed(0))
    scale = max(1.0, a.abs().max().item())
    assert b.dtype == torch.float32 and (a - b).abs().max().item() <= 2e-2 * scale
    assert (g - b).abs().max().item() <= 2e-2 * scale


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_with_fused_fill_sweeps_replays_the_eager_clip():
    """compile_fill: the conditioning's fill captured with torch.compile-fused sweeps gives eager's clip."""
    m = TeacherModel.random("tiny-pixel", seed=0).to("cuda").eval()
    sampler = GraphedSampler(m, steps=3, cfg=1.0, correction=True, compile_fill=True)
    for seed in (0, 1):
        ref, warp, mask = _inputs(m.preset, B=1, seed=seed, device="cuda")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a failed compile or capture fails here
            graphed = sampler(ref, warp, mask, torch.Generator().manual_seed(seed))
        eager = sample_latents(m, ref, warp, mask, steps=3, cfg=1.0, autocast=True, correction=True,
                               generator=torch.Generator().manual_seed(seed))
        assert (graphed - eager).abs().max().item() <= 2e-2 * max(1.0, eager.abs().max().item())
    assert sampler.capture_error is None and len(sampler.graphs) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_generate_clip_with_a_cuda_graph_matches_eager_and_reports_per_window():
    """The product path: a 20-frame trajectory (two windows of tiny-pixel's frames) generated with
    the graph gives eager's frames (bf16 tolerance); progress moves once per window."""
    import numpy as np

    from fvgen.videomodel.sample import generate_clip, run_steps

    m = TeacherModel.random("tiny-pixel", seed=0).to("cuda").eval()
    rng = np.random.default_rng(0)
    n, H, W = m.preset.frames + 4, 48, 64
    frames = [rng.random((H, W, 3), dtype=np.float32) for _ in range(n)]
    masks = [(rng.random((H, W)) > 0.4).astype(np.float32) for _ in range(n)]
    ref = rng.random((H, W, 3), dtype=np.float32)
    seen: list[int] = []
    kw = dict(steps=4, cfg=3.0, seed=3)
    eager = generate_clip(m, lambda i: ref, frames, masks, **kw)
    graphed = generate_clip(m, lambda i: ref, frames, masks, progress=lambda i, _f: seen.append(i), cuda_graph="on", **kw)
    assert max(float(np.abs(a - b).max()) for a, b in zip(eager, graphed)) < 0.05
    assert seen == [run_steps(4), 2 * run_steps(4)]


def test_auto_graphs_trajectories_of_three_windows_and_more_on_cuda_only():
    from fvgen.core.errors import FvgenError
    from fvgen.videomodel.generators import GenerateConf
    from fvgen.videomodel.sample import GRAPH_MIN_WINDOWS, use_cuda_graph

    assert GRAPH_MIN_WINDOWS == 3
    assert not use_cuda_graph("auto", "cuda", 2) and use_cuda_graph("auto", "cuda", 3)
    assert use_cuda_graph("on", "cuda", 1) and not use_cuda_graph("off", "cuda", 9)
    assert not use_cuda_graph("on", "cpu", 9)
    with pytest.raises(ValueError, match="auto, on, off"):
        use_cuda_graph("yes", "cuda", 3)
    with pytest.raises(FvgenError, match="cuda_graph must be auto, on or off"):
        GenerateConf(cuda_graph="true")
