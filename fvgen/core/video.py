"""Writing frame sequences as mp4 (imageio-ffmpeg) and PNG folders."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(img, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: int = 20) -> None:
    """Frames [H, W, 3] or [H, W] floats in [0, 1]; sizes padded to even numbers for H.264."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                            ffmpeg_params=["-pix_fmt", "yuv420p"], ffmpeg_log_level="error") as w:
        for f in frames:
            f = to_uint8(f)
            if f.ndim == 2:
                f = np.repeat(f[..., None], 3, axis=2)
            h, wd = f.shape[:2]
            f = np.pad(f, ((0, h % 2), (0, wd % 2), (0, 0)), mode="edge")
            w.append_data(f)
    tmp.replace(path)


def write_pngs(folder: Path, frames: Sequence[np.ndarray], names: Sequence[str]) -> None:
    import imageio.v3 as iio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for f, n in zip(frames, names):
        iio.imwrite(folder / f"{n}.png", to_uint8(f))
