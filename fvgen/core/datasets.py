"""The shared datasets beside the checkout (``../shared``): where they are, the evaluation scenes
with their standard 3-view splits (:func:`split`, :func:`split_files`; fern and dtu_scan24 as the
datasets' README gives them, fox's defined here once), and the guard that keeps evaluation data out
of training.

Evaluation scenes (``shared/datasets/``: fern, dtu_scan24, fox) must never enter training:
:func:`check_not_eval` refuses them by name, by path and by image content; every training-data
loader calls it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .cameras import Camera, axes_convergence, read_cameras_opencv_json
from .errors import FvgenError

EVAL_SCENES = ("fern", "dtu_scan24", "fox")
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TRAIN_ROOT = SHARED / "datasets-train"
PHOTOS_ROOT = SHARED / "photos"  # single photos for warp-back examples (fvgen.videomodel.data.warpback)
EVAL_ROOT = SHARED / "datasets"


# ----------------------------------------------------------------------------- the evaluation guard

@functools.lru_cache(maxsize=1)
def _eval_image_hashes() -> frozenset[str]:
    hs = set()
    if EVAL_ROOT.is_dir():
        for p in EVAL_ROOT.rglob("*"):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                hs.add(hashlib.sha256(p.read_bytes()).hexdigest())
    return frozenset(hs)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
THUMB = 32  # thumbnail side of the content guard
THUMB_MAX_DIFF = 10 / 255  # mean absolute grey difference under which two thumbnails are the same picture


def image_thumbnail(path: Path) -> tuple[np.ndarray, float]:
    """(grey ``THUMB`` x ``THUMB`` thumbnail in [0, 1], aspect ratio w / h) of an image file; JPEGs are
    decoded at reduced size (``draft``), so this costs a few ms per file."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L", (2 * THUMB, 2 * THUMB))
        aspect = im.width / im.height
        t = np.asarray(im.convert("L").resize((THUMB, THUMB), Image.BILINEAR), np.float32) / 255.0
    return t, aspect


@functools.lru_cache(maxsize=1)
def _eval_thumbnails() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Thumbnails [M, THUMB, THUMB], aspect ratios [M] and names of every evaluation image."""
    files = sorted(p for p in EVAL_ROOT.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) \
        if EVAL_ROOT.is_dir() else []
    thumbs = [image_thumbnail(f) for f in files]
    return (np.stack([t for t, _ in thumbs]) if thumbs else np.zeros((0, THUMB, THUMB), np.float32),
            np.array([a for _, a in thumbs], np.float32), tuple(str(f.relative_to(EVAL_ROOT)) for f in files))


def looks_like_eval_image(path: Path) -> str | None:
    """The evaluation image ``path`` shows (resized, re-encoded or renamed), or None: the mean absolute
    difference of grey thumbnails under ``THUMB_MAX_DIFF``, for images of an aspect ratio within 5 %
    (the duplicate test shared/photos/README.md describes). Catches copies a byte hash misses."""
    thumbs, aspects, names = _eval_thumbnails()
    if not len(thumbs):
        return None
    t, a = image_thumbnail(path)
    near = np.abs(aspects / a - 1) < 0.05
    if not near.any():
        return None
    d = np.abs(thumbs[near] - t).mean((1, 2))
    k = int(np.argmin(d))
    return np.asarray(names)[near][k] if d[k] < THUMB_MAX_DIFF else None


def check_not_eval(scene: Path | str, image_files: Sequence[Path] = ()) -> None:
    """Raise FvgenError when ``scene`` is (or holds images of) an evaluation scene: by name, by path,
    by the bytes of ``image_files`` and by their content (:func:`looks_like_eval_image`). ``scene`` may
    be a multi-view scene folder, a photo (``shared/photos/<set>/<name>``) or a shard's source string."""
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
        same = looks_like_eval_image(Path(f))
        if same:
            raise FvgenError(f"{f} shows the evaluation scene image {same}; it must never be used in training")


def train_scenes(root: Path = TRAIN_ROOT) -> list[Path]:
    return sorted(p for p in Path(root).iterdir() if (p / "cameras_opencv.json").is_file()) if Path(root).is_dir() else []


# ----------------------------------------------------------------------------- standard splits

DTU_TEST = [1, 2, 9, 10, 11, 12, 14, 15, 23, 24, 26, 27, 29, 30, 31, 32, 33, 34, 35, 41, 42, 43,
            45, 46, 47]


def fox_split(cams: list[Camera]) -> tuple[list[int], list[int]]:
    """Train = frames nearest 20/50/80 % of the azimuth span; test = every 8th of the rest.

    The fox video rasters over the head (azimuth sweeps at three elevations), so the train frames
    are picked among the frames within 10 deg of the median elevation; azimuth and elevation are
    taken about world up (the mean camera -y axis: z in this recentred frame) around the point
    the optical axes converge on."""
    C = np.stack([c.center for c in cams])
    target, _ = axes_convergence(cams)
    up = -np.mean([c.c2w[:3, 1] for c in cams], 0)
    up /= np.linalg.norm(up)
    rel = C - target
    el = np.degrees(np.arcsin(rel @ up / np.linalg.norm(rel, axis=1)))
    v = rel - np.outer(rel @ up, up)
    e1 = (v / np.linalg.norm(v, axis=1, keepdims=True)).mean(0)  # middle of the arc: no wrap
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    az = np.degrees(np.arctan2(v @ e2, v @ e1))
    cand = np.flatnonzero(np.abs(el - np.median(el)) <= 10.0)
    lo, hi = az[cand].min(), az[cand].max()
    train = [int(cand[np.argmin(np.abs(az[cand] - (lo + q * (hi - lo))))]) for q in (0.2, 0.5, 0.8)]
    rest = [i for i in range(len(cams)) if i not in train]
    return train, rest[::8]



def split(name: str, cams: list[Camera] | None = None) -> tuple[list[int], list[int]]:
    """(train, test) indices into the scene's cameras_opencv.json frames."""
    if name == "fern":
        return [1, 10, 19], [0, 8, 16]
    if name == "dtu_scan24":
        return [25, 22, 28], list(DTU_TEST)
    if name == "fox":
        return fox_split(cams if cams is not None else read_cameras_opencv_json(EVAL_ROOT / "fox" / "cameras_opencv.json"))
    raise KeyError(name)


def split_files(name: str, root: Path = EVAL_ROOT) -> tuple[list[str], list[str]]:
    """(train, test) image file names of the split."""
    cams = read_cameras_opencv_json(Path(root) / name / "cameras_opencv.json")
    train, test = split(name, cams)
    base = lambda c: Path(c.name).name  # noqa: E731
    return [base(cams[i]) for i in train], [base(cams[i]) for i in test]
