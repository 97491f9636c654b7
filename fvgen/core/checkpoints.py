"""Reading external model checkpoints (torch or safetensors files) safely, with one-line errors.

Torch files are read with ``weights_only=True`` (tensors, plus the argparse namespaces and numpy
scalars training scripts store beside them); a file that needs arbitrary Python objects is refused
unless the user trusts it (``FVGEN_TRUST_CHECKPOINT=1``). Zip-format files are memory-mapped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Iterable

from .errors import FvgenError


def short_keys(keys: Iterable[str], n: int = 3) -> str:
    """The first ``n`` sorted keys and how many more, for one-line messages."""
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def read_checkpoint_file(path: str | Path | None, label: str, hint: str = ""):
    """The object stored in checkpoint file ``path`` (a dict for safetensors). ``label`` names the
    model in messages ("DUSt3R checkpoint"), ``hint`` says what to pass instead."""
    tail = f"; {hint}" if hint else ""
    if path is None or str(path) == "":
        raise FvgenError(f"no {label} given{tail}")
    path = Path(path)
    if not path.exists():
        raise FvgenError(f"{label} not found: {path}{tail}")
    if path.is_dir():
        raise FvgenError(f"{label} is a folder, not a file: {path}{tail}")
    if path.stat().st_size == 0:
        raise FvgenError(f"{label} is empty: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 (safetensors raises several unrelated types)
            raise FvgenError(f"cannot read {label} {path}: truncated or not a safetensors file ({e})") from None
    try:
        return _torch_load(path)
    except FvgenError:
        raise
    except Exception as e:  # noqa: BLE001 (torch.load raises many types for a bad file; all become one line)
        msg = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise FvgenError(f"cannot read {label} {path}: truncated, corrupt or not a torch checkpoint "
                         f"({type(e).__name__}: {msg})") from None


def _torch_load(path: Path):
    import torch

    try:
        mmap = zipfile.is_zipfile(path)
    except OSError:
        mmap = False
    if os.environ.get("FVGEN_TRUST_CHECKPOINT", "") == "1":
        return torch.load(str(path), map_location="cpu", weights_only=False, mmap=mmap)
    safe: list = [argparse.Namespace]
    try:  # numpy scalars / arrays some training scripts store next to the weights (epoch, best score)
        import numpy as np

        core = np._core if hasattr(np, "_core") else np.core
        safe += [np.dtype, np.ndarray, core.multiarray.scalar, core.multiarray._reconstruct]
        if hasattr(np, "dtypes"):
            safe += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    except Exception:  # pragma: no cover - numpy layouts differ between versions
        pass
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        text = str(e)
        # a named class the safe loader refused: a real checkpoint with extra objects (a file that is
        # no pickle at all also fails "weights only", but names none and is reported as corrupt)
        g = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", text)
        if g and ("Weights only load failed" in text or "Unsupported global" in text):
            raise FvgenError(f"{path} holds Python objects that are not loaded by default ({g.group(1) or g.group(2)}); "
                             "if you trust the file, set FVGEN_TRUST_CHECKPOINT=1") from None
        raise


def shape_problems(found: dict, expected: dict) -> list[str]:
    """What differs between two {name: shape} maps: missing and unexpected names, shape mismatches
    (empty when they match name for name)."""
    missing = set(expected) - set(found)
    unexpected = set(found) - set(expected)
    shapes = [f"{k} {list(found[k])} vs {list(expected[k])}" for k in sorted(set(found) & set(expected))
              if list(found[k]) != list(expected[k])]
    out = []
    if missing:
        out.append(f"{len(missing)} missing ({short_keys(missing)})")
    if unexpected:
        out.append(f"{len(unexpected)} unexpected ({short_keys(unexpected)})")
    if shapes:
        out.append(f"{len(shapes)} shape mismatch{'es' if len(shapes) > 1 else ''} ({'; '.join(shapes[:2])}"
                   + (", ..." if len(shapes) > 2 else "") + ")")
    return out


def read_format_json(path: Path, key: str, expected: str) -> dict:
    """The JSON object in ``path`` whose field ``key`` must be ``expected`` (a model folder's
    format version), with one-line errors for bad JSON and other formats."""
    try:
        meta = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise FvgenError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get(key) != expected:
        found = meta.get(key) if isinstance(meta, dict) else None
        raise FvgenError(f"{path}: unsupported format {found!r} (expected {expected})")
    return meta
