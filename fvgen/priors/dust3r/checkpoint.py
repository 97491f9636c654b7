"""Loading DUSt3R weights: the official ``DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth`` (a torch
pickle holding ``model``, the state dict, and ``args``, the constructor call) or a
``.safetensors`` file of the same state dict.

Matching is strict: every key our network's ``state_dict()`` produces must be present with the
same shape, and nothing else may be. Two kinds of key are normalised first:

- a ``module.`` prefix (checkpoints saved from DistributedDataParallel);
- aliases some DPT implementations register for the same tensors: ``dpt.scratch.layer_rn.{i}``
  (= ``dpt.scratch.layer{i+1}_rn``; the published DUSt3R checkpoints hold both spellings, as
  public load-error reports listing their keys show) and ``dpt.act_{i}_postprocess``
  (= ``dpt.act_postprocess.{i-1}``);
  a CroCo ``mask_token`` (and fixed ``enc_pos_embed`` / ``dec_pos_embed`` tables, unused with
  RoPE) are dropped when our network has none.

Every failure is one :class:`~fvgen.core.errors.FvgenError` line: missing, unreadable or truncated file,
a different model, or the exact missing/unexpected/mis-shaped keys.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from ...core.checkpoints import read_checkpoint_file, shape_problems
from ...core.checkpoints import short_keys as _short
from ...core.errors import FvgenError
from .model import LARGE_512_ARGS, Dust3rModel, Dust3rModelConfig, build_model

_ALIASES = (
    (re.compile(r"(\.dpt\.scratch\.)layer_rn\.(\d)\."), lambda m: f"{m.group(1)}layer{int(m.group(2)) + 1}_rn."),
    (re.compile(r"(\.dpt\.)act_(\d)_postprocess\."), lambda m: f"{m.group(1)}act_postprocess.{int(m.group(2)) - 1}."),
)


def read_checkpoint(path: Path) -> tuple[dict, str]:
    """The raw state dict and the constructor string (``""`` if none) of a checkpoint file."""
    path = Path(path)
    ckpt = read_checkpoint_file(path, "DUSt3R checkpoint")
    if path.suffix == ".safetensors":
        return ckpt, ""
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        sd = ckpt["model"]
        args = ckpt.get("args", "")
        args = getattr(args, "model", args)
        return sd, args if isinstance(args, str) else ""
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, ""
    kind = f"a dict with keys {_short(map(str, ckpt.keys()))}" if isinstance(ckpt, dict) else type(ckpt).__name__
    raise FvgenError(f"{path} is not a DUSt3R checkpoint: expected a dict with a 'model' state dict, found {kind}")


def normalise_keys(sd: dict, expected: dict) -> tuple[dict, int]:
    """Strip ``module.``, fold alias keys onto ours (dropping exact duplicates), drop a CroCo
    ``mask_token`` we do not have. Returns (state dict, number of keys folded or dropped)."""
    out, folded = {}, 0
    items = list(sd.items())
    if items and all(k.startswith("module.") for k, _ in items):
        items = [(k[len("module."):], v) for k, v in items]
    aliases = []
    for k, v in items:
        canon = k
        for pat, rep in _ALIASES:
            canon = pat.sub(rep, canon)
        if canon != k:
            aliases.append((canon, k, v))
        elif k in ("mask_token", "enc_pos_embed", "dec_pos_embed") and k not in expected:
            folded += 1
        else:
            out[k] = v
    for canon, k, v in aliases:
        folded += 1
        if canon in out:
            if tuple(out[canon].shape) != tuple(v.shape):
                out[k] = v  # reported as unexpected below
        else:
            out[canon] = v
    return out, folded


def check_state_dict(sd: dict, expected: dict) -> list[str]:
    """Problems (empty when ``sd`` matches ``expected`` key for key and shape)."""
    return shape_problems({k: v.shape for k, v in sd.items()}, {k: v.shape for k, v in expected.items()})


def _check_args(args: str, cfg: Dust3rModelConfig, path: Path) -> None:
    """Refuse other published models early with a readable line (the 224 linear one, MASt3R...)."""
    if not args:
        return
    want = {"head_type": "dpt", "output_mode": "pts3d", "enc_embed_dim": str(cfg.enc_embed_dim),
            "enc_depth": str(cfg.enc_depth), "dec_embed_dim": str(cfg.dec_embed_dim), "dec_depth": str(cfg.dec_depth)}
    found = {}
    for k in want:
        m = re.search(rf"\b{k}\s*=\s*['\"]?([\w.]+)", args)
        if m:
            found[k] = m.group(1)
    bad = [f"{k}={found[k]} (need {v})" for k, v in want.items() if k in found and found[k] != v]
    if bad or args.split("(")[0].strip() not in ("AsymmetricCroCo3DStereo", ""):
        name = args.split("(")[0].strip()
        raise FvgenError(f"{path} is a different model ({name}: {', '.join(bad) or 'unsupported class'}); "
                         "fvgen needs DUSt3R_ViTLarge_BaseDecoder_512_dpt")


def load_state_dict_strict(model: Dust3rModel, sd: dict, source: str = "checkpoint") -> dict:
    """Load ``sd`` into ``model`` after normalising keys; one-line FvgenError on any mismatch."""
    expected = model.state_dict()
    sd, folded = normalise_keys(sd, expected)
    problems = check_state_dict(sd, expected)
    if problems:
        raise FvgenError(f"{source} does not match the DUSt3R network: " + "; ".join(problems))
    meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(sd, strict=True, assign=meta)
    return {"keys": len(sd), "aliases_folded": folded}


def load_model(path: Path, cfg: Dust3rModelConfig | None = None, device: str = "cpu") -> tuple[Dust3rModel, dict]:
    """The network with the checkpoint's weights, in eval mode on ``device``."""
    cfg = cfg or Dust3rModelConfig.large_512()
    path = Path(path)
    sd, args = read_checkpoint(path)
    _check_args(args, cfg, path)
    model = build_model(cfg, "meta")
    info = load_state_dict_strict(model, sd, source=str(path))
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FvgenError(f"{path}: non-finite weights in {_short(bad)}")
    model = model.float().to(device).eval()
    info.update(checkpoint=str(path), args=args)
    return model, info


def save_checkpoint(model: Dust3rModel, path: Path, args: str = LARGE_512_ARGS) -> None:
    """Write ``model`` in the official layout ({'model': state dict, 'args': Namespace(model=...)})."""
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(model=args)}, str(path))
