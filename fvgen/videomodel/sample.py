"""Sampling: DDIM (eta 0) on the v-prediction, zero-terminal-SNR schedule with trailing timesteps
(so the first step starts at t = T - 1, pure noise), classifier-free guidance on the conditioning
with guidance rescale (Lin et al. 2023, the fix that goes with zero terminal SNR).

``strength`` < 1 starts partway down the noise schedule from the warp's classical fill, noised to
that level (SDEdit, Meng et al. 2022; diffusers' img2img ``strength``): the last
``round(steps * strength)`` timesteps run, the sample stays closer to the fill, and fewer steps
cost less. For residual models that start is simply a zero correction.

Clips longer than the model's frame count are cut into windows of ``frames`` (the last one aligned
to the end, overlaps averaged); each window's reference view is the input view nearest its first
camera. Frames are resized to the model size and back (a plain resize, no crop, so every pixel of
the warp is seen and returned). A residual model's output is its correction, resized, added to the
fill of the warp (the preset's ``fill``) made at the output size (so the warp's detail is not lost
to the resize).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .fill import fill_holes
from .model import TeacherModel


def make_scheduler(model: TeacherModel, steps: int):
    from diffusers import DDIMScheduler

    s = DDIMScheduler(**model.scheduler_config, set_alpha_to_one=False)
    s.set_timesteps(int(steps))
    return s


def trailing_timesteps(steps: int, train_timesteps: int = 1000) -> list[int]:
    """diffusers' "trailing" spacing: T-1, T-1-T/steps, ... (``steps`` values, the first terminal)."""
    return [int(t) for t in np.round(np.arange(train_timesteps, 0, -train_timesteps / steps)).astype(np.int64) - 1]


def run_steps(steps: int, strength: float = 1.0) -> int:
    """How many denoiser steps a sampling run makes: the last ``round(steps * strength)`` (at least 1)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    return max(1, min(int(steps), int(round(steps * strength))))


def rescale_cfg(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    if phi <= 0:
        return guided
    dims = list(range(1, guided.ndim))
    r = cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-8)
    return phi * guided * r + (1 - phi) * guided


@dataclasses.dataclass
class StepPlan:
    """The host side of one sampling run, fixed by (model, steps, strength): the DDIM scheduler (its
    ``alphas_cumprod`` kept on the CPU, so each step's coefficients are CPU scalars, i.e. kernel
    arguments, never copies to the device), the timesteps that run (CPU) and the same timesteps on
    the model's device for the UNet (made here, outside any CUDA-graph capture)."""

    scheduler: object
    timesteps: torch.Tensor
    device_timesteps: torch.Tensor
    strength: float


def plan_steps(model: TeacherModel, steps: int, strength: float = 1.0) -> StepPlan:
    sched = make_scheduler(model, steps)
    timesteps = sched.timesteps[len(sched.timesteps) - run_steps(steps, strength):]
    return StepPlan(sched, timesteps, timesteps.to(model.device), float(strength))


