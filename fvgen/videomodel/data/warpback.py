"""Single-photo warp-back examples: any photo becomes a training clip whose holes fall exactly where
a novel view disoccludes, with the photo itself as exact ground truth.

(After the layered-layout move this module belongs in ``fvgen/videomodel/data/warpback.py``.)

Why: the multi-view pool has 31 scenes; a model trained on 9 of them learned their palette ("the
unseen part is lighter", RESULTS.md "sixth run") instead of how to fill holes. Any photo gives a
hole-filling example once it has a depth, so 309 natural photos (``shared/photos``) add the variety
of scene content the multi-view pool lacks.

One example, all in the photo's camera frame (world = the photo camera ``c0``, OpenCV axes):

1. the photo, cropped at random to the model's aspect ratio, on a *canvas* a little wider than the
   clip's frames (``margin`` on each side), with a random focal length;
2. a synthetic depth for it (:func:`synthetic_depth`): piecewise-planar segments that follow the
   image's own regions (SLIC superpixels, so depth edges fall on colour edges as in real scenes) at
   random depths and slants, a smooth random field, or a mix of the two;
3. the photo unprojected into a cloud, one point per canvas pixel (``P``);
4. one or two *input* cameras at a small random offset from ``c0`` (``baseline``, in units of the
   nearest depth): ``P`` rendered into each by the pipeline's z-buffer point renderer
   (:func:`fvgen.render.points.render_points`); the points an input sees (depth within ``vis_tol``
   of its z-buffer) form the prior ``Q`` -- the forward warp;
5. the clip: ``F`` cameras sharing ``c0``'s centre, turning along a short random path (yaw, pitch,
   roll; a pure rotation keeps the ground truth exact whatever the depth); each frame's warp is
   ``Q`` drawn by the warp stage's :func:`fvgen.render.warp.render_warp` -- the warp back: the holes
   are exactly the pixels none of the inputs saw (disocclusions and the inputs' frame edges); each
   frame's ground truth is the photo resampled by the rotation's homography;
6. the reference image: what the first input camera sees of ``P`` in the first frame's framing, its
   few holes (what that input would see behind the photo's surfaces) filled by the harmonic fill.
   Never the photo itself: it would show the holes' content, which no input view shows at test time.

Example fields are those of :func:`fvgen.videomodel.data.clip_example` (ref, warp, mask, gt, meta with
``source = "photos/<set>/<name>"`` and the clip cameras), written by the same
:func:`~fvgen.videomodel.data.save_example`; build them with ``python -m fvgen.videomodel.data build
--photos N`` (or ``--photo-share S``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...core.cameras import Camera
from ...core.errors import FvgenError

DEPTHS = ("planes", "field", "mixed")


@dataclass(frozen=True)
class WarpbackConf:
    depth: str = "mixed"  # planes | field | mixed (synthetic_depth); "mixed" also draws the kind per example
    max_size: int = 320  # long side of the clip frames before the resize to the model size (as data build --max-size)
    margin: float = 0.12  # canvas border beyond the clip frames, per side, in units of the frame size
    focal: tuple[float, float] = (0.7, 1.2)  # focal length range, in units of the frame width
    # far depth range (the near depth is 1); wider ranges leave 1-px moire gaps in the far parts of the
    # warps (the warp stage sizes splats by the median point spacing, so far points draw 1 px)
    far: tuple[float, float] = (1.5, 6.0)
    segments: tuple[int, int] = (6, 40)  # SLIC superpixels of the planar depth
    slant: float = 0.6  # planes' inverse-depth slope across the frame, relative to their inverse depth
    field_sigma: tuple[float, float] = (0.04, 0.25)  # smooth field's correlation length, in frame widths
    baseline: tuple[float, float] = (0.02, 0.12)  # input-camera offset, in units of the near depth
    inputs: tuple[int, int] = (1, 2)  # virtual input cameras (the prior is what any of them sees)
    # each input camera sees a window of this fraction of the canvas (per side, random position):
    # the clip's frames then reach beyond what the inputs saw, as a novel view reaches beyond sparse
    # input views. Measured (benchmarks/hole_stats.py, RESULTS.md "Warp-back photo examples"): the
    # held-out views' holes cover 77 % of the frame (largest hole 73 %); (0.4, 1.0) without texture
    # drop gave 22 % (21 %), these defaults 66 % (63 %)
    input_view: tuple[float, float] = (0.25, 0.65)
    max_turn_deg: float = 8.0  # the clip's largest turn from the photo's view (also kept inside the canvas)
    vis_tol: float = 0.02  # an input sees a point when its depth is within this fraction of the z-buffer's
    # drop the prior's points in the least textured part of the photo, up to this fraction of it (as
    # plane-sweep stereo loses untextured surfaces); 0: only disocclusions and frame edges make holes
    texture_drop: float = 0.3

    def __post_init__(self):
        if self.depth not in DEPTHS:
            raise FvgenError(f"warp-back depth must be one of {', '.join(DEPTHS)}, not {self.depth!r}")
        if not 0.0 <= self.texture_drop < 1.0:
            raise FvgenError(f"warp-back texture_drop must be in [0, 1), not {self.texture_drop}")


# ----------------------------------------------------------------------------- photos

def photo_sets(sets: Sequence[str] = ("all",), root: Path | None = None) -> list[Path]:
    """The photo set folders (``["all"]``: every folder under ``shared/photos``)."""
    from ...core.datasets import PHOTOS_ROOT, check_not_eval

    root = Path(root or PHOTOS_ROOT)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if list(sets) == ["all"] and root.is_dir() \
        else [Path(s) if Path(s).is_dir() else root / s for s in sets]
    for f in folders:
        if not f.is_dir():
            raise FvgenError(f"photo set not found: {f}")
        check_not_eval(f)
    if not folders:
        raise FvgenError(f"no photo sets under {root}")
    return folders


def photo_schedule(n: int, sets: Sequence[str] = ("all",), seed: int = 0, root: Path | None = None) -> list[Path]:
    """``n`` photo files, the sets taken in turn (each set as often as the others, so a set of 100
    photos does not outweigh one of 10), each set's photos in a seeded random order, repeating once
    a set is used up (a repeat gets a new depth and cameras)."""
    from ...core.datasets import IMAGE_SUFFIXES

    rng = np.random.default_rng([seed, 7])
    pools = []
    for folder in photo_sets(sets, root):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            pools.append([files[i] for i in rng.permutation(len(files))])
    if not pools:
        raise FvgenError("the photo sets hold no images")
    order = [pools[i] for i in rng.permutation(len(pools))]
    return [order[k % len(order)][(k // len(order)) % len(order[k % len(order)])] for k in range(n)]


def photo_source(path: Path) -> str:
    """``photos/<set>/<name>``: what a warp-back shard records as its source."""
    path = Path(path)
    return f"photos/{path.parent.name}/{path.name}"


def load_photo_crop(path: Path, width: int, height: int, rng: np.random.Generator, min_scale: float = 0.6) -> np.ndarray:
    """A random crop of the photo with aspect ``width / height`` (the largest such crop scaled by
    [``min_scale``, 1]), resized to ``width`` x ``height``: float32 [height, width, 3] in [0, 1]."""
    from PIL import Image

    from ...core.datasets import check_not_eval

    check_not_eval(Path(path), [Path(path)])
    with Image.open(path) as im:
        im = im.convert("RGB")
        W, H = im.size
        a = width / height
        cw, ch = (W, W / a) if W / H < a else (H * a, H)
        s = rng.uniform(min_scale, 1.0)
        cw, ch = cw * s, ch * s
        x0, y0 = rng.uniform(0, W - cw), rng.uniform(0, H - ch)
        im = im.resize((width, height), Image.LANCZOS, box=(x0, y0, x0 + cw, y0 + ch))
    return np.asarray(im, np.float32) / 255.0


# ----------------------------------------------------------------------------- depth

def synthetic_depth(image: np.ndarray, kind: str, rng: np.random.Generator, conf: WarpbackConf = WarpbackConf()
                    ) -> np.ndarray:
    """Depth [H, W] (float32, 1 = the nearest, up to a random far depth) for ``image`` [H, W, 3]:

    - ``planes``: SLIC superpixels of the image, each a plane in inverse depth at a random depth
      and slant (depth edges on colour edges, as objects in front of a background are);
    - ``field``: Gaussian-smoothed noise at a random correlation length plus a random vertical
      ramp (a floor or a street receding towards the horizon);
    - ``mixed``: a random blend of the two in inverse depth (slanted planes with curved surfaces)."""
    from scipy.ndimage import gaussian_filter

    H, W = image.shape[:2]
    inv_far = 1.0 / rng.uniform(*conf.far)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)

    def planes() -> np.ndarray:
        from skimage.segmentation import slic

        labels = slic(image, n_segments=int(rng.integers(conf.segments[0], conf.segments[1] + 1)), compactness=10,
                      start_label=0, channel_axis=-1)
        n = int(labels.max()) + 1
        a = rng.uniform(0, 1, n)
        gx, gy = conf.slant * rng.uniform(-1, 1, (2, n)) * a
        cx = np.bincount(labels.ravel(), xs.ravel(), n) / np.maximum(np.bincount(labels.ravel(), None, n), 1)
        cy = np.bincount(labels.ravel(), ys.ravel(), n) / np.maximum(np.bincount(labels.ravel(), None, n), 1)
        return a[labels] + gx[labels] * (xs - cx[labels]) / W + gy[labels] * (ys - cy[labels]) / H

    def field() -> np.ndarray:
        f = gaussian_filter(rng.standard_normal((H, W)), rng.uniform(*conf.field_sigma) * W, mode="reflect")
        f = (f - f.min()) / max(float(np.ptp(f)), 1e-9)
        ramp = rng.uniform(-0.7, 0.7) * (ys / max(H - 1, 1) - 0.5)  # the lower rows nearer (or farther)
        return f + ramp

    if kind == "planes":
        u = planes()
    elif kind == "field":
        u = field()
    elif kind == "mixed":
        w = rng.uniform(0.3, 0.8)
        u = w * planes() + (1 - w) * field()
    else:
        raise FvgenError(f"warp-back depth must be one of {', '.join(DEPTHS)}, not {kind!r}")
    u = (u - u.min()) / max(float(np.ptp(u)), 1e-9)  # 0 the farthest, 1 the nearest
    inv = inv_far + (1.0 - inv_far) * u
    return (1.0 / inv).astype(np.float32)


# ----------------------------------------------------------------------------- geometry

def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """c2w rotation [3, 3] (OpenCV axes) turning the camera by ``yaw`` (about its y axis, positive to
    the right), ``pitch`` (about x, positive down) and ``roll`` (about z), radians."""
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


def intrinsics(f: float, width: int, height: int) -> np.ndarray:
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], np.float64)


def unproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Depth [H, W] in camera ``K`` at the world origin (identity pose) -> points [H * W, 3]."""
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return (np.stack([x, y, np.ones_like(x)], -1) * depth[..., None]).reshape(-1, 3).astype(np.float32)


