"""The latent autoencoder: diffusers ``AutoencoderKL`` trained here (no downloaded weights).

Why latent: the SVD UNet puts attention in its blocks at full resolution and fails in pixel space at
128x128 on the H200 (see shared/notes/gpu-training.md); an 8x autoencoder makes the embedded
256x160 clips 32x20 latents, cheap enough to sample on a 2-core CPU.

Loss: L1 + MSE on pixels in [-1, 1], plus a small KL term; no perceptual loss (LPIPS weights can
not be downloaded here). After training, ``calibrate_scaling`` sets ``scaling_factor`` so scaled
latents have unit variance, as the diffusion schedule assumes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def vae_loss(vae, x: torch.Tensor, kl_weight: float = 1e-6, generator=None) -> tuple[torch.Tensor, dict]:
    """x [N, 3, H, W] in [-1, 1] -> (loss, figures)."""
    post = vae.encode(x).latent_dist
    z = post.sample(generator)
    rec = vae.decode(z).sample
    l1 = (rec.float() - x.float()).abs().mean()
    mse = F.mse_loss(rec.float(), x.float())
    kl = post.kl().float().mean() / x[0].numel()
    loss = l1 + mse + kl_weight * kl * x[0].numel()
    return loss, {"l1": float(l1.detach()), "mse": float(mse.detach()), "kl": float(kl.detach())}


@torch.no_grad()
def calibrate_scaling(vae, frames: torch.Tensor) -> float:
    """Set ``vae.config.scaling_factor`` = 1 / std of the latent means of ``frames`` [N, 3, H, W]."""
    z = vae.encode(frames).latent_dist.mode().float()
    s = float(1.0 / z.std().clamp_min(1e-6))
    vae.register_to_config(scaling_factor=s)
    return s
