"""The classical baseline the teacher is measured against, and the comparison's metrics.

``biharmonic_fill`` fills the warp's holes with scikit-image's biharmonic inpainting
(``skimage.restoration.inpaint_biharmonic``, per frame, channel-wise); ``clip_metrics`` scores a
clip against the ground truth with :mod:`fvgen.metrics` PSNR/SSIM on all pixels and on the hole
pixels only (mask == 0), averaged over frames (frames without holes are left out of the hole mean).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def biharmonic_fill(frame: np.ndarray, mask: np.ndarray, max_size: int = 160) -> np.ndarray:
    """Fill pixels where ``mask`` is False/0 in ``frame`` [H, W, 3] float [0, 1].

    Biharmonic inpainting solves a sparse system per connected hole; large holes are filled on a
    copy downscaled to ``max_size`` (long side) and the result upsampled into the holes only."""
    from skimage.restoration import inpaint_biharmonic
    from skimage.transform import resize

    valid = np.asarray(mask) > 0.5
    if valid.all():
        return frame.copy()
    if not valid.any():
        return np.full_like(frame, 0.5)
    H, W = valid.shape
    s = min(1.0, max_size / max(H, W))
    if s < 1.0:
        h, w = max(2, round(H * s)), max(2, round(W * s))
        f_s = resize(frame * valid[..., None], (h, w), order=1, anti_aliasing=True)
        v_s = resize(valid.astype(np.float32), (h, w), order=1, anti_aliasing=True)
        ok = v_s > 0.5
        f_s = np.where(ok[..., None], f_s / np.maximum(v_s[..., None], 1e-6), 0)
        filled = inpaint_biharmonic(f_s, ~ok, channel_axis=-1)
        up = resize(filled, (H, W), order=1)
    else:
        up = inpaint_biharmonic(frame, ~valid, channel_axis=-1)
    out = np.where(valid[..., None], frame, up)
    return np.clip(out, 0, 1).astype(np.float32)


def fill_clip(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_size: int = 160) -> list[np.ndarray]:
    return [biharmonic_fill(f, m, max_size) for f, m in zip(frames, masks)]


def torch_fill_np(fill, frame: np.ndarray, mask: np.ndarray, **kw) -> np.ndarray:
    """A batched torch fill of :mod:`fvgen.fill` (``fill(image, mask, **kw)``) on one ``frame``
    [H, W, 3] float [0, 1], filling where ``mask`` is False/0."""
    t = torch.as_tensor(np.asarray(frame, np.float32)).permute(2, 0, 1)[None]
    m = torch.as_tensor(np.asarray(mask) > 0.5, dtype=torch.float32)[None, None]
    return fill(t, m, **kw)[0].permute(1, 2, 0).numpy()


def harmonic_fill_np(frame: np.ndarray, mask: np.ndarray, iters: int = 300) -> np.ndarray:
    """:func:`fvgen.fill.harmonic_fill` of one frame run to convergence (300 sweeps a level: within
    0.01 dB of 1,000 on the evaluation views): the evaluation's classical baseline."""
    from ..fill import harmonic_fill

    return torch_fill_np(harmonic_fill, frame, mask, iters=iters)


def clip_metrics(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict:
    """Mean PSNR/SSIM over frames, all pixels and hole pixels (``mask`` <= 0.5)."""
    from ..metrics import psnr, ssim

    rows = {"psnr": [], "ssim": [], "psnr_holes": [], "ssim_holes": []}
    for p, g, m in zip(pred, gt, masks):
        pt, gt_ = torch.as_tensor(np.asarray(p, np.float32)), torch.as_tensor(np.asarray(g, np.float32))
        holes = torch.as_tensor(np.asarray(m) <= 0.5)
        rows["psnr"].append(psnr(pt, gt_))
        rows["ssim"].append(ssim(pt, gt_))
        if holes.any():
            rows["psnr_holes"].append(psnr(pt, gt_, holes))
            rows["ssim_holes"].append(ssim(pt, gt_, holes))
    out = {k: (float(np.mean(v)) if v else None) for k, v in rows.items()}
    out["frames"] = len(rows["psnr"])
    out["hole_fraction"] = float(np.mean([(np.asarray(m) <= 0.5).mean() for m in masks])) if len(masks) else 0.0
    return out


def evaluate_examples(files, model=None, steps: int = 50, cfg: float = 3.0, max_size: int = 160) -> dict:
    """Baseline (and, with ``model``, teacher) metrics over example shards (the GPU session's
    comparison): warp as is, biharmonic fill, teacher sample."""
    from .data import load_example
    from .sample import sample_latents

    res: dict[str, list] = {"warp": [], "biharmonic": [], "teacher": []}
    for f in files:
        ex = load_example(f)
        gt = ex["gt"].astype(np.float32) / 255
        warp = ex["warp"].astype(np.float32) / 255
        mask = ex["mask"].astype(np.float32) / 255
        res["warp"].append(clip_metrics(warp, gt, mask))
        res["biharmonic"].append(clip_metrics(fill_clip(warp, mask, max_size), gt, mask))
        if model is not None:
            from .data import to_tensors

            t = to_tensors(ex, len(gt))
            out = sample_latents(model, t["ref"][None], t["warp"][None], t["mask"][None], steps, cfg,
                                 generator=torch.Generator().manual_seed(0), autocast=model.device.type == "cuda")
            pred = ((out[0] + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
            res["teacher"].append(clip_metrics(pred, gt, mask))

    def mean(rows):
        keys = [k for k in rows[0] if k != "frames"] if rows else []
        return {k: float(np.mean([r[k] for r in rows if r[k] is not None])) if any(r[k] is not None for r in rows)
                else None for k in keys}

    return {k: mean(v) for k, v in res.items() if v}