def visible_from(xyz: torch.Tensor, cam: Camera, tol: float) -> torch.Tensor:
    """[N] bool: the points ``cam`` sees -- in its frame, and at most ``tol`` (relative) behind the
    depth the z-buffer point renderer draws at their pixel (a point hidden by a nearer surface, or
    by the nearer points' splats at its edge, is not seen)."""
    from ...render.points import SPACING_TO_RADIUS, render_points, typical_spacing

    radius = SPACING_TO_RADIUS * typical_spacing(xyz)  # as the warp stage sizes its splats
    _, mask, depth = render_points(xyz, torch.zeros_like(xyz), torch.as_tensor(cam.K, dtype=torch.float32),
                                   torch.as_tensor(cam.w2c, dtype=torch.float32), cam.width, cam.height,
                                   world_radius=radius)
    w2c = torch.as_tensor(cam.w2c, dtype=torch.float32, device=xyz.device)
    pc = xyz @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    front = z > 1e-6
    zs = torch.where(front, z, torch.ones_like(z))
    K = torch.as_tensor(cam.K, dtype=torch.float32, device=xyz.device)
    u = torch.round(K[0, 0] * pc[:, 0] / zs + K[0, 2]).long()
    v = torch.round(K[1, 1] * pc[:, 1] / zs + K[1, 2]).long()
    inside = front & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
    ui, vi = u.clamp(0, cam.width - 1), v.clamp(0, cam.height - 1)
    zbuf = depth[vi, ui]
    return inside & mask[vi, ui] & (z <= zbuf * (1 + tol))