def latent_shape(model: TeacherModel, warp_shape: Sequence[int]) -> tuple[int, ...]:
    """The denoiser's sample shape [B, F, c, h, w] for warped frames of ``warp_shape`` [B, F, 3, H, W],
    known before conditioning (so the noise can be drawn first and handed to :func:`sample_from_noise`).
    Both spaces divide by the latent factor rounding down (the VAE's stride-2 downsamplers floor)."""
    B, Fr, _, H, W = warp_shape
    f = model.preset.latent_factor
    return (B, Fr, model.preset.latent_channels, H // f, W // f)


def noise_to_timestep(sched, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """diffusers' ``DDIMScheduler.add_noise`` for one timestep, with the schedule's coefficients as CPU
    scalars: diffusers' own moves ``alphas_cumprod`` and the timesteps to the sample's device (host to
    device copies, not allowed inside a CUDA-graph capture, and it leaves the scheduler's table on the
    device, where :meth:`step` would then index it with a CPU timestep). Equal to it bit for bit on
    the CPU (tested)."""
    alpha_prod = sched.alphas_cumprod[t].to(clean.dtype)
    return alpha_prod ** 0.5 * clean + (1 - alpha_prod) ** 0.5 * noise


def sample_from_noise(model: TeacherModel, ref: torch.Tensor, warp: torch.Tensor, mask: torch.Tensor,
                      noise: torch.Tensor, plan: StepPlan, cfg: float = 3.0, guidance_rescale: float = 0.7,
                      correction: bool = False, progress: Callable | None = None) -> torch.Tensor:
    """The device work of :func:`sample_latents`: conditioning, the steps of ``plan``, decoding; every
    input (``noise`` [B, F, c, h, w] of :func:`latent_shape` included) already on the model's device.
    No host syncs and no host-to-device copies (the scheduler's coefficients are CPU scalars), so
    :class:`fvgen.videomodel.graphed.GraphedSampler` can capture it as one CUDA graph; the caller
    chooses autocast. ``progress(i, {})`` after each step (not inside a graph: a capture records
    kernels, not Python calls)."""
    sched = plan.scheduler
    cat, tokens, base = model.condition(ref, warp, mask)
    B, Fr = warp.shape[:2]
    shape = tuple(noise.shape)
    if shape[:2] != (B, Fr) or shape[-2:] != tuple(cat.shape[-2:]):
        raise ValueError(f"noise of shape {shape} does not match the conditioning {tuple(cat.shape)}")
    x = noise
    if plan.strength < 1.0:  # SDEdit: the fill (a zero correction for residual models), noised to the first timestep
        if base is not None:
            start = torch.zeros_like(x)
        else:
            valid = (mask > 0.5).float().reshape(B * Fr, 1, *mask.shape[-2:])
            fill = fill_holes(model.preset.fill, warp.reshape(B * Fr, *warp.shape[2:]).float(), valid)
            start = model.encode(fill.to(cat.dtype)).reshape(shape).float()
        x = noise_to_timestep(sched, start.float(), x.float(), plan.timesteps[0])
    else:
        x = x * sched.init_noise_sigma
    use_cfg = cfg != 1.0
    if use_cfg:
        cat2 = torch.cat([torch.zeros_like(cat), cat])
        tok2 = torch.cat([torch.zeros_like(tokens), tokens])
    for i, t in enumerate(plan.timesteps):
        t_dev = plan.device_timesteps[i]  # the UNet's copy: no host-to-device copy of ``t`` per step
        if use_cfg:
            v = model.denoise(torch.cat([x, x]), t_dev, cat2, tok2).float()
            vu, vc = v.chunk(2)
            v = rescale_cfg(vu + cfg * (vc - vu), vc, guidance_rescale)
        else:
            v = model.denoise(x, t_dev, cat, tokens).float()
        x = sched.step(v, t, x.float(), eta=0.0).prev_sample.to(x.dtype)
        if progress is not None:
            progress(i + 1, {})
    if correction and base is not None:
        return model.decode(x.float()).float()
    if base is not None:
        x = x.float() + base.float()
    dtype = next(model.vae.parameters()).dtype if model.vae is not None else torch.float32
    return model.decode(x.to(dtype)).float().clamp(-1, 1)


@torch.no_grad()
def sample_latents(model: TeacherModel, ref: torch.Tensor, warp: torch.Tensor, mask: torch.Tensor,
                   steps: int = 50, cfg: float = 3.0, guidance_rescale: float = 0.7,
                   generator: torch.Generator | None = None, progress: Callable | None = None,
                   autocast: bool = False, correction: bool = False, strength: float = 1.0) -> torch.Tensor:
    """Pixel conditioning (see :meth:`TeacherModel.condition`) -> clip [B, F, 3, H, W] in [-1, 1].

    ``correction`` (residual models): return what the denoiser generated, the difference to the
    warp's fill in pixels (unclamped), instead of the clip. The noise is drawn from ``generator`` on
    the CPU (the same clip for a seed on any device), then :func:`sample_from_noise` runs."""
    dev = model.device
    ref, warp, mask = ref.to(dev), warp.to(dev), mask.to(dev)
    plan = plan_steps(model, steps, strength)
    noise = torch.randn(latent_shape(model, warp.shape), generator=generator, device="cpu").to(dev)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast and dev.type == "cuda"):
        return sample_from_noise(model, ref, warp, mask, noise, plan, cfg, guidance_rescale, correction, progress)


def resize_frames(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[..., C, H, W] -> [..., C, height, width] (bilinear with antialiasing)."""
    lead = x.shape[:-3]
    y = F.interpolate(x.reshape(-1, *x.shape[-3:]).float(), size=(height, width), mode="bilinear",
                      antialias=True, align_corners=False)
    return y.reshape(*lead, *y.shape[-3:])


def resize_warp(warp: torch.Tensor, mask: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Warped frames [..., 3, H, W] and masks [..., 1, H, W] (1 seen) -> the model size, the colours
    resampled from the seen pixels only (normalised: ``resize(warp * mask) / resize(mask)``), holes 0.
    Why: a plain resize blends the holes' black into the seen pixels along every hole edge, which
    the mask (> 0.5) still counts as seen; a fill spread from those darkened edges is too dark, so
    the training target taught every hole to be brightened (measured: seen pixels within 2 px of a
    hole 0.06-0.09 darker than the truth in the training shards, 0.00 at the evaluation views'
    full size; RESULTS.md, issue 18)."""
    m = resize_frames(mask.float(), width, height).clamp(0, 1)
    w = resize_frames(warp.float() * (mask > 0.5).float(), width, height) / m.clamp_min(1e-6)
    # colours wherever any seen pixel contributes, so every threshold a consumer uses (> 0.5 on
    # floats, > 127 on uint8) finds its seen pixels coloured
    return torch.where(m > 1e-3, w, torch.zeros_like(w)), m


def to_model_inputs(model: TeacherModel, ref: np.ndarray, frames: Sequence[np.ndarray], masks: Sequence[np.ndarray]):
    """numpy ref [H, W, 3], frames [H, W, 3] in [0, 1], masks [H, W] -> model-size tensors (batch 1)."""
    p = model.preset
    r = resize_frames(torch.as_tensor(np.asarray(ref, np.float32)).permute(2, 0, 1), p.width, p.height) * 2 - 1
    w = torch.as_tensor(np.stack(frames).astype(np.float32)).permute(0, 3, 1, 2)
    m = torch.as_tensor(np.stack(masks).astype(np.float32))[:, None]
    w, m = resize_warp(w, m, p.width, p.height)
    return r[None], (w * 2 - 1)[None], m[None]


# A capture (a warm-up run, the capture, the first replay) costs about 2.3-2.4 eager runs of the
# sampler, a replay 0.13-0.15 of one (embedded teacher and student, H100; RESULTS.md,
# "Distillation"): the graph pays from 3 windows on.
GRAPH_MIN_WINDOWS = 3
CUDA_GRAPH_SETTINGS = ("auto", "on", "off")


def use_cuda_graph(setting: str, device_type: str, n_windows: int) -> bool:
    """Whether a trajectory of ``n_windows`` windows samples through a CUDA graph: ``on`` on any
    CUDA device, ``auto`` there from :data:`GRAPH_MIN_WINDOWS` windows, ``off`` never."""
    if setting not in CUDA_GRAPH_SETTINGS:
        raise ValueError(f"cuda_graph must be one of {', '.join(CUDA_GRAPH_SETTINGS)}, not {setting!r}")
    if device_type != "cuda":
        return False
    return setting == "on" or (setting == "auto" and n_windows >= GRAPH_MIN_WINDOWS)


def windows(n: int, size: int) -> list[tuple[int, int]]:
    if n <= size:
        return [(0, n)]
    starts = list(range(0, n - size + 1, size))
    if starts[-1] != n - size:
        starts.append(n - size)
    return [(s, s + size) for s in starts]


def generate_clip(model: TeacherModel, refs: Callable[[int], np.ndarray], frames: Sequence[np.ndarray],
                  masks: Sequence[np.ndarray], steps: int = 50, cfg: float = 3.0, guidance_rescale: float = 0.7,
                  seed: int = 0, progress: Callable | None = None, strength: float = 1.0,
                  cuda_graph: str = "auto") -> list[np.ndarray]:
    """Generate a whole trajectory: ``refs(i)`` gives the reference image for a window starting
    at frame i; returns frames at the input size, floats in [0, 1].

    ``cuda_graph`` (``auto``, ``on``, ``off``; see :func:`use_cuda_graph`): on a CUDA model each
    window's sampling replays one CUDA graph (:class:`fvgen.videomodel.graphed.GraphedSampler`,
    captured on the first window), the same frames up to bf16 rounding; progress is then reported
    per window, not per step."""
    H, W = np.asarray(frames[0]).shape[:2]
    n = len(frames)
    acc = np.zeros((n, H, W, 3), np.float64)
    cnt = np.zeros(n)
    g = torch.Generator().manual_seed(seed)
    done = 0
    residual = model.preset.residual
    graphed = None
    if use_cuda_graph(cuda_graph, model.device.type, len(windows(n, model.preset.frames))):
        from .graphed import GraphedSampler  # it builds on this module

        graphed = GraphedSampler(model, steps, cfg, guidance_rescale, correction=residual, strength=strength)
    for a, b in windows(n, model.preset.frames):
        r, w, m = to_model_inputs(model, refs(a), frames[a:b], masks[a:b])
        if graphed is not None:
            out = graphed(r, w, m, g)
            if progress is not None:
                progress(done + run_steps(steps, strength), {})
        else:
            step_cb = None
            if progress is not None:
                step_cb = lambda i, _f, d=done: progress(d + i, {})  # noqa: E731
            out = sample_latents(model, r, w, m, steps, cfg, guidance_rescale, g, step_cb,
                                 autocast=model.device.type == "cuda", correction=residual, strength=strength)
        if residual:  # the correction (a difference in [-1, 1] units) on the fill made at the output size
            # on the model's device: the harmonic fill of 16 frames at 512x384 takes 19 s on 2 CPU threads
            dev = model.device
            warp = torch.as_tensor(np.stack(frames[a:b]).astype(np.float32), device=dev).permute(0, 3, 1, 2)
            valid = (torch.as_tensor(np.stack(masks[a:b]), device=dev) > 0.5)[:, None].float()
            fill = fill_holes(model.preset.fill, warp, valid)
            out = (fill + resize_frames(out[0], W, H) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        else:
            out = resize_frames((out[0] + 1) / 2, W, H).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        acc[a:b] += out
        cnt[a:b] += 1
        done += run_steps(steps, strength)
    return [(acc[i] / cnt[i]).astype(np.float32) for i in range(n)]
