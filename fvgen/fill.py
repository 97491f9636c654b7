"""Push-pull hole filling (Gortler et al. 1996, "The Lumigraph", sec. 3.3): the cheap, differentiable,
batched classical fill the pixel-space teacher generates on top of, and the interpolator of the
dense prior's depth completion (``fvgen.mvs``, ``MvsConf.complete_radius``).

Why a fill at all: with a few hundred training clips, a denoiser that must produce whole frames
learns the colours of its training scenes and ignores the warp on new ones (run 2, RESULTS.md).
Asked instead for the *difference* between the ground truth and a classical fill of the warp, it
starts from a sensible answer everywhere and only has to learn corrections: artefacts in the covered
pixels and structure in the holes.

Why push-pull and not the evaluation's biharmonic fill: it runs in a few milliseconds on a batch of
clips on the GPU, inside the training step, so example shards need not change; biharmonic takes
seconds per frame (a sparse solve per hole).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def push_pull_fill(image: torch.Tensor, mask: torch.Tensor, min_size: int = 1) -> torch.Tensor:
    """Fill the pixels of ``image`` [N, C, H, W] where ``mask`` [N, 1, H, W] is 0.

    Push: halve image*mask and mask together down to ``min_size`` (area averages, so a coarse
    pixel's weight is the fraction of it that was seen). Pull: from the coarsest level up, each
    level's colour is ``sum + (1 - weight) * upsampled coarser colour``, i.e. seen colour where
    there is some, blended smoothly into the coarser estimate where coverage is partial or none.
    Pixels with mask 1 are returned unchanged; a frame with no valid pixel comes back all zeros."""
    m = mask.to(image.dtype).clamp(0, 1)
    levels = [(image * m, m)]
    while min(levels[-1][1].shape[-2:]) > min_size:
        s, w = levels[-1]
        levels.append((F.avg_pool2d(s, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    s, w = levels[-1]
    colour = s / w.clamp_min(1e-8)  # coarsest level: the mean seen colour (0 when nothing was seen)
    for s, w in reversed(levels[:-1]):
        up = F.interpolate(colour, size=s.shape[-2:], mode="bilinear", align_corners=False)
        colour = s + (1 - w) * up  # s is premultiplied: the seen colour times its weight
    return torch.where(m > 0.5, image, colour)
