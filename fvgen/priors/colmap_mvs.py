"""Dense point cloud from COLMAP's PatchMatch stereo on CUDA (pycolmap built with CUDA).

The alternative to :func:`fvgen.priors.mvs.dense_point_cloud` (the torch plane sweep) for machines
with a GPU and ``pycolmap-cuda12`` installed in place of ``pycolmap`` (it ships the same
``pycolmap`` module, built with CUDA). Same inputs and the same output contract: a
:class:`PointCloud` in the cameras' world frame, colours in [0, 1], confidence in (0, 1], and an
``info`` dict.

Steps:

1. Images are undistorted (cameras with ``dist``) and resized so the long side is at most
   ``ColmapMvsConf.max_image_size``.
2. A depth range for all views: ``depth_range`` when given, else per view from the SfM points
   that project into it (1-99 % percentiles), else from fvgen.priors.mvs's coarse plane sweep
   (cheap, on ``device``); the union is stretched by ``depth_stretch`` as COLMAP stretches its
   own ranges.
3. The dense workspace is written directly (no resampling by ``undistort_images``): ``images/``
   (PNG), ``sparse/`` (a COLMAP text model: one PINHOLE camera per image),
   ``stereo/patch-match.cfg`` naming every other view as a source of each view, and
   ``stereo/fusion.cfg``. ``sparse/points3D.txt`` holds
   *overlap points* (the SfM points, plus points sampled in each camera's frustum inside the
   depth range) with tracks on every view that sees them: COLMAP's fusion only walks between
   images that share sparse points (``Model::GetMaxOverlappingImages``), so an empty model fuses
   every pixel alone and ``min_num_pixels >= 2`` then keeps nothing.
4. ``patch_match_stereo`` (photometric pass, then the geometric-consistency pass and filtering)
   and ``stereo_fusion`` run in a CHILD PROCESS: without a usable GPU COLMAP fails inside its
   controller thread and aborts the whole process (``PatchMatchController::ReadGpuIndices``), so
   the child's failure becomes a one-line :class:`FvgenError` here instead of a core dump.
5. The fused PLY (x y z, normals, uchar colours) and its ``.vis`` file (the views each point
   fuses) are read back; confidence = fraction of the views that fused the point. Statistical
   outlier removal and voxel averaging as in :mod:`fvgen.priors.mvs`.

Principal point: COLMAP's sparse models put pixel (0, 0) at the top-left corner (fvgen's readers
and writers shift by 0.5 px there), but its dense code takes the integer pixel index as the image
coordinate: PatchMatch back-projects pixel (row, col) as ``inv(K) @ (col, row, 1)`` and samples
textures at ``x + 0.5`` (patch_match_cuda.cu, ``ComputePointAtDepth``), and fusion back-projects
``inv(P) @ (col * d, row * d, d)`` (fusion.cc, ``StereoFusion::Fuse``). That is fvgen's
centre-at-0 convention, so the workspace model carries fvgen's ``cx, cy`` unshifted: with
``cx + 0.5`` every depth map would be back-projected half a pixel off (the tests pin this).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.cameras import Camera, rotmat_to_quat_wxyz
from ..core.errors import FvgenError
from ..core.pointcloud import PointCloud

# Printed by the child process before a clean failure exit, followed by the reason on one line.
CHILD_ERROR_TAG = "fvgen-colmap-error:"
# Printed by the child with its phase timings (JSON) on success.
CHILD_TIMING_TAG = "fvgen-colmap-timing:"


@dataclass(frozen=True)
class ColmapMvsConf:
    """Settings of the COLMAP PatchMatch backend, tuned for 2-10 views (COLMAP's defaults are for
    dozens: they need two consistent sources per pixel and 3 degrees of triangulation angle)."""

    max_image_size: int = 1000  # long side of the images PatchMatch runs on (resized beforehand)
    # PatchMatchOptions
    window_radius: int = 5  # NCC window half size (pixels)
    window_step: int = 1
    num_samples: int = 15  # Monte Carlo samples of the source-view selection
    num_iterations: int = 5  # propagation sweeps
    ncc_sigma: float = 0.6
    min_triangulation_angle: float = 1.0  # degrees
    geom_consistency: bool = True  # second pass with the forward-backward reprojection term
    geom_consistency_regularizer: float = 0.3
    geom_consistency_max_cost: float = 3.0
    filter: bool = True
    filter_min_ncc: float = 0.1
    filter_min_triangulation_angle: float = 1.0  # COLMAP: 3; fern's 3 views have narrow baselines
    filter_min_num_consistent: int = 1  # COLMAP: 2 (capped at N - 1); 1 keeps what one pair sees
    filter_geom_consistency_max_cost: float = 1.0
    gpu_index: str = "-1"  # "-1": every visible GPU; else COLMAP's comma-separated list
    # depth range: union over the views, near * (1 - s), far * (1 + s) (COLMAP stretches by 0.25)
    depth_stretch: float = 0.25
    overlap_grid: int = 12  # overlap points per camera: grid x grid pixels x 3 depths
    # StereoFusionOptions
    fusion_min_num_pixels: int = 2  # a point needs at least two fused pixels (two views)
    fusion_max_reproj_error: float = 2.0  # pixels
    fusion_max_depth_error: float = 0.01  # relative
    fusion_max_normal_error: float = 10.0  # degrees
    # cleaning, as fvgen.priors.mvs.MvsConf
    voxel_fraction: float = 0.001  # voxel size, fraction of the robust scene extent (0: off)
    outlier_neighbors: int = 16  # statistical outlier removal (0: off)
    outlier_std_ratio: float = 2.5
    timeout_s: float = 900.0  # the child process is stopped after this long

    def patch_match_options(self, depth_min: float, depth_max: float) -> dict:
        """The ``pycolmap.PatchMatchOptions`` fields this conf sets (names as in pycolmap 3.11+/4.x)."""
        keys = ("window_radius", "window_step", "num_samples", "num_iterations", "ncc_sigma",
                "min_triangulation_angle", "geom_consistency", "geom_consistency_regularizer",
                "geom_consistency_max_cost", "filter", "filter_min_ncc",
                "filter_min_triangulation_angle", "filter_min_num_consistent",
                "filter_geom_consistency_max_cost", "gpu_index")
        out = {k: getattr(self, k) for k in keys}
        out.update(max_image_size=-1, depth_min=float(depth_min), depth_max=float(depth_max))
        return out

    def fusion_options(self) -> dict:
        """The ``pycolmap.StereoFusionOptions`` fields this conf sets."""
        return {"min_num_pixels": self.fusion_min_num_pixels,
                "max_reproj_error": self.fusion_max_reproj_error,
                "max_depth_error": self.fusion_max_depth_error,
                "max_normal_error": self.fusion_max_normal_error,
                "max_image_size": -1}


# ----------------------------------------------------------------------------- availability


def colmap_available() -> tuple[bool, str]:
    """Whether COLMAP PatchMatch can run here: ``(True, "pycolmap X with CUDA, GPU: name")`` or
    ``(False, one-line reason)``. Checks that pycolmap imports, is a CUDA build
    (``pycolmap.has_cuda``) and that torch sees a CUDA GPU. Never starts PatchMatch itself."""
    try:
        import pycolmap
    except ImportError as e:  # also a CUDA build whose libcudart.so.12 / X11 libraries are missing
        return False, f"pycolmap cannot be imported ({' '.join(str(e).split())})"
    version = getattr(pycolmap, "__version__", "?")
    if not getattr(pycolmap, "has_cuda", False):
        return False, (f"pycolmap {version} is built without CUDA: install pycolmap-cuda12 in place "
                       f"of pycolmap (FVGEN_COLMAP=cuda bash scripts/setup.sh, or pip uninstall -y "
                       f"pycolmap && pip install --force-reinstall pycolmap-cuda12)")
    for name in ("patch_match_stereo", "stereo_fusion", "PatchMatchOptions", "StereoFusionOptions"):
        if not hasattr(pycolmap, name):
            return False, f"pycolmap {version} has no {name} (needs pycolmap 3.11 or newer)"
    try:
        import torch

        n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as e:  # a broken driver raises from torch.cuda
        return False, f"no CUDA GPU is visible ({' '.join(str(e).split())})"
    if n_gpu == 0:
        return False, "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return True, f"pycolmap {version} with CUDA, GPU: {torch.cuda.get_device_name(0)}"


# ----------------------------------------------------------------------------- COLMAP files


def read_colmap_array(path: Path) -> np.ndarray:
    """A COLMAP ``Mat<float>`` file (depth/normal maps): text header ``W&H&C&`` then float32 data,
    channel-major. Returns [H, W] for one channel, else [H, W, C]."""
    data = Path(path).read_bytes()
    head, pos = [], 0
    for _ in range(3):
        amp = data.index(b"&", pos)
        head.append(int(data[pos:amp]))
        pos = amp + 1
    w, h, c = head
    arr = np.frombuffer(data, dtype="<f4", count=w * h * c, offset=pos).reshape(c, h, w)
    return arr[0].copy() if c == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0))


def write_colmap_array(path: Path, arr: np.ndarray) -> None:
    """Inverse of :func:`read_colmap_array` ([H, W] or [H, W, C] float)."""
    a = np.asarray(arr, dtype="<f4")
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    c, h, w = a.shape
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(f"{w}&{h}&{c}&".encode())
        f.write(np.ascontiguousarray(a).tobytes())


_PLY_TYPES = {"char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "<i2",
              "ushort": "<u2", "int16": "<i2", "uint16": "<u2", "int": "<i4", "uint": "<u4",
              "int32": "<i4", "uint32": "<u4", "float": "<f4", "float32": "<f4",
              "double": "<f8", "float64": "<f8"}


def _read_binary_ply_vertices(path: Path) -> np.ndarray:
    """The vertex table of a binary little-endian PLY with scalar properties (COLMAP's layout),
    as a numpy structured array. numpy only: GPU hosts may lack plyfile."""
    data = Path(path).read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file")
    body = data.index(b"\n", end) + 1
    fields, count, in_vertex = [], None, False
    for line in data[:end].decode("ascii", "replace").splitlines():
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format" and tok[1:2] != ["binary_little_endian"]:
            raise ValueError(f"PLY format {' '.join(tok[1:])} (expected binary_little_endian)")
        if tok[0] == "element":
            if count is not None and in_vertex:
                break  # elements after the vertices are not read
            in_vertex = tok[1] == "vertex"
            if in_vertex:
                count = int(tok[2])
            elif count is None:
                raise ValueError("elements before the vertices")
        elif tok[0] == "property" and in_vertex:
            if tok[1] == "list" or tok[1] not in _PLY_TYPES:
                raise ValueError(f"unsupported vertex property {' '.join(tok[1:])}")
            fields.append((tok[2], _PLY_TYPES[tok[1]]))
    if count is None:
        raise ValueError("no vertex element")
    return np.frombuffer(data, dtype=np.dtype(fields), count=count, offset=body)


def read_fused_ply(path: Path, num_views: int | None = None) -> PointCloud:
    """COLMAP's fused point cloud (binary PLY: x y z [nx ny nz] red green blue as uint8). When
    ``path + ".vis"`` exists (uint64 point count, then per point a uint32 count and that many
    uint32 view indices) and ``num_views`` is given, confidence = views fused / ``num_views``."""
    path = Path(path)
    try:
        v = _read_binary_ply_vertices(path)
        xyz = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32)
        rgb = np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.float32) / 255.0
    except (OSError, ValueError, KeyError) as e:
        raise FvgenError(f"cannot read COLMAP's fused cloud {path}: {e}") from None
    conf = None
    vis = Path(str(path) + ".vis")
    if num_views and vis.exists():
        counts = _visibility_counts(vis.read_bytes(), len(xyz))
        conf = np.clip(counts / float(num_views), 1e-3, 1.0).astype(np.float32)
    return PointCloud(xyz, rgb, conf)


def _visibility_counts(data: bytes, num_points: int) -> np.ndarray:
    """Per-point number of views from a COLMAP ``.vis`` file."""
    n = int(np.frombuffer(data, "<u8", count=1)[0])
    if n != num_points:
        raise FvgenError(f"COLMAP's visibility file lists {n} points, the PLY {num_points}")
    words = np.frombuffer(data, "<u4", offset=8).tolist()
    counts = np.empty(n, np.int64)
    pos = 0
    for i in range(n):  # variable-length records; n is at most a few million
        counts[i] = words[pos]
        pos += 1 + words[pos]
    return counts.astype(np.float32)


def _project(cam: Camera, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (centre convention) [M, 2] and depths [M] of world points [M, 3]."""
    w2c = cam.w2c
    Xc = X @ w2c[:3, :3].T + w2c[:3, 3]
    z = Xc[:, 2]
    uv = Xc[:, :2] / np.where(np.abs(z) > 1e-12, z, 1e-12)[:, None] @ cam.K[:2, :2].T + cam.K[:2, 2]
    return uv, z


Track = list[tuple[int, np.ndarray]]  # (view index, pixel [2]) for each view that sees a point


def overlap_points(cameras: Sequence[Camera], depth_min: float, depth_max: float,
                   sparse: np.ndarray | None = None, grid: int = 12) -> tuple[np.ndarray, list[Track]]:
    """3D points that tell COLMAP which views overlap, with their tracks.

    Candidates: the SfM points (at most 20000) plus, for each camera, a ``grid`` x ``grid`` pixel
    grid back-projected at the near, middle (geometric mean) and far depth. A candidate's track is
    every view it projects into (in front, inside the image); candidates seen by fewer than two
    views are dropped. Returns ``(xyz [M, 3], tracks)`` with ``tracks[m] = [(view, uv [2]), ...]``
    (uv in fvgen's pixel-centre convention)."""
    cands = []
    if sparse is not None and len(sparse):
        pts = np.asarray(sparse, np.float64).reshape(-1, 3)
        if len(pts) > 20000:
            pts = pts[np.random.default_rng(0).choice(len(pts), 20000, replace=False)]
        cands.append(pts)
    depths = np.array([depth_min, np.sqrt(depth_min * depth_max), depth_max], np.float64)
    for c in cameras:
        us = (np.arange(grid) + 0.5) / grid * c.width - 0.5
        vs = (np.arange(grid) + 0.5) / grid * c.height - 0.5
        uu, vv = np.meshgrid(us, vs)
        pix = np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size)])
        rays = np.linalg.inv(c.K) @ pix  # z = 1
        for d in depths:
            Xc = rays * d
            cands.append((c.c2w[:3, :3] @ Xc + c.c2w[:3, 3:4]).T)
    X = np.concatenate(cands)
    seen = []
    for c in cameras:
        uv, z = _project(c, X)
        ok = (z > 1e-9) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= c.width - 0.5) & (uv[:, 1] >= -0.5) & (
            uv[:, 1] <= c.height - 0.5)
        seen.append((ok, uv))
    count = np.sum([ok for ok, _ in seen], axis=0)
    keep = np.flatnonzero(count >= 2)
    tracks = [[(j, seen[j][1][m]) for j in range(len(cameras)) if seen[j][0][m]] for m in keep]
    return X[keep], tracks


