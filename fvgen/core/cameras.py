"""Pinhole cameras and the pose formats fvgen reads and writes.

Conventions, everywhere inside fvgen:

- ``c2w`` is a 4x4 camera-to-world matrix in the OpenCV convention (x right, y down, z forward).
- ``K`` is in pixels of the image as stored, with pixel (0, 0) at the *centre* of the top-left
  pixel (so a centred principal point is ``((w - 1) / 2, (h - 1) / 2)``).
- ``dist`` is OpenCV's ``(k1, k2, p1, p2)`` on normalised coordinates, or ``None``.

COLMAP and instant-ngp/nerfstudio files put pixel (0, 0) at the top-left *corner*; readers and
writers shift principal points by 0.5 px at that boundary and nowhere else. ``cameras_opencv.json``
files say which origin they use: fvgen writes ``"pixel_origin": "center"``; the training pool's
files say "centre of the top-left pixel" in their ``convention`` text; the evaluation scenes'
files say nothing and copy their sources' principal points verbatim (fern: LLFF ``w/2``, fox:
COLMAP's ``cx``, DTU: the MonoSDF crop of the calibration), i.e. corner origin, which is what a
file that says nothing is read as. LLFF ``poses_bounds.npy`` (principal point = image centre) and
DTU ``cameras.npz`` (corner origin, like the dataset README's crop recipe) follow the same rule.

Formats: ``cameras_opencv.json`` (the shared datasets' unified list), ``transforms.json``
(instant-ngp/nerfstudio, OpenGL c2w), COLMAP models (text or binary), LLFF ``poses_bounds.npy``,
and IDR/DTU ``cameras.npz``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import FvgenError

OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Camera:
    """One pinhole camera (see module docstring for conventions)."""

    K: np.ndarray  # [3, 3] float64
    c2w: np.ndarray  # [4, 4] float64, OpenCV axes
    width: int
    height: int
    name: str = ""
    dist: tuple[float, float, float, float] | None = None

    def __post_init__(self):
        object.__setattr__(self, "K", np.asarray(self.K, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "c2w", np.asarray(self.c2w, dtype=np.float64).reshape(4, 4))
        if self.dist is not None:
            d = tuple(float(x) for x in self.dist)
            object.__setattr__(self, "dist", None if not any(d) else d)

    @property
    def w2c(self) -> np.ndarray:
        return np.linalg.inv(self.c2w)

    @property
    def center(self) -> np.ndarray:
        return self.c2w[:3, 3].copy()

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    def scaled(self, width: int, height: int) -> "Camera":
        """The same camera for the image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return replace(self, K=K, width=int(width), height=int(height))

    def to_dict(self) -> dict:
        return {
            "file": self.name,
            "w": self.width,
            "h": self.height,
            "K": self.K.tolist(),
            "dist": list(self.dist) if self.dist else [0.0, 0.0, 0.0, 0.0],
            "c2w": self.c2w.tolist(),
        }

    @staticmethod
    def from_dict(d: dict) -> "Camera":
        return Camera(K=d["K"], c2w=d["c2w"], width=int(d["w"]), height=int(d["h"]),
                      name=d.get("file", ""), dist=d.get("dist"))


