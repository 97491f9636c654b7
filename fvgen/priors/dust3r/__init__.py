"""DUSt3R priors backend, our own implementation (state-dict compatible with the published
``DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth``; no code from the CC BY-NC-SA reference).

``dust3r_priors(images, conf, checkpoint, device)`` runs: preprocessing (long side 512, sides
multiples of 16) -> pair inference over a scene graph -> global alignment -> :class:`Priors` in
the pixel units of the images as given (cameras, dense coloured cloud with confidences).

Modules: :mod:`.model` (network, configs), :mod:`.checkpoint` (strict loading),
:mod:`.pairs` (scene graphs), :mod:`.inference` (preprocessing, batched pairs),
:mod:`.alignment` (global alignment).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...core.cameras import Camera
from ...core.devices import resolve_device
from ...core.errors import FvgenError
from ...core.images import LoadedImages
from ...core.pointcloud import PointCloud
from ..prior import Priors
from .model import Dust3rModel, Dust3rModelConfig, build_model

__all__ = ["Dust3rConf", "Dust3rModelConfig", "Dust3rModel", "dust3r_priors", "priors_from_model",
           "build_model", "voxel_downsample"]


@dataclass(frozen=True)
class Dust3rConf:
    """Options of the DUSt3R backend (the defaults follow the DUSt3R demo)."""

    scene_graph: str = "complete"  # complete | swin | oneref (also "swin-4", "oneref-0")
    winsize: int = 3  # swin window
    cyclic: bool = True  # swin wraps around (first and last views are linked)
    refid: int = 0  # oneref reference view
    image_size: int = 512  # network long side (the published model's)
    square_ok: bool = False  # square photos are centre-cropped to 4:3 unless True
    batch_size: int = 8  # pairs per forward pass (bounds device memory)
    align_stride: int = 2  # alignment and the dense cloud use every k-th network pixel
    niter: int = 300  # alignment iterations
    lr: float = 0.01
    shared_focal: bool = False  # one focal length for all views
    min_conf: float = 3.0  # confidence threshold of the dense cloud (DUSt3R confidences are >= 1)
    min_points: int = 2000  # if fewer pass min_conf, keep the most confident min_points instead
    voxel_size: float = 0.0  # dense cloud voxel size in world units; 0: auto (1/400 of the scene extent)
    max_points: int = 400_000  # cap after voxel downsampling (random, seeded)
    seed: int = 0

    def __post_init__(self):
        from .pairs import parse_graph

        parse_graph(self.scene_graph)
        for name in ("batch_size", "align_stride", "winsize"):
            if int(getattr(self, name)) < 1:
                raise FvgenError(f"dust3r {name} must be at least 1, got {getattr(self, name)}")
        if self.niter < 0 or self.lr <= 0:
            raise FvgenError(f"dust3r niter must be >= 0 and lr > 0 (got {self.niter}, {self.lr})")
        if self.image_size < 16 or self.image_size % 16:
            raise FvgenError(f"dust3r image_size must be a positive multiple of 16, got {self.image_size}")


def voxel_downsample(xyz: np.ndarray, rgb: np.ndarray, conf: np.ndarray, voxel: float):
    """Average position and colour per voxel, keep the highest confidence."""
    if len(xyz) == 0 or voxel <= 0:
        return xyz, rgb, conf
    keys = np.floor((xyz - xyz.min(0)) / voxel).astype(np.int64)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    m = len(counts)
    out_xyz = np.stack([np.bincount(inv, xyz[:, k], m) for k in range(3)], 1) / counts[:, None]
    out_rgb = np.stack([np.bincount(inv, rgb[:, k], m) for k in range(3)], 1) / counts[:, None]
    out_conf = np.full(m, -np.inf)
    np.maximum.at(out_conf, inv, conf)
    return out_xyz.astype(np.float32), out_rgb.astype(np.float32), out_conf.astype(np.float32)


def priors_from_model(images: LoadedImages, conf: Dust3rConf, model: Dust3rModel, device: str = "cpu",
                      progress=None) -> Priors:
    """The whole backend with an already built network (random weights in tests and benchmarks)."""
    import torch

    from .alignment import global_align
    from .inference import infer_pairs, preprocess
    from .pairs import make_pairs

    device = resolve_device(device)
    n = len(images.names)
    t0 = time.perf_counter()
    x, rgb_net, geom = preprocess(images.images, conf.image_size, model.cfg.patch_size, conf.square_ok)
    pairs = make_pairs(n, conf.scene_graph, conf.winsize, conf.refid, conf.cyclic)
    model = model.to(device).eval()
    try:
        pred = infer_pairs(model, x, pairs, conf.batch_size, device, conf.align_stride,
                           progress=(lambda a, b: progress("pairs", a, b)) if progress else None)
        pix = pred.pixel_grid()
        res = global_align(n, pairs, pred.pts_i, pred.conf_i, pred.pts_j, pred.conf_j, pix, geom.net_size,
                           niter=conf.niter, lr=conf.lr, shared_focal=conf.shared_focal, device=device,
                           progress=(lambda a, b, l: progress("align", a, b)) if progress else None)
    except torch.cuda.OutOfMemoryError:
        raise FvgenError(f"out of GPU memory in DUSt3R with {len(pairs)} pairs: lower dust3r batch_size, "
                         "raise align_stride or use a swin scene graph") from None
    timings = dict(pred.timings)
    del pred
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    # world frame: the first camera's (identity pose), scale as aligned
    to0 = np.linalg.inv(res.c2w[0])
    res.c2w = to0 @ res.c2w
    res.pts = (res.pts.reshape(-1, 3) @ to0[:3, :3].T + to0[:3, 3]).reshape(res.pts.shape).astype(np.float32)

    # cameras in the pixel units of the images as given
    cams = []
    for k, name in enumerate(images.names):
        K = geom.intrinsics(float(res.focal[k]))
        cams.append(Camera(K, res.c2w[k], images.size[0], images.size[1], name=name))

    # dense cloud: confident pixels of the aligned pointmaps, coloured from the network images
    s = conf.align_stride
    cols = rgb_net[:, ::s, ::s].reshape(n, -1, 3)
    xyz, col, cf = res.pts.reshape(-1, 3), cols.reshape(-1, 3), res.conf.reshape(-1)
    finite = np.isfinite(xyz).all(1) & np.isfinite(cf)
    keep = finite & (cf >= conf.min_conf)
    fallback = False
    if keep.sum() < min(conf.min_points, finite.sum()):
        fallback = True
        order = np.argsort(-np.where(finite, cf, -np.inf))[:min(conf.min_points, int(finite.sum()))]
        keep = np.zeros_like(keep)
        keep[order] = True
    xyz, col, cf = xyz[keep], col[keep], cf[keep]
    voxel = conf.voxel_size
    if voxel <= 0 and len(xyz):
        lo, hi = np.percentile(xyz, [2, 98], axis=0)
        voxel = float(np.linalg.norm(hi - lo)) / 400.0
    n_before = len(xyz)
    xyz, col, cf = voxel_downsample(xyz, col, cf, voxel)
    if len(xyz) > conf.max_points:
        sel = np.random.default_rng(conf.seed).choice(len(xyz), conf.max_points, replace=False)
        xyz, col, cf = xyz[sel], col[sel], cf[sel]
    if len(xyz) == 0:
        raise FvgenError("DUSt3R produced no usable points (all pointmaps non-finite)")

    info = {
        "backend": "dust3r",
        "scene_graph": conf.scene_graph, "pairs": len(pairs),
        "network_size": list(geom.net_size), "image_size": list(images.size),
        "align_stride": s, "device": device,
        "encode_s": timings["encode_s"], "inference_s": timings["inference_s"],
        "alignment": res.info,
        "focal_px": [float(c.fx) for c in cams],
        "dense_points_before_voxel": int(n_before), "points": int(len(xyz)), "voxel_size": float(voxel),
        "conf_fallback": fallback,
        "conf": asdict(conf),
        "total_s": time.perf_counter() - t0,
    }
    return Priors(cams, PointCloud(xyz, col, cf), None, info)


def dust3r_priors(images: LoadedImages, conf: Dust3rConf, checkpoint: Path | None, device: str,
                  model_cfg: Dust3rModelConfig | None = None) -> Priors:
    """DUSt3R priors with the published 512 DPT weights at ``checkpoint`` (or $FVGEN_DUST3R_CHECKPOINT).

    ``model_cfg`` (tests only) loads a checkpoint of another size, e.g. ``Dust3rModelConfig.tiny()``."""
    from .checkpoint import load_model

    if checkpoint is None or str(checkpoint) == "":
        env = os.environ.get("FVGEN_DUST3R_CHECKPOINT", "")
        if not env:
            raise FvgenError("the dust3r backend needs a checkpoint: pass --checkpoint "
                             "PATH/DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth")
        checkpoint = Path(env)
    device = resolve_device(device)
    model, load_info = load_model(Path(checkpoint), model_cfg or Dust3rModelConfig.large_512(), device)
    pri = priors_from_model(images, conf, model, device)
    pri.info["checkpoint"] = str(checkpoint)
    pri.info["checkpoint_keys"] = load_info["keys"]
    return pri
