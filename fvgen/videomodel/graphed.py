"""The whole clip sampler (conditioning with its fill, every denoising step, decoding) captured once
per input shape as one CUDA graph and replayed (issue 19).

Why: the small presets are launch bound, not compute bound: the ``embedded`` student's 4 UNet
passes take 0.153 s on an H100 for 295 GFLOP, and the harmonic fill's thousands of tiny SOR
kernels add 0.08 s. A replayed graph launches all of those kernels in one call.

What a graph fixes: the input shapes, the steps, guidance, strength and ``correction`` (the
scheduler's coefficients become kernel arguments at capture), and the weights' storage (changing
weights in place is seen, replacing the tensors is not). The noise is still drawn on the CPU
generator each call, as :func:`fvgen.videomodel.sample.sample_latents` draws it, and copied into the
graph's input buffer, so a seed gives the same clip graphed or not (up to bf16 rounding).

Per-step progress callbacks cannot run inside a graph (a capture records kernels, not Python calls):
the sampler has none; report progress per call instead.

On a CPU model (or without CUDA) it simply runs eagerly, and equals ``sample_latents`` exactly.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch

from .fill import compiled_sweeps
from .model import TeacherModel
from .sample import latent_shape, plan_steps, sample_from_noise


@dataclass
class _Captured:
    """One input shape's graph: the static input buffers it reads and the output buffer it writes."""

    graph: torch.cuda.CUDAGraph
    ref: torch.Tensor
    warp: torch.Tensor
    mask: torch.Tensor
    noise: torch.Tensor
    out: torch.Tensor


class GraphedSampler:
    """``sampler(ref, warp, mask, generator)`` -> clip [B, F, 3, H, W], as
    ``sample_latents(model, ref, warp, mask, steps, cfg, guidance_rescale, generator,
    autocast=autocast, correction=correction, strength=strength)`` returns it.

    On CUDA the first call for an input shape warms up on a side stream (lazy initialisation and
    cuDNN's autotuning must not happen inside a capture), then captures one graph into static
    buffers (autocast's weight cache off: a cache filled inside a capture would hand later replays
    freed memory); later calls copy their inputs into those buffers and replay. Each shape's graph
    has its own memory pool (graphs replayed in any order must not share one), held until the
    sampler is dropped. If a capture raises, the sampler warns once and runs eagerly from then on.
    ``capture_seconds`` records, per shape, how long warm-up and capture took. ``compile_fill``
    captures the conditioning's harmonic fill with fused sweeps (:func:`fill.compiled_sweeps`): the
    warm-up compiles them (seconds, once per process), and every replay then launches about 800
    kernels for the fill instead of about 5,000."""

    def __init__(self, model: TeacherModel, steps: int = 50, cfg: float = 3.0, guidance_rescale: float = 0.7,
                 correction: bool = False, strength: float = 1.0, autocast: bool = True, warmup_runs: int = 1,
                 compile_fill: bool = False):
        self.compile_fill = bool(compile_fill)
        self.model, self.steps, self.cfg, self.guidance_rescale = model, int(steps), float(cfg), float(guidance_rescale)
        self.correction, self.strength, self.warmup_runs = bool(correction), float(strength), max(1, int(warmup_runs))
        self.device = model.device
        self.autocast = bool(autocast) and self.device.type == "cuda"
        self.use_graphs = self.device.type == "cuda" and torch.cuda.is_available()
        self.plan = plan_steps(model, self.steps, self.strength)  # device timesteps made once, outside captures
        self.graphs: dict[tuple, _Captured] = {}
        self.capture_seconds: dict[tuple, float] = {}
        self.capture_error: str | None = None

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=False)

    def _eager(self, ref, warp, mask, noise) -> torch.Tensor:
        return self._run(*(x.to(self.device) for x in (ref, warp, mask, noise)))

    def _run(self, ref, warp, mask, noise) -> torch.Tensor:
        with self._autocast():
            return sample_from_noise(self.model, ref, warp, mask, noise, self.plan, self.cfg, self.guidance_rescale,
                                     self.correction)

    def _capture(self, ref, warp, mask, noise) -> _Captured:
        """Warm up on a side stream, then capture one run reading static copies of the inputs."""
        # the capture's streams belong to the current device
        with torch.cuda.device(self.device), compiled_sweeps(self.compile_fill):
            return self._capture_on_device(ref, warp, mask, noise)

    def _capture_on_device(self, ref, warp, mask, noise) -> _Captured:
        static = [x.to(self.device, copy=True) for x in (ref, warp, mask, noise)]
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup_runs):
                self._run(*static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._run(*static)
        return _Captured(graph, *static, out)

    @torch.no_grad()
    def __call__(self, ref: torch.Tensor, warp: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(latent_shape(self.model, warp.shape), generator=generator, device="cpu")
        if not self.use_graphs:
            return self._eager(ref, warp, mask, noise)
        key = tuple((tuple(x.shape), x.dtype) for x in (ref, warp, mask))
        cap = self.graphs.get(key)
        if cap is None:
            torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            try:
                cap = self._capture(ref, warp, mask, noise)
            except Exception as e:  # noqa: BLE001 (a failed capture costs speed, not the clip)
                self.capture_error = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                warnings.warn(f"CUDA-graph capture of the sampler failed, sampling eagerly from now on "
                              f"({self.capture_error})", RuntimeWarning, stacklevel=2)
                self.use_graphs = False
                torch.cuda.synchronize(self.device)
                return self._eager(ref, warp, mask, noise)
            torch.cuda.synchronize(self.device)
            self.capture_seconds[key] = time.perf_counter() - t0
            self.graphs[key] = cap
        else:
            for buf, x in zip((cap.ref, cap.warp, cap.mask), (ref, warp, mask)):
                buf.copy_(x)
            cap.noise.copy_(noise)
        cap.graph.replay()  # the first call too: its capture recorded the kernels without running them
        return cap.out.clone()
