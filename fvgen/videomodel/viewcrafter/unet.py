"""The latent video UNet of ViewCrafter / DynamiCrafter, written from the official code's structure.

Parameter names follow the official ``lvdm.modules.networks.openaimodel3d.UNetModel`` so that the
checkpoint's ``model.diffusion_model.*`` tensors load without renaming (module names such as the
official ``temopral_conv`` spelling are kept on purpose). The maths, read from Drexubery/ViewCrafter
at commit 8408cd5a7ae66b7f6e8cdfda0b3d0c2996f8646d:

- frames are folded into the batch, ``[B, C, T, H, W] -> [B*T, C, H, W]``, for every 2D layer;
- each ResBlock (GroupNorm computed in float32, SiLU, 3x3 conv, + timestep embedding, GroupNorm,
  SiLU, dropout, 3x3 conv, skip) is followed by a temporal convolution block (four GroupNorm-SiLU-
  Conv3d(3x1x1) layers with a residual);
- a SpatialTransformer (self-attention, cross-attention to 77 text tokens plus a second
  cross-attention to the image tokens whose output is added, GEGLU feed-forward) and a
  TemporalTransformer (two self-attentions along time for every pixel, feed-forward) follow the
  ResBlocks at the attention resolutions; an extra temporal transformer (``init_attn``, 8 heads)
  follows the input convolution;
- the timestep and the frame-stride (``fs``) are sinusoidal embeddings (cos first) through two MLPs,
  summed;
- the context holds 77 text tokens then the resampler's image tokens; when there are exactly
  ``image_tokens_per_frame`` tokens per frame each frame attends to its own tokens, otherwise every
  frame attends to all of them (the official rule, so the 25-frame model sees all 256 tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [N] -> [N, dim] in float32, cosines first (the official order)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in float32 whatever the activations' dtype (as the official
    ``normalization``), so bf16/fp16 runs keep the statistics of the float32 model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).to(x.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax attention: q [B, N, h*d], k/v [B, M, h*d] -> [B, N, h*d] (scale d^-1/2).

    Batches larger than 32768 are split: CUDA kernels limit a grid dimension to 65535 blocks and the
    temporal attention folds every pixel of every frame pair into the batch."""
    B, N, inner = q.shape
    d = inner // heads

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, d).transpose(1, 2)

    chunk = 32768
    if B <= chunk:
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    else:
        out = torch.cat([F.scaled_dot_product_attention(split(q[i:i + chunk]), split(k[i:i + chunk]),
                                                        split(v[i:i + chunk])) for i in range(0, B, chunk)])
    return out.transpose(1, 2).reshape(B, N, inner)