def write_workspace(folder: Path, images: np.ndarray, cameras: Sequence[Camera],
                    depth_range: tuple[float, float], sparse: np.ndarray | None = None,
                    overlap_grid: int = 12) -> list[str]:
    """Write a COLMAP dense workspace (see module docstring, step 3).

    Args:
        folder: the workspace (created; ``images/``, ``sparse/``, ``stereo/`` inside).
        images: [N, H, W, 3] float in [0, 1], already undistorted and at the stereo size.
        cameras: N pinhole cameras of exactly that size (no ``dist``).
        depth_range: (near, far) used to place the overlap points.
        sparse: SfM points [M, 3] in the cameras' world frame (optional).

    Returns:
        The image names in the workspace, in view order.
    """
    from ..core.images import save_image

    folder = Path(folder)
    N = len(cameras)
    if len(images) != N:
        raise FvgenError(f"COLMAP workspace: {len(images)} images for {N} cameras")
    for c, im in zip(cameras, images):
        if c.dist:
            raise FvgenError("COLMAP workspace: cameras must be undistorted (PINHOLE)")
        if (c.width, c.height) != (im.shape[1], im.shape[0]):
            raise FvgenError(f"COLMAP workspace: camera {c.width}x{c.height} for an image "
                             f"{im.shape[1]}x{im.shape[0]}")
    names = [f"view_{i:03d}.png" for i in range(N)]
    for name, im in zip(names, images):
        save_image(folder / "images" / name, im)
    xyz, tracks = overlap_points(cameras, depth_range[0], depth_range[1], sparse, overlap_grid)
    obs: list[list[tuple[float, float, int]]] = [[] for _ in range(N)]  # per image: x, y, point id
    pts_lines = ["# 3D point list with one line of data per point:",
                 "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    for pid, (X, track) in enumerate(zip(xyz, tracks), start=1):
        els = []
        for j, uv in track:
            els.append(f"{j + 1} {len(obs[j])}")
            obs[j].append((uv[0], uv[1], pid))  # same pixel convention as K (module docstring)
        pts_lines.append(f"{pid} {X[0]:.9g} {X[1]:.9g} {X[2]:.9g} 128 128 128 0 " + " ".join(els))
    cam_lines = ["# Camera list with one line of data per camera:",
                 "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    img_lines = ["# Image list with two lines of data per image:",
                 "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                 "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for i, (c, name) in enumerate(zip(cameras, names), start=1):
        params = (c.K[0, 0], c.K[1, 1], c.K[0, 2], c.K[1, 2])  # unshifted: module docstring
        cam_lines.append(f"{i} PINHOLE {c.width} {c.height} " + " ".join(f"{v:.12g}" for v in params))
        w2c = c.w2c
        q = rotmat_to_quat_wxyz(w2c[:3, :3])
        img_lines.append(f"{i} " + " ".join(f"{v:.15g}" for v in (*q, *w2c[:3, 3])) + f" {i} {name}")
        img_lines.append(" ".join(f"{x:.6f} {y:.6f} {p}" for x, y, p in obs[i - 1]))
    sp = folder / "sparse"
    sp.mkdir(parents=True, exist_ok=True)
    (sp / "cameras.txt").write_text("\n".join(cam_lines) + "\n")
    (sp / "images.txt").write_text("\n".join(img_lines) + "\n")
    (sp / "points3D.txt").write_text("\n".join(pts_lines) + "\n")
    st = folder / "stereo"
    for sub in ("depth_maps", "normal_maps", "consistency_graphs"):
        (st / sub).mkdir(parents=True, exist_ok=True)
    # every other view is a source of each view: COLMAP's "__auto__" picks sources by shared
    # sparse points, which known-camera runs do not have in any meaningful number
    (st / "patch-match.cfg").write_text("".join(f"{n}\n__all__\n" for n in names))
    (st / "fusion.cfg").write_text("".join(f"{n}\n" for n in names))
    return names


# ----------------------------------------------------------------------------- child process


def _child_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the child process: ``job.json`` (workspace, phases, options) -> COLMAP."""
    job = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    timings = {}
    try:
        import pycolmap

        ws = job["workspace"]
        if "patch_match" in job["phases"]:
            opts = pycolmap.PatchMatchOptions()
            for k, v in job["patch_match"].items():
                setattr(opts, k, v)
            t0 = time.time()
            pycolmap.patch_match_stereo(ws, workspace_format="COLMAP", options=opts)
            timings["patch_match"] = round(time.time() - t0, 3)
        if "fusion" in job["phases"]:
            fopts = pycolmap.StereoFusionOptions()
            for k, v in job["fusion"].items():
                setattr(fopts, k, v)
            t0 = time.time()
            pycolmap.stereo_fusion(job["output"], ws, workspace_format="COLMAP",
                                   input_type=job["input_type"], options=fopts, output_type="PLY")
            timings["fusion"] = round(time.time() - t0, 3)
    except Exception as e:
        print(f"{CHILD_ERROR_TAG} {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr,
              flush=True)
        sys.exit(3)
    print(f"{CHILD_TIMING_TAG} {json.dumps(timings)}", flush=True)


def _failure_reason(log: str) -> str:
    """The most telling line of a failed child's log: our tagged line, else COLMAP's last fatal
    or error line (glog ``F``/``E`` lines, ``Check failed``), else the last non-empty line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(CHILD_ERROR_TAG):
            return ln[len(CHILD_ERROR_TAG):].strip()
    for key in ("Check failed", "what():", "terminate called", "Error", "error"):
        for ln in reversed(lines):
            if key in ln:
                return ln.split("what():", 1)[-1].strip()  # C++ exceptions: the message only
    for ln in reversed(lines):
        if ln[:1] in "FE" and ln[1:5].isdigit():  # glog: F20261207 12:00:00 ...
            return ln
    return lines[-1] if lines else "no output"


def run_colmap_child(job: dict, log_path: Path, timeout_s: float) -> dict:
    """Run COLMAP phases in a child Python process; returns the child's phase timings.

    Raises:
        FvgenError: one line, when the child exits non-zero, is killed by a signal (COLMAP's
            aborts) or outlasts ``timeout_s``.
    """
    log_path = Path(log_path)
    job_path = log_path.with_suffix(".job.json")
    job_path.write_text(json.dumps(job))
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the fvgen package
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    module = __name__ if __name__ != "__main__" else "fvgen.priors.colmap_mvs"
    cmd = [sys.executable, "-c", f"from {module} import _child_main; _child_main()", str(job_path)]
    what = " + ".join({"patch_match": "PatchMatch stereo", "fusion": "stereo fusion"}[p]
                      for p in job["phases"])
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise FvgenError(f"COLMAP {what} did not finish in {timeout_s:g} s (log: {log_path})") from None
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        if proc.returncode < 0:
            try:
                how = f"was stopped by {signal.Signals(-proc.returncode).name}"
            except ValueError:
                how = f"was stopped by signal {-proc.returncode}"
        else:
            how = f"failed (exit {proc.returncode})"
        raise FvgenError(f"COLMAP {what} {how}: {_failure_reason(text)} (log: {log_path})")
    for ln in reversed(text.splitlines()):
        if ln.startswith(CHILD_TIMING_TAG):
            return json.loads(ln[len(CHILD_TIMING_TAG):])
    return {}


# ----------------------------------------------------------------------------- entry point


def _depth_range(images: np.ndarray, cams: Sequence[Camera], sparse: PointCloud | None,
                 device) -> tuple[list[tuple[float, float]], str]:
    """Per-view (near, far) from the SfM points, else from fvgen.priors.mvs's coarse sweep."""
    from .mvs import MvsConf, _coarse_ranges, _sparse_range

    ranges = [_sparse_range(sparse, c) for c in cams]
    source = "sparse"
    if any(r is None for r in ranges):
        import torch

        coarse = _coarse_ranges(images, cams, MvsConf(), torch.device(device))
        ranges = [r if r is not None else c for r, c in zip(ranges, coarse)]
        source = "coarse sweep" if sparse is None or len(sparse) == 0 else "sparse+coarse sweep"
    good = [r for r in ranges if r is not None]
    if not good:
        raise FvgenError("COLMAP stereo found no depth range: the views do not overlap or have no texture")
    return good, source


def colmap_dense(images: np.ndarray, cameras: list[Camera], sparse_points: PointCloud | None = None,
                 conf: ColmapMvsConf = ColmapMvsConf(), workdir: Path | None = None, *,
                 depth_range: tuple[float, float] | None = None, device: str = "cpu",
                 return_depths: bool = False) -> tuple[PointCloud, dict]:
    """Dense coloured point cloud of registered views by COLMAP PatchMatch (module docstring).

    Args:
        images: [N, H, W, 3] float in [0, 1] (2 <= N).
        cameras: one per image (any size: scaled to the images); ``dist`` is undistorted away.
        sparse_points: SfM points in the same world frame (depth range, view overlap; optional).
        conf: :class:`ColmapMvsConf`.
        workdir: folder for the COLMAP workspace (kept); a temporary one (removed) when None.
        depth_range: (near, far) camera depth for every view, overriding the estimated range.
        device: torch device of the coarse sweep that finds the depth range without SfM points.
        return_depths: put per-view geometric depth maps/masks (numpy, stereo size) and the
            stereo cameras in info["depths"] / info["masks"] / info["stereo_cameras"].

    Returns:
        ``(cloud, info)`` as :func:`fvgen.priors.mvs.dense_point_cloud`: cloud in the cameras' world
        frame with ``conf`` in (0, 1]; info with ``backend``, ``points_fused``,
        ``points_after_outliers``, ``points``, ``voxel_size``, ``stereo_size``, ``range_source``,
        ``depth_ranges``, ``depth_min``/``depth_max``, ``valid_fraction`` (per view),
        ``seconds_range``, ``seconds_patch_match``, ``seconds_fusion``, ``seconds``, ``conf``.

    Raises:
        FvgenError: COLMAP is not available (:func:`colmap_available`), the inputs are off, or
            COLMAP fails (one line, with the log's path).
    """
    ok, reason = colmap_available()
    if not ok:
        raise FvgenError(f"the COLMAP stereo backend cannot run: {reason}")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="fvgen-colmap-") as tmp:
            return _colmap_dense(images, cameras, sparse_points, conf, Path(tmp), depth_range,
                                 device, return_depths)
    return _colmap_dense(images, cameras, sparse_points, conf, Path(workdir), depth_range, device,
                         return_depths)


def _colmap_dense(images, cameras, sparse_points, conf: ColmapMvsConf, workdir: Path, depth_range,
                  device, return_depths):
    import pycolmap

    from ..core.images import fit_size, resize_image
    from .mvs import clean_cloud, stereo_views

    t0 = time.time()
    images, cams = stereo_views(images, cameras)
    N, H0, W0 = images.shape[:3]
    W, H = fit_size(W0, H0, conf.max_image_size)
    if (W, H) != (W0, H0):
        images = np.stack([resize_image(im, W, H) for im in images])
        cams = [c.scaled(W, H) for c in cams]

    if depth_range is not None:
        ranges, source = [tuple(map(float, depth_range))] * N, "given"
    else:
        ranges, source = _depth_range(images, cams, sparse_points, device)
    near = min(r[0] for r in ranges) * (1.0 - conf.depth_stretch)
    far = max(r[1] for r in ranges) * (1.0 + conf.depth_stretch)
    if not (near > 0 and far > near):
        raise FvgenError(f"COLMAP stereo got an empty depth range ({near:g}, {far:g})")
    t_range = time.time() - t0

    workdir.mkdir(parents=True, exist_ok=True)
    ws = workdir / "dense"
    if ws.exists():  # PatchMatch skips views whose maps exist: never reuse a stale workspace
        import shutil

        shutil.rmtree(ws)
    sparse_xyz = None if sparse_points is None or len(sparse_points) == 0 else sparse_points.xyz
    names = write_workspace(ws, images, cams, (near, far), sparse_xyz, conf.overlap_grid)
    input_type = "geometric" if conf.geom_consistency else "photometric"
    job = {"workspace": str(ws), "phases": ["patch_match", "fusion"],
           "patch_match": conf.patch_match_options(near, far), "fusion": conf.fusion_options(),
           "output": str(workdir / "fused.ply"), "input_type": input_type}
    t1 = time.time()
    timings = run_colmap_child(job, workdir / "colmap.log", conf.timeout_s)
    t_colmap = time.time() - t1

    maps = []
    for n in names:
        p = ws / "stereo" / "depth_maps" / f"{n}.{input_type}.bin"
        maps.append(read_colmap_array(p) if p.exists() else np.zeros((H, W), np.float32))
    cloud = read_fused_ply(workdir / "fused.ply", N)
    xyz = cloud.xyz.astype(np.float64)
    rgb, cf = cloud.rgb, cloud.conf if cloud.conf is not None else np.ones(len(cloud), np.float32)
    out, info = clean_cloud(xyz, rgb, cf, conf)
    info = {
        "backend": "colmap",
        "pycolmap": getattr(pycolmap, "__version__", "?"),
        **info,
        "stereo_size": [int(W), int(H)],
        "range_source": source,
        "depth_ranges": [[float(a), float(b)] for a, b in ranges],
        "depth_min": float(near),
        "depth_max": float(far),
        "valid_fraction": [float((m > 0).mean()) for m in maps],
        "seconds_range": round(t_range, 3),
        "seconds_patch_match": timings.get("patch_match"),
        "seconds_fusion": timings.get("fusion"),
        "seconds_colmap_process": round(t_colmap, 3),
        "seconds": round(time.time() - t0, 3),
        "conf": asdict(conf),
    }
    if return_depths:
        info["depths"] = maps
        info["masks"] = [m > 0 for m in maps]
        info["stereo_cameras"] = cams
    if len(out) == 0:
        raise FvgenError("COLMAP stereo produced no points: the views do not overlap enough, or are "
                         "too close together to give depth")
    return out, info


__all__ = ["ColmapMvsConf", "colmap_available", "colmap_dense", "read_colmap_array",
           "read_fused_ply", "write_workspace", "overlap_points", "run_colmap_child"]
