"""The first stage: diffusers' ``AutoencoderKL`` configured as the official ``first_stage_config``
(ch 128, ch_mult 1-2-4-4, 2 res blocks, no attention but the mid block's, z 4, scale 0.18215), and
the key map from the checkpoint's ``first_stage_model.*`` (latent-diffusion naming) through
diffusers' own single-file converter.

Encoding samples the posterior (the official ``get_first_stage_encoding``) and multiplies by the
scale factor; both directions run frame by frame in chunks (the official ``perframe_ae``) so a
25-frame 1024x576 clip fits in memory.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

SCALE_FACTOR = 0.18215


def make_vae(block_out_channels: tuple = (128, 256, 512, 512), layers_per_block: int = 2, latent_channels: int = 4,
             norm_num_groups: int = 32) -> AutoencoderKL:
    n = len(block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(block_out_channels),
                         layers_per_block=layers_per_block, latent_channels=latent_channels,
                         norm_num_groups=norm_num_groups, sample_size=256, scaling_factor=SCALE_FACTOR)


def ldm_vae_to_diffusers(ldm: dict, vae: AutoencoderKL) -> dict:
    """``encoder.down.0.block.0.conv1.weight``-style tensors -> ``vae.state_dict()`` names (the mid
    attention's 1x1 convs become linear weights)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    prefixed = {f"first_stage_model.{k}": v for k, v in ldm.items()}
    return convert_ldm_vae_checkpoint(prefixed, dict(vae.config))


@torch.no_grad()
def encode_frames(vae: AutoencoderKL, frames: torch.Tensor, generator: torch.Generator | None = None,
                  chunk: int = 1) -> torch.Tensor:
    """frames [B, 3, T, H, W] in [-1, 1] -> scaled latents [B, 4, T, H/8, W/8] (posterior samples)."""
    b, _, t, h, w = frames.shape
    flat = frames.transpose(1, 2).reshape(b * t, 3, h, w).to(vae.dtype)
    out = [vae.encode(flat[i:i + chunk]).latent_dist.sample(generator) for i in range(0, b * t, chunk)]
    z = torch.cat(out) * vae.config.scaling_factor
    return z.reshape(b, t, *z.shape[1:]).transpose(1, 2)


@torch.no_grad()
def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, chunk: int = 1) -> torch.Tensor:
    """[B, 4, T, h, w] scaled latents -> frames [B, 3, T, 8h, 8w] in [-1, 1] (clamped)."""
    b, c, t, h, w = latents.shape
    flat = latents.transpose(1, 2).reshape(b * t, c, h, w).to(vae.dtype) / vae.config.scaling_factor
    x = torch.cat([vae.decode(flat[i:i + chunk]).sample for i in range(0, b * t, chunk)])
    return x.float().clamp(-1, 1).reshape(b, t, *x.shape[1:]).transpose(1, 2)
