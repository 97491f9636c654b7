"""Posed training scenes (real ones from ``shared/datasets-train/``, procedural rooms) and the
draw of a clip and its sparse input views along a scene's capture path.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ...core.cameras import Camera, look_at
from ...core.datasets import TRAIN_ROOT, check_not_eval, train_scenes
from ...core.errors import FvgenError


def scene_dirs(scenes: Sequence[str]) -> list[Path]:
    """``["all"]``: every scene of the training pool; else names under it or folders."""
    if list(scenes) == ["all"]:
        return train_scenes()
    return [Path(s) if Path(s).is_dir() else TRAIN_ROOT / s for s in scenes]


def camera_image_files(scene_dir: Path, cams: Sequence[Camera]) -> list[Path]:
    """The image file of each camera: ``images/<name>``, else the name as the cameras file gives it."""
    files = [scene_dir / "images" / Path(c.name).name for c in cams]
    if not files or not all(f.is_file() for f in files):
        files = [scene_dir / c.name for c in cams]
    return files


def load_posed_scene(scene_dir: Path, max_size: int = 320) -> tuple[np.ndarray, list[Camera], list[str]]:
    """Images [N, H, W, 3] (undistorted), cameras at that size, image names, in the cameras file's order."""
    from ...core.cameras import read_cameras_opencv_json
    from ...core.images import load_images
    from ...core.undistort import undistort_image

    scene_dir = Path(scene_dir)
    cams = read_cameras_opencv_json(scene_dir / "cameras_opencv.json")
    files = camera_image_files(scene_dir, cams)
    check_not_eval(scene_dir, files)
    imgs = load_images(files, max_size)
    w, h = imgs.size
    out_imgs, out_cams = [], []
    for im, c in zip(imgs.images, cams):
        c = replace(c.scaled(w, h), name=Path(c.name).name)
        if c.dist:
            im, c = undistort_image(im, c)
        out_imgs.append(im)
        out_cams.append(c)
    order = path_order(out_cams)
    return np.stack(out_imgs)[order], [out_cams[i] for i in order], [out_cams[i].name for i in order]


def path_order(cams: Sequence[Camera]) -> list[int]:
    """Frames reordered along the capture path (files are listed by name, which is not the path
    order, e.g. ``IMG_3`` after ``IMG_28``): a greedy nearest-neighbour chain over camera centres
    and viewing directions, started at the frame farthest from the others' mean, so that
    consecutive frames of a clip are neighbouring views."""
    c = np.stack([cam.c2w[:3, 3] for cam in cams])
    d = np.stack([cam.c2w[:3, 2] for cam in cams])
    scale = np.median(np.linalg.norm(c - c.mean(0), axis=1)) + 1e-9
    dist = np.linalg.norm(c[:, None] - c[None], axis=-1) / scale + 0.5 * np.linalg.norm(d[:, None] - d[None], axis=-1)
    cur = int(np.argmax(np.linalg.norm(c - c.mean(0), axis=1)))
    order, left = [cur], set(range(len(cams))) - {cur}
    while left:
        cur = min(left, key=lambda j: dist[cur, j])
        order.append(cur)
        left.remove(cur)
    return order


