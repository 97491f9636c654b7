"""Reading the user's photos: one place that turns any image file into float RGB.

Handles EXIF orientation, grayscale, palette, RGBA (composited on white), 16-bit and float
files; refuses corrupt or non-image files, unreadable paths and mixed aspect ratios with one-line
errors. Images of one aspect ratio but different resolutions are resized to the smallest.
:func:`decode_images` decodes once; its :meth:`DecodedImages.fit` gives any working size
(:func:`load_images` is the two in one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .cameras import COLMAP_MODEL_FILES, POSE_FILE_NAMES
from .errors import FvgenError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


@dataclass(frozen=True)
class ImagesConf:
    max_size: int = 640  # long side, in pixels, of the images every stage works on


@dataclass(frozen=True)
class LoadedImages:
    names: list[str]  # file names, in the order used everywhere downstream
    images: np.ndarray  # [N, H, W, 3] float32 in [0, 1]
    original_sizes: list[tuple[int, int]]  # (w, h) of each file after EXIF rotation

    @property
    def size(self) -> tuple[int, int]:
        return self.images.shape[2], self.images.shape[1]


def list_image_files(folder: Path, strict: bool = True, notify: bool = False) -> list[Path]:
    """Image files in ``folder`` (by suffix, sorted by name; hidden files skipped). With ``strict``,
    a missing path, a file path and a folder without image files are errors; with ``notify``, the
    other files that were skipped are named in a one-line notice on stderr."""
    folder = Path(folder)
    if not folder.exists():
        if strict:
            raise FvgenError(f"image folder not found: {folder}")
        return []
    if not folder.is_dir():
        if strict:
            raise FvgenError(f"not a folder: {folder} (pass the folder that holds the photos)")
        return []
    try:
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    except PermissionError:
        raise FvgenError(f"cannot read folder: {folder} (permission denied)") from None
    if not files and strict:
        raise FvgenError(f"no image files in {folder} (looked for "
                         + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
    if notify:  # pose files beside the photos are expected (``--poses`` reads them): no notice for those
        skipped = sorted(p.name for p in folder.iterdir()
                         if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_SUFFIXES
                         and p.name not in POSE_FILE_NAMES + COLMAP_MODEL_FILES)
        if skipped:
            from .progress import notice

            notice(f"skipped {len(skipped)} file(s) that are not images: {_name_list(skipped)}")
    return files


def _name_list(names: Sequence[str], shown: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


NEAR_DUPLICATE_MAD = 0.005  # mean |difference| of 32x32 thumbnails (in [0, 1]) below which two photos are one


def _thumbnail(path: Path) -> tuple[tuple[int, int], np.ndarray] | None:
    """((w, h) after EXIF rotation, possibly reduced, 32 x 32 RGB thumbnail in [0, 1]), or None when unreadable
    (reading it later gives the proper error)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.draft("RGB", (256, 256))  # JPEG: decode at a reduced scale (same aspect), much faster
            im = ImageOps.exif_transpose(im)
            orig = im.size
            thumb = _to_rgb_float(im.resize((32, 32), Image.BOX) if im.mode in ("RGB", "L", "RGBA") else im)
    except Exception:
        return None
    if thumb.shape[:2] != (32, 32):
        thumb = resize_image(thumb, 32, 32)
    return orig, thumb


def drop_duplicate_photos(files: Sequence[Path]) -> list[Path]:
    """``files`` without photos that repeat an earlier one (name order): byte-identical files, and
    near-identical ones (same aspect ratio and mean absolute difference of their 32 x 32
    thumbnails below 0.5 % of the range, e.g. the same photo re-saved or resized). A duplicate adds
    nothing to the reconstruction and doubles that view's weight in the fit, so it is dropped with
    a one-line notice on stderr."""
    files = list(files)
    digests: dict[str, Path] = {}
    thumbs: list[tuple[Path, tuple[int, int], np.ndarray]] = []
    kept, dropped = [], []
    for f in files:
        h = hashlib.sha256(Path(f).read_bytes()).hexdigest()
        twin = digests.get(h)
        if twin is None:
            t = _thumbnail(f)
            if t is not None:
                (w, h_), thumb = t
                twin = next((p for p, (w2, h2), th in thumbs
                             if abs(w / h_ - w2 / h2) < 0.01 and float(np.abs(th - thumb).mean()) < NEAR_DUPLICATE_MAD),
                            None)
        if twin is not None:
            dropped.append(f"{Path(f).name} (= {Path(twin).name})")
            continue
        digests[h] = f
        if t is not None:
            thumbs.append((f, t[0], t[1]))
        kept.append(f)
    if dropped:
        from .progress import notice

        notice(f"dropped {len(dropped)} duplicate photo(s), which would only skew the fit: {_name_list(dropped)}")
    return kept


def find_scene_images(folder: Path) -> list[Path]:
    """A posed scene's image files: in ``images/``, ``images_8/`` or ``image/`` (the first that
    holds any), else in ``folder`` itself; empty when there are none."""
    folder = Path(folder)
    for d in (folder / "images", folder / "images_8", folder / "image", folder):
        files = list_image_files(d, strict=False)
        if files:
            return files
    return []


