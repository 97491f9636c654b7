"""Scene-size warps in, scene-size frames out: the entry point a generator stage calls.

ViewCrafter was trained on point-cloud renders whose empty pixels are black (PyTorch3D's
``AlphaCompositor`` without a background), at exactly 512x320 x 16 frames or 1024x576 x 25 frames,
with the CLIP image taken from the first render (the reference view). So here:

- hole pixels (mask 0) are set to black before encoding;
- each frame is brought to the model size: ``fit="crop"`` scales to cover and centre-crops (the
  aspect ratio is kept; the frames' border outside the crop comes back as the warp, holes
  included), ``fit="stretch"`` resizes the whole frame (aspect changes, all pixels come back);
- trajectories longer than the model's clip run in overlapping windows of that length (overlaps
  averaged); shorter ones are padded by repeating the last frame;
- the condition image of each window is ``reference(first_frame_index)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...core.errors import FvgenError
from ..sample import windows
from .pipeline import DEFAULT_PROMPT, ViewCrafterPipeline, ViewCrafterVariant


def crop_box(height: int, width: int, model_h: int, model_w: int, fit: str) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the scene-frame region that maps onto the model frame."""
    if fit == "stretch":
        return 0, 0, height, width
    if fit != "crop":
        raise FvgenError(f"unknown fit {fit!r} (crop or stretch)")
    s = max(model_h / height, model_w / width)
    h, w = min(height, round(model_h / s)), min(width, round(model_w / s))
    return (height - h) // 2, (width - w) // 2, h, w


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, h, w], bilinear, antialiased when shrinking."""
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)


def fit_frames(x: torch.Tensor, height: int, width: int, fit: str = "crop") -> torch.Tensor:
    """Frames [..., C, H, W] -> [..., C, height, width] as the generator brings warps to the model
    size (:func:`crop_box`, then a bilinear, antialiased resize); the training clips of a
    distillation take the same way."""
    H, W = x.shape[-2:]
    top, left, bh, bw = crop_box(H, W, height, width, fit)
    flat = x.reshape(-1, *x.shape[-3:])[..., top:top + bh, left:left + bw]
    out = _resize(flat, height, width)
    return out.reshape(*x.shape[:-2], height, width)


@torch.no_grad()
def viewcrafter_fill(pipe: ViewCrafterPipeline, variant: ViewCrafterVariant,
                     reference: np.ndarray | Callable[[int], np.ndarray], warps: np.ndarray, masks: np.ndarray, *,
                     steps: int = 50, guidance_scale: float = 7.5, guidance_rescale: float = 0.7, eta: float = 1.0,
                     seed: int = 0, prompt: str = DEFAULT_PROMPT, fit: str = "crop",
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """reference [H, W, 3] (or a function of a window's first frame index giving one), warps
    [F, H, W, 3] and masks [F, H, W] (1 = rendered), floats in [0, 1] at the scene's size ->
    generated frames [F, H, W, 3] float32 in [0, 1] at the scene's size."""
    warps = np.asarray(warps, np.float32)
    masks = np.asarray(masks, np.float32)
    if warps.ndim != 4 or warps.shape[-1] != 3 or masks.shape != warps.shape[:3]:
        raise FvgenError(f"warps must be [F, H, W, 3] and masks [F, H, W], got {list(warps.shape)} and {list(masks.shape)}")
    n, H, W = warps.shape[:3]
    top, left, bh, bw = crop_box(H, W, variant.height, variant.width, fit)
    ref_fn = reference if callable(reference) else (lambda _i: reference)
    device = pipe.model_device
    g = torch.Generator(device="cpu").manual_seed(seed)

    def to_model(frames: np.ndarray) -> torch.Tensor:  # [K, H, W, 3] -> [K, 3, h, w] in [-1, 1]
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        return fit_frames(x, variant.height, variant.width, fit).clamp(0, 1) * 2 - 1

    out = np.zeros((n, H, W, 3), np.float64)
    count = np.zeros(n)
    wins = windows(n, variant.frames)
    for wi, (a, b) in enumerate(wins):
        idx = list(range(a, b)) + [b - 1] * (variant.frames - (b - a))  # pad short trajectories
        renders = to_model(warps[idx] * (masks[idx] > 0.5)[..., None])  # holes black, as the official renders
        ref = np.asarray(ref_fn(a), np.float32)
        if ref.shape[:2] != (H, W):
            raise FvgenError(f"reference image is {ref.shape[1]}x{ref.shape[0]}, the warps {W}x{H}")
        image = to_model(ref[None])
        cb = None if progress is None else (lambda i, total, wi=wi: progress(wi * steps + i, len(wins) * steps))
        frames = pipe(renders.transpose(0, 1)[None].to(device), image.to(device), prompt=prompt,
                      num_inference_steps=steps, guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
                      eta=eta, fps=variant.fs, generator=g, callback=cb)  # [1, 3, T, h, w]
        frames = (frames[0].transpose(0, 1)[: b - a].float().cpu() + 1) / 2  # [K, 3, h, w]
        frames = _resize(frames, bh, bw).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        full = warps[a:b].astype(np.float64).copy()
        full[:, top:top + bh, left:left + bw] = frames
        out[a:b] += full
        count[a:b] += 1
    return (out / count[:, None, None, None]).astype(np.float32)
