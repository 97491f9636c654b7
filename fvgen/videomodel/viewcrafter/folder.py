"""A ViewCrafter model as a folder of diffusers ``save_pretrained`` sub-folders: what a distilled
ViewCrafter student is saved as (and what a tiny random teacher is saved as in the tests; the
official weights stay a single ``.ckpt``)::

    viewcrafter_model.json   format_version, variant (name, height, width, frames, base_scale, fs),
                             prompt, provenance (trained or not; a student's steps / cfg / timesteps)
    unet/ resampler/ image_encoder/ vae/
    prompts.safetensors      the text tokens [1, 77, D] of ``prompt`` ("prompt") and of "" ("negative")

The text tower and its vocabulary are not stored: the model runs with its stored prompt (and the
empty one for guidance) only, which is all a distilled student was trained for.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from ...core.checkpoints import read_format_json
from ...core.errors import FvgenError
from .clip import OpenCLIPVisionTower
from .pipeline import DEFAULT_PROMPT, ViewCrafterPipeline, ViewCrafterVariant, make_scheduler
from .resampler import ImageResampler
from .unet import ViewCrafterUNet

CONFIG = "viewcrafter_model.json"
FORMAT = "fvgen-viewcrafter-1"
PROMPTS = "prompts.safetensors"
PARTS = {"unet": ViewCrafterUNet, "resampler": ImageResampler, "image_encoder": OpenCLIPVisionTower,
         "vae": AutoencoderKL}
MAX_SHARD = "15MB"


def is_viewcrafter_folder(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def save_viewcrafter_folder(folder: str | Path, nets: dict, variant: ViewCrafterVariant, prompt_embeds: torch.Tensor,
                            negative_embeds: torch.Tensor, prompt: str = DEFAULT_PROMPT, provenance: dict | None = None,
                            dtype: torch.dtype | None = None) -> Path:
    """Write ``nets`` (unet, resampler, image_encoder, vae) and the prompt tokens; ``dtype`` casts
    the stored weights (None keeps them)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    missing = [k for k in PARTS if k not in nets]
    if missing:
        raise FvgenError(f"a ViewCrafter folder needs {', '.join(missing)}")
    for name in PARTS:
        m = getattr(nets[name], "module", nets[name])  # unwrap DDP
        if dtype is not None:
            m = copy.deepcopy(m).to(dtype)
        m.save_pretrained(folder / name, safe_serialization=True, max_shard_size=MAX_SHARD)
    save_file({"prompt": prompt_embeds.detach().float().cpu().contiguous(),
               "negative": negative_embeds.detach().float().cpu().contiguous()}, str(folder / PROMPTS))
    meta = {"format_version": FORMAT, "variant": {k: getattr(variant, k) for k in
                                                   ("name", "height", "width", "frames", "base_scale", "fs")},
            "prompt": prompt, "provenance": dict(provenance or {})}
    (folder / CONFIG).write_text(json.dumps(meta, indent=1))
    return folder


def read_viewcrafter_config(folder: str | Path) -> tuple[ViewCrafterVariant, str, dict]:
    """(variant, prompt, provenance) of a ViewCrafter folder, without its weights; one-line errors."""
    folder = Path(folder)
    path = folder / CONFIG
    if not path.is_file():
        raise FvgenError(f"{folder} is not a ViewCrafter model folder (no {CONFIG})")
    meta = read_format_json(path, "format_version", FORMAT)
    try:
        variant = ViewCrafterVariant(**meta["variant"])
    except (KeyError, TypeError) as e:
        raise FvgenError(f"{path}: bad variant ({e})") from None
    return variant, str(meta.get("prompt", DEFAULT_PROMPT)), dict(meta.get("provenance") or {})


def load_viewcrafter_folder(folder: str | Path, device: str | torch.device = "cpu",
                            dtype: torch.dtype = torch.float32) -> tuple[ViewCrafterPipeline, ViewCrafterVariant, dict]:
    """(pipeline with the stored prompt tokens, variant, provenance) of a ViewCrafter folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    variant, prompt, provenance = read_viewcrafter_config(folder)
    missing = [k for k in PARTS if not (folder / k / "config.json").is_file()]
    if not (folder / PROMPTS).is_file():
        missing.append(PROMPTS)
    if missing:
        raise FvgenError(f"{folder}: missing {', '.join(missing)} (a ViewCrafter model folder)")
    try:
        nets = {k: cls.from_pretrained(folder / k, torch_dtype=dtype) for k, cls in PARTS.items()}
        prompts = load_file(str(folder / PROMPTS))
    except (OSError, ValueError, RuntimeError) as e:
        raise FvgenError(f"cannot load ViewCrafter weights from {folder}: {' '.join(str(e).split())[:200]}") from None
    nets["image_encoder"].reset_constants()
    nets = {k: m.to(device).eval() for k, m in nets.items()}
    pipe = ViewCrafterPipeline(nets["unet"], nets["vae"], nets["resampler"], nets["image_encoder"], make_scheduler(),
                               base_scale=variant.base_scale)
    pipe.stored_prompts = {prompt: prompts["prompt"], "": prompts["negative"]}
    return pipe, variant, provenance
