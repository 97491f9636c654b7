"""Image preprocessing and batched pair inference.

Preprocessing follows the published 512 model: each image is resized (antialiased) so its long
side is 512 px, then centre-cropped so both sides are multiples of 16 (square images are cropped
to 4:3 unless ``square_ok``, as the 512 model never saw square inputs), and mapped to [-1, 1].
:class:`NetworkGeometry` maps network pixels back to the images as given.

Inference encodes every image once (the encoder is shared and its output depends on one image
only), then runs the two decoders and heads on batches of ``batch_size`` pairs; only the
pointmaps and confidences, subsampled by ``stride``, are kept (on the CPU), so device memory is
bounded by the batch size, not by the number of pairs. CUDA runs in bfloat16 autocast, CPU in
float32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ...core.errors import FvgenError
from ...core.images import resize_image
from .model import Dust3rModel


@dataclass(frozen=True)
class NetworkGeometry:
    """How the network's input relates to the images as given (all sizes (w, h))."""

    image_size: tuple[int, int]
    resized_size: tuple[int, int]
    crop_offset: tuple[int, int]  # top-left of the crop, in resized pixels
    net_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Resized pixels per image pixel, (sx, sy)."""
        return self.resized_size[0] / self.image_size[0], self.resized_size[1] / self.image_size[1]

    @property
    def principal_point_net(self) -> tuple[float, float]:
        """The principal point the alignment assumes: the network image's centre (pixel-centre convention)."""
        return (self.net_size[0] - 1) / 2.0, (self.net_size[1] - 1) / 2.0

    def net_to_image(self, u, v):
        """Network pixel-centre coordinates -> image pixel-centre coordinates."""
        sx, sy = self.scale
        return (np.asarray(u, np.float64) + self.crop_offset[0] + 0.5) / sx - 0.5, \
               (np.asarray(v, np.float64) + self.crop_offset[1] + 0.5) / sy - 0.5

    def intrinsics(self, focal_net: float) -> np.ndarray:
        """K in image pixels for a focal length in network pixels and the centred principal point."""
        sx, sy = self.scale
        cx, cy = self.net_to_image(*self.principal_point_net)
        return np.array([[focal_net / sx, 0.0, float(cx)], [0.0, focal_net / sy, float(cy)], [0.0, 0.0, 1.0]])


