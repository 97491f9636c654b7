"""OpenCLIP ViT-H-14 image and text towers with OpenCLIP's parameter names, and its BPE tokenizer.

The ``open_clip_torch`` package hard-requires torchvision (and timm), which breaks ``import
diffusers`` beside our CPU torch, so these towers are written here from the published architecture
(ViT-H-14: vision width 1280, 32 layers, 16 heads, patch 14, 224 px; text width 1024, 24 layers,
16 heads, 77 tokens, vocabulary 49408). The official checkpoint holds both towers' weights:

- ``embedder.model.visual.*`` -> :class:`OpenCLIPVisionTower`. ViewCrafter's
  ``FrozenOpenCLIPImageEmbedderV2`` returns all 257 tokens of the transformer's last layer (before
  ``ln_post`` and ``proj``, which are loaded but unused), after resizing the [-1, 1] image to
  224x224 (bicubic, antialiased, corners aligned, no crop) and normalising with CLIP's mean/std.
- ``cond_stage_model.model.*`` -> :class:`OpenCLIPTextTower`. ``FrozenOpenCLIPEmbedder`` with
  ``layer: penultimate`` stops one residual block before the end, then applies ``ln_final``:
  [B, 77, 1024].

:class:`CLIPTokenizer` reimplements OpenCLIP's byte-level BPE from its vocabulary file
``bpe_simple_vocab_16e6.txt.gz`` (in the open_clip_torch wheel; not shipped with fvgen).
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import itertools
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ...core.errors import FvgenError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"


class ResidualAttentionBlock(nn.Module):
    """OpenCLIP's pre-norm block: x + attn(ln_1(x)); x + mlp(ln_2(x)) (GELU MLP, ``c_fc``/``c_proj``)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, skip_last: int = 0) -> torch.Tensor:
        for block in self.resblocks[:len(self.resblocks) - skip_last]:
            x = block(x, attn_mask)
        return x


class OpenCLIPVisionTower(ModelMixin, ConfigMixin):
    """image [B, 3, H, W] in [-1, 1] -> tokens [B, 1 + (image_size/patch)^2, width] (257x1280)."""

    @register_to_config
    def __init__(self, image_size: int = 224, patch_size: int = 14, width: int = 1280, layers: int = 32,
                 heads: int = 16, output_dim: int = 1024):
        super().__init__()
        grid = image_size // patch_size
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)  # loaded, unused by ViewCrafter (it takes all tokens)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))  # loaded, unused
        self.reset_constants()

    def reset_constants(self) -> None:
        """(Re)create the normalisation constants on the weights' device (after loading by assignment)."""
        device = self.conv1.weight.device
        self.register_buffer("mean", torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """[-1, 1] [B, 3, H, W] -> normalised [B, 3, S, S] (the official kornia resize, no crop)."""
        import kornia

        size = self.config.image_size
        x = kornia.geometry.resize(image.float(), (size, size), interpolation="bicubic", align_corners=True,
                                   antialias=True)
        return ((x + 1.0) / 2.0 - self.mean.float()) / self.std.float()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(image).to(self.conv1.weight.dtype)
        x = self.conv1(x).flatten(2).transpose(1, 2)  # [B, grid^2, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.transformer(self.ln_pre(x))


class OpenCLIPTextTower(ModelMixin, ConfigMixin):
    """tokens [B, 77] (int64) -> [B, 77, width], the penultimate block's output through ``ln_final``."""

    @register_to_config
    def __init__(self, vocab_size: int = 49408, context_length: int = 77, width: int = 1024, layers: int = 24,
                 heads: int = 16, output_dim: int = 1024, skip_last_layers: int = 1):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width).normal_(std=0.01))
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, output_dim).normal_(std=width ** -0.5))  # unused
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))  # unused; kept for strict loading
        self.reset_constants()

    def reset_constants(self) -> None:
        """(Re)create the causal mask on the weights' device (after loading by assignment)."""
        n = self.config.context_length
        device = self.positional_embedding.device
        self.register_buffer("attn_mask", torch.full((n, n), float("-inf"), device=device).triu_(1), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.transformer(x, self.attn_mask.to(x.dtype), skip_last=self.config.skip_last_layers)
        return self.ln_final(x)


def find_vocab(path: str | Path | None = None) -> Path:
    """The BPE vocabulary: ``path`` if given, else the file inside an installed open_clip package
    (found without importing it)."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FvgenError(f"CLIP vocabulary not found: {p} (--clip-vocab takes the {VOCAB_NAME} of the "
                             "open_clip_torch wheel)")
        return p
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        p = Path(spec.origin).parent / VOCAB_NAME
        if p.is_file():
            return p
    raise FvgenError(f"CLIP vocabulary {VOCAB_NAME} not found: pass --clip-vocab PATH/{VOCAB_NAME} "
                     "(it ships in the open_clip_torch wheel: pip download --no-deps open_clip_torch, then unzip)")


@lru_cache
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters. The order matters:
    the vocabulary lists the printable bytes first, then the others (mapped to 256, 257, ...)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in keep}
    for extra, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + extra)
    return table


def _word_pattern(use_regex: bool = True):
    """OpenCLIP's pre-tokenisation pattern. With the ``regex`` package it is the same expression;
    without it (not a dependency of fvgen), stdlib ``re`` classes stand in for the Unicode ones
    (letters ``[^\\W\\d_]``, numbers ``\\d``): identical on ASCII text such as ViewCrafter's prompts."""
    words = "<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|"
    if use_regex:
        try:
            import regex

            return regex.compile(words + r"[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE)
        except ImportError:
            pass
    import re

    return re.compile(words + r"[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.IGNORECASE)


class CLIPTokenizer:
    """OpenCLIP's ``tokenize``: lower-cased, whitespace-normalised text -> byte-level BPE ->
    [start, tokens..., end] padded with 0 (truncated to ``context_length`` with the end token last).
    OpenCLIP also runs ``ftfy.fix_text`` first, which only changes mis-encoded text (not the
    ASCII prompts ViewCrafter uses); ftfy is not a dependency here.
    ``n_merges`` is the count OpenCLIP reads from the vocabulary (49152 - 256 - 2)."""

    def __init__(self, vocab_path: str | Path, context_length: int = 77, n_merges: int = 49152 - 256 - 2):
        with gzip.open(vocab_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:n_merges + 1] if line.strip()]
        byte_chars = list(_byte_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]
        self.context_length = context_length
        self.pattern = _word_pattern()
        self._cache: dict[str, list[str]] = {}

    def _bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), None), i) for i, (a, b) in enumerate(itertools.pairwise(parts))]
            pairs = [p for p in pairs if p[0] is not None]
            if not pairs:
                break
            best = min(pairs)[0]
            a, b = next((parts[i], parts[i + 1]) for r, i in pairs if r == best)
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        text = " ".join(html.unescape(html.unescape(text)).split()).lower()
        table = _byte_to_unicode()
        ids = []
        for piece in self.pattern.findall(text):
            word = "".join(table[b] for b in piece.encode("utf-8"))
            ids += [self.encoder[t] for t in self._bpe(word)]
        return ids

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        """[len(texts), context_length] int64 token ids."""
        texts = [texts] if isinstance(texts, str) else texts
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > self.context_length:
                ids = ids[:self.context_length]
                ids[-1] = self.eot
            out[row, :len(ids)] = torch.tensor(ids)
        return out

