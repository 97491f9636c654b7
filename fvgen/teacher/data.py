"""Training examples for the teacher, made through the same code path as inference.

An example is (reference view, warped clip + validity masks, ground-truth clip, cameras):

1. a posed scene (a real one from ``shared/datasets-train/`` or a procedural room from
   :mod:`fvgen.demo` with random seed and camera path) gives images + ground-truth cameras;
2. a few *sparse* views of it (2-3, the first frame of the clip among them) go through
   :func:`fvgen.stages.priors.compute_priors` with their known poses -- exactly what
   ``fvgen reconstruct --poses`` runs (SfM triangulation + plane-sweep MVS) -- so the dense cloud
   carries real sparse-view artefacts;
3. that cloud is drawn along the scene's real camera path (``F`` consecutive posed frames) by
   :func:`fvgen.stages.warp.render_warp`, the warp stage's renderer; the real frames are the target;
4. all frames are resized to the model size by :func:`fvgen.teacher.sample.resize_frames`, the
   function ``fvgen generate`` uses.

Evaluation scenes (``shared/datasets/``: fern, dtu_scan24, fox) must never enter training:
:func:`check_not_eval` refuses them by name, by path and by image content, and every scene loader
and the training data loader call it.

Shards: one ``.npz`` per example, frames stored as JPEG (q 92) and masks as PNG bytes, so ~150
embedded-size examples fit in the 64 MiB that travels to the GPU machine. Build them with
``python -m fvgen.teacher.data build --out DIR ...``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..cameras import Camera, look_at, write_cameras_opencv_json
from ..errors import FvgenError

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


# ----------------------------------------------------------------------------- scenes

def train_scenes(root: Path = TRAIN_ROOT) -> list[Path]:
    return sorted(p for p in Path(root).iterdir() if (p / "cameras_opencv.json").is_file()) if Path(root).is_dir() else []


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
    from ..cameras import read_cameras_opencv_json
    from ..images import load_images
    from ..undistort import undistort_image

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
    """A random procedural room (:class:`fvgen.demo._Scene`) seen from ``n`` cameras on a random
    smooth path (arc of 20-60 degrees, varying height and distance)."""
    from ..demo import _Scene

    rng = np.random.default_rng(seed)
    scene = _Scene(int(seed))
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


def make_priors(images: np.ndarray, cams: Sequence[Camera], names: Sequence[str], sparse_ids: Sequence[int],
                priors_conf=None, device: str = "cpu", triangulate: bool = True):
    """The dense prior of the sparse views with their known poses: what ``fvgen reconstruct --poses`` runs
    (SfM triangulation with the known cameras, then plane-sweep MVS). ``triangulate=False`` skips the
    SfM step (no pycolmap needed, e.g. on the GPU host): the MVS then finds its depth range with its
    coarse sweep, as it does whenever sparse points are missing."""
    from ..config import PriorsConf
    from ..images import LoadedImages
    from ..stages.priors import compute_priors

    priors_conf = priors_conf or PriorsConf()
    if not triangulate:
        from ..mvs import dense_point_cloud
        from ..prior import Priors

        sub_cams = [replace(cams[i], name=names[i]) for i in sparse_ids]
        dense, info = dense_point_cloud(images[list(sparse_ids)], sub_cams, None, priors_conf.mvs, device=device)
        if len(dense) == 0:
            raise FvgenError("the dense stereo found no points")
        return Priors(sub_cams, dense, None, {"backend": "mvs-only", "poses": "given"})
    H, W = images.shape[1:3]
    sub = LoadedImages([names[i] for i in sparse_ids], images[list(sparse_ids)], [(W, H)] * len(sparse_ids))
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        write_cameras_opencv_json([cams[i] for i in sparse_ids], td / "cameras_opencv.json")
        priors, _ = compute_priors(sub, priors_conf, td / "work", td / "cameras_opencv.json", device)
    return priors


def clip_example(priors, images: np.ndarray, cams: Sequence[Camera], names: Sequence[str], sparse_ids: Sequence[int],
                 clip_ids: Sequence[int], width: int, height: int, device: str = "cpu", source: str = "") -> dict:
    """The prior drawn along ``clip_ids`` by the warp stage's renderer, with the real frames as target."""
    from ..config import WarpConf
    from ..stages.warp import render_warp
    from .sample import resize_frames

    clip_cams = [replace(cams[i], name=f"frame_{j:04d}") for j, i in enumerate(clip_ids)]
    frames, masks = render_warp(priors, clip_cams, WarpConf(), device)

    def rs(a):  # [F, H, W, C] float -> model size uint8
        t = torch.as_tensor(np.asarray(a, np.float32)).permute(0, 3, 1, 2)
        t = resize_frames(t, width, height).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        return np.round(t * 255).astype(np.uint8)

    return {"ref": rs(images[clip_ids[0]][None])[0], "warp": rs(np.stack(frames)),
            "mask": rs(np.stack(masks).astype(np.float32)[..., None])[..., 0], "gt": rs(images[list(clip_ids)]),
            "meta": {"source": source, "sparse": [names[i] for i in sparse_ids], "clip": [names[i] for i in clip_ids],
                     "coverage": float(np.mean(masks)), "points": len(priors.points),
                     "warp_psnr": warp_psnr(frames, masks, images[list(clip_ids)]),
                     "cameras": [c.to_dict() for c in clip_cams]}}


