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


def augment_frames(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-frame augmentation for autoencoder training, x [N, 3, H, W] in [-1, 1] -> same shape.

    Why: trained on the frames of 9 scenes, the autoencoder memorised their colours (round trip
    26.1 dB on its training scenes, 19.35 dB on unseen ones, 65 % of that error in the 8x8-pixel
    means; benchmarks/RESULTS.md). Each frame gets a random channel order and per-channel gain
    (colours those scenes lack), a random crop of 60-100 % of each side resized back (scales), and a
    random horizontal flip."""
    N, _, H, W = x.shape
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    u = (x.float() + 1) / 2
    perms = torch.stack([torch.randperm(3, generator=generator) for _ in range(N)]).to(dev)
    u = torch.gather(u, 1, perms[:, :, None, None].expand(-1, -1, H, W))
    u = (u * (0.6 + 0.6 * rand(N, 3, 1, 1))).clamp(0, 1)
    # crop (side fractions s, centre anywhere the crop fits) and flip as one affine resampling
    s = 0.6 + 0.4 * rand(N, 2)
    centre = (1 - s) * (2 * rand(N, 2) - 1)
    flip = torch.where(rand(N) < 0.5, -1.0, 1.0)
    theta = torch.zeros(N, 2, 3, device=dev)
    theta[:, 0, 0] = s[:, 1] * flip
    theta[:, 1, 1] = s[:, 0]
    theta[:, 0, 2] = centre[:, 1]
    theta[:, 1, 2] = centre[:, 0]
    grid = F.affine_grid(theta, (N, 3, H, W), align_corners=False)
    out = F.grid_sample(u, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (out * 2 - 1).to(x.dtype)