def homography_resample(image: np.ndarray, K_src: np.ndarray, R: np.ndarray, K_dst: np.ndarray,
                        width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """What a camera (``K_dst``, ``width`` x ``height``) at the source camera's centre, turned by the
    c2w rotation ``R``, records of the source image [H, W, 3] (``K_src``): bilinear resampling by
    the homography ``K_src R K_dst^-1``, exact for any depth. Returns (image [height, width, 3],
    inside [height, width] bool: the pixels that fall within the source image)."""
    import torch.nn.functional as F

    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K_dst).T @ R.T
    p = rays @ K_src.T
    x, y = p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]
    Hs, Ws = image.shape[:2]
    inside = (x >= -0.5) & (x <= Ws - 0.5) & (y >= -0.5) & (y <= Hs - 0.5) & (p[..., 2] > 0)
    grid = torch.as_tensor(np.stack([(2 * x + 1) / Ws - 1, (2 * y + 1) / Hs - 1], -1), dtype=torch.float32)[None]
    src = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1)[None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).numpy(), inside


# ----------------------------------------------------------------------------- one clip

def input_camera(f: float, canvas_width: int, canvas_height: int, centre: np.ndarray, view: float = 1.0,
                 x0: float = 0.0, y0: float = 0.0, name: str = "input") -> Camera:
    """A virtual input camera at ``centre`` looking along ``c0``'s axes with ``c0``'s focal length,
    seeing the window of ``view`` times the canvas size whose top-left canvas pixel is (x0, y0)."""
    w, h = max(8, int(round(view * canvas_width))), max(8, int(round(view * canvas_height)))
    K = np.array([[f, 0, (canvas_width - 1) / 2 - x0], [0, f, (canvas_height - 1) / 2 - y0], [0, 0, 1]])
    c2w = np.eye(4)
    c2w[:3, 3] = centre
    return Camera(K, c2w, w, h, name=name)


