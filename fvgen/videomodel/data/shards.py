"""Example shards: one ``.npz`` per example (frames as JPEG q 92, masks as PNG bytes, so about 150
embedded-size examples fit in the 64 MiB that travels to a GPU host), and :class:`ExampleBank`,
the decoded examples held on the training device.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ...core.datasets import check_not_eval
from ...core.errors import FvgenError

# ----------------------------------------------------------------------------- shards

def encode_frames(frames: np.ndarray, fmt: str, quality: int = 92) -> tuple[np.ndarray, np.ndarray]:
    """Frames [N, H, W(, C)] uint8 -> (one byte blob, offsets [N + 1]), JPEG (``quality``) or PNG."""
    from PIL import Image

    blobs, offs = [], [0]
    for f in frames:
        b = io.BytesIO()
        if fmt == "jpeg":
            Image.fromarray(f).save(b, format="JPEG", quality=quality)
        else:
            Image.fromarray(f).save(b, format="PNG", optimize=True)
        blobs.append(b.getvalue())
        offs.append(offs[-1] + len(blobs[-1]))
    return np.frombuffer(b"".join(blobs), np.uint8), np.asarray(offs, np.int64)


def decode_frames(blob: np.ndarray, offs: np.ndarray) -> np.ndarray:
    from PIL import Image

    raw = blob.tobytes()
    return np.stack([np.asarray(Image.open(io.BytesIO(raw[offs[i]:offs[i + 1]]))) for i in range(len(offs) - 1)])


def save_example(path: Path, ex: dict) -> None:
    arrays = {}
    for k, fmt in (("gt", "jpeg"), ("warp", "jpeg"), ("mask", "png")):
        arrays[k], arrays[k + "_offs"] = encode_frames(ex[k], fmt)
    arrays["ref"], arrays["ref_offs"] = encode_frames(ex["ref"][None], "jpeg")
    arrays["meta"] = np.frombuffer(json.dumps(ex["meta"]).encode(), np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_example(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        ex = {k: decode_frames(z[k], z[k + "_offs"]) for k in ("gt", "warp", "mask")}
        ex["ref"] = decode_frames(z["ref"], z["ref_offs"])[0]
        ex["meta"] = json.loads(z["meta"].tobytes().decode())
    return ex


def example_files(folders: Sequence[str | Path]) -> list[Path]:
    files = []
    for d in folders:
        d = Path(d)
        fs = sorted(d.glob("*.npz")) if d.is_dir() else []
        if not fs:
            raise FvgenError(f"no example shards (*.npz) in {d}: build them with `fvgen data build`")
        files += fs
    return files


def to_tensors(ex: dict, frames: int, flip: bool = False, reverse: bool = False) -> dict[str, torch.Tensor]:
    """uint8 example -> ref [3, H, W], warp/gt [F, 3, H, W] in [-1, 1], mask [F, 1, H, W] in [0, 1].
    Clips longer than ``frames`` are cut from the start (the reference frame)."""
    def t(a):
        return torch.as_tensor(a).float() / 255.0

    gt = t(ex["gt"][:frames]).permute(0, 3, 1, 2) * 2 - 1
    warp = t(ex["warp"][:frames]).permute(0, 3, 1, 2) * 2 - 1
    mask = t(ex["mask"][:frames])[:, None]
    ref = t(ex["ref"]).permute(2, 0, 1) * 2 - 1
    if flip:
        gt, warp, mask, ref = gt.flip(-1), warp.flip(-1), mask.flip(-1), ref.flip(-1)
    if reverse:  # the reference stays the first frame's view: reverse only the later frames
        gt = torch.cat([gt[:1], gt[1:].flip(0)])
        warp = torch.cat([warp[:1], warp[1:].flip(0)])
        mask = torch.cat([mask[:1], mask[1:].flip(0)])
    return {"ref": ref, "warp": warp, "mask": mask, "gt": gt}


class ExampleBank:
    """Every training example decoded once and held as uint8 tensors on the training device
    (~5 MB per embedded-size example: a few GB for thousands, small beside an H200's memory), so a
    batch is an index into GPU memory: no per-step decoding, conversion or host-to-device copy,
    which otherwise cost as much as the training step of the small embedded model."""

    def __init__(self, folders: Sequence[str | Path], frames: int, device: str | torch.device = "cpu",
                 threads: int = 8, source_filter: Callable[[str], bool] | None = None, fill: str | None = None):
        """``source_filter(meta.source)`` False leaves an example out (e.g. a held-out scene);
        ``fill`` (a name in ``fvgen.videomodel.fill.FILLS``) also makes every warp's fill once, here, and hands
        it out with each batch (a residual model's training step need not make it again)."""
        from concurrent.futures import ThreadPoolExecutor

        files = example_files(folders)
        self.files = []
        for f in files:  # the guard again, on what the shards say they were made from
            src = json.loads(np.load(f, allow_pickle=False)["meta"].tobytes().decode()).get("source", "")
            check_not_eval(src or f.stem)
            if source_filter is None or source_filter(src):
                self.files.append(f)
        if not self.files:
            raise FvgenError(f"no example shards in {', '.join(map(str, folders))} pass the source filter")
        self.frames = frames
        with ThreadPoolExecutor(max(1, threads)) as pool:
            exs = list(pool.map(load_example, self.files))
        sizes = {ex["gt"].shape[1:3] for ex in exs}
        if len(sizes) != 1 or any(len(ex["gt"]) < frames for ex in exs):
            raise FvgenError(f"example shards differ in size {sorted(sizes)} or hold fewer than {frames} frames")

        def stack(key, cut=True):
            return torch.from_numpy(np.stack([ex[key][:frames] if cut else ex[key] for ex in exs])).to(device)

        self.gt, self.warp, self.mask, self.ref = stack("gt"), stack("warp"), stack("mask"), stack("ref", cut=False)
        self.fill = self._fills(fill) if fill else None

    @torch.no_grad()
    def _fills(self, name: str, chunk: int = 8) -> torch.Tensor:
        """uint8 [N, F, H, W, 3]: each warped frame's fill (``fvgen.videomodel.fill``), made in chunks of examples."""
        from ..fill import fill_holes

        out = torch.empty_like(self.warp)
        for a in range(0, len(self.warp), chunk):
            w = self.warp[a:a + chunk].flatten(0, 1).movedim(-1, -3).float() / 255.0
            m = (self.mask[a:a + chunk].flatten(0, 1) > 127).unsqueeze(-3).float()
            f = fill_holes(name, w, m).clamp(0, 1).mul(255.0).round().to(torch.uint8)
            out[a:a + chunk] = f.movedim(-3, -1).reshape(out[a:a + chunk].shape)
        return out

    def __len__(self) -> int:
        return len(self.files)

    def batch(self, idx: Sequence[int], flip: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """ref [B, 3, H, W], warp/gt (/fill) [B, F, 3, H, W] in [-1, 1], mask [B, F, 1, H, W] in [0, 1];
        ``flip`` [B] bool mirrors those examples horizontally (the same as :func:`to_tensors`)."""
        i = torch.as_tensor(list(idx), dtype=torch.long, device=self.gt.device)

        def img(t):  # uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]
            return t.index_select(0, i).movedim(-1, -3).float().div_(127.5).sub_(1.0)

        out = {"gt": img(self.gt), "warp": img(self.warp), "ref": img(self.ref),
               "mask": self.mask.index_select(0, i).unsqueeze(-3).float().div_(255.0)}
        if self.fill is not None:
            out["fill"] = img(self.fill)
        if flip is not None and bool(flip.any()):
            f = flip.to(out["gt"].device)
            for k, v in out.items():
                shape = (-1,) + (1,) * (v.ndim - 1)
                out[k] = torch.where(f.reshape(shape), v.flip(-1), v)
        return out