def warp_psnr(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], gt: np.ndarray) -> float | None:
    """PSNR of the warp against the real frames on the pixels it covers (all frames pooled): how far
    the prior's geometry can be trusted; None when nothing is covered."""
    from ..metrics import psnr

    m = torch.as_tensor(np.stack(masks).astype(bool))
    if not m.any():
        return None
    g = np.asarray(gt, np.float32)
    g = g / 255.0 if g.max() > 1.5 else g
    return psnr(torch.as_tensor(np.stack(frames).astype(np.float32)), torch.as_tensor(g), m)


def make_example(images: np.ndarray, cams: Sequence[Camera], names: Sequence[str], sparse_ids: Sequence[int],
                 clip_ids: Sequence[int], width: int, height: int, priors_conf=None, device: str = "cpu",
                 source: str = "") -> dict:
    """One training example at the model size (uint8 arrays, see module docstring)."""
    priors = make_priors(images, cams, names, sparse_ids, priors_conf, device)
    return clip_example(priors, images, cams, names, sparse_ids, clip_ids, width, height, device, source)


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
            raise FvgenError(f"no example shards (*.npz) in {d}: build them with `python -m fvgen.teacher.data build`")
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
        ``fill`` (a name in ``fvgen.fill.FILLS``) also makes every warp's fill once, here, and hands
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
        """uint8 [N, F, H, W, 3]: each warped frame's fill (``fvgen.fill``), made in chunks of examples."""
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


# ----------------------------------------------------------------------------- builder

def build(out: Path, preset: str = "embedded", scenes: Sequence[str] = ("all",), per_scene: int = 4,
          procedural: int = 0, max_size: int = 320, seed: int = 0, pipeline_preset: str = "cpu",
          device: str = "cpu", min_coverage: float = 0.05, clips_per_prior: int = 1, triangulate: bool = True,
          workers: int = 1, min_warp_psnr: float = 0.0, log=print) -> list[Path]:
    """Write example shards into ``out``; failures (a sparse set SfM cannot register) are skipped,
    and so are clips whose warp covers less than ``min_coverage`` or matches the real frames on its
    covered pixels at less than ``min_warp_psnr`` dB (0: no such check).
    ``clips_per_prior`` > 1 also writes clips that start at the other sparse views of a prior.
    ``workers`` > 1 builds in that many processes, one scene (or procedural batch) per task."""
    dirs = scene_dirs(scenes)
    for d in dirs:  # never skipped: an evaluation scene aborts the whole build
        check_not_eval(d)
    jobs = [("scene", d) for d in dirs for _ in range(per_scene)] + [("proc", k) for k in range(procedural)]
    args = dict(out=Path(out), preset=preset, max_size=max_size, seed=seed, pipeline_preset=pipeline_preset,
                device=device, min_coverage=min_coverage, clips_per_prior=clips_per_prior, triangulate=triangulate,
                min_warp_psnr=min_warp_psnr)
    numbered = list(enumerate(jobs))
    if workers <= 1:
        return _build_jobs(numbered, log=log, **args)
    import multiprocessing as mp

    groups: dict = {}
    for n, job in numbered:  # one task per scene keeps each scene loaded once
        groups.setdefault(str(job[1]) if job[0] == "scene" else f"proc{n % workers}", []).append((n, job))
    ctx = mp.get_context("spawn")  # CUDA and fork do not mix
    with ctx.Pool(workers) as pool:
        parts = pool.starmap(_build_jobs_quiet, [(g, args) for g in groups.values()])
    written = sorted(p for part in parts for p in part)
    log(f"{len(written)} examples from {len(groups)} tasks in {workers} processes")
    return written


def _build_jobs_quiet(jobs, args):
    torch.set_num_threads(1)  # one process per core
    return _build_jobs(jobs, log=lambda m: print(m, flush=True), **args)