def warpback_clip(canvas: np.ndarray, depth: np.ndarray, f: float, inputs: Sequence[Camera],
                  turns: Sequence[tuple[float, float, float]], width: int, height: int, conf: WarpbackConf = WarpbackConf(),
                  keep: np.ndarray | None = None, device: str = "cpu") -> dict:
    """The warp-back clip of one photo with a given geometry (the random draws are
    :func:`photo_example`'s), at the working size.

    Args:
        canvas: the photo [Hc, Wc, 3] in [0, 1], seen by ``c0`` (focal ``f``, principal point at its
            centre, identity pose).
        depth: [Hc, Wc] depth of every canvas pixel in ``c0``.
        inputs: the input cameras (:func:`input_camera`): the prior is what any of them sees.
        turns: per clip frame, (yaw, pitch, roll) in radians of a camera at ``c0``'s centre.
        width, height: clip frame size (at most the canvas size).
        keep: [Hc * Wc] bool, the canvas points the prior may hold at all (None: all).

    Returns:
        dict with ``warp`` [F, height, width, 3] float32 (holes 0), ``mask`` [F, height, width] bool,
        ``gt`` [F, height, width, 3], ``ref`` [height, width, 3] (the first input's view, resized),
        ``cameras`` (clip cameras),
        ``inputs`` (input cameras), ``points`` (prior size), ``ref_hole_fraction``."""
    from ...render.warp import WarpConf, render_warp
    from ..fill import fill_holes
    from ...core.pointcloud import PointCloud
    from ...priors.prior import Priors
    from ...render.points import render_points

    Hc, Wc = depth.shape
    Kc, Ka = intrinsics(f, Wc, Hc), intrinsics(f, width, height)
    xyz = torch.as_tensor(unproject(depth, Kc), device=device)
    rgb = torch.as_tensor(canvas.reshape(-1, 3), dtype=torch.float32, device=device)
    seen = torch.zeros(len(xyz), dtype=torch.bool, device=device)
    for cam in inputs:
        seen |= visible_from(xyz, cam, conf.vis_tol)
    if keep is not None:
        seen &= torch.as_tensor(keep, device=device)
    if not bool(seen.any()):
        raise FvgenError("the input cameras see none of the photo's points")
    prior = Priors(inputs, PointCloud(xyz[seen].cpu().numpy(), rgb[seen].cpu().numpy()), None,
                   {"backend": "warp-back", "poses": "given"})
    cams = []
    for j, (yaw, pitch, roll) in enumerate(turns):
        c2w = np.eye(4)
        c2w[:3, :3] = rotation(yaw, pitch, roll)
        cams.append(Camera(Ka, c2w, width, height, name=f"frame_{j:04d}"))
    frames, masks = render_warp(prior, cams, WarpConf(), device)
    gts = []
    for cam in cams:
        gt, inside = homography_resample(canvas, Kc, cam.c2w[:3, :3], Ka, width, height)
        if not inside.all():
            raise FvgenError("a clip camera turns beyond the photo's canvas")
        gts.append(gt)
    # the reference: what the first input camera sees of the photo, the few pixels where it would see
    # behind the photo's surfaces (its holes) filled, resized to the frame size: it holds nothing the
    # inputs did not see, as an input view holds nothing of a novel view's holes
    from ...render.points import SPACING_TO_RADIUS, typical_spacing
    from ..sample import resize_frames

    r = inputs[0]
    ref, ref_mask, _ = render_points(xyz, rgb, torch.as_tensor(r.K, dtype=torch.float32),
                                     torch.as_tensor(r.w2c, dtype=torch.float32), r.width, r.height,
                                     world_radius=SPACING_TO_RADIUS * typical_spacing(xyz))
    ref_filled = fill_holes("harmonic", ref.permute(2, 0, 1)[None].cpu(), ref_mask[None, None].float().cpu())
    ref_filled = resize_frames(ref_filled, width, height)[0]
    return {"warp": np.stack(frames).astype(np.float32), "mask": np.stack(masks), "gt": np.stack(gts),
            "ref": ref_filled.permute(1, 2, 0).clamp(0, 1).numpy(), "cameras": cams, "inputs": inputs,
            "points": int(seen.sum()), "ref_hole_fraction": float(1 - ref_mask.float().mean())}


