"""The DUSt3R network in plain torch, written from the papers (DUSt3R, Wang et al. CVPR 2024;
CroCo v2, Weinzaepfel et al. ICCV 2023; DPT, Ranftl et al. ICCV 2021).

Architecture (names of submodules follow the published checkpoint's state-dict keys):

- a ViT encoder shared by both views: 16x16 patch embedding (``patch_embed.proj``), no class
  token, no absolute position embedding, ``enc_depth`` pre-norm blocks whose attention applies a
  2D rotary position embedding (RoPE, base frequency 100: half of each head's channels rotate with
  the token's row, the other half with its column), then ``enc_norm``;
- ``decoder_embed`` (linear, encoder width -> decoder width) and two decoders of ``dec_depth``
  blocks (``dec_blocks`` for view 1, ``dec_blocks2`` for view 2); each block is self-attention,
  cross-attention to the other view's tokens of the previous layer (``norm_y`` normalises those),
  and an MLP, all with RoPE; the last layer's outputs go through ``dec_norm``;
- one DPT head per view (``downstream_head1.dpt`` / ``downstream_head2.dpt``) reading the
  encoder output and decoder layers ``dec_depth/2``, ``3*dec_depth/4`` and ``dec_depth``, giving 4
  channels per pixel: a 3D point (direction times ``expm1`` of its norm) and a confidence
  ``1 + exp(x)``. Both pointmaps are expressed in view 1's camera frame.

Images of any size that is a multiple of the patch size work (landscape or portrait: the patch
grid and the RoPE positions simply follow the image).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Dust3rModelConfig:
    """Sizes of the network. ``large_512()`` is the published ``DUSt3R_ViTLarge_BaseDecoder_512_dpt``."""

    patch_size: int = 16
    img_size: int = 512  # long side the network was trained at
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    rope_base: float = 100.0
    dpt_layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    dpt_feature_dim: int = 256
    dpt_last_dim: int = 128
    conf_min: float = 1.0  # conf = conf_min + exp(x)
    mask_token: bool = False  # CroCo pre-training token; the DUSt3R checkpoint has none

    @classmethod
    def large_512(cls) -> "Dust3rModelConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "Dust3rModelConfig":
        """A few-hundred-thousand-parameter configuration for tests (same structure)."""
        return cls(img_size=64, enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32,
                   dec_depth=4, dec_num_heads=2, dpt_layer_dims=(8, 16, 24, 32), dpt_feature_dim=16,
                   dpt_last_dim=8)

    def __post_init__(self):
        for dim, heads in ((self.enc_embed_dim, self.enc_num_heads), (self.dec_embed_dim, self.dec_num_heads)):
            if dim % heads or (dim // heads) % 4:
                raise ValueError(f"width {dim} with {heads} heads: head width must be a multiple of 4 (2D RoPE)")
        if self.dec_depth < 4:
            raise ValueError("dec_depth must be at least 4 (the DPT head reads 3 decoder layers)")

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def hooks(self) -> tuple[int, int, int, int]:
        d = self.dec_depth
        return (0, d * 2 // 4, d * 3 // 4, d)


# ----------------------------------------------------------------------------- 2D RoPE


class RoPE2D(nn.Module):
    """Rotary embedding over (row, column) token positions; no parameters.

    For a head of width D, the first D/2 channels are rotated by the row index and the last D/2 by
    the column index; within each half, channel k and k + D/4 form a rotation pair with frequency
    ``base ** (-2 (k mod D/4) / (D/2))``.
    """

    max_positions = 1024  # patches per side (16384 px at patch 16)

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = float(base)
        self._cache: dict = {}

    def _cos_sin(self, dim: int, n: int, device, dtype):
        key = (dim, n, device, dtype)
        if key not in self._cache:
            inv = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
            t = torch.arange(n, device=device, dtype=torch.float32)
            fr = torch.outer(t, inv)
            fr = torch.cat([fr, fr], dim=-1)
            self._cache[key] = (fr.cos().to(dtype), fr.sin().to(dtype))
        return self._cache[key]

    @staticmethod
    def _rotate_half(x):
        a, b = x.chunk(2, dim=-1)
        return torch.cat([-b, a], dim=-1)

    def _rope1d(self, x, pos, cos, sin):
        c = F.embedding(pos, cos)[:, None]  # [B, 1, N, d]
        s = F.embedding(pos, sin)[:, None]
        return x * c + self._rotate_half(x) * s

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x: [B, heads, N, D]; pos: [B, N, 2] integer (row, column)."""
        half = x.shape[-1] // 2
        cos, sin = self._cos_sin(half, self.max_positions, x.device, x.dtype)  # no device sync on pos.max()
        y, xx = x.chunk(2, dim=-1)
        return torch.cat([self._rope1d(y, pos[..., 0], cos, sin), self._rope1d(xx, pos[..., 1], cos, sin)], dim=-1)


