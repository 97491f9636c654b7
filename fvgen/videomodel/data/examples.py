"""Training examples for the teacher, made through the same code path as inference.

An example is (reference view, warped clip + validity masks, ground-truth clip, cameras):

1. a posed scene (a real one from ``shared/datasets-train/`` or a procedural room from
   :mod:`fvgen.core.procedural` with random seed and camera path) gives images + ground-truth cameras;
2. a few *sparse* views of it (2-3, the first frame of the clip among them) go through
   :func:`fvgen.priors.backends.compute_priors` with their known poses -- exactly what
   ``fvgen reconstruct --poses`` runs (SfM triangulation + plane-sweep MVS) -- so the dense cloud
   carries real sparse-view artefacts;
3. that cloud is drawn along the scene's real camera path (``F`` consecutive posed frames) by
   :func:`fvgen.render.warp.render_warp`, the warp stage's renderer; the real frames are the target;
4. all frames are resized to the model size by :func:`fvgen.videomodel.sample.resize_frames`, the
   function ``fvgen generate`` uses.

Evaluation scenes (``shared/datasets/``: fern, dtu_scan24, fox) must never enter training:
:func:`check_not_eval` refuses them by name, by path and by image content, and every scene loader
and the training data loader call it.

Shards: one ``.npz`` per example, frames stored as JPEG (q 92) and masks as PNG bytes, so ~150
embedded-size examples fit in the 64 MiB that travels to the GPU machine. Build them with
``fvgen data build --out DIR ...``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...core.cameras import Camera, write_cameras_opencv_json
from ...core.datasets import check_not_eval
from ...priors.backends import PriorsConf
from ...core.errors import FvgenError
from .scenes import (
    camera_image_files,
    clip_from,
    draw_new_views,
    load_posed_scene,
    procedural_scene,
    scene_dirs,
)
from .shards import save_example


def make_priors(images: np.ndarray, cams: Sequence[Camera], names: Sequence[str], sparse_ids: Sequence[int],
                priors_conf=None, device: str = "cpu", triangulate: bool = True):
    """The dense prior of the sparse views with their known poses: what ``fvgen reconstruct --poses`` runs
    (SfM triangulation with the known cameras, then plane-sweep MVS). ``triangulate=False`` skips the
    SfM step (no pycolmap needed, e.g. on the GPU host): the MVS then finds its depth range with its
    coarse sweep, as it does whenever sparse points are missing."""
    from ...core.images import LoadedImages
    from ...priors.backends import PriorsConf, compute_priors

    priors_conf = priors_conf or PriorsConf()
    if not triangulate:
        from ...priors.mvs import dense_point_cloud
        from ...priors.prior import Priors

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
    from ...render.warp import WarpConf, render_warp
    from ..sample import resize_frames

    clip_cams = [replace(cams[i], name=f"frame_{j:04d}") for j, i in enumerate(clip_ids)]
    frames, masks = render_warp(priors, clip_cams, WarpConf(), device)

    def rs(a):  # [F, H, W, C] float -> model size uint8
        t = torch.as_tensor(np.asarray(a, np.float32)).permute(0, 3, 1, 2)
        t = resize_frames(t, width, height).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        return np.round(t * 255).astype(np.uint8)

    warp, mask = warp_to_model_size(frames, masks, width, height)
    return {"ref": rs(images[clip_ids[0]][None])[0], "warp": warp, "mask": mask, "gt": rs(images[list(clip_ids)]),
            "meta": {"source": source, "sparse": [names[i] for i in sparse_ids], "clip": [names[i] for i in clip_ids],
                     "coverage": float(np.mean(masks)), "points": len(priors.points),
                     "warp_psnr": warp_psnr(frames, masks, images[list(clip_ids)]),
                     "cameras": [c.to_dict() for c in clip_cams]}}


def warp_to_model_size(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], width: int, height: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Warped frames [H, W, 3] and masks [H, W] -> uint8 warp [F, height, width, 3] and mask
    [F, height, width] by :func:`fvgen.videomodel.sample.resize_warp` (seen colours only, no black
    bleeding into the hole edges), as ``fvgen generate`` resizes them."""
    from ..sample import resize_warp

    w = torch.as_tensor(np.stack(frames).astype(np.float32)).permute(0, 3, 1, 2)
    m = torch.as_tensor(np.stack(masks).astype(np.float32))[:, None]
    w, m = resize_warp(w, m, width, height)
    return (np.round(w.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8),
            np.round(m[:, 0].numpy() * 255).astype(np.uint8))


def warp_psnr(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], gt: np.ndarray) -> float | None:
    """PSNR of the warp against the real frames on the pixels it covers (all frames pooled): how far
    the prior's geometry can be trusted; None when nothing is covered."""
    from ...core.metrics import psnr

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