def frame_inside(turn: tuple[float, float, float], f: float, canvas_width: int, canvas_height: int,
                 width: int, height: int) -> bool:
    """Whether a clip frame turned by ``turn`` (yaw, pitch, roll) sees only the canvas (its corners
    map inside it, half a pixel of margin)."""
    Kc, Ka = intrinsics(f, canvas_width, canvas_height), intrinsics(f, width, height)
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float)
    p = corners @ np.linalg.inv(Ka).T @ rotation(*turn).T @ Kc.T
    x, y = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    return bool((p[:, 2] > 0).all() and (x >= 0).all() and (x <= canvas_width - 1).all()
                and (y >= 0).all() and (y <= canvas_height - 1).all())


def texture_keep(canvas: np.ndarray, drop: float) -> np.ndarray:
    """[Hc * Wc] bool: False on the ``drop`` least textured fraction of the canvas (smoothed grey
    gradient magnitude), where plane-sweep stereo finds no reliable depth."""
    from scipy.ndimage import gaussian_filter, sobel

    g = canvas @ np.array([0.299, 0.587, 0.114], np.float32)
    mag = gaussian_filter(np.hypot(sobel(g, 0), sobel(g, 1)), 2.0)
    return (mag > np.quantile(mag, drop)).reshape(-1) if drop > 0 else np.ones(mag.size, bool)