def procedural_scene(seed: int, n: int, width: int = 320, height: int = 200) -> tuple[np.ndarray, list[Camera], list[str]]:
    """A random procedural room (:class:`fvgen.core.procedural.ProceduralScene`) seen from ``n`` cameras on a random
    smooth path (arc of 20-60 degrees, varying height and distance)."""
    from ...core.procedural import ProceduralScene

    rng = np.random.default_rng(seed)
    scene = ProceduralScene(int(seed))
    target = np.array([rng.uniform(-0.3, 0.3), rng.uniform(0.3, 0.6), rng.uniform(-0.6, -0.2)])
    arc = math.radians(rng.uniform(20, 60))
    a0 = rng.uniform(-0.3, 0.3)
    r0, r1 = rng.uniform(2.6, 4.0, 2)
    y0, y1 = rng.uniform(0.9, 1.8, 2)
    f = width * rng.uniform(0.75, 1.05)
    K = [[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]]
    cams, imgs = [], []
    for i, s in enumerate(np.linspace(0, 1, n)):
        a = a0 + arc * (s - 0.5)
        r, y = r0 + (r1 - r0) * s, y0 + (y1 - y0) * s
        eye = target + np.array([r * math.sin(a), y, r * math.cos(a)])
        cam = Camera(K, look_at(eye, target, np.array([0.0, 1.0, 0.0])), width, height, name=f"p{seed}_{i:03d}.png")
        cams.append(cam)
        imgs.append(scene.render(cam, ss=1))
    return np.stack(imgs).astype(np.float32), cams, [c.name for c in cams]


# ----------------------------------------------------------------------------- examples

def pick_views(n_frames: int, clip_len: int, rng: np.random.Generator, max_stride: int = 1,
               sparse: int | None = None, min_gap: int = 4) -> tuple[list[int], list[int]]:
    """(sparse view indices, clip indices): a clip of consecutive frames (stride 1..max_stride,
    random direction) and 2-3 sparse views on the clip, its first frame first, at least ``min_gap``
    clip frames apart where the clip allows it."""
    stride = int(rng.integers(1, max_stride + 1))
    while stride > 1 and (clip_len - 1) * stride + 1 > n_frames:
        stride -= 1
    span = (clip_len - 1) * stride + 1
    if span > n_frames:
        raise FvgenError(f"scene has {n_frames} frames, a clip needs {span}")
    s = int(rng.integers(0, n_frames - span + 1))
    clip = list(range(s, s + span, stride))
    if rng.random() < 0.5:
        clip = clip[::-1]
    k = sparse or int(rng.integers(2, 4))
    # the other inputs lie on the clip's own path, as when fvgen warps between or near its inputs:
    # views far off the path leave the warps nearly empty (measured: 1-7 % coverage); and apart
    # from each other: neighbouring video frames as inputs can give a dense cloud that fits only
    # those frames (juice_box with frames 0, 1, 15: 10.8 dB at frame 15, 14.6 with 0, 8, 15)
    gap = max(1, min(min_gap, (clip_len - 1) // max(k - 1, 1)))
    picked = [0]
    if rng.random() < 0.5:  # often an input view at the clip's end
        picked.append(clip_len - 1)
    while len(picked) < k:
        free = [j for j in range(1, clip_len) if all(abs(j - q) >= gap for q in picked)]
        if not free:
            break
        picked.append(int(rng.choice(free)))
    return [clip[j] for j in picked], clip


def draw_new_views(n_frames: int, clip_len: int, rng: np.random.Generator, made: set,
                   tries: int = 20) -> tuple[list[int], list[int]] | None:
    """:func:`pick_views` until it gives (sparse views, clip) not in ``made`` (then added to it), or
    None after ``tries`` repeats. Why: a scene little longer than a clip has few distinct draws
    (strecha_castle: 16 images, one clip position), which otherwise repeat as identical examples."""
    for _ in range(tries):
        sparse, clip = pick_views(n_frames, clip_len, rng)
        key = (tuple(sparse), tuple(clip))
        if key not in made:
            made.add(key)
            return sparse, clip
    return None


def clip_from(start: int, n_frames: int, clip_len: int, stride: int, rng: np.random.Generator) -> list[int] | None:
    """Consecutive frames (every ``stride``-th) beginning at ``start``, forward or backward (random
    when both fit); None when neither fits."""
    span = (clip_len - 1) * stride
    dirs = [d for d in (1, -1) if 0 <= start + d * span < n_frames]
    if not dirs:
        return None
    d = dirs[int(rng.integers(len(dirs)))]
    return list(range(start, start + d * span + d, d * stride))
