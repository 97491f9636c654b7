"""Building the ViewCrafter networks (full size or tiny, on any device including ``meta``) and
loading the official checkpoint into them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...core.errors import FvgenError
from .checkpoint import check_schedule, load_strict, read_checkpoint, split_checkpoint
from .clip import CLIPTokenizer, OpenCLIPTextTower, OpenCLIPVisionTower, find_vocab
from .pipeline import VARIANTS, ViewCrafterPipeline, ViewCrafterVariant, make_scheduler
from .resampler import ImageResampler
from .unet import ViewCrafterUNet
from .vae import ldm_vae_to_diffusers, make_vae


@dataclass(frozen=True)
class ViewCrafterConfig:
    """Constructor arguments of every network (defaults: the official full-size model)."""

    unet: dict = field(default_factory=dict)
    resampler: dict = field(default_factory=dict)
    vision: dict = field(default_factory=dict)
    text: dict = field(default_factory=dict)
    vae: dict = field(default_factory=dict)

    @classmethod
    def full(cls) -> ViewCrafterConfig:
        return cls()

    @classmethod
    def tiny(cls, frames: int = 2, vocab_size: int = 600) -> ViewCrafterConfig:
        """A few-hundred-thousand-parameter model of the same classes for CPU tests."""
        return cls(
            unet={"model_channels": 32, "channel_mult": (1, 2), "attention_resolutions": (1, 2), "num_res_blocks": 1,
                      "num_head_channels": 16, "context_dim": 32, "init_attention_heads": 2, "image_tokens_per_frame": 4},
            resampler={"dim": 32, "depth": 1, "dim_head": 8, "heads": 2, "num_queries": 4, "embedding_dim": 48, "output_dim": 32,
                           "ff_mult": 2, "video_length": frames},
            vision={"image_size": 28, "patch_size": 14, "width": 48, "layers": 1, "heads": 2, "output_dim": 32},
            text={"vocab_size": vocab_size, "width": 32, "layers": 2, "heads": 2, "output_dim": 32},
            vae={"block_out_channels": (32, 32, 32, 32), "layers_per_block": 1},
        )


def build_networks(config: ViewCrafterConfig | None = None, device: str | torch.device = "cpu") -> dict:
    """{'unet', 'vae', 'resampler', 'image_encoder', 'text_encoder'} with random weights (``meta``:
    no memory, for shape checks and loading with ``assign``)."""
    c = config or ViewCrafterConfig.full()
    with torch.device(device):
        return {"unet": ViewCrafterUNet(**c.unet), "vae": make_vae(**c.vae), "resampler": ImageResampler(**c.resampler),
                "image_encoder": OpenCLIPVisionTower(**c.vision), "text_encoder": OpenCLIPTextTower(**c.text)}


def make_pipeline(nets: dict, variant: ViewCrafterVariant, tokenizer: CLIPTokenizer | None = None,
                  base_scale: float | None = None) -> ViewCrafterPipeline:
    return ViewCrafterPipeline(nets["unet"], nets["vae"], nets["resampler"], nets["image_encoder"], make_scheduler(),
                               text_encoder=nets["text_encoder"], tokenizer=tokenizer,
                               base_scale=variant.base_scale if base_scale is None else base_scale)


def load_networks(sd: dict, source: str, config: ViewCrafterConfig | None = None) -> tuple[dict, float | None]:
    """Official flat state dict -> networks on ``meta`` filled by assignment, and the base scale
    stored in the file (None if absent). One-line FvgenError on any mismatch."""
    parts = split_checkpoint(sd, source)
    nets = build_networks(config, "meta")
    load_strict(nets["unet"], parts.unet, "model.diffusion_model.*", source)
    load_strict(nets["resampler"], parts.resampler, "image_proj_model.*", source)
    load_strict(nets["image_encoder"], {k[len("visual."):]: v for k, v in parts.image.items()},
                "embedder.model.visual.*", source)
    load_strict(nets["text_encoder"], parts.text, "cond_stage_model.model.*", source)
    load_strict(nets["vae"], ldm_vae_to_diffusers(parts.vae, nets["vae"]), "first_stage_model.*", source)
    for name in ("image_encoder", "text_encoder"):  # non-persistent constants: onto the loaded weights' device
        nets[name].reset_constants()
    base = check_schedule(parts.schedule, make_scheduler().alphas_cumprod, source)
    return nets, base


def load_viewcrafter(checkpoint: str | Path | None, variant: str | None = None, clip_vocab: str | Path | None = None,
                     device: str | torch.device = "cuda", dtype: torch.dtype = torch.bfloat16,
                     require_tokenizer: bool = True) -> tuple[ViewCrafterPipeline, ViewCrafterVariant]:
    """The pipeline with the official weights. ``variant`` '512' / '1024' (None: from the file's
    dynamic-rescale table, else from the file name: '_16' -> 512, '_25' -> 1024). A folder is a
    ViewCrafter model folder (:mod:`.folder`, e.g. a distilled student): its own variant and stored
    prompt tokens, no vocabulary needed."""
    if checkpoint is not None and Path(checkpoint).is_dir():
        from .folder import load_viewcrafter_folder

        pipe, v, _ = load_viewcrafter_folder(checkpoint, device, dtype)
        if variant not in (None, "", v.name):
            raise FvgenError(f"{checkpoint} holds the {v.name} model, not {variant}; leave --variant out")
        return pipe, v
    tokenizer = CLIPTokenizer(find_vocab(clip_vocab)) if (require_tokenizer or clip_vocab) else None  # fail fast
    sd = read_checkpoint(checkpoint)
    table = sd.get("scale_arr")
    file_base = float(table[-1]) if isinstance(table, torch.Tensor) and table.numel() and not table.is_meta else None
    if variant is None:
        if file_base is not None:
            variant = min(VARIANTS, key=lambda k: abs(VARIANTS[k].base_scale - file_base))
        elif "_16" in Path(checkpoint).name:
            variant = "512"
        elif "_25" in Path(checkpoint).name:
            variant = "1024"
        else:
            raise FvgenError(f"cannot tell the ViewCrafter variant of {checkpoint}: pass --variant 512 or 1024")
    if variant not in VARIANTS:
        raise FvgenError(f"unknown ViewCrafter variant {variant!r} (512 or 1024)")
    v = VARIANTS[variant]
    if file_base is not None and abs(file_base - v.base_scale) > 1e-3:
        raise FvgenError(f"{checkpoint} is not the {variant} model (its dynamic-rescale scale is {file_base:.2f}, "
                         f"the {variant} model's {v.base_scale}); pass the other --variant or leave it out")
    nets, base = load_networks(sd, str(checkpoint))
    del sd
    for name, net in nets.items():
        nets[name] = net.to(device=device, dtype=dtype).eval()
    return make_pipeline(nets, v, tokenizer, base_scale=base if base is not None else v.base_scale), v