def patch_positions(b: int, h: int, w: int, device) -> torch.Tensor:
    """[b, h*w, 2] (row, column) of a row-major h x w patch grid."""
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    pos = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(1, h * w, 2)
    return pos.expand(b, -1, -1)


# ----------------------------------------------------------------------------- transformer blocks


def _layer_norm(dim):
    return nn.LayerNorm(dim, eps=1e-6)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, rope: RoPE2D):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x, pos):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q, k = self.rope(q, pos), self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, rope: RoPE2D):
        super().__init__()
        self.heads = heads
        self.projq = nn.Linear(dim, dim)
        self.projk = nn.Linear(dim, dim)
        self.projv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x, y, xpos, ypos):
        B, N, C = x.shape
        M = y.shape[1]
        h, d = self.heads, C // self.heads
        q = self.projq(x).reshape(B, N, h, d).transpose(1, 2)
        k = self.projk(y).reshape(B, M, h, d).transpose(1, 2)
        v = self.projv(y).reshape(B, M, h, d).transpose(1, 2)
        q, k = self.rope(q, xpos), self.rope(k, ypos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, rope: RoPE2D):
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.attn = Attention(dim, heads, rope)
        self.norm2 = _layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, pos):
        x = x + self.attn(self.norm1(x), pos)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, rope: RoPE2D):
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.attn = Attention(dim, heads, rope)
        self.norm2 = _layer_norm(dim)
        self.cross_attn = CrossAttention(dim, heads, rope)
        self.norm3 = _layer_norm(dim)
        self.norm_y = _layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, y, xpos, ypos):
        x = x + self.attn(self.norm1(x), xpos)
        yn = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), yn, xpos, ypos)
        return x + self.mlp(self.norm3(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, img):
        B, _, H, W = img.shape
        if H % self.patch or W % self.patch:
            raise ValueError(f"image size {W}x{H} is not a multiple of the patch size {self.patch}")
        if max(H, W) // self.patch > RoPE2D.max_positions:
            raise ValueError(f"image size {W}x{H} is too large for the position table")
        x = self.proj(img).flatten(2).transpose(1, 2)
        return x, patch_positions(B, H // self.patch, W // self.patch, img.device)


# ----------------------------------------------------------------------------- DPT head


class ResidualConvUnit(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return out + x


class FusionBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(ch)
        self.resConfUnit2 = ResidualConvUnit(ch)
        self.out_conv = nn.Conv2d(ch, ch, 1)

    def forward(self, x, skip=None):
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class _Upsample2(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class DPT(nn.Module):
    """Dense prediction transformer head: four token maps -> 4 channels at full resolution."""

    def __init__(self, cfg: Dust3rModelConfig, out_channels: int = 4):
        super().__init__()
        ld, fd = cfg.dpt_layer_dims, cfg.dpt_feature_dim
        dims = (cfg.enc_embed_dim, cfg.dec_embed_dim, cfg.dec_embed_dim, cfg.dec_embed_dim)
        self.patch = cfg.patch_size
        self.hooks = cfg.hooks
        self.act_postprocess = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dims[0], ld[0], 1), nn.ConvTranspose2d(ld[0], ld[0], 4, stride=4)),
            nn.Sequential(nn.Conv2d(dims[1], ld[1], 1), nn.ConvTranspose2d(ld[1], ld[1], 2, stride=2)),
            nn.Sequential(nn.Conv2d(dims[2], ld[2], 1)),
            nn.Sequential(nn.Conv2d(dims[3], ld[3], 1), nn.Conv2d(ld[3], ld[3], 3, stride=2, padding=1)),
        ])
        self.scratch = nn.Module()
        for i in range(4):
            setattr(self.scratch, f"layer{i + 1}_rn", nn.Conv2d(ld[i], fd, 3, padding=1, bias=False))
        for i in range(4):
            setattr(self.scratch, f"refinenet{i + 1}", FusionBlock(fd))
        self.head = nn.Sequential(
            nn.Conv2d(fd, fd // 2, 3, padding=1),
            _Upsample2(),
            nn.Conv2d(fd // 2, cfg.dpt_last_dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(cfg.dpt_last_dim, out_channels, 1),
        )

    def forward(self, tokens: list[torch.Tensor], hw: tuple[int, int]) -> torch.Tensor:
        H, W = hw
        nh, nw = H // self.patch, W // self.patch
        maps = []
        for i, hook in enumerate(self.hooks):
            t = tokens[hook]
            t = t.transpose(1, 2).reshape(t.shape[0], t.shape[2], nh, nw)
            t = self.act_postprocess[i](t)
            maps.append(getattr(self.scratch, f"layer{i + 1}_rn")(t))
        s = self.scratch
        p4 = s.refinenet4(maps[3])[:, :, :maps[2].shape[2], :maps[2].shape[3]]
        p3 = s.refinenet3(p4, maps[2])
        p2 = s.refinenet2(p3, maps[1])
        p1 = s.refinenet1(p2, maps[0])
        return self.head(p1)


class PixelwiseHead(nn.Module):
    def __init__(self, cfg: Dust3rModelConfig):
        super().__init__()
        self.dpt = DPT(cfg, 4)
        self.conf_min = cfg.conf_min

    def forward(self, tokens, hw):
        out = self.dpt(tokens, hw).float().permute(0, 2, 3, 1)  # [B, H, W, 4]
        xyz = out[..., :3]
        d = xyz.norm(dim=-1, keepdim=True)
        pts = xyz / d.clamp(min=1e-8) * torch.expm1(d.clamp(max=60.0))
        conf = self.conf_min + out[..., 3].clamp(max=60.0).exp()
        return pts, conf


# ----------------------------------------------------------------------------- the network


class Dust3rModel(nn.Module):
    """DUSt3R: two images -> two pointmaps in the first view's camera frame, with confidences."""

    def __init__(self, cfg: Dust3rModelConfig = Dust3rModelConfig()):
        super().__init__()
        self.cfg = cfg
        rope = RoPE2D(cfg.rope_base)
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.enc_embed_dim)
        if cfg.mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dec_embed_dim))
        self.enc_blocks = nn.ModuleList(
            [EncoderBlock(cfg.enc_embed_dim, cfg.enc_num_heads, cfg.mlp_ratio, rope) for _ in range(cfg.enc_depth)])
        self.enc_norm = _layer_norm(cfg.enc_embed_dim)
        self.decoder_embed = nn.Linear(cfg.enc_embed_dim, cfg.dec_embed_dim)
        self.dec_blocks = nn.ModuleList(
            [DecoderBlock(cfg.dec_embed_dim, cfg.dec_num_heads, cfg.mlp_ratio, rope) for _ in range(cfg.dec_depth)])
        self.dec_blocks2 = nn.ModuleList(
            [DecoderBlock(cfg.dec_embed_dim, cfg.dec_num_heads, cfg.mlp_ratio, rope) for _ in range(cfg.dec_depth)])
        self.dec_norm = _layer_norm(cfg.dec_embed_dim)
        self.downstream_head1 = PixelwiseHead(cfg)
        self.downstream_head2 = PixelwiseHead(cfg)

    def encode(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """img [B, 3, H, W] in [-1, 1] -> (tokens [B, N, enc_dim] after enc_norm, positions [B, N, 2])."""
        x, pos = self.patch_embed(img)
        for blk in self.enc_blocks:
            x = blk(x, pos)
        return self.enc_norm(x), pos

    def decode(self, f1, pos1, f2, pos2) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Token lists per view: [encoder output, decoder layer 1, ..., dec_norm(last layer)]."""
        out1, out2 = [f1], [f2]
        x1, x2 = self.decoder_embed(f1), self.decoder_embed(f2)
        for b1, b2 in zip(self.dec_blocks, self.dec_blocks2):
            x1, x2 = b1(x1, x2, pos1, pos2), b2(x2, x1, pos2, pos1)
            out1.append(x1)
            out2.append(x2)
        out1[-1] = self.dec_norm(out1[-1])
        out2[-1] = self.dec_norm(out2[-1])
        return out1, out2

    def heads(self, tok1, tok2, hw):
        pts1, conf1 = self.downstream_head1(tok1, hw)
        pts2, conf2 = self.downstream_head2(tok2, hw)
        return pts1, conf1, pts2, conf2

    def forward_features(self, f1, pos1, f2, pos2, hw):
        """From encoder outputs of both views (see :meth:`encode`) to the two pointmaps."""
        tok1, tok2 = self.decode(f1, pos1, f2, pos2)
        return self.heads(tok1, tok2, hw)

    def forward(self, img1: torch.Tensor, img2: torch.Tensor):
        """Returns (pts1 [B,H,W,3], conf1 [B,H,W], pts2_in_view1 [B,H,W,3], conf2 [B,H,W])."""
        hw = img1.shape[-2:]
        if img1.shape == img2.shape:
            f, pos = self.encode(torch.cat([img1, img2]))
            f1, f2 = f.chunk(2)
            pos1, pos2 = pos.chunk(2)
        else:
            raise ValueError("both views of a pair must have the same size")
        return self.forward_features(f1, pos1, f2, pos2, tuple(hw))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(cfg: Dust3rModelConfig, device: str | torch.device = "cpu") -> Dust3rModel:
    """The network with random (default-initialised) weights on ``device`` (``"meta"`` for shapes only)."""
    with torch.device(device):
        return Dust3rModel(cfg)


# DUSt3R_ViTLarge_BaseDecoder_512_dpt's constructor, as recorded in the checkpoint's ``args``.
LARGE_512_ARGS = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', "
                  "img_size=(512, 512), head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), "
                  "conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, "
                  "dec_embed_dim=768, dec_depth=12, dec_num_heads=12)")