# ----------------------------------------------------------------------------- builder

def build(out: Path, preset: str = "embedded", scenes: Sequence[str] = ("all",), per_scene: int = 4,
          procedural: int = 0, max_size: int = 320, seed: int = 0, priors: PriorsConf | None = None,
          device: str = "cpu", min_coverage: float = 0.05, clips_per_prior: int = 1, triangulate: bool = True,
          workers: int = 1, min_warp_psnr: float = 0.0, photos: int = 0, photo_share: float = 0.0,
          photo_sets: Sequence[str] = ("all",), warpback=None, retries: int = 3, log=print) -> list[Path]:
    """Write example shards into ``out``.

    Sampled per scene, not per image: every multi-view scene gets the same quota of
    ``per_scene * clips_per_prior`` examples whatever its image count (mold_gold_cape's 119 images
    count as much as bundler_et's 9), so no scene type dominates. A draw that fails (a sparse set SfM
    cannot register, a warp covering less than ``min_coverage`` or matching the real frames on its
    covered pixels at less than ``min_warp_psnr`` dB) is redrawn, up to ``per_scene * (1 + retries)``
    dense priors per scene; a scene that still falls short (too few distinct draws) says so.
    ``clips_per_prior`` > 1 also writes clips that start at the other sparse views of a prior.
    ``photos`` single-photo warp-back examples (:mod:`fvgen.videomodel.data.warpback`, ``warpback`` its
    :class:`~fvgen.videomodel.data.warpback.WarpbackConf`) from ``shared/photos`` (the ``photo_sets``,
    drawn set by set in turn); or ``photo_share`` in [0, 1): that share of all examples, counted against
    the multi-view quota. ``workers`` > 1 builds in that many processes, one scene (or procedural or
    photo batch) per task."""
    dirs = scene_dirs(scenes)
    for d in dirs:  # never skipped: an evaluation scene aborts the whole build
        check_not_eval(d)
    if not 0.0 <= photo_share < 1.0:
        raise FvgenError(f"photo share must be in [0, 1), not {photo_share}")
    if photo_share and not photos:
        multiview = (len(dirs) * per_scene + procedural) * clips_per_prior
        photos = int(round(photo_share / (1.0 - photo_share) * multiview))
    photo_jobs = []
    if photos:
        from .warpback import photo_schedule

        photo_jobs = [("photo", f) for f in photo_schedule(photos, photo_sets, seed)]
        for f in sorted({f for _, f in photo_jobs}):  # never skipped: an evaluation image aborts the whole build
            check_not_eval(f, [f])
    jobs = [("scene", d) for d in dirs if per_scene > 0] + [("proc", k) for k in range(procedural)] + photo_jobs
    args = dict(out=Path(out), preset=preset, max_size=max_size, seed=seed, priors=priors or PriorsConf(),
                device=device, min_coverage=min_coverage, clips_per_prior=clips_per_prior, triangulate=triangulate,
                min_warp_psnr=min_warp_psnr, per_scene=per_scene, retries=retries, warpback=warpback)
    numbered = list(enumerate(jobs))
    if workers <= 1:
        return _build_jobs(numbered, log=log, **args)
    import multiprocessing as mp

    groups: dict = {}
    for n, job in numbered:  # one task per scene keeps each scene loaded once
        groups.setdefault(str(job[1]) if job[0] == "scene" else f"{job[0]}{n % workers}", []).append((n, job))
    ctx = mp.get_context("spawn")  # CUDA and fork do not mix
    with ctx.Pool(workers) as pool:
        parts = pool.starmap(_build_jobs_quiet, [(g, args) for g in groups.values()])
    written = sorted(p for part in parts for p in part)
    log(f"{len(written)} examples from {len(groups)} tasks in {workers} processes")
    return written


def _build_jobs_quiet(jobs, args):
    torch.set_num_threads(1)  # one process per core
    return _build_jobs(jobs, log=lambda m: print(m, flush=True), **args)