def network_geometry(width: int, height: int, long_side: int = 512, patch: int = 16,
                     square_ok: bool = False) -> NetworkGeometry:
    s = long_side / max(width, height)
    wr, hr = max(patch, int(round(width * s))), max(patch, int(round(height * s)))
    wn, hn = (wr // patch) * patch, (hr // patch) * patch
    if wn == hn and not square_ok:
        hn = max(patch, (int(round(wn * 3 / 4)) // patch) * patch)
    return NetworkGeometry((int(width), int(height)), (wr, hr), ((wr - wn) // 2, (hr - hn) // 2), (wn, hn))


def preprocess(images: np.ndarray, long_side: int = 512, patch: int = 16,
               square_ok: bool = False) -> tuple[torch.Tensor, np.ndarray, NetworkGeometry]:
    """images [N, H, W, 3] float in [0, 1] -> (network input [N, 3, Hn, Wn] in [-1, 1],
    network-resolution RGB [N, Hn, Wn, 3] in [0, 1], geometry)."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise FvgenError(f"expected images as [N, H, W, 3], got shape {list(images.shape)}")
    n, h, w, _ = images.shape
    g = network_geometry(w, h, long_side, patch, square_ok)
    (wr, hr), (ox, oy), (wn, hn) = g.resized_size, g.crop_offset, g.net_size
    rgb = np.stack([resize_image(im, wr, hr)[oy:oy + hn, ox:ox + wn] for im in images]).astype(np.float32)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous() * 2.0 - 1.0
    return x, rgb, g


@dataclass
class PairPredictions:
    """Network outputs for directed pairs (i, j), on a grid subsampled by ``stride``: pixel (r, c)
    of the grid is network pixel (stride * c, stride * r). Both pointmaps are in view i's frame."""

    pairs: list[tuple[int, int]]
    pts_i: torch.Tensor  # [E, h, w, 3] float32
    conf_i: torch.Tensor  # [E, h, w]
    pts_j: torch.Tensor  # [E, h, w, 3]
    conf_j: torch.Tensor  # [E, h, w]
    stride: int
    net_size: tuple[int, int]  # (Wn, Hn)
    timings: dict

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.pts_i.shape[2], self.pts_i.shape[1]

    def pixel_grid(self) -> np.ndarray:
        """[h*w, 2] network pixel coordinates (u, v) of the grid, row-major."""
        h, w = self.pts_i.shape[1:3]
        v, u = np.meshgrid(np.arange(h) * self.stride, np.arange(w) * self.stride, indexing="ij")
        return np.stack([u.ravel(), v.ravel()], 1).astype(np.float64)


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def infer_pairs(model: Dust3rModel, images: torch.Tensor, pairs: list[tuple[int, int]], batch_size: int = 8,
                device: str | torch.device = "cpu", stride: int = 1, progress=None) -> PairPredictions:
    """Run ``model`` on every directed pair of ``images`` ([N, 3, H, W] in [-1, 1])."""
    device = torch.device(device)
    batch_size = max(1, int(batch_size))
    stride = max(1, int(stride))
    n, _, H, W = images.shape
    h, w = len(range(0, H, stride)), len(range(0, W, stride))
    E = len(pairs)
    # outputs live outside inference mode so callers may edit them
    out = dict(pts_i=torch.empty(E, h, w, 3), conf_i=torch.empty(E, h, w),
               pts_j=torch.empty(E, h, w, 3), conf_j=torch.empty(E, h, w))
    if device.type == "cuda":
        out = {k: v.pin_memory() for k, v in out.items()}
    with torch.inference_mode():
        timings = _run(model, images, pairs, batch_size, device, stride, out, progress)
    # non-finite outputs (a broken checkpoint or overflow) carry no weight
    for a, c in (("pts_i", "conf_i"), ("pts_j", "conf_j")):
        bad = ~torch.isfinite(out[a]).all(-1) | ~torch.isfinite(out[c])
        if bad.any():
            out[a][bad] = 0.0
            out[c][bad] = 1.0
    return PairPredictions(list(map(tuple, pairs)), out["pts_i"], out["conf_i"], out["pts_j"], out["conf_j"],
                           stride, (W, H), timings)


def _run(model, images, pairs, batch_size, device, stride, out, progress) -> dict:
    use_bf16 = device.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else torch.autocast("cpu", enabled=False)
    n, _, H, W = images.shape
    hw = (H, W)
    E = len(pairs)
    t0 = time.perf_counter()
    feats, pos = [], None
    with amp:
        for s in range(0, n, batch_size):
            f, p = model.encode(images[s:s + batch_size].to(device, non_blocking=True))
            feats.append(f)
            pos = p[:1]
    feats = torch.cat(feats)
    _sync(device)
    t_enc = time.perf_counter() - t0
    idx = torch.tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2)
    for s in range(0, E, batch_size):
        ii, jj = idx[s:s + batch_size, 0], idx[s:s + batch_size, 1]
        b = len(ii)
        pb = pos.expand(b, -1, -1)
        with amp:
            p1, c1, p2, c2 = model.forward_features(feats[ii], pb, feats[jj], pb, hw)
        for key, val in (("pts_i", p1), ("conf_i", c1), ("pts_j", p2), ("conf_j", c2)):
            out[key][s:s + b].copy_(val[:, ::stride, ::stride].float(), non_blocking=True)
        if progress is not None:
            progress(min(E, s + b), E)
    _sync(device)
    return {"encode_s": t_enc, "inference_s": time.perf_counter() - t0}
