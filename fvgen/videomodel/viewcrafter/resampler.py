"""The image projector: a Perceiver resampler turning the CLIP vision tower's 257 tokens into
``num_queries`` tokens per frame (x ``video_length``) for the UNet's image cross-attention.

Names follow the official ``lvdm.modules.encoders.resampler.Resampler`` (``image_proj_model.*`` in
the checkpoint): ``latents``, ``proj_in``, ``proj_out``, ``norm_out``, ``layers.i.0`` (attention:
``norm1``, ``norm2``, ``to_q``, ``to_kv``, ``to_out``) and ``layers.i.1`` (LayerNorm, Linear,
GELU, Linear, no biases). The attention's keys/values are the image features concatenated with the
latents themselves; its softmax scale is dim_head^-1/2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """x [B, N, dim] image features, latents [B, L, dim] -> [B, L, dim]."""
        x = self.norm1(x)
        latents = self.norm2(latents)
        b, length, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)

        def split(t):
            return t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.to_out(out.transpose(1, 2).reshape(b, length, -1))


class ImageResampler(ModelMixin, ConfigMixin):
    """[B, N, embedding_dim] CLIP tokens -> [B, num_queries * video_length, output_dim] (defaults:
    the official configs' ``image_proj_stage_config``: 257x1280 -> 256x1024)."""

    @register_to_config
    def __init__(self, dim: int = 1024, depth: int = 4, dim_head: int = 64, heads: int = 12, num_queries: int = 16,
                 embedding_dim: int = 1280, output_dim: int = 1024, ff_mult: int = 4, video_length: int | None = 16):
        super().__init__()
        total = num_queries * (video_length or 1)
        self.latents = nn.Parameter(torch.randn(1, total, dim) / dim ** 0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList([
            nn.ModuleList([
                PerceiverAttention(dim, dim_head, heads),
                nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False), nn.GELU(),
                              nn.Linear(dim * ff_mult, dim, bias=False)),
            ]) for _ in range(depth)])

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(image_tokens.to(self.latents.dtype))
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))
