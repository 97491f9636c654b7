"""Resume state on disk: tensors and optimiser state as safetensors shards of at most 15 MB.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

SHARD_BYTES = 15 * 1000 * 1000

# ----------------------------------------------------------------------------- state I/O

def save_tensors_sharded(tensors: dict[str, torch.Tensor], folder: Path, prefix: str) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{prefix}-*.safetensors"):
        old.unlink()
    shard, size, k = {}, 0, 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        nb = t.numel() * t.element_size()
        if shard and size + nb > SHARD_BYTES:
            save_file(shard, str(folder / f"{prefix}-{k:04d}.safetensors"))
            shard, size, k = {}, 0, k + 1
        if nb > SHARD_BYTES:  # split one big tensor along its first dim
            parts = max(1, math.ceil(nb / SHARD_BYTES))
            for j, piece in enumerate(t.flatten().chunk(parts)):
                save_file({f"{name}@split{j}of{parts}@{list(t.shape)}": piece.clone()},
                          str(folder / f"{prefix}-{k:04d}.safetensors"))
                k += 1
            continue
        shard[name] = t
        size += nb
    if shard:
        save_file(shard, str(folder / f"{prefix}-{k:04d}.safetensors"))


def load_tensors_sharded(folder: Path, prefix: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out, splits = {}, {}
    for f in sorted(folder.glob(f"{prefix}-*.safetensors")):
        for k, v in load_file(str(f)).items():
            if "@split" in k:
                name, rest, shape = k.split("@")
                j, n = rest[len("split"):].split("of")
                splits.setdefault((name, int(n), shape), {})[int(j)] = v
            else:
                out[k] = v
    for (name, n, shape), pieces in splits.items():
        out[name] = torch.cat([pieces[j] for j in range(n)]).reshape(json.loads(shape))
    return out


def save_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v if torch.is_tensor(v) else torch.tensor(v)
               for i, st in sd["state"].items() for k, v in st.items()}
    save_tensors_sharded(tensors, folder, "optim")
    (folder / "optim.json").write_text(json.dumps({"param_groups": sd["param_groups"]}))


def load_optimizer(opt: torch.optim.Optimizer, folder: Path) -> bool:
    if not (folder / "optim.json").is_file():
        return False
    groups = json.loads((folder / "optim.json").read_text())["param_groups"]
    state: dict = {}
    for k, v in load_tensors_sharded(folder, "optim").items():
        i, name = k.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})
    return True
