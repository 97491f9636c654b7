"""Writing frame sequences as mp4 (imageio-ffmpeg's H.264; OpenCV's MPEG-4 where imageio-ffmpeg is
missing, e.g. a GPU host with OpenCV but no ffmpeg) and PNG folders."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(img, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _even_rgb8(f: np.ndarray) -> np.ndarray:
    f = to_uint8(f)
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=2)
    h, wd = f.shape[:2]
    return np.pad(f, ((0, h % 2), (0, wd % 2), (0, 0)), mode="edge")


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: int = 20) -> None:
    """Frames [H, W, 3] or [H, W] floats in [0, 1]; sizes padded to even numbers for H.264."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        _write_mp4_opencv(tmp, frames, fps)
    else:
        import imageio.v2 as imageio

        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                ffmpeg_params=["-pix_fmt", "yuv420p"], ffmpeg_log_level="error") as w:
            for f in frames:
                w.append_data(_even_rgb8(f))
    tmp.replace(path)


def _write_mp4_opencv(path: Path, frames: Sequence[np.ndarray], fps: int) -> None:
    try:
        import cv2
    except ImportError:
        from .errors import FvgenError

        raise FvgenError("writing mp4 videos needs imageio-ffmpeg: pip install imageio-ffmpeg") from None
    frames = [_even_rgb8(f) for f in frames]
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    for f in frames:
        out.write(np.ascontiguousarray(f[..., ::-1]))
    out.release()


def write_pngs(folder: Path, frames: Sequence[np.ndarray], names: Sequence[str]) -> None:
    import imageio.v3 as iio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for f, n in zip(frames, names):
        iio.imwrite(folder / f"{n}.png", to_uint8(f))
