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


# rows cut off a scene's images (fractions of the height at the top and bottom), the cameras' principal
# points moved with them: pi3_valley's frames carry a screen-fixed "ChronoLight" watermark top right and a
# faint one bottom left (shared/datasets-train/README.md), which does not move with the scene
SCENE_CROPS = {"pi3_valley": (0.12, 0.10)}


def crop_rows(image: np.ndarray, cam: Camera, top: float, bottom: float) -> tuple[np.ndarray, Camera]:
    """``image`` [H, W, 3] without its top and bottom ``top`` / ``bottom`` fractions of rows, and the
    camera that sees the rest."""
    H = image.shape[0]
    t, b = int(round(top * H)), int(round(bottom * H))
    K = cam.K.copy()
    K[1, 2] -= t
    return image[t:H - b], replace(cam, K=K, height=H - t - b)


def crop_to_one_shape(files: Sequence[Path], cams: Sequence[Camera], max_size: int) -> list[tuple[np.ndarray, Camera]]:
    """Images of different shapes (the Internet photo collections: reichstag, sacre_coeur,
    vggsfm_british_museum mix portraits and landscapes) brought to one: the median aspect ratio at a
    long side of ``max_size``, each image scaled to cover it and centre-cropped, its camera scaled
    and its principal point moved with the crop. Returns (image [H, W, 3], camera) per file."""
    from ...core.images import read_image, resize_image

    imgs = [read_image(f) for f in files]
    a = float(np.median([im.shape[1] / im.shape[0] for im in imgs]))
    W, H = (max_size, int(round(max_size / a))) if a >= 1 else (int(round(max_size * a)), max_size)
    out = []
    for im, c in zip(imgs, cams):
        h, w = im.shape[:2]
        s = max(W / w, H / h)
        sw, sh = max(W, int(round(w * s))), max(H, int(round(h * s)))
        c = c.scaled(sw, sh)
        x0, y0 = (sw - W) // 2, (sh - H) // 2
        K = c.K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        out.append((resize_image(im, sw, sh)[y0:y0 + H, x0:x0 + W], replace(c, K=K, width=W, height=H)))
    return out


def load_posed_scene(scene_dir: Path, max_size: int = 320) -> tuple[np.ndarray, list[Camera], list[str]]:
    """Images [N, H, W, 3] (undistorted), cameras at that size, image names, in the cameras file's order."""
    from ...core.cameras import read_cameras_opencv_json
    from ...core.images import load_images
    from ...core.undistort import undistort_image

    scene_dir = Path(scene_dir)
    cams = read_cameras_opencv_json(scene_dir / "cameras_opencv.json")
    files = camera_image_files(scene_dir, cams)
    check_not_eval(scene_dir, files)
    try:
        imgs = load_images(files, max_size)
        w, h = imgs.size
        scaled = [(im, c.scaled(w, h)) for im, c in zip(imgs.images, cams)]
    except FvgenError as e:
        if "aspect ratios" not in str(e):
            raise
        scaled = crop_to_one_shape(files, cams, max_size)
    out_imgs, out_cams = [], []
    for im, c in scaled:
        c = replace(c, name=Path(c.name).name)
        if c.dist:
            im, c = undistort_image(im, c)
        if scene_dir.name in SCENE_CROPS:
            im, c = crop_rows(im, c, *SCENE_CROPS[scene_dir.name])
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


def bounce_path(start: int, n_frames: int, clip_len: int, direction: int) -> list[int]:
    """``clip_len`` frame indices from ``start``, one step at a time in ``direction`` (+1 or -1),
    turning back at either end of the ``n_frames`` images: 0 1 2 3 2 1 0 1 ..."""
    out, pos, d = [start], start, direction
    for _ in range(clip_len - 1):
        if n_frames < 2:
            break
        if not 0 <= pos + d < n_frames:
            d = -d
        pos += d
        out.append(pos)
    return out


def pick_views_short(n_frames: int, clip_len: int, rng: np.random.Generator, sparse: int | None = None,
                     min_gap: int = 4) -> tuple[list[int], list[int]]:
    """:func:`pick_views` for a scene with fewer images than a clip has frames (13 of the 31 training
    scenes have 8-13 images, the embedded clip 16 frames): the clip walks the capture path there and
    back (:func:`bounce_path`), every frame a real posed image; 2-3 sparse views among distinct
    images, the clip's first frame first, at least ``min_gap`` images apart where the scene allows."""
    if n_frames < 3:
        raise FvgenError(f"scene has {n_frames} frames, a clip needs at least 3")
    start = int(rng.integers(0, n_frames))
    d = int(rng.choice([-1, 1]))
    clip = bounce_path(start, n_frames, clip_len, d)
    k = sparse or int(rng.integers(2, 4))
    gap = max(1, min(min_gap, (n_frames - 1) // max(k - 1, 1)))
    picked = [start]
    while len(picked) < k:
        # the widest gap that still leaves a view (3 images, the middle one first: the gap shrinks to 1)
        free = next((f for g in range(gap, 0, -1)
                     if (f := [i for i in range(n_frames) if all(abs(i - q) >= g for q in picked)])), [])
        if not free:
            break
        picked.append(int(rng.choice(free)))
    return picked, clip


def draw_new_views(n_frames: int, clip_len: int, rng: np.random.Generator, made: set,
                   tries: int = 20) -> tuple[list[int], list[int]] | None:
    """:func:`pick_views` until it gives (sparse views, clip) not in ``made`` (then added to it), or
    None after ``tries`` repeats. Why: a scene little longer than a clip has few distinct draws
    (strecha_castle: 16 images, one clip position), which otherwise repeat as identical examples."""
    pick = pick_views if n_frames >= clip_len else pick_views_short
    for _ in range(tries):
        sparse, clip = pick(n_frames, clip_len, rng)
        key = (tuple(sparse), tuple(clip))
        if key not in made:
            made.add(key)
            return sparse, clip
    return None


def clip_from(start: int, n_frames: int, clip_len: int, stride: int, rng: np.random.Generator) -> list[int] | None:
    """Consecutive frames (every ``stride``-th) beginning at ``start``, forward or backward (random
    when both fit); None when neither fits. A scene shorter than a clip: there and back
    (:func:`bounce_path`)."""
    if n_frames < clip_len:
        return bounce_path(start, n_frames, clip_len, int(rng.choice([-1, 1])))
    span = (clip_len - 1) * stride
    dirs = [d for d in (1, -1) if 0 <= start + d * span < n_frames]
    if not dirs:
        return None
    d = dirs[int(rng.integers(len(dirs)))]
    return list(range(start, start + d * span + d, d * stride))
