"""Stage 1, priors: poses and a dense coloured point cloud from the sparse input photos.

Reads the image files (and a known-pose file when given); writes ``OUT/priors/`` holding the
images as every later stage sees them (``images/*.png``, resized, undistorted), the cameras
(``cameras.json``), ``points.ply``, ``sparse.ply`` and ``info.json`` (see :mod:`fvgen.priors.prior`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.cache import StageResult, cache_key, run_stage
from ..core.errors import FvgenError
from ..core.images import ImagesConf, decode_images, hash_files, save_image
from ..priors.backends import PriorsConf, compute_priors
from ..priors.prior import Priors

VERSION = "1"
NAME = "priors"


@dataclass(frozen=True)
class PriorsInputs:
    image_files: tuple[Path, ...]
    poses: Path | None = None  # known cameras (file or folder), or None to estimate them


def _hash_poses(path: Path | None) -> str:
    """Hash of what decides the known cameras: the pose file (or COLMAP model files) that
    :func:`fvgen.core.cameras.load_poses` reads, and for row-ordered formats (LLFF, DTU) the sibling
    image names that map rows to images. Nothing else in the folder (e.g. an output folder inside
    it) enters the key."""
    if path is None:
        return ""
    from ..core.cameras import _sibling_image_names, pose_source_files

    h = hashlib.sha256()
    files = pose_source_files(path)
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    if files[0].suffix in (".npy", ".npz"):
        h.update("\n".join(_sibling_image_names(files[0].parent)).encode())
    return h.hexdigest()


def key(images_conf: ImagesConf, conf: PriorsConf, inputs: PriorsInputs, device: str) -> str:
    checkpoint = ""
    if conf.backend == "dust3r":  # a checkpoint replaced at the same path must not reuse the cache
        st = Path(conf.checkpoint).stat()
        checkpoint = f"{Path(conf.checkpoint).resolve()}:{st.st_size}:{st.st_mtime_ns}"
    # the dense-stereo backend that will run, not only the one asked for: "auto" picks COLMAP on
    # a GPU host and the sweep elsewhere, and their clouds differ
    mvs_backend = ""
    if conf.backend == "sfm":
        from ..priors.mvs_backend import select_backend

        mvs_backend = select_backend(conf.mvs.backend)
    conf = replace(conf, sfm=replace(conf.sfm, verbose=False))  # logging changes no result
    return cache_key(NAME, VERSION, {"images": images_conf, "priors": conf}, images=hash_files(inputs.image_files),
                     poses=_hash_poses(inputs.poses), device=device if conf.backend == "dust3r" else "",
                     checkpoint=checkpoint, **({"mvs_backend": mvs_backend} if mvs_backend else {}))


def main(images_conf: ImagesConf, conf: PriorsConf, inputs: PriorsInputs, root: Path,
         device: str = "cpu", force: bool = False) -> StageResult:
    if len(inputs.image_files) < 2:
        n = len(inputs.image_files)
        raise FvgenError(f"need at least 2 images, got {n}" + (f" ({inputs.image_files[0].name})" if n else ""))
    if conf.backend == "dust3r":  # refuse before any work
        conf = replace(conf, checkpoint=conf.checkpoint or os.environ.get("FVGEN_DUST3R_CHECKPOINT", ""))
        if not conf.checkpoint:
            raise FvgenError("the dust3r backend needs a checkpoint: pass --checkpoint "
                             "PATH/DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth (or set FVGEN_DUST3R_CHECKPOINT)")
        if not Path(conf.checkpoint).is_file():
            raise FvgenError(f"DUSt3R checkpoint not found: {conf.checkpoint}")
        if inputs.poses is not None:
            raise FvgenError("--poses is not supported with --priors dust3r; use --priors sfm")
    stems = [Path(f).stem for f in inputs.image_files]
    dup = sorted({n for n in stems if stems.count(n) > 1})
    if dup:
        raise FvgenError(f"several images share a name ({', '.join(dup[:3])}): rename them, e.g. "
                         f"{dup[0]}.jpg and {dup[0]}.png")
    k = key(images_conf, conf, inputs, device)

    def compute(tmp: Path) -> dict:
        from ..core.progress import progress_bar

        # one decode serves both sizes; the full-resolution arrays are dropped before the priors run
        decoded = decode_images(inputs.image_files)
        images = decoded.fit(images_conf.max_size)
        sfm_images = None
        if conf.backend == "sfm" and inputs.poses is None and conf.sfm.max_image_size > max(images.size):
            sfm_images = decoded.fit(conf.sfm.max_image_size)
        del decoded
        with progress_bar(f"priors ({conf.backend})", 2) as update:
            update(0, {"step": "poses" if conf.backend == "sfm" else "pairs + alignment"})
            priors, images = compute_priors(images, conf, tmp, inputs.poses, device, update, sfm_images)
        for name, img in zip(images.names, images.images):
            save_image(tmp / "images" / f"{Path(name).stem}.png", img)
        priors.info["image_files"] = [str(Path(p).resolve()) for p in inputs.image_files]
        priors.save(tmp)
        return {"views": len(images.names), "registered_views": len(priors.cameras),
                "points": len(priors.points), "sparse_points": 0 if priors.sparse is None else len(priors.sparse),
                "image_size": list(images.size),
                **({"mvs_backend": priors.info["mvs"]["backend"]} if "mvs" in priors.info else {})}

    return run_stage(root, NAME, k, compute, force)


def load(folder: Path) -> tuple[Priors, np.ndarray]:
    """The priors and their images [N, H, W, 3] from a finished priors folder."""
    from ..core.images import read_image

    pri = Priors.load(folder)
    imgs = np.stack([read_image(Path(folder) / "images" / f"{Path(c.name).stem}.png") for c in pri.cameras])
    return pri, imgs
