"""The shared datasets beside the checkout (``../shared``): where they are, the evaluation scenes
with their standard splits, and the guard that keeps evaluation data out of training.

Evaluation scenes (``shared/datasets/``: fern, dtu_scan24, fox) must never enter training:
:func:`check_not_eval` refuses them by name, by path and by image content; every training-data
loader calls it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Sequence

from .errors import FvgenError

EVAL_SCENES = ("fern", "dtu_scan24", "fox")
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TRAIN_ROOT = SHARED / "datasets-train"
EVAL_ROOT = SHARED / "datasets"


# ----------------------------------------------------------------------------- the evaluation guard

@functools.lru_cache(maxsize=1)
def _eval_image_hashes() -> frozenset[str]:
    hs = set()
    if EVAL_ROOT.is_dir():
        for p in EVAL_ROOT.rglob("*"):
            if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                hs.add(hashlib.sha256(p.read_bytes()).hexdigest())
    return frozenset(hs)


def check_not_eval(scene: Path | str, image_files: Sequence[Path] = ()) -> None:
    """Raise FvgenError when ``scene`` is (or holds images of) an evaluation scene."""
    p = Path(scene)
    name = p.name.lower()
    parts = [x.lower() for x in p.resolve().parts] if p.exists() else [x.lower() for x in p.parts]
    try:
        inside = EVAL_ROOT.exists() and p.exists() and p.resolve().is_relative_to(EVAL_ROOT.resolve())
    except OSError:
        inside = False
    if inside or any(e in name for e in EVAL_SCENES) or any(x in EVAL_SCENES for x in parts):
        raise FvgenError(f"{scene} is an evaluation scene ({', '.join(EVAL_SCENES)}); it must never be used in training")
    hashes = _eval_image_hashes()
    for f in image_files:
        if hashlib.sha256(Path(f).read_bytes()).hexdigest() in hashes:
            raise FvgenError(f"{f} is an image of an evaluation scene; it must never be used in training")


def train_scenes(root: Path = TRAIN_ROOT) -> list[Path]:
    return sorted(p for p in Path(root).iterdir() if (p / "cameras_opencv.json").is_file()) if Path(root).is_dir() else []