def _build_jobs(jobs, out: Path, preset: str, max_size: int, seed: int, pipeline_preset: str, device: str,
                min_coverage: float, clips_per_prior: int, triangulate: bool, min_warp_psnr: float = 0.0,
                log=print) -> list[Path]:
    from ..config import load_preset
    from .configs import get_preset

    p = get_preset(preset)
    pconf = load_preset(pipeline_preset).priors
    written = []
    rng = np.random.default_rng([seed, jobs[0][0]] if jobs else seed)
    cache: dict = {}
    made: dict[str, set] = {}  # per scene, the (sparse views, clip) already drawn
    for n, (kind, what) in jobs:
        t0 = time.time()
        try:
            if kind == "scene":
                if what not in cache:
                    cache.clear()
                    cache[what] = load_posed_scene(what, max_size)
                imgs, cams, names = cache[what]
                src = f"datasets-train/{Path(what).name}"
            else:
                s = seed * 100003 + what
                imgs, cams, names = procedural_scene(s, 2 * p.frames, max_size, int(round(max_size * p.height / p.width)))
                src = f"procedural/{s}"
            views = draw_new_views(len(imgs), p.frames, rng, made.setdefault(src, set()))
            if views is None:
                log(f"skip {kind} {what}: no new clip and input views to draw ({len(imgs)} frames)")
                continue
            sparse, clip = views
            priors = make_priors(imgs, cams, names, sparse, pconf, device, triangulate)
        except FvgenError as e:
            log(f"skip {kind} {what}: {e}")
            continue
        # one prior serves a clip from each of its sparse views (the warp is cheap, the prior is not)
        stride = abs(clip[1] - clip[0]) if len(clip) > 1 else 1
        clips = [clip] + [c for c in (clip_from(v, len(imgs), p.frames, stride, rng) for v in sparse[1:clips_per_prior])
                          if c is not None]
        for j, cl in enumerate(clips):
            ex = clip_example(priors, imgs, cams, names, sparse, cl, p.width, p.height, device, src)
            if ex["meta"]["coverage"] < min_coverage:
                log(f"skip {kind} {what} clip {j}: warp coverage {ex['meta']['coverage']:.3f} < {min_coverage}")
                continue
            if min_warp_psnr > 0 and (ex["meta"]["warp_psnr"] or 0.0) < min_warp_psnr:
                log(f"skip {kind} {what} clip {j}: warp PSNR {ex['meta']['warp_psnr'] or 0:.1f} < {min_warp_psnr} dB")
                continue
            path = out / f"{src.replace('/', '_')}_{seed}_{n:05d}_{j}.npz"
            save_example(path, ex)
            written.append(path)
            log(f"{path.name}: coverage {ex['meta']['coverage']:.2f}, {path.stat().st_size / 1e6:.2f} MB, "
                f"{time.time() - t0:.1f}s")
    return written


def pack(out: Path, scenes: Sequence[str] = ("all",), max_size: int = 320) -> int:
    """Copy training scenes (cameras_opencv.json + images/ downsized to ``max_size``, JPEG q 95) into
    ``out``: a few MB per scene, small enough to carry to the GPU host and build examples there."""
    import shutil

    from PIL import Image

    from ..cameras import read_cameras_opencv_json

    n = 0
    for d in scene_dirs(scenes):
        cams = read_cameras_opencv_json(d / "cameras_opencv.json")
        files = camera_image_files(d, cams)
        check_not_eval(d, files)
        dst = Path(out) / d.name
        (dst / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(d / "cameras_opencv.json", dst / "cameras_opencv.json")  # cameras scale to the image size on load
        for f in files:
            im = Image.open(f)
            s = min(1.0, max_size / max(im.size))
            if s < 1.0:
                im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
            im.convert("RGB").save(dst / "images" / f.name, quality=95)
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fvgen.teacher.data", description="teacher training examples")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write example shards (.npz)")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--preset", default="embedded")
    b.add_argument("--scenes", nargs="*", default=["all"], help="names under shared/datasets-train or folders")
    b.add_argument("--per-scene", type=int, default=4)
    b.add_argument("--procedural", type=int, default=0, help="procedural room examples")
    b.add_argument("--max-size", type=int, default=320, help="long side the priors and warps are made at")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--pipeline-preset", default="cpu", help="fvgen preset whose [priors] settings are used")
    b.add_argument("--device", default="cpu")
    b.add_argument("--min-coverage", type=float, default=0.05, help="skip examples whose warps cover less")
    b.add_argument("--min-warp-psnr", type=float, default=0.0,
                   help="skip examples whose warps match the real frames worse (dB, covered pixels; 0: keep all)")
    b.add_argument("--clips-per-prior", type=int, default=1, help="clips per dense prior, each from one of its sparse views")
    b.add_argument("--no-triangulate", action="store_true",
                   help="skip SfM triangulation with the known poses (no pycolmap needed; MVS finds its depth range)")
    b.add_argument("--workers", type=int, default=1, help="processes (one scene per task)")
    k = sub.add_parser("pack", help="copy training scenes with images downsized, e.g. to carry them to the GPU host")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--scenes", nargs="*", default=["all"])
    k.add_argument("--max-size", type=int, default=320)
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        try:
            n = pack(a.out, a.scenes, a.max_size)
        except FvgenError as e:
            print(f"error: {e}")
            return 2
        print(f"{n} images in {a.out}")
        return 0
    try:
        fs = build(a.out, a.preset, a.scenes, a.per_scene, a.procedural, a.max_size, a.seed, a.pipeline_preset, a.device,
                   a.min_coverage, a.clips_per_prior, not a.no_triangulate, a.workers, a.min_warp_psnr)
    except FvgenError as e:
        print(f"error: {e}")
        return 2
    print(f"{len(fs)} examples in {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