# ----------------------------------------------------------------------------- geometry helpers


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """OpenCV c2w looking from ``eye`` at ``target``; ``up`` is the world's up direction."""
    z = np.asarray(target, float) - np.asarray(eye, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))  # right = forward x up; then y = z x x points down
    if np.linalg.norm(x) < 1e-8:
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def axes_convergence(cameras: Sequence[Camera]) -> tuple[np.ndarray, float]:
    """The point closest (least squares) to every camera's optical axis, and the condition
    number of that problem (large for near-parallel axes, e.g. forward-facing captures)."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c in cameras:
        d = c.c2w[:3, 2]
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c.center
    cond = float(np.linalg.cond(A))
    x = np.linalg.lstsq(A, b, rcond=None)[0]
    return x, cond


def rotation_angle_deg(R: np.ndarray) -> float:
    # atan2(sin, cos) stays accurate near 0 and 180 degrees, unlike arccos of the trace
    R = np.asarray(R, float)
    cos = (np.trace(R) - 1.0) / 2.0
    sin = 0.5 * np.linalg.norm([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return float(np.degrees(math.atan2(sin, cos)))


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    return float(np.degrees(math.atan2(np.linalg.norm(np.cross(a, b)), float(np.dot(a, b)))))


def project_to_so3(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    return R


@dataclass(frozen=True)
class Similarity:
    """x -> scale * R @ x + t."""

    scale: float
    R: np.ndarray
    t: np.ndarray

    def apply_points(self, x: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(x) @ self.R.T + self.t

    def apply_c2w(self, c2w: np.ndarray) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3] = self.R @ c2w[:3, :3]
        out[:3, 3] = self.apply_points(c2w[:3, 3])
        return out

    def inverse(self) -> "Similarity":
        Rinv = self.R.T
        return Similarity(1.0 / self.scale, Rinv, -(Rinv @ self.t) / self.scale)


def align_cameras(src: Sequence[Camera], dst: Sequence[Camera]) -> Similarity:
    """Least-squares similarity taking ``src`` camera poses onto ``dst`` (same order).

    The rotation is one Kabsch/Procrustes fit over two kinds of corresponding directions: the
    camera centres' offsets from their mean, and each camera's three axes (weighted like the
    centre terms). The axes keep it well posed for 2 cameras, collinear centres or the small,
    nearly planar baselines of forward-facing captures, where centres alone fix it badly. Scale
    and translation are then the least-squares fit of the centres.
    """
    if len(src) != len(dst) or len(src) < 2:
        raise FvgenError("aligning cameras needs at least 2 matching cameras on each side")
    cs = np.stack([c.center for c in src])
    cd = np.stack([c.center for c in dst])
    ms, md = cs.mean(0), cd.mean(0)
    A, B = cs - ms, cd - md
    w = float(np.mean(np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1))) or 1.0
    H = A.T @ B + w * sum(s.c2w[:3, :3] @ d.c2w[:3, :3].T for s, d in zip(src, dst))
    R = project_to_so3(H.T)
    den = float((A * A).sum())
    scale = float(np.sum(B * (A @ R.T)) / den) if den > 1e-24 else 1.0
    if scale <= 0:
        raise FvgenError("the cameras cannot be aligned (opposite orientation)")
    t = md - scale * R @ ms
    return Similarity(scale, R, t)


def pose_errors(est: Sequence[Camera], ref: Sequence[Camera]) -> dict:
    """Scale-free pose errors: worst pairwise relative-rotation and translation-direction error
    (degrees), and the mean relative focal error."""
    rot, trans = [], []
    for i in range(len(est)):
        for j in range(i + 1, len(est)):
            rel_e = est[j].w2c @ est[i].c2w
            rel_r = ref[j].w2c @ ref[i].c2w
            rot.append(rotation_angle_deg(rel_e[:3, :3] @ rel_r[:3, :3].T))
            trans.append(angle_between_deg(rel_e[:3, 3], rel_r[:3, 3]))
    focal = [e.fx / r.scaled(e.width, e.height).fx - 1.0 for e, r in zip(est, ref)]
    return {
        "rotation_error_deg_max": max(rot),
        "translation_direction_error_deg_max": max(trans),
        "focal_error_rel_mean": float(np.mean(focal)),
    }


# ----------------------------------------------------------------------------- readers


def read_cameras_opencv_json(path: Path) -> list[Camera]:
    """The shared datasets' unified camera list. Its K has pixel (0, 0) at the top-left *corner*
    (unless the file says ``"pixel_origin": "center"``); K is shifted to fvgen's convention."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        shift = 0.0 if _centre_origin(data) else 0.5
        cams = []
        for f in data["frames"]:
            c = Camera.from_dict(f)
            cams.append(replace(c, K=_shift_principal_point(c.K, -shift)))
    except FileNotFoundError:
        raise FvgenError(f"camera file not found: {path}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FvgenError(f"{path}: not a valid cameras_opencv.json ({type(e).__name__}: {e})") from None
    return cams


def _centre_origin(data: dict) -> bool:
    """Whether a camera list puts pixel (0, 0) at the centre of the top-left pixel: said by
    ``"pixel_origin": "center"`` or in its ``convention`` text (the training pool's files do);
    files that say neither (the evaluation scenes) use the corner."""
    if "pixel_origin" in data:
        return data["pixel_origin"] == "center"
    text = str(data.get("convention", "")).lower()
    return "centre of the top-left pixel" in text or "center of the top-left pixel" in text


def write_cameras_opencv_json(cameras: Iterable[Camera], path: Path) -> None:
    """Write the unified camera list (fvgen's own pixel-centre origin, said in the file)."""
    frames = []
    for c in cameras:
        d = c.to_dict()
        d["K"] = c.K.tolist()
        frames.append(d)
    _atomic_write_text(Path(path), json.dumps(
        {"convention": "opencv", "pixel_origin": "center", "frames": frames}, indent=1))


def read_camera_file(path: Path) -> list[Camera]:
    """Cameras from either JSON form fvgen reads and writes: a ``cameras_opencv.json`` list
    (frames with ``c2w``) or a ``transforms.json``; a missing or unreadable file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise FvgenError(f"cameras file not found: {path}")
    try:
        frames = json.loads(path.read_text())["frames"]
        return read_cameras_opencv_json(path) if frames and "c2w" in frames[0] else read_transforms_json(path)
    except FvgenError:
        raise
    except Exception as e:
        raise FvgenError(f"{path}: not a transforms.json or cameras_opencv.json ({e})") from None


def _shift_principal_point(K: np.ndarray, delta: float) -> np.ndarray:
    K = np.array(K, dtype=np.float64)
    K[0, 2] += delta
    K[1, 2] += delta
    return K


def read_transforms_json(path: Path) -> list[Camera]:
    """instant-ngp / nerfstudio ``transforms.json`` (OpenGL c2w; intrinsics global or per frame;
    pinhole with optional OPENCV distortion)."""
    path = Path(path)
    try:
        return _read_transforms_json(path)
    except FvgenError:
        raise
    except FileNotFoundError:
        raise FvgenError(f"camera file not found: {path}") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise FvgenError(f"{path}: not a readable transforms.json ({type(e).__name__}: {e})") from None


def _read_transforms_json(path: Path) -> list[Camera]:
    data = json.loads(path.read_text())
    cams = []
    for f in data["frames"]:
        g = {**data, **f}
        model = str(g.get("camera_model", "OPENCV")).upper()
        if model not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE"):
            raise FvgenError(f"{path}: camera model {model} is not supported (pinhole or OPENCV only)")
        if "w" not in g or "h" not in g:
            raise FvgenError(f"{path}: frames have no image size (w, h)")
        w, h = int(g["w"]), int(g["h"])
        if "fl_x" in g:
            fx = float(g["fl_x"])
            fy = float(g.get("fl_y", fx))
        elif "camera_angle_x" in g:
            fx = fy = 0.5 * w / math.tan(0.5 * float(g["camera_angle_x"]))
        else:
            raise FvgenError(f"{path}: frames have no focal length (fl_x or camera_angle_x)")
        cx = float(g.get("cx", w / 2.0)) - 0.5
        cy = float(g.get("cy", h / 2.0)) - 0.5
        dist = [float(g.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2")]
        c2w = np.asarray(f["transform_matrix"], float) @ OPENGL_FROM_OPENCV
        cams.append(Camera([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], c2w, w, h,
                           name=os.path.basename(f["file_path"]), dist=dist))
    return cams


def write_transforms_json(cameras: Sequence[Camera], path: Path, file_prefix: str = "",
                          extra: dict | None = None) -> None:
    """nerfstudio-style ``transforms.json`` with per-frame intrinsics (OpenGL c2w, corner pixels)."""
    frames = []
    for c in cameras:
        fr = {
            "file_path": file_prefix + c.name,
            "w": c.width, "h": c.height,
            "fl_x": c.K[0, 0], "fl_y": c.K[1, 1],
            "cx": c.K[0, 2] + 0.5, "cy": c.K[1, 2] + 0.5,
            "camera_model": "OPENCV",
            "transform_matrix": (c.c2w @ OPENGL_FROM_OPENCV).tolist(),
        }
        if c.dist:
            fr.update(dict(zip(("k1", "k2", "p1", "p2"), c.dist)))
        frames.append(fr)
    data = {"camera_model": "OPENCV", "frames": frames, **(extra or {})}
    _atomic_write_text(Path(path), json.dumps(data, indent=1))


def read_llff_poses_bounds(path: Path, image_names: Sequence[str], image_size: tuple[int, int]) -> list[Camera]:
    """LLFF ``poses_bounds.npy``: rows follow the sorted image names; ``hwf`` refers to the
    original resolution, so intrinsics are scaled to ``image_size`` = (w, h) as LLFF loaders do.
    The principal point is the image centre."""
    try:
        arr = np.load(path)
    except (ValueError, OSError) as e:
        raise FvgenError(f"{path}: not a readable poses_bounds.npy ({e})") from None
    if arr.ndim != 2 or arr.shape[1] != 17:
        raise FvgenError(f"{path}: not an LLFF poses_bounds.npy (expected N x 17)")
    if len(arr) != len(image_names):
        raise FvgenError(f"{path}: {len(arr)} poses for {len(image_names)} images")
    w, h = image_size
    cams = []
    for row, name in zip(arr, sorted(image_names)):
        P = row[:15].reshape(3, 5)
        H0, W0, f0 = P[:, 4]
        f = f0 * w / W0
        down, right, back = P[:, 0], P[:, 1], P[:, 2]
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, -back, P[:, 3]
        K = [[f, 0, (w - 1) / 2], [0, f0 * h / H0, (h - 1) / 2], [0, 0, 1]]  # centred
        cams.append(Camera(K, c2w, w, h, name=name))
    return cams


def read_dtu_cameras_npz(path: Path, image_names: Sequence[str], image_size: tuple[int, int],
                         crop_offset: tuple[float, float] = (0.0, 0.0),
                         source_size: tuple[int, int] | None = None) -> list[Camera]:
    """IDR/MonoSDF ``cameras.npz`` (``world_mat_i``, ``scale_mat_i``): P = world_mat @ scale_mat is
    decomposed into K [R|t]; row i belongs to the i-th of the sorted ``image_names``.
    ``crop_offset`` (x, y) is subtracted from the principal point and intrinsics are scaled from
    ``source_size`` (the cropped source, w, h) to ``image_size``, as MonoSDF does for DTU
    (``crop_offset=(200, 0), source_size=(1200, 1200)`` for the 384x384 crops of 1600x1200;
    see :func:`dtu_center_crop`). P's pixel origin is taken as the top-left corner."""
    data = _load_npz(path)
    w, h = image_size
    cams = []
    for i, name in enumerate(sorted(image_names)):
        if f"world_mat_{i}" not in data:
            raise FvgenError(f"{path}: no world_mat_{i} for image {name}")
        scale_mat = data[f"scale_mat_{i}"] if f"scale_mat_{i}" in data else np.eye(4)
        P = (data[f"world_mat_{i}"] @ scale_mat)[:3, :4]
        K, R, t = _decompose_projection(P)
        K[0, 2] -= crop_offset[0]
        K[1, 2] -= crop_offset[1]
        if source_size is not None:
            K[0] *= w / source_size[0]
            K[1] *= h / source_size[1]
            K[2] = [0.0, 0.0, 1.0]
        K = _shift_principal_point(K, -0.5)  # corner origin -> fvgen's pixel-centre origin
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = R, t
        cams.append(Camera(K, np.linalg.inv(w2c), w, h, name=name))
    return cams


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz, read at once so the file is closed again."""
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise FvgenError(f"{path}: not a readable cameras.npz ({e})") from None


def dtu_center_crop(path: Path, image_size: tuple[int, int]):
    """``(crop_offset, source_size)`` for ``read_dtu_cameras_npz`` when the images are a centre
    crop of the calibrated frames (MonoSDF's DTU preprocessing), else ``((0, 0), None)``.

    The calibrated frame size is taken as twice the median principal point, snapped to 100 px
    (DTU: 1600x1200; pass the crop explicitly for other data); if
    ``image_size`` has another aspect ratio, the images are taken to be the largest centred crop
    of that aspect (DTU 384x384: offset (200, 0), source 1200x1200), as the dataset README says.
    """
    data = _load_npz(path)
    pp = []
    for k in data:
        if k.startswith("world_mat_"):
            i = k[len("world_mat_"):]
            scale_mat = data[f"scale_mat_{i}"] if f"scale_mat_{i}" in data else np.eye(4)
            K, _, _ = _decompose_projection((data[k] @ scale_mat)[:3, :4])
            pp.append(K[:2, 2])
    if not pp:
        raise FvgenError(f"{path}: no world_mat_i entries (not an IDR/DTU cameras.npz)")
    # snapped to a multiple of 100 px: DTU's (1646, 1238) -> (1600, 1200)
    W0, H0 = (max(100.0, round(v / 100.0) * 100.0) for v in 2.0 * np.median(np.asarray(pp), axis=0))
    w, h = image_size
    if abs((W0 / H0) / (w / h) - 1.0) < 0.01:
        return (0.0, 0.0), (int(W0), int(H0))
    if w / h < W0 / H0:  # narrower: crop the sides
        cw = H0 * w / h
        return ((W0 - cw) / 2.0, 0.0), (int(round(cw)), int(H0))
    ch = W0 * h / w
    return (0.0, (H0 - ch) / 2.0), (int(W0), int(round(ch)))


def _decompose_projection(P: np.ndarray):
    """P = K [R | t] (RQ decomposition with a positive-diagonal K)."""
    M = P[:, :3]
    # RQ via QR of the flipped, transposed matrix.
    flip = np.flipud(np.eye(3))
    Q, Rm = np.linalg.qr((flip @ M).T)
    K = flip @ Rm.T @ flip
    R = flip @ Q.T
    signs = np.diag(np.sign(np.diag(K)))
    K, R = K @ signs, signs @ R
    if np.linalg.det(R) < 0:
        R = -R
        P = -P
    t = np.linalg.solve(K, P[:, 3])
    return K / K[2, 2], R, t


def read_colmap_model(path: Path) -> list[Camera]:
    """A COLMAP sparse model folder (text or binary), via pycolmap. Supports pinhole-family models;
    radial terms of (SIMPLE_)RADIAL and OPENCV go into ``dist``."""
    import pycolmap

    try:
        rec = pycolmap.Reconstruction(str(path))
    except Exception as e:  # pycolmap raises plain RuntimeErrors for unreadable folders
        raise FvgenError(f"{path}: not a readable COLMAP model ({e})") from None
    cams = []
    for image_id in sorted(rec.images):
        im = rec.images[image_id]
        cam = rec.cameras[im.camera_id]
        model = cam.model.name
        p = list(cam.params)
        if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            fx = fy = p[0]
            cx, cy = p[1], p[2]
            dist = [p[3] if len(p) > 3 else 0.0, p[4] if model == "RADIAL" else 0.0, 0.0, 0.0]
        elif model in ("PINHOLE", "OPENCV"):
            fx, fy, cx, cy = p[:4]
            dist = p[4:8] if model == "OPENCV" else None
        else:
            raise FvgenError(f"{path}: COLMAP camera model {model} is not supported")
        w2c = np.eye(4)
        w2c[:3, :4] = np.asarray(im.cam_from_world().matrix())
        cams.append(Camera([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]], np.linalg.inv(w2c),
                           cam.width, cam.height, name=im.name, dist=dist))
    return cams


def write_colmap_text(cameras: Sequence[Camera], folder: Path,
                      points: np.ndarray | None = None, colors: np.ndarray | None = None) -> None:
    """A COLMAP text model (cameras.txt, images.txt, points3D.txt): one OPENCV camera per image."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cam_lines = ["# Camera list with one line of data per camera:",
                 "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    img_lines = ["# Image list with two lines of data per image:",
                 "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                 "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for i, c in enumerate(cameras, start=1):
        d = c.dist or (0.0, 0.0, 0.0, 0.0)
        params = [c.K[0, 0], c.K[1, 1], c.K[0, 2] + 0.5, c.K[1, 2] + 0.5, *d]
        cam_lines.append(f"{i} OPENCV {c.width} {c.height} " + " ".join(f"{v:.10g}" for v in params))
        w2c = c.w2c
        q = rotmat_to_quat_wxyz(w2c[:3, :3])
        t = w2c[:3, 3]
        img_lines.append(f"{i} " + " ".join(f"{v:.12g}" for v in (*q, *t)) + f" {i} {c.name}")
        img_lines.append("")
    pts_lines = ["# 3D point list with one line of data per point:",
                 "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    if points is not None:
        cols = np.zeros_like(points, dtype=np.uint8) if colors is None else np.asarray(colors)
        if cols.dtype != np.uint8:
            cols = np.clip(np.round(cols * 255), 0, 255).astype(np.uint8)
        for k, (p, col) in enumerate(zip(points, cols), start=1):
            pts_lines.append(f"{k} {p[0]:.7g} {p[1]:.7g} {p[2]:.7g} {col[0]} {col[1]} {col[2]} 0")
    _atomic_write_text(folder / "cameras.txt", "\n".join(cam_lines) + "\n")
    _atomic_write_text(folder / "images.txt", "\n".join(img_lines) + "\n")
    _atomic_write_text(folder / "points3D.txt", "\n".join(pts_lines) + "\n")


def rotmat_to_quat_wxyz(R: np.ndarray) -> np.ndarray:
    """Rotation matrix to a unit quaternion (w, x, y, z), w >= 0."""
    m = np.asarray(R, float)
    tr = np.trace(m)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


# ----------------------------------------------------------------------------- dispatch

# The files load_poses reads, in the order a folder is searched for them, and a COLMAP model's
# camera and image files (its points3D file is read for the sparse points, never for the poses).
POSE_FILE_NAMES = ("cameras_opencv.json", "transforms.json", "poses_bounds.npy", "cameras.npz")
COLMAP_CAMERA_FILES = ("cameras.txt", "cameras.bin")
COLMAP_IMAGE_FILES = ("images.txt", "images.bin")
COLMAP_MODEL_FILES = COLMAP_CAMERA_FILES + COLMAP_IMAGE_FILES + ("points3D.txt", "points3D.bin")


def load_poses(path: Path, image_names: Sequence[str], image_size: tuple[int, int],
               dtu_crop: tuple[tuple[float, float], tuple[int, int] | None] | None = None) -> list[Camera]:
    """Known cameras for ``image_names`` from any supported format (file or folder).

    Returns cameras in the order of ``image_names``, scaled to ``image_size`` = (w, h) of the
    images as fvgen loads them. Images missing from the pose file are an error naming them.
    For an IDR/DTU ``cameras.npz``, ``dtu_crop`` = ``(crop_offset, source_size)`` says how the
    images were cut from the calibrated frames; by default :func:`dtu_center_crop` infers it
    (a centred crop when the aspect ratios differ, as in MonoSDF's 384x384 DTU crops).
    """
    p = pose_source(path)
    if p.is_dir():
        cams = read_colmap_model(p)
    elif p.suffix == ".json":
        cams = read_cameras_opencv_json(p) if _is_opencv_list(p) else read_transforms_json(p)
    elif p.suffix == ".npy":
        all_names = _sibling_image_names(p.parent) or list(image_names)
        cams = read_llff_poses_bounds(p, all_names, image_size)
    else:  # .npz
        all_names = _sibling_image_names(p.parent) or list(image_names)
        crop_offset, source_size = dtu_crop if dtu_crop is not None else dtu_center_crop(p, image_size)
        cams = read_dtu_cameras_npz(p, all_names, image_size, crop_offset, source_size)
    return _match_cameras(cams, image_names, image_size, p)


def pose_source(path: Path) -> Path:
    """The pose file or COLMAP model folder that :func:`load_poses` reads for ``path``."""
    path = Path(path)
    if not path.exists():
        raise FvgenError(f"pose file or folder not found: {path}")
    if path.is_file():
        if path.suffix not in (".json", ".npy", ".npz"):
            raise FvgenError(f"{path}: not a pose file (.json, poses_bounds.npy or cameras.npz)")
        return path
    for name in POSE_FILE_NAMES:
        if (path / name).is_file():
            return path / name
    for p in (path / "sparse" / "0", path / "sparse", path):
        if p.is_dir() and any((p / f).exists() for f in COLMAP_CAMERA_FILES) and any(
                (p / f).exists() for f in COLMAP_IMAGE_FILES):
            return p
    raise FvgenError(f"{path}: no supported pose file (cameras_opencv.json, transforms.json, "
                     "poses_bounds.npy, cameras.npz or a COLMAP model)")


def pose_source_files(path: Path) -> list[Path]:
    """The files whose content decides the cameras :func:`load_poses` returns for ``path`` (for
    cache keys): the pose file or COLMAP model files, never anything else in the folder."""
    p = pose_source(path)
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.name in COLMAP_CAMERA_FILES + COLMAP_IMAGE_FILES)
    return [p]


def _is_opencv_list(path: Path) -> bool:
    """A ``cameras_opencv.json``-style list (frames with ``c2w``), whatever the file is called."""
    try:
        frames = json.loads(Path(path).read_text()).get("frames") or [{}]
    except (ValueError, AttributeError, OSError):
        return False
    return isinstance(frames[0], dict) and "c2w" in frames[0]


def _sibling_image_names(folder: Path) -> list[str]:
    """Names of the images beside a row-ordered pose file (LLFF, DTU)."""
    from .images import find_scene_images

    return [f.name for f in find_scene_images(folder)]


def _match_cameras(cams: list[Camera], image_names: Sequence[str], image_size, source: Path) -> list[Camera]:
    by_name = {}
    for c in cams:
        by_name[c.name] = c
        by_name[os.path.splitext(c.name)[0]] = c
    for c in cams:  # names stored with a folder ("images_8/image000.png") also match by file name
        base = os.path.basename(c.name)
        by_name.setdefault(base, c)
        by_name.setdefault(os.path.splitext(base)[0], c)
    out, missing = [], []
    for n in image_names:
        c = by_name.get(n) or by_name.get(os.path.splitext(n)[0])
        if c is None:
            missing.append(n)
            continue
        out.append(replace(c.scaled(*image_size), name=n))
    if missing:
        raise FvgenError(f"{source}: no camera for image(s) {', '.join(missing[:5])}")
    return out


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = [
    "Camera", "Similarity", "align_cameras", "pose_errors", "look_at", "load_poses",
    "read_cameras_opencv_json", "write_cameras_opencv_json", "read_transforms_json",
    "write_transforms_json", "read_llff_poses_bounds", "read_dtu_cameras_npz",
    "read_colmap_model", "write_colmap_text", "rotmat_to_quat_wxyz", "dtu_center_crop",
]