def _build_jobs(jobs, out: Path, preset: str, max_size: int, seed: int, priors: PriorsConf, device: str,
                min_coverage: float, clips_per_prior: int, triangulate: bool, min_warp_psnr: float = 0.0,
                per_scene: int = 1, retries: int = 3, warpback=None, log=print) -> list[Path]:
    """Each job: a multi-view scene (its whole quota), a procedural room (``clips_per_prior``
    examples) or one photo (one warp-back example); its random draws are seeded by (seed, job number)."""
    from ..configs import get_preset

    p = get_preset(preset)
    written = []
    for n, (kind, what) in jobs:
        rng = np.random.default_rng([seed, n])
        t0 = time.time()
        if kind == "photo":
            from .warpback import WarpbackConf, photo_example, photo_source

            src = photo_source(what)
            try:
                ex = photo_example(what, p.width, p.height, p.frames, rng, warpback or WarpbackConf(), device)
            except FvgenError as e:
                log(f"skip {src}: {e}")
                continue
            path = out / f"{src.replace('/', '_').replace('.', '_')}_{seed}_{n:05d}.npz"
            save_example(path, ex)
            written.append(path)
            log(f"{path.name}: coverage {ex['meta']['coverage']:.2f}, {path.stat().st_size / 1e6:.2f} MB, "
                f"{time.time() - t0:.1f}s")
            continue
        try:
            if kind == "scene":
                imgs, cams, names = load_posed_scene(what, max_size)
                src = f"datasets-train/{Path(what).name}"
                quota, priors_left = per_scene * clips_per_prior, per_scene * (1 + retries)
            else:
                s = seed * 100003 + what
                imgs, cams, names = procedural_scene(s, 2 * p.frames, max_size, int(round(max_size * p.height / p.width)))
                src = f"procedural/{s}"
                quota, priors_left = clips_per_prior, 1 + retries
        except FvgenError as e:
            log(f"skip {kind} {what}: {e}")
            continue
        made: set = set()  # the (sparse views, clip) already drawn
        got = attempt = 0
        while got < quota and attempt < priors_left:
            attempt += 1
            try:
                views = draw_new_views(len(imgs), p.frames, rng, made)
            except FvgenError as e:
                log(f"skip {src}: {e}")
                break
            if views is None:
                log(f"{src}: no new clip and input views to draw ({len(imgs)} frames)")
                break
            sparse, clip = views
            try:
                prior = make_priors(imgs, cams, names, sparse, priors, device, triangulate)
            except FvgenError as e:
                log(f"skip {src} draw {attempt}: {e}")
                continue
            # one prior serves a clip from each of its sparse views (the warp is cheap, the prior is not)
            stride = abs(clip[1] - clip[0]) if len(clip) > 1 else 1
            clips = [clip] + [c for c in (clip_from(v, len(imgs), p.frames, stride, rng) for v in sparse[1:clips_per_prior])
                              if c is not None]
            for j, cl in enumerate(clips):
                if got >= quota:
                    break
                ex = clip_example(prior, imgs, cams, names, sparse, cl, p.width, p.height, device, src)
                if ex["meta"]["coverage"] < min_coverage:
                    log(f"skip {src} draw {attempt} clip {j}: warp coverage {ex['meta']['coverage']:.3f} < {min_coverage}")
                    continue
                if min_warp_psnr > 0 and (ex["meta"]["warp_psnr"] or 0.0) < min_warp_psnr:
                    log(f"skip {src} draw {attempt} clip {j}: warp PSNR {ex['meta']['warp_psnr'] or 0:.1f} < {min_warp_psnr} dB")
                    continue
                path = out / f"{src.replace('/', '_')}_{seed}_{n:05d}_{attempt:02d}_{j}.npz"
                save_example(path, ex)
                written.append(path)
                got += 1
                log(f"{path.name}: coverage {ex['meta']['coverage']:.2f}, {path.stat().st_size / 1e6:.2f} MB, "
                    f"{time.time() - t0:.1f}s")
        if got < quota:
            log(f"{src}: {got} of {quota} examples after {attempt} draws")
    return written


def examples_per_source(files: Sequence[Path]) -> dict[str, int]:
    """How many shards each source (``meta.source``: a scene, a procedural room, a photo) gave."""
    import json

    out: dict[str, int] = {}
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            src = json.loads(z["meta"].tobytes().decode()).get("source", "")
        out[src] = out.get(src, 0) + 1
    return out


def pack(out: Path, scenes: Sequence[str] = ("all",), max_size: int = 320) -> int:
    """Copy training scenes (cameras_opencv.json + images/ downsized to ``max_size``, JPEG q 95) into
    ``out``: a few MB per scene, small enough to carry to the GPU host and build examples there."""
    import shutil

    from PIL import Image

    from ...core.cameras import read_cameras_opencv_json

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


def pack_photos(out: Path, sets: Sequence[str] = ("all",), max_size: int = 480) -> int:
    """Copy photo sets (``shared/photos/<set>/``) with every photo downsized to a long side of
    ``max_size`` (JPEG q 95; the evaluation guard run on each), to carry them to the GPU host."""
    from PIL import Image

    from ...core.datasets import IMAGE_SUFFIXES
    from .warpback import photo_sets

    n = 0
    for folder in photo_sets(sets):
        dst = Path(out) / folder.name
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            check_not_eval(f, [f])
            im = Image.open(f).convert("RGB")
            s = min(1.0, max_size / max(im.size))
            if s < 1.0:
                im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
            im.save(dst / f"{f.stem}.jpg", quality=95)
            n += 1
    return n