class CrossAttention(nn.Module):
    """Official ``CrossAttention``: self-attention when no context is given; with a context, attention
    to its first ``text_context_len`` tokens, plus (``image_cross_attention``) a second attention
    with its own key/value projections (``to_k_ip``/``to_v_ip``) to the remaining image tokens,
    added with weight ``image_cross_attention_scale``."""

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64,
                 dropout: float = 0.0, image_cross_attention: bool = False, image_cross_attention_scale: float = 1.0,
                 text_context_len: int = 77):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))
        self.image_cross_attention = image_cross_attention
        self.image_cross_attention_scale = image_cross_attention_scale
        self.text_context_len = text_context_len
        if image_cross_attention:
            self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
            self.to_v_ip = nn.Linear(context_dim, inner, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, N, query_dim], context [B, M, context_dim] or None -> [B, N, query_dim]."""
        q = self.to_q(x)
        if context is None:
            out = attention(q, self.to_k(x), self.to_v(x), self.heads)
        else:
            text = context[:, :self.text_context_len]
            out = attention(q, self.to_k(text), self.to_v(text), self.heads)
            if self.image_cross_attention:
                image = context[:, self.text_context_len:]
                out = out + self.image_cross_attention_scale * attention(q, self.to_k_ip(image),
                                                                         self.to_v_ip(image), self.heads)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, keys ``net.0.proj`` and ``net.2``."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """attn1 (self) -> attn2 (cross, or self when ``context`` is None) -> feed-forward, pre-norm."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None, dropout: float = 0.0,
                 image_cross_attention: bool = False, text_context_len: int = 77):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, dropout,
                                    image_cross_attention=image_cross_attention, text_context_len=text_context_len)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Attention over the pixels of each frame. [B*T, C, H, W] -> same shape (residual)."""

    def __init__(self, channels: int, heads: int, dim_head: int, depth: int, context_dim: int,
                 dropout: float = 0.0, image_cross_attention: bool = True, text_context_len: int = 77):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlock(inner, heads, dim_head, context_dim, dropout, image_cross_attention, text_context_len)
            for _ in range(depth)])
        self.proj_out = nn.Linear(inner, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        bt, c, h, w = x.shape
        y = self.norm(x).flatten(2).transpose(1, 2)
        y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y, context)
        y = self.proj_out(y).transpose(1, 2).reshape(bt, c, h, w)
        return y + x


class TemporalTransformer(nn.Module):
    """Self-attention along time for every pixel (``only_self_att``: attn2 is a second
    self-attention). [B*T, C, H, W] -> same shape (residual). The GroupNorm normalises over
    channels-in-group x time x pixels of each clip, as the official 5D GroupNorm.

    ``use_linear`` False (the official ``init_attn``) keeps 1x1 Conv1d projections."""

    def __init__(self, channels: int, heads: int, dim_head: int, depth: int, dropout: float = 0.0,
                 use_linear: bool = True):
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        if use_linear:
            self.proj_in = nn.Linear(channels, inner)
            self.proj_out = nn.Linear(inner, channels)
        else:
            self.proj_in = nn.Conv1d(channels, inner, 1)
            self.proj_out = nn.Conv1d(inner, channels, 1)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlock(inner, heads, dim_head, None, dropout) for _ in range(depth)])
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def _project(self, layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
        if self.use_linear:
            return layer(y)
        return F.linear(y, layer.weight[..., 0], layer.bias)  # a 1x1 Conv1d over time == a linear map

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        b = bt // num_frames
        clip = x.reshape(b, num_frames, c, h, w).transpose(1, 2)  # [B, C, T, H, W]
        y = self.norm(clip).permute(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)
        y = self._project(self.proj_in, y)
        for block in self.transformer_blocks:
            y = block(y)
        y = self._project(self.proj_out, y)
        y = y.reshape(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bt, c, h, w)
        return y + x


class TemporalConvBlock(nn.Module):
    """Four GroupNorm-SiLU-Conv3d(3x1x1) layers over [B, C, T, H, W] with a residual; the last conv
    starts at zero (identity block)."""

    def __init__(self, channels: int, dropout: float = 0.1):
        super().__init__()

        def conv():
            return nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

        self.conv1 = nn.Sequential(nn.GroupNorm(32, channels), nn.SiLU(), conv())
        self.conv2 = nn.Sequential(nn.GroupNorm(32, channels), nn.SiLU(), nn.Dropout(dropout), conv())
        self.conv3 = nn.Sequential(nn.GroupNorm(32, channels), nn.SiLU(), nn.Dropout(dropout), conv())
        self.conv4 = nn.Sequential(nn.GroupNorm(32, channels), nn.SiLU(), nn.Dropout(dropout), conv())
        nn.init.zeros_(self.conv4[-1].weight)
        nn.init.zeros_(self.conv4[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """[B*T, C_in, H, W], emb [B*T, E] -> [B*T, C_out, H, W]; then the temporal conv block."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, dropout: float, temporal_conv: bool):
        super().__init__()
        self.in_layers = nn.Sequential(GroupNorm32(32, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(32, out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        nn.init.zeros_(self.out_layers[-1].weight)
        nn.init.zeros_(self.out_layers[-1].bias)
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))
        if temporal_conv:
            self.temopral_conv = TemporalConvBlock(out_channels, dropout=0.1)  # official spelling

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        if hasattr(self, "temopral_conv"):
            bt, c, hh, ww = h.shape
            clip = h.reshape(bt // num_frames, num_frames, c, hh, ww).transpose(1, 2)
            h = self.temopral_conv(clip).transpose(1, 2).reshape(bt, c, hh, ww)
        return h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepStage(nn.ModuleList):
    """The official ``TimestepEmbedSequential``: runs its layers in order, giving each the inputs
    it takes (numbered children, so keys read ``input_blocks.4.1.…``)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                h = layer(h, emb, num_frames)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, context)
            elif isinstance(layer, TemporalTransformer):
                h = layer(h, num_frames)
            else:
                h = layer(h)
        return h


class ViewCrafterUNet(ModelMixin, ConfigMixin):
    """Latent video UNet of the official ``inference_pvd_512.yaml`` / ``inference_pvd_1024.yaml``
    (the defaults are those configs' values).

    forward: sample [B, in_channels, T, h, w] (noisy latent then the render latents, 4 + 4
    channels), timestep [B] (or a scalar), encoder_hidden_states [B, 77 + L, context_dim] (text then
    image tokens), fps [B] (frame stride; ``default_fs`` when None) -> [B, out_channels, T, h, w]
    (the v prediction). h and w must be multiples of 2^(len(channel_mult)-1).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(self, in_channels: int = 8, out_channels: int = 4, model_channels: int = 320,
                 attention_resolutions: tuple = (4, 2, 1), num_res_blocks: int = 2,
                 channel_mult: tuple = (1, 2, 4, 4), num_head_channels: int = 64, transformer_depth: int = 1,
                 context_dim: int = 1024, dropout: float = 0.1, temporal_conv: bool = True,
                 temporal_attention: bool = True, addition_attention: bool = True, init_attention_heads: int = 8,
                 image_cross_attention: bool = True, text_context_len: int = 77, image_tokens_per_frame: int = 16,
                 fs_condition: bool = True, default_fs: int = 10):
        super().__init__()
        mc = model_channels
        emb_dim = mc * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if fs_condition:
            self.fps_embedding = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            nn.init.zeros_(self.fps_embedding[-1].weight)
            nn.init.zeros_(self.fps_embedding[-1].bias)

        def spatial(ch):
            return SpatialTransformer(ch, ch // num_head_channels, num_head_channels, transformer_depth, context_dim,
                                      image_cross_attention=image_cross_attention, text_context_len=text_context_len)

        def temporal(ch):
            return TemporalTransformer(ch, ch // num_head_channels, num_head_channels, transformer_depth)

        def attn_layers(ch):
            return [spatial(ch)] + ([temporal(ch)] if temporal_attention else [])

        self.input_blocks = nn.ModuleList([TimestepStage([nn.Conv2d(in_channels, mc, 3, padding=1)])])
        if addition_attention:
            self.init_attn = TimestepStage([TemporalTransformer(mc, init_attention_heads, num_head_channels,
                                                                transformer_depth, use_linear=False)])
        skip_channels = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, emb_dim, mult * mc, dropout, temporal_conv)]
                ch = mult * mc
                if ds in attention_resolutions:
                    layers += attn_layers(ch)
                self.input_blocks.append(TimestepStage(layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepStage([Downsample(ch)]))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = TimestepStage([ResBlock(ch, emb_dim, ch, dropout, temporal_conv), *attn_layers(ch),
                                           ResBlock(ch, emb_dim, ch, dropout, temporal_conv)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, mult * mc, dropout, temporal_conv)]
                ch = mult * mc
                if ds in attention_resolutions:
                    layers += attn_layers(ch)
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepStage(layers))
        self.out = nn.Sequential(GroupNorm32(32, ch), nn.SiLU(), nn.Conv2d(mc, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.config.channel_mult) - 1)

    def frame_context(self, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """[B, 77 + L, D] -> [B*T, ., D]: per-frame image tokens when L == T * tokens_per_frame,
        else the whole context for every frame (the official rule)."""
        b, length, d = context.shape
        text_len, per_frame = self.config.text_context_len, self.config.image_tokens_per_frame
        if length == text_len + num_frames * per_frame:
            text = context[:, :text_len].repeat_interleave(num_frames, dim=0)
            image = context[:, text_len:].reshape(b * num_frames, per_frame, d)
            return torch.cat([text, image], dim=1)
        return context.repeat_interleave(num_frames, dim=0)

    def _encode(self, sample: torch.Tensor, timestep: torch.Tensor | float, encoder_hidden_states: torch.Tensor,
                fps: torch.Tensor | int | None) -> tuple:
        """The input blocks: (x, skips, emb, context) with frames folded into the batch."""
        b, _, t, h, w = sample.shape
        f = self.downsampling_factor
        if h % f or w % f:
            raise ValueError(f"latent size {h}x{w} is not a multiple of {f}")
        dtype = self.out[-1].weight.dtype
        device = sample.device
        timestep = torch.as_tensor(timestep, device=device).reshape(-1).expand(b)
        emb = self.time_embed(timestep_embedding(timestep, self.config.model_channels).to(dtype))
        if self.config.fs_condition:
            fps = self.config.default_fs if fps is None else fps
            fps = torch.as_tensor(fps, device=device).reshape(-1).expand(b)
            emb = emb + self.fps_embedding(timestep_embedding(fps, self.config.model_channels).to(dtype))
        emb = emb.repeat_interleave(t, dim=0)
        context = self.frame_context(encoder_hidden_states.to(dtype), t)

        x = sample.to(dtype).transpose(1, 2).reshape(b * t, -1, h, w)
        skips = []
        for i, stage in enumerate(self.input_blocks):
            x = stage(x, emb, context, t)
            if i == 0 and self.config.addition_attention:
                x = self.init_attn(x, emb, context, t)
            skips.append(x)
        return x, skips, emb, context

    def encoder_features(self, sample: torch.Tensor, timestep: torch.Tensor | float,
                         encoder_hidden_states: torch.Tensor, fps: torch.Tensor | int | None = None) -> list[torch.Tensor]:
        """The encoder half (the up blocks are not run), for a discriminator on the frozen network:
        the output of each resolution level's last input block (before its downsampling) and the
        middle block's, each [B*T, C_i, h_i, w_i]; the inputs are :meth:`forward`'s."""
        t = sample.shape[2]
        x, skips, emb, context = self._encode(sample, timestep, encoder_hidden_states, fps)
        last = len(self.input_blocks) - 1
        feats = [h for i, h in enumerate(skips)
                 if i == last or (i > 0 and isinstance(self.input_blocks[i + 1][0], Downsample))]
        feats.append(self.middle_block(x, emb, context, t))
        return feats

    def feature_channels(self) -> tuple[int, ...]:
        """Channels of :meth:`encoder_features`' outputs."""
        ch = tuple(self.config.model_channels * m for m in self.config.channel_mult)
        return ch + (ch[-1],)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float,
                encoder_hidden_states: torch.Tensor, fps: torch.Tensor | int | None = None) -> torch.Tensor:
        b, _, t, h, w = sample.shape
        x, skips, emb, context = self._encode(sample, timestep, encoder_hidden_states, fps)
        x = self.middle_block(x, emb, context, t)
        for stage in self.output_blocks:
            x = stage(torch.cat([x, skips.pop()], dim=1), emb, context, t)
        y = self.out(x)
        return y.reshape(b, t, -1, h, w).transpose(1, 2)
