"""Image metrics: PSNR, SSIM (kornia's Gaussian-window SSIM) and LPIPS when it can be had.

LPIPS needs pretrained backbone weights that fvgen cannot download; it is reported as ``None``
with the reason unless the ``lpips`` package and its weights are already present locally. It is
never computed with random weights.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB of images in [0, 1] ([H, W, 3]); with ``mask`` [H, W] only masked pixels count."""
    err = (pred.float() - target.float()) ** 2
    if mask is not None:
        m = mask.bool()
        if not m.any():
            return float("nan")
        err = err[m]
    mse = err.mean().clamp_min(1e-12)
    return float(-10.0 * torch.log10(mse))


def ssim_map(pred: torch.Tensor, target: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Per-pixel SSIM [B, 3, H, W] of images [B, 3, H, W] in [0, 1] (differentiable)."""
    import kornia

    return kornia.metrics.ssim(pred, target, window, max_val=1.0, padding="same")


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean SSIM of [H, W, 3] images in [0, 1]; with ``mask`` [H, W] only masked pixels count."""
    m = ssim_map(pred.permute(2, 0, 1)[None].float(), target.permute(2, 0, 1)[None].float())[0]
    if mask is not None:
        sel = mask.bool()
        if not sel.any():
            return float("nan")
        return float(m[:, sel].mean())
    return float(m.mean())


def lpips_status() -> tuple[object | None, str]:
    """(an LPIPS callable or None, implementation or reason)."""
    try:
        import lpips
    except ImportError:
        return None, "unavailable: the lpips package and its pretrained backbone weights are not installed"
    try:
        model = lpips.LPIPS(net="alex", verbose=False, pretrained=True)
    except Exception as e:  # weights missing locally (no downloads here)
        return None, f"unavailable: LPIPS weights could not be loaded locally ({type(e).__name__})"
    return model, "lpips package, AlexNet backbone"


def clip_metrics(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict:
    """Mean PSNR/SSIM over frames, all pixels and hole pixels (``mask`` <= 0.5)."""
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
