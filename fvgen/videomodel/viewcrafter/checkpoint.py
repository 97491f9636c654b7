"""Strict loading of the official ViewCrafter checkpoints (``ViewCrafter_16.ckpt``,
``ViewCrafter_25.ckpt``: a Lightning ``{"state_dict": ...}`` pickle) or a ``.safetensors`` file of
the same flat state dict.

Every tensor of the file must belong to one of the groups of ``official_keys.json.gz`` (UNet,
first stage, text tower, image tower, resampler) or be one of the schedule buffers, with the listed
shape, and every listed tensor must be present; our modules' ``state_dict()`` must then take them
exactly. Any failure is one :class:`~fvgen.core.errors.FvgenError` line naming the keys. The schedule
buffers, when present, are checked against our scheduler (the zero-terminal-SNR schedule and the
dynamic-rescale table, whose last value tells the 512 model, 0.7, from the 1024 model, 0.3).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ...core.checkpoints import read_checkpoint_file, shape_problems
from ...core.checkpoints import short_keys as _short
from ...core.errors import FvgenError

KEYS_FILE = Path(__file__).with_name("official_keys.json.gz")
CHECKPOINT_HINT = "pass --checkpoint PATH/ViewCrafter_25.ckpt (1024x576, 25 frames) or PATH/ViewCrafter_16.ckpt (512x320)"


@lru_cache
def official_keys() -> dict:
    """The enumerated official names/shapes (see scripts/viewcrafter_official_keys.py)."""
    with gzip.open(KEYS_FILE, "rt") as f:
        return json.load(f)


def read_checkpoint(path: str | Path | None) -> dict:
    """The flat state dict of a checkpoint file (tensors only)."""
    ckpt = read_checkpoint_file(path, "ViewCrafter checkpoint", CHECKPOINT_HINT)
    path = Path(path)
    if path.suffix == ".safetensors":
        return ckpt
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        sd = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("module"), dict):  # deepspeed: "_forward_module." prefix
        sd = {k.removeprefix("_forward_module."): v for k, v in ckpt["module"].items()}
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        sd = ckpt
    else:
        kind = f"a dict with keys {_short(map(str, ckpt))}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise FvgenError(f"{path} is not a ViewCrafter checkpoint: expected a 'state_dict', found {kind}")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


@dataclass
class CheckpointParts:
    """The checkpoint split by component, prefixes removed (official names)."""

    unet: dict
    vae: dict  # latent-diffusion names
    text: dict
    image: dict  # ``visual.*`` only
    resampler: dict
    schedule: dict  # buffers present in the file (may be empty)


def compare(found: dict, expected: dict) -> list[str]:
    """Problems between {name: tensor} and {name: shape} (empty when equal key for key)."""
    return shape_problems({k: v.shape for k, v in found.items()}, expected)


def split_checkpoint(sd: dict, source: str = "checkpoint", keys: dict | None = None) -> CheckpointParts:
    """Split and check a flat official state dict against the official key list; one-line error."""
    keys = keys or official_keys()
    # the official loader's one rename (older DynamiCrafter checkpoints): framestride_embed -> fps_embedding
    old, new = "model.diffusion_model.framestride_embed.", "model.diffusion_model.fps_embedding."
    sd = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in sd.items()}
    prefixes = keys["prefixes"]
    groups: dict[str, dict] = {g: {} for g in prefixes}
    schedule, stray = {}, []
    for k, v in sd.items():
        for g, p in prefixes.items():
            if k.startswith(p):
                groups[g][k[len(p):]] = v
                break
        else:
            if k in keys["schedule_buffers"]:
                schedule[k] = v
            else:
                stray.append(k)
    problems = [f"{len(stray)} unexpected ({_short(stray)})"] if stray else []
    for g in prefixes:
        problems += [f"{prefixes[g]}*: {p}" for p in compare(groups[g], keys["groups"][g])]
    problems += [f"{k}: shape {list(v.shape)} vs {keys['schedule_buffers'][k]}" for k, v in schedule.items()
                 if list(v.shape) != keys["schedule_buffers"][k]]
    if problems:
        raise FvgenError(f"{source} is not a ViewCrafter checkpoint: " + "; ".join(problems))
    image = {k: v for k, v in groups["image"].items() if k.startswith("visual.")}
    return CheckpointParts(groups["unet"], groups["vae"], groups["text"], image, groups["resampler"], schedule)


def load_strict(module: torch.nn.Module, sd: dict, what: str, source: str) -> None:
    """Load ``sd`` into ``module`` (built on ``meta`` or not) after an exact key/shape check."""
    expected = {k: list(v.shape) for k, v in module.state_dict().items()}
    problems = compare(sd, expected)
    if problems:
        raise FvgenError(f"{source}: {what} does not match our network: " + "; ".join(problems))
    meta = any(p.is_meta for p in module.parameters())
    module.load_state_dict(sd, strict=True, assign=meta)


def check_schedule(schedule: dict, alphas_cumprod: torch.Tensor, source: str) -> float | None:
    """Verify the file's schedule buffers against ours; return the dynamic-rescale base scale
    stored in the file (None without ``scale_arr``)."""
    if "alphas_cumprod" in schedule:
        theirs = schedule["alphas_cumprod"].float()
        if (theirs - alphas_cumprod.float()).abs().max() > 1e-4:
            raise FvgenError(f"{source}: its noise schedule differs from ViewCrafter's (linear 0.00085-0.012 with "
                             "zero-terminal-SNR rescale); not a ViewCrafter checkpoint")
    if "scale_arr" in schedule:
        return float(schedule["scale_arr"][-1])
    return None