def select_views(files: Sequence[Path], n: int | None) -> list[Path]:
    """``n`` views spread evenly over the name-sorted folder: indices ``round(linspace(0, len-1, n))``
    (first and last always included); all of them when the folder holds ``n`` or fewer."""
    files = list(files)
    if n is not None and n > len(files):
        from .progress import notice

        notice(f"--views {n} but there are {len(files)} photos: using all {len(files)}")
    if n is None or n >= len(files):
        return files
    if n < 2:
        raise FvgenError(f"--views must be at least 2 (got {n})")
    idx = np.round(np.linspace(0, len(files) - 1, n)).astype(int)
    return [files[i] for i in idx]


def read_image(path: Path) -> np.ndarray:
    """One file as float32 RGB [H, W, 3] in [0, 1], EXIF rotation applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            arr = _to_rgb_float(im)
    except FileNotFoundError:
        raise FvgenError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise FvgenError(f"not an image file: {path} (it is a folder)") from None
    except PermissionError:
        raise FvgenError(f"cannot read image: {path} (permission denied)") from None
    except UnidentifiedImageError:
        raise FvgenError(f"not an image or corrupt: {path}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise FvgenError(f"corrupt or truncated image: {path} ({e})") from None
    except Exception as e:  # decompression bombs, broken EXIF blocks, decoder bugs
        raise FvgenError(f"cannot read image: {path} ({type(e).__name__}: {e})") from None
    if arr.shape[0] < 16 or arr.shape[1] < 16:
        raise FvgenError(f"image too small: {path} ({arr.shape[1]}x{arr.shape[0]}, need at least 16x16)")
    return arr


def _to_rgb_float(im) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a = (a / scale)[..., None].repeat(3, axis=2)
    elif mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a = (a / max(float(a.max()), 1.0))[..., None].repeat(3, axis=2)
    else:
        has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info)
        if has_alpha:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float64) / 255.0
            alpha = rgba[..., 3:4]
            a = rgba[..., :3] * alpha + (1.0 - alpha)  # composite on white
        else:
            a = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def resize_image(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-style (antialiased) resize of a float image [H, W, C]."""
    if img.shape[1] == width and img.shape[0] == height:
        return img
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return t[0].permute(1, 2, 0).clamp(0, 1).numpy()


def fit_size(width: int, height: int, max_size: int | None, multiple: int = 1) -> tuple[int, int]:
    """(w, h) scaled so the long side is at most ``max_size``, rounded to ``multiple``."""
    s = 1.0 if not max_size else min(1.0, max_size / max(width, height))
    w = max(multiple, int(round(width * s / multiple)) * multiple)
    h = max(multiple, int(round(height * s / multiple)) * multiple)
    return w, h


@dataclass(frozen=True)
class DecodedImages:
    """Photos decoded at their own resolution, of one aspect ratio: :meth:`fit` makes the arrays
    of any working size from them, so that several sizes cost one decode."""
    names: list[str]
    images: list[np.ndarray]  # each [H_i, W_i, 3] float32 in [0, 1], as the file holds it
    original_sizes: list[tuple[int, int]]  # (w, h) of each file after EXIF rotation

    def fit(self, max_size: int | None = None) -> LoadedImages:
        """All images resized to the smallest one's size scaled to a long side of at most ``max_size``."""
        w0, h0 = min(self.original_sizes, key=lambda s: s[0] * s[1])
        w, h = fit_size(w0, h0, max_size)
        return LoadedImages(list(self.names), np.stack([resize_image(im, w, h) for im in self.images]),
                            list(self.original_sizes))


def decode_images(files: Sequence[Path]) -> DecodedImages:
    """Decode ``files`` at full resolution, refusing mixed aspect ratios (see module docstring)."""
    if not files:
        raise FvgenError("no images given")
    imgs = [read_image(f) for f in files]
    sizes = [(im.shape[1], im.shape[0]) for im in imgs]
    aspects = [w / h for w, h in sizes]
    if max(aspects) / min(aspects) > 1.01:
        odd = [f"{Path(f).name} ({w}x{h})" for f, (w, h) in zip(files, sizes)]
        raise FvgenError("images have different aspect ratios: " + ", ".join(odd[:6])
                         + "; crop or rotate them to one shape")
    return DecodedImages([Path(f).name for f in files], imgs, sizes)


def load_images(files: Sequence[Path], max_size: int | None = None) -> LoadedImages:
    """Read ``files`` into one array of a common size (see module docstring)."""
    return decode_images(files).fit(max_size)


def hash_files(files: Sequence[Path]) -> str:
    """Content hash of the files (names and bytes), for stage cache keys."""
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def save_image(path: Path, img: np.ndarray) -> None:
    import imageio.v3 as iio

    from .video import to_uint8

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, to_uint8(img))
