"""Pose formats: every reader against the shared datasets' cameras_opencv.json, writer/reader
round trips, alignment and pose errors."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest

from fvgen.core.cameras import Camera, Similarity, align_cameras, dtu_center_crop, load_poses, look_at, pose_errors, read_cameras_opencv_json, read_colmap_model, read_dtu_cameras_npz, read_llff_poses_bounds, read_transforms_json, rotmat_to_quat_wxyz, write_cameras_opencv_json, write_colmap_text, write_transforms_json
from fvgen.core.errors import FvgenError

from fvgen.core.datasets import EVAL_ROOT as DATASETS  # noqa: E402
needs_data = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"shared datasets absent ({DATASETS})")

K_TOL = 1e-3  # px
POSE_TOL = 1e-6


def _assert_same(est: list[Camera], ref: list[Camera], pose_tol: float = POSE_TOL) -> None:
    assert len(est) == len(ref)
    for e, r in zip(est, ref):
        assert os.path.basename(e.name) == os.path.basename(r.name)
        assert (e.width, e.height) == (r.width, r.height)
        np.testing.assert_allclose(e.K, r.K, atol=K_TOL, rtol=0)
        scale = max(1.0, np.abs(r.c2w[:3, 3]).max())
        np.testing.assert_allclose(e.c2w[:3, :3], r.c2w[:3, :3], atol=pose_tol, rtol=0)
        np.testing.assert_allclose(e.c2w[:3, 3], r.c2w[:3, 3], atol=pose_tol * scale, rtol=0)
        np.testing.assert_array_equal(e.c2w[3], [0, 0, 0, 1])
        if r.dist is None:
            assert e.dist is None
        else:
            np.testing.assert_allclose(e.dist, r.dist, atol=1e-9)


def _ref(scene: str) -> tuple[list[Camera], list[str], tuple[int, int]]:
    ref = read_cameras_opencv_json(DATASETS / scene / "cameras_opencv.json")
    names = [os.path.basename(c.name) for c in ref]
    return ref, names, (ref[0].width, ref[0].height)


def _random_cameras(n: int = 5, seed: int = 0, dist: bool = False) -> list[Camera]:
    rng = np.random.default_rng(seed)
    cams = []
    for i in range(n):
        eye = rng.normal(size=3) * 2 + np.array([0, 0, 4.0])
        c2w = look_at(eye, rng.normal(size=3) * 0.2, np.array([0, 1.0, 0]) + rng.normal(size=3) * 0.1)
        w, h = 640, 480
        K = [[500 + 30 * rng.random(), 0, 319.5 + rng.normal()], [0, 505 + 30 * rng.random(), 239.5 + rng.normal()],
             [0, 0, 1]]
        d = tuple(rng.normal(size=4) * 0.01) if dist else None
        cams.append(Camera(K, c2w, w, h, name=f"img_{i:03d}.png", dist=d))
    return cams


# ----------------------------------------------------------------------------- shared datasets


@needs_data
def test_shared_json_principal_points_are_corner_origin():
    # fern: LLFF centre w/2 = 252 on disk -> (w-1)/2 inside fvgen; fox: COLMAP cx verbatim on disk.
    raw = json.loads((DATASETS / "fern" / "cameras_opencv.json").read_text())["frames"][0]
    assert raw["K"][0][2] == pytest.approx(252.0)
    fern, _, _ = _ref("fern")
    assert fern[0].K[0, 2] == pytest.approx((504 - 1) / 2)
    assert fern[0].K[1, 2] == pytest.approx((378 - 1) / 2)
    fox_tf = json.loads((DATASETS / "fox" / "transforms.json").read_text())
    fox, _, _ = _ref("fox")
    assert fox[0].K[0, 2] == pytest.approx(fox_tf["cx"] - 0.5)


@needs_data
def test_llff_poses_bounds_matches_fern():
    ref, names, size = _ref("fern")
    est = read_llff_poses_bounds(DATASETS / "fern" / "poses_bounds.npy", names, size)
    _assert_same(est, ref)
    # hwf is for 4032x3024: f scales by 504/4032
    hwf = np.load(DATASETS / "fern" / "poses_bounds.npy")[0, :15].reshape(3, 5)[:, 4]
    assert tuple(hwf[:2]) == (3024, 4032)
    assert est[0].fx == pytest.approx(hwf[2] * 504 / 4032)


@needs_data
def test_llff_rows_follow_sorted_names():
    ref, names, size = _ref("fern")
    est = read_llff_poses_bounds(DATASETS / "fern" / "poses_bounds.npy", names[::-1], size)
    by = {c.name: c for c in est}
    for r in ref:
        np.testing.assert_allclose(by[os.path.basename(r.name)].c2w, r.c2w, atol=1e-9)


@needs_data
def test_llff_via_load_poses_at_another_size():
    ref, names, _ = _ref("fern")
    est = load_poses(DATASETS / "fern" / "poses_bounds.npy", names[:3], (252, 189))
    _assert_same(est, [c.scaled(252, 189) for c in ref[:3]])
    assert est[0].K[0, 2] == pytest.approx(125.5)


@needs_data
def test_dtu_cameras_npz_matches_dtu_scan24():
    ref, names, size = _ref("dtu_scan24")
    est = read_dtu_cameras_npz(DATASETS / "dtu_scan24" / "cameras.npz", names, size,
                               crop_offset=(200, 0), source_size=(1200, 1200))
    _assert_same(est, ref)


@needs_data
def test_dtu_crop_inferred_by_load_poses(tmp_path):
    ref, names, size = _ref("dtu_scan24")
    assert size == (384, 384)
    assert dtu_center_crop(DATASETS / "dtu_scan24" / "cameras.npz", size) == ((200.0, 0.0), (1200, 1200))
    for path in (DATASETS / "dtu_scan24" / "cameras.npz",):
        est = load_poses(path, names, (384, 384))
        _assert_same(est, ref)
    # a DTU folder without cameras_opencv.json: the dispatcher picks cameras.npz + images/
    dtu = tmp_path / "dtu"
    dtu.mkdir()
    (dtu / "cameras.npz").symlink_to(DATASETS / "dtu_scan24" / "cameras.npz")
    (dtu / "images").symlink_to(DATASETS / "dtu_scan24" / "images")
    by = {os.path.basename(c.name): c for c in ref}
    _assert_same(load_poses(dtu, names[::-1], (384, 384)), [by[n] for n in names[::-1]])
    # explicit crop, a subset of views in another order, a downscaled size
    sub = [names[25], names[22], names[28]]
    est = load_poses(DATASETS / "dtu_scan24" / "cameras.npz", sub, (192, 192),
                     dtu_crop=((200.0, 0.0), (1200, 1200)))
    _assert_same(est, [by[n].scaled(192, 192) for n in sub])


@needs_data
def test_dtu_without_crop_is_the_full_frame():
    ref, names, _ = _ref("dtu_scan24")
    full = read_dtu_cameras_npz(DATASETS / "dtu_scan24" / "cameras.npz", names, (1600, 1200))
    # the crop recipe applied by hand to the full-frame K (corner origin) gives the shared K
    K = full[0].K.copy()
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    K[0, 2] -= 200
    K[:2] *= 384 / 1200
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    np.testing.assert_allclose(K, ref[0].K, atol=K_TOL)
    np.testing.assert_allclose(full[0].c2w, ref[0].c2w, atol=1e-6)
    # R is a rotation
    for c in full:
        R = c.c2w[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) == pytest.approx(1.0)


@needs_data
def test_transforms_json_matches_fox():
    ref, names, size = _ref("fox")
    assert size == (1080, 1920)
    est = read_transforms_json(DATASETS / "fox" / "transforms.json")
    _assert_same(est, ref)
    assert est[0].dist is not None and est[0].dist[0] == pytest.approx(0.0578421)
    est2 = load_poses(DATASETS / "fox", names[::-1][:5], size)  # folder: picks cameras_opencv.json
    by = {os.path.basename(c.name): c for c in ref}
    _assert_same(est2, [by[n] for n in names[::-1][:5]])


@needs_data
def test_load_poses_shared_json_matches_names_without_folder():
    ref, names, size = _ref("fern")
    est = load_poses(DATASETS / "fern", ["image001.png", "image000.png"], size)
    _assert_same(est, [ref[1], ref[0]])
    (by_stem,) = load_poses(DATASETS / "fern", ["image005"], size)  # names are matched by stem too
    assert by_stem.name == "image005"
    np.testing.assert_allclose(by_stem.c2w, ref[5].c2w)
    with pytest.raises(FvgenError, match="no camera for image"):
        load_poses(DATASETS / "fern", ["image000.png", "nope.png"], size)


@needs_data
def test_fern_colmap_folder_is_camera_only(tmp_path):
    # sparse/0 holds only cameras.bin: not a usable pose source; load_poses must skip it
    sparse = DATASETS / "fern" / "sparse" / "0"
    assert (sparse / "cameras.bin").exists() and not (sparse / "images.bin").exists()
    with pytest.raises(FvgenError):
        read_colmap_model(sparse)


@needs_data
@pytest.mark.parametrize("scene", ["fern", "dtu_scan24", "fox"])
def test_colmap_round_trip_on_shared_cameras(tmp_path, scene):
    ref, _, _ = _ref(scene)
    ref = [replace(c, name=os.path.basename(c.name)) for c in ref[:6]]
    write_colmap_text(ref, tmp_path / "sparse")
    est = read_colmap_model(tmp_path / "sparse")
    _assert_same(est, ref)
    est2 = load_poses(tmp_path, [c.name for c in ref], (ref[0].width, ref[0].height))  # finds sparse/
    _assert_same(est2, ref)


# ----------------------------------------------------------------------------- round trips


def test_colmap_text_round_trip_with_points(tmp_path):
    cams = _random_cameras(4, seed=1, dist=True)
    pts = np.random.default_rng(0).normal(size=(10, 3))
    write_colmap_text(cams, tmp_path / "m", points=pts, colors=np.full((10, 3), 0.5))
    est = read_colmap_model(tmp_path / "m")
    _assert_same(est, cams)
    import pycolmap

    rec = pycolmap.Reconstruction(str(tmp_path / "m"))
    assert len(rec.points3D) == 10
    # COLMAP's principal point has a corner origin
    assert rec.cameras[1].params[2] == pytest.approx(cams[0].K[0, 2] + 0.5)


def test_transforms_json_round_trip(tmp_path):
    cams = _random_cameras(5, seed=2, dist=True) + _random_cameras(2, seed=3, dist=False)
    cams = [replace(c, name=f"v{i}.png") for i, c in enumerate(cams)]
    write_transforms_json(cams, tmp_path / "transforms.json", file_prefix="images/")
    est = read_transforms_json(tmp_path / "transforms.json")
    _assert_same(est, cams)
    data = json.loads((tmp_path / "transforms.json").read_text())
    assert data["frames"][0]["file_path"] == "images/v0.png"
    # OpenGL c2w on disk
    np.testing.assert_allclose(np.asarray(data["frames"][0]["transform_matrix"])[:3, 1], -cams[0].c2w[:3, 1])


def test_transforms_json_camera_angle_x_and_errors(tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"camera_angle_x": 2 * math.atan(0.5), "w": 100, "h": 80,
                             "frames": [{"file_path": "./a.png", "transform_matrix": np.eye(4).tolist()}]}))
    (c,) = read_transforms_json(f)
    assert c.fx == pytest.approx(100.0) and c.K[0, 2] == pytest.approx(49.5) and c.name == "a.png"
    np.testing.assert_allclose(c.c2w, np.diag([1.0, -1, -1, 1]))
    f.write_text(json.dumps({"w": 100, "h": 80, "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(FvgenError, match="focal"):
        read_transforms_json(f)
    f.write_text(json.dumps({"fl_x": 10, "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(FvgenError, match="image size"):
        read_transforms_json(f)


def test_cameras_opencv_json_round_trip(tmp_path):
    cams = _random_cameras(5, seed=4, dist=True)
    write_cameras_opencv_json(cams, tmp_path / "cameras_opencv.json")
    est = read_cameras_opencv_json(tmp_path / "cameras_opencv.json")
    _assert_same(est, cams, pose_tol=1e-12)
    data = json.loads((tmp_path / "cameras_opencv.json").read_text())
    assert data["pixel_origin"] == "center"
    assert data["frames"][0]["K"][0][2] == pytest.approx(cams[0].K[0, 2])
    # a file that declares a corner origin, or says nothing (the evaluation scenes), is shifted
    data["pixel_origin"] = "corner"
    (tmp_path / "c.json").write_text(json.dumps(data))
    assert read_cameras_opencv_json(tmp_path / "c.json")[0].K[0, 2] == pytest.approx(cams[0].K[0, 2] - 0.5)
    del data["pixel_origin"]
    (tmp_path / "d.json").write_text(json.dumps(data))
    assert read_cameras_opencv_json(tmp_path / "d.json")[0].K[0, 2] == pytest.approx(cams[0].K[0, 2] - 0.5)
    # the training pool's files say "centre of the top-left pixel" in their convention text
    data["convention"] = "K ... with pixel (0,0) being the CENTRE of the top-left pixel (OpenCV convention)"
    (tmp_path / "e.json").write_text(json.dumps(data))
    assert read_cameras_opencv_json(tmp_path / "e.json")[0].K[0, 2] == pytest.approx(cams[0].K[0, 2])


def test_cameras_opencv_json_errors(tmp_path):
    with pytest.raises(FvgenError, match="not found"):
        read_cameras_opencv_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FvgenError):
        read_cameras_opencv_json(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text(json.dumps({"frames": [{"file": "a"}]}))
    with pytest.raises(FvgenError):
        read_cameras_opencv_json(tmp_path / "bad2.json")


def test_load_poses_errors(tmp_path):
    with pytest.raises(FvgenError, match="not found"):
        load_poses(tmp_path / "nothing", ["a.png"], (10, 10))
    with pytest.raises(FvgenError, match="no supported pose file"):
        load_poses(tmp_path, ["a.png"], (10, 10))


def test_scaled_keeps_image_centre():
    c = _random_cameras(1)[0]
    c = replace(c, K=np.array([[500.0, 0, 319.5], [0, 500, 239.5], [0, 0, 1]]))
    s = c.scaled(320, 240)
    np.testing.assert_allclose(s.K, [[250, 0, 159.5], [0, 250, 119.5], [0, 0, 1]])


def test_look_at_is_opencv():
    c2w = look_at(np.array([0, 1.0, 5]), np.array([0, 1.0, 0]), np.array([0, 1.0, 0]))
    np.testing.assert_allclose(c2w[:3, 0], [1, 0, 0], atol=1e-12)  # x right
    np.testing.assert_allclose(c2w[:3, 1], [0, -1, 0], atol=1e-12)  # y down (world up is +y)
    np.testing.assert_allclose(c2w[:3, 2], [0, 0, -1], atol=1e-12)  # z forward
    assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)


def test_rotmat_to_quat_all_branches():
    import pycolmap

    rng = np.random.default_rng(5)
    Rs = [np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]
    for _ in range(50):
        q = rng.normal(size=4)
        Rs.append(pycolmap.Rotation3d(q / np.linalg.norm(q)).matrix())
    for R in Rs:
        q = rotmat_to_quat_wxyz(R)  # (w, x, y, z)
        R2 = pycolmap.Rotation3d(np.array([q[1], q[2], q[3], q[0]])).matrix()  # pycolmap: xyzw
        np.testing.assert_allclose(R2, R, atol=1e-12)


# ----------------------------------------------------------------------------- alignment, errors


def _random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@pytest.mark.parametrize("n", [2, 3, 7])
def test_align_cameras_recovers_similarity(n):
    rng = np.random.default_rng(n)
    src = _random_cameras(n, seed=n)
    S = Similarity(2.7, _random_rotation(rng), rng.normal(size=3) * 5)
    dst = [replace(c, c2w=S.apply_c2w(c.c2w)) for c in src]
    est = align_cameras(src, dst)
    assert est.scale == pytest.approx(S.scale, rel=1e-9)
    np.testing.assert_allclose(est.R, S.R, atol=1e-9)
    np.testing.assert_allclose(est.t, S.t, atol=1e-8)
    for s, d in zip(src, dst):
        np.testing.assert_allclose(est.apply_c2w(s.c2w), d.c2w, atol=1e-8)
    inv = est.inverse()
    np.testing.assert_allclose(inv.apply_points(est.apply_points(np.ones((2, 3)))), np.ones((2, 3)), atol=1e-9)
    with pytest.raises(FvgenError):
        align_cameras(src[:1], dst[:1])


def test_pose_errors_zero_and_similarity_invariant():
    cams = _random_cameras(5, seed=9)
    e = pose_errors(cams, cams)
    assert e["rotation_error_deg_max"] == pytest.approx(0.0, abs=1e-5)
    assert e["translation_direction_error_deg_max"] == pytest.approx(0.0, abs=1e-5)
    assert e["focal_error_rel_mean"] == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(1)
    S = Similarity(0.3, _random_rotation(rng), rng.normal(size=3))
    moved = [replace(c, c2w=S.apply_c2w(c.c2w)) for c in cams]
    e = pose_errors(moved, cams)
    assert e["rotation_error_deg_max"] < 1e-5 and e["translation_direction_error_deg_max"] < 1e-5
    # a known perturbation: rotate one camera by 2 degrees about its own y axis
    a = math.radians(2.0)
    Ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    c2w = cams[2].c2w.copy()
    c2w[:3, :3] = c2w[:3, :3] @ Ry
    bad = list(cams)
    bad[2] = replace(cams[2], c2w=c2w)
    assert pose_errors(bad, cams)["rotation_error_deg_max"] == pytest.approx(2.0, abs=1e-6)
    # focal at another resolution is compared after scaling
    half = [c.scaled(320, 240) for c in cams]
    assert pose_errors(half, cams)["focal_error_rel_mean"] == pytest.approx(0.0, abs=1e-12)


def test_load_poses_reads_by_content_and_refuses_bad_files(tmp_path):
    cams = _random_cameras(3, seed=7)
    write_cameras_opencv_json(cams, tmp_path / "cameras.json")  # fvgen's own name for this layout
    names = [c.name for c in cams]
    got = load_poses(tmp_path / "cameras.json", names, (cams[0].width, cams[0].height))
    _assert_same(got, cams, pose_tol=1e-9)
    (tmp_path / "transforms.json").write_text("{broken")
    with pytest.raises(FvgenError, match="not a readable transforms.json"):
        read_transforms_json(tmp_path / "transforms.json")
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_model": "OPENCV_FISHEYE", "frames": [
        {"file_path": "a.png", "w": 4, "h": 4, "fl_x": 2, "transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(FvgenError, match="not supported"):
        read_transforms_json(tmp_path / "transforms.json")
    (tmp_path / "poses.txt").write_text("x")
    with pytest.raises(FvgenError, match="not a pose file"):
        load_poses(tmp_path / "poses.txt", names, (8, 8))