def photo_example(path: Path, model_width: int, model_height: int, frames: int, rng: np.random.Generator,
                  conf: WarpbackConf = WarpbackConf(), device: str = "cpu") -> dict:
    """One warp-back training example of the photo at ``path`` at the model size (uint8 arrays, the
    fields of :func:`fvgen.videomodel.data.clip_example`), every geometric choice drawn from ``rng``."""
    from .examples import warp_psnr, warp_to_model_size
    from ..sample import resize_frames

    s = conf.max_size / max(model_width, model_height)
    width, height = int(round(model_width * s)), int(round(model_height * s))
    Wc, Hc = int(round(width * (1 + 2 * conf.margin))), int(round(height * (1 + 2 * conf.margin)))
    canvas = load_photo_crop(path, Wc, Hc, rng)
    kind = conf.depth if conf.depth != "mixed" else str(rng.choice(DEPTHS))
    depth = synthetic_depth(canvas, kind, rng, conf)
    f = rng.uniform(*conf.focal) * width
    # input cameras: sideways and up/down offsets, a little along the view axis
    n_in = int(rng.integers(conf.inputs[0], conf.inputs[1] + 1))
    centres, inputs = [], []
    for k in range(n_in):
        d = rng.standard_normal(3) * np.array([1.0, 0.6, 0.3])
        centres.append(d / np.linalg.norm(d) * rng.uniform(*conf.baseline) * float(depth.min()))
        view = rng.uniform(*conf.input_view)
        x0, y0 = rng.uniform(0, (1 - view) * Wc), rng.uniform(0, (1 - view) * Hc)
        inputs.append(input_camera(f, Wc, Hc, centres[-1], view, x0, y0, f"input_{k}"))
    # the clip turns from one random view direction to another, within the canvas
    yaw_max = min(math.radians(conf.max_turn_deg), math.atan(0.8 * conf.margin * width / f))
    pitch_max = min(math.radians(conf.max_turn_deg), math.atan(0.8 * conf.margin * height / f))
    a, b = rng.uniform(-1, 1, (2, 3)) * np.array([yaw_max, pitch_max, math.radians(1.0)])
    turns = [tuple(a + (b - a) * t) for t in np.linspace(0, 1, frames)]
    while not all(frame_inside(t, f, Wc, Hc, width, height) for t in turns):  # roll and both turns at a corner
        turns = [tuple(0.8 * np.asarray(t)) for t in turns]
    keep = texture_keep(canvas, rng.uniform(0, conf.texture_drop)) if conf.texture_drop > 0 else None
    clip = warpback_clip(canvas, depth, f, inputs, turns, width, height, conf, keep, device)

    def rs(x):  # [F, H, W, C] float -> model size uint8
        t = torch.as_tensor(np.asarray(x, np.float32)).permute(0, 3, 1, 2)
        t = resize_frames(t, model_width, model_height).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        return np.round(t * 255).astype(np.uint8)

    warp, mask = warp_to_model_size(list(clip["warp"]), list(clip["mask"]), model_width, model_height)
    return {"ref": rs(clip["ref"][None])[0], "warp": warp, "mask": mask, "gt": rs(clip["gt"]),
            "meta": {"source": photo_source(path), "kind": "warp-back", "depth": kind,
                     "sparse": [c.name for c in clip["inputs"]], "clip": [c.name for c in clip["cameras"]],
                     "coverage": float(np.mean(clip["mask"])), "points": clip["points"],
                     "warp_psnr": warp_psnr(list(clip["warp"]), list(clip["mask"]), clip["gt"]),
                     "ref_hole_fraction": clip["ref_hole_fraction"],
                     "baselines": [float(np.linalg.norm(c)) for c in centres],
                     "inputs": [c.to_dict() for c in clip["inputs"]],
                     "cameras": [c.to_dict() for c in clip["cameras"]], "conf": asdict(conf)}}


__all__ = ["WarpbackConf", "DEPTHS", "photo_sets", "photo_schedule", "photo_source", "load_photo_crop",
           "synthetic_depth", "input_camera", "warpback_clip", "photo_example", "visible_from", "homography_resample", "rotation"]
