"""The COLMAP PatchMatch backend on CPU: availability and its one-line errors, the workspace
writer (read back by pycolmap), COLMAP's fusion on that workspace, the fused-PLY reader and the
child process's failure paths. PatchMatch itself needs a CUDA GPU: benchmarks/gpu_colmap_mvs.sh."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from fvgen.priors import colmap_mvs
from fvgen.core.cameras import Camera, look_at
from fvgen.priors.colmap_mvs import (ColmapMvsConf, colmap_available, colmap_dense, overlap_points,
                              read_colmap_array, read_fused_ply, run_colmap_child,
                              write_colmap_array, write_workspace)
from fvgen.core.errors import FvgenError

pycolmap = pytest.importorskip("pycolmap")


def _orbit_cameras(n=3, w=80, h=60):
    """Cameras on an arc looking at the origin from about 3 units; principal point off centre."""
    cams = []
    for i in range(n):
        a = np.radians(-15 + 30 * i / max(n - 1, 1))
        eye = np.array([3 * np.sin(a), 0.2 * i, -3 * np.cos(a)])
        K = [[70.0, 0, w / 2 - 0.5 + 1.25], [0, 72.0, h / 2 - 0.5 - 0.75], [0, 0, 1]]
        cams.append(Camera(K, look_at(eye, np.zeros(3), np.array([0, -1.0, 0])), w, h))
    return cams


def _shifted_cameras(w=64, h=48, z_offsets=(0.0, 0.0, 0.0)):
    """Three cameras looking down +z, side by side (x = -0.5, 0, 0.5)."""
    return [Camera([[60, 0, (w - 1) / 2], [0, 60, (h - 1) / 2], [0, 0, 1]],
                   np.array([[1, 0, 0, x], [0, 1, 0, 0], [0, 0, 1, z], [0, 0, 0, 1.0]]), w, h)
            for x, z in zip((-0.5, 0.0, 0.5), z_offsets)]


# ----------------------------------------------------------------------------- availability


def test_cpu_pycolmap_is_not_available_with_the_reason():
    if getattr(pycolmap, "has_cuda", False):
        pytest.skip("this pycolmap is a CUDA build")
    ok, reason = colmap_available()
    assert not ok
    assert "without CUDA" in reason and "pycolmap-cuda12" in reason and "\n" not in reason


def test_missing_pycolmap_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import raises ImportError
    ok, reason = colmap_available()
    assert not ok and reason.startswith("pycolmap cannot be imported") and "\n" not in reason


def test_cuda_build_without_gpu_is_reported(monkeypatch):
    import torch

    fake = types.SimpleNamespace(__version__="9.9", has_cuda=True, patch_match_stereo=None,
                                 stereo_fusion=None, PatchMatchOptions=None, StereoFusionOptions=None)
    monkeypatch.setitem(sys.modules, "pycolmap", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, reason = colmap_available()
    assert not ok and reason.startswith("no CUDA GPU is visible")


def test_old_pycolmap_without_mvs_is_reported(monkeypatch):
    fake = types.SimpleNamespace(__version__="0.4", has_cuda=True)
    monkeypatch.setitem(sys.modules, "pycolmap", fake)
    ok, reason = colmap_available()
    assert not ok and "has no patch_match_stereo" in reason


def test_colmap_dense_refuses_in_one_line_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(colmap_mvs, "colmap_available", lambda: (False, "no CUDA GPU is visible (x)"))
    imgs = np.zeros((3, 60, 80, 3), np.float32)
    with pytest.raises(FvgenError) as e:
        colmap_dense(imgs, _orbit_cameras(), None, ColmapMvsConf(), tmp_path)
    msg = str(e.value)
    assert msg.startswith("the COLMAP stereo backend cannot run: no CUDA GPU") and "\n" not in msg
    assert not any(tmp_path.iterdir())  # nothing written before the check


def test_conf_sets_real_pycolmap_option_fields():
    """Every option the child sets exists under that name in this pycolmap and passes its check()."""
    conf = ColmapMvsConf()
    pm = pycolmap.PatchMatchOptions()
    for k, v in conf.patch_match_options(0.5, 20.0).items():
        assert hasattr(pm, k), k
        setattr(pm, k, v)
    assert pm.depth_min == 0.5 and pm.filter_min_num_consistent == 1 and pm.gpu_index == "-1"
    fo = pycolmap.StereoFusionOptions()
    for k, v in conf.fusion_options().items():
        assert hasattr(fo, k), k
        setattr(fo, k, v)
    assert fo.min_num_pixels == 2
    for o in (pm, fo):
        if hasattr(o, "check"):
            assert o.check() in (None, True)


# ----------------------------------------------------------------------------- workspace


def test_workspace_round_trips_cameras_through_pycolmap(tmp_path):
    cams = _orbit_cameras()
    imgs = np.random.default_rng(0).random((3, 60, 80, 3)).astype(np.float32)
    names = write_workspace(tmp_path, imgs, cams, (2.0, 4.0))
    rec = pycolmap.Reconstruction(str(tmp_path / "sparse"))
    assert sorted(rec.images) == [1, 2, 3]
    for i, (cam, name) in enumerate(zip(cams, names), start=1):
        im = rec.images[i]
        assert im.name == name and (tmp_path / "images" / name).exists()
        c = rec.cameras[im.camera_id]
        assert c.model.name == "PINHOLE" and (c.width, c.height) == (80, 60)
        fx, fy, cx, cy = c.params
        # the dense workspace keeps fvgen's centre-at-0 principal point (COLMAP's MVS code takes
        # pixel indices as coordinates; see the module docstring and the end-to-end test)
        np.testing.assert_allclose([fx, fy, cx, cy],
                                   [cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]], atol=1e-9)
        w2c = np.asarray(im.cam_from_world().matrix())
        np.testing.assert_allclose(w2c, cam.w2c[:3], atol=1e-9)
    # overlap points: each one seen by >= 2 views, every pair of these views shares some
    assert len(rec.points3D) > 100
    pairs = set()
    for p in rec.points3D.values():
        ids = sorted({el.image_id for el in p.track.elements})
        assert len(ids) >= 2
        pairs.update((a, b) for a in ids for b in ids if a < b)
        for el in p.track.elements:  # the observation is where the point projects
            im = rec.images[el.image_id]
            uv = np.asarray(rec.cameras[im.camera_id].img_from_cam(
                np.asarray(im.cam_from_world() * p.xyz)))
            np.testing.assert_allclose(uv, im.points2D[el.point2D_idx].xy, atol=1e-4)
    assert pairs == {(1, 2), (1, 3), (2, 3)}
    cfg = (tmp_path / "stereo" / "patch-match.cfg").read_text().split()
    assert cfg == [names[0], "__all__", names[1], "__all__", names[2], "__all__"]
    assert (tmp_path / "stereo" / "fusion.cfg").read_text().split() == names
    for sub in ("depth_maps", "normal_maps", "consistency_graphs"):
        assert (tmp_path / "stereo" / sub).is_dir()


def test_overlap_points_leave_out_views_that_do_not_overlap():
    cams = _shifted_cameras()
    away = Camera(cams[0].K, np.diag([-1.0, 1.0, -1.0, 1.0]), 64, 48)  # looks down -z
    xyz, tracks = overlap_points(cams + [away], 3.0, 8.0, grid=6)
    views = {j for t in tracks for j, _ in t}
    assert views == {0, 1, 2} and len(xyz) == len(tracks) > 0


def test_workspace_rejects_distorted_or_mis_sized_cameras(tmp_path):
    cams = _shifted_cameras()
    imgs = np.zeros((3, 48, 64, 3), np.float32)
    bad = [Camera(cams[0].K, cams[0].c2w, 64, 48, dist=(0.1, 0, 0, 0))] + cams[1:]
    with pytest.raises(FvgenError, match="undistorted"):
        write_workspace(tmp_path / "a", imgs, bad, (3.0, 8.0))
    with pytest.raises(FvgenError, match="camera 64x48 for an image 32x48"):
        write_workspace(tmp_path / "b", imgs[:, :, :32], cams, (3.0, 8.0))


def test_colmap_array_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    depth = rng.random((5, 7)).astype(np.float32)
    normals = rng.random((5, 7, 3)).astype(np.float32)
    write_colmap_array(tmp_path / "d.bin", depth)
    write_colmap_array(tmp_path / "n.bin", normals)
    assert (tmp_path / "d.bin").read_bytes().startswith(b"7&5&1&")
    np.testing.assert_array_equal(read_colmap_array(tmp_path / "d.bin"), depth)
    np.testing.assert_array_equal(read_colmap_array(tmp_path / "n.bin"), normals)
    # COLMAP stores channel-major: the first W*H floats are the first channel
    raw = np.frombuffer((tmp_path / "n.bin").read_bytes()[6:], "<f4")
    np.testing.assert_array_equal(raw[:35].reshape(5, 7), normals[..., 0])


# ----------------------------------------------------------------------------- fused cloud


def _write_colmap_fused(path, xyz, rgb8, vis):
    """A fused PLY and .vis as COLMAP's WriteBinaryPlyPoints / WritePointsVisibility write them."""
    head = ("ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\n"
            "property float y\nproperty float z\nproperty float nx\nproperty float ny\n"
            "property float nz\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
            "end_header\n" % len(xyz))
    rec = np.zeros(len(xyz), dtype=[("p", "<f4", 6), ("c", "u1", 3)])
    rec["p"][:, :3] = xyz
    rec["c"] = rgb8
    path.write_bytes(head.encode() + rec.tobytes())
    out = [np.uint64(len(vis)).tobytes()]
    for v in vis:
        out.append(np.asarray([len(v), *v], "<u4").tobytes())
    (path.parent / (path.name + ".vis")).write_bytes(b"".join(out))


def test_fused_ply_reader(tmp_path):
    xyz = np.array([[0, 0, 1], [1, 2, 3], [-1, 0.5, 2]], np.float32)
    rgb8 = np.array([[0, 128, 255], [10, 20, 30], [255, 255, 255]], np.uint8)
    _write_colmap_fused(tmp_path / "fused.ply", xyz, rgb8, [[0, 1], [0, 1, 2], [2, 0]])
    pc = read_fused_ply(tmp_path / "fused.ply", num_views=3)
    np.testing.assert_array_equal(pc.xyz, xyz)
    np.testing.assert_allclose(pc.rgb, rgb8 / 255.0, atol=1e-7)
    assert pc.rgb.min() >= 0 and pc.rgb.max() <= 1
    np.testing.assert_allclose(pc.conf, [2 / 3, 1.0, 2 / 3], rtol=1e-6)
    assert read_fused_ply(tmp_path / "fused.ply").conf is None  # no view count: no confidence
    (tmp_path / "bad.ply").write_bytes(b"not a ply")
    with pytest.raises(FvgenError, match="cannot read COLMAP's fused cloud"):
        read_fused_ply(tmp_path / "bad.ply")


def test_ply_vertex_reader_agrees_with_plyfile(tmp_path):
    pytest.importorskip("plyfile")  # GPU hosts run this file without it
    from fvgen.priors.colmap_mvs import _read_binary_ply_vertices
    from fvgen.core.pointcloud import PointCloud

    rng = np.random.default_rng(2)
    pc = PointCloud(rng.random((50, 3)), rng.random((50, 3)), rng.random(50))
    pc.save_ply(tmp_path / "p.ply")  # plyfile, binary little endian
    v = _read_binary_ply_vertices(tmp_path / "p.ply")
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), pc.xyz)
    np.testing.assert_array_equal(v["confidence"], pc.conf)
    np.testing.assert_array_equal(v["green"], np.round(pc.rgb[:, 1] * 255).astype(np.uint8))
    (tmp_path / "a.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                     "end_header\n1\n")
    with pytest.raises(ValueError, match="binary_little_endian"):
        _read_binary_ply_vertices(tmp_path / "a.ply")


def test_colmap_fusion_on_our_workspace(tmp_path):
    """COLMAP's stereo fusion (CPU) on the workspace we write, with depth/normal maps of a plane at
    z = 5 in place of PatchMatch's: every pixel is fused across views (the overlap points are what
    makes it walk between views), and the points lie on the plane with its colours."""
    W, H = 64, 48
    cams = _shifted_cameras(W, H)

    def texture(x):  # colour of the plane at world x: a ramp, seen consistently by every view
        return np.clip((x + 3.0) / 6.0, 0, 1)

    u = np.arange(W)
    imgs = np.stack([np.broadcast_to(texture(c.center[0] + (u - (W - 1) / 2) * 5.0 / 60)[None, :, None],
                                     (H, W, 3)) for c in cams]).astype(np.float32)
    ws = tmp_path / "dense"
    names = write_workspace(ws, imgs, cams, (3.0, 8.0))
    normals = np.zeros((H, W, 3), np.float32)
    normals[..., 2] = -1.0  # facing the cameras
    for n in names:
        write_colmap_array(ws / "stereo" / "depth_maps" / f"{n}.geometric.bin", np.full((H, W), 5.0))
        write_colmap_array(ws / "stereo" / "normal_maps" / f"{n}.geometric.bin", normals)
    conf = ColmapMvsConf()
    job = {"workspace": str(ws), "phases": ["fusion"], "fusion": conf.fusion_options(),
           "output": str(tmp_path / "fused.ply"), "input_type": "geometric"}
    timings = run_colmap_child(job, tmp_path / "colmap.log", 120)
    assert timings["fusion"] >= 0
    pc = read_fused_ply(tmp_path / "fused.ply", 3)
    assert len(pc) > W * H * 0.9  # about one point per reference pixel
    np.testing.assert_allclose(pc.xyz[:, 2], 5.0, atol=1e-4)
    assert pc.conf.max() == 1.0 and pc.conf.min() >= 2 / 3 - 1e-6  # fused from 2 or 3 views
    # colour = the plane's texture where the point lies (the views agree there)
    np.testing.assert_allclose(pc.rgb[:, 0], texture(pc.xyz[:, 0]), atol=0.01)


# ----------------------------------------------------------------------------- child process


def test_patch_match_failure_becomes_one_line(tmp_path):
    """The CPU pycolmap refuses PatchMatch: the child reports it, we raise one line."""
    if getattr(pycolmap, "has_cuda", False):
        pytest.skip("this pycolmap is a CUDA build")
    cams = _shifted_cameras()
    write_workspace(tmp_path / "dense", np.zeros((3, 48, 64, 3), np.float32), cams, (3.0, 8.0))
    job = {"workspace": str(tmp_path / "dense"), "phases": ["patch_match"],
           "patch_match": ColmapMvsConf().patch_match_options(3.0, 8.0)}
    with pytest.raises(FvgenError) as e:
        run_colmap_child(job, tmp_path / "colmap.log", 120)
    msg = str(e.value)
    assert msg.startswith("COLMAP PatchMatch stereo failed (exit 3):") and "CUDA" in msg
    assert "\n" not in msg and str(tmp_path / "colmap.log") in msg


def test_child_abort_becomes_one_line(tmp_path, monkeypatch):
    """A child that dies of SIGABRT (COLMAP's CHECK in a controller thread without a GPU) gives
    one line naming the signal and COLMAP's check."""
    fake = tmp_path / "fake_python"  # what pycolmap-cuda12 4.2.1 printed on a machine without GPU
    fake.write_text("#!/bin/sh\n"
                    "echo 'I20261207 00:00:00.000 1 patch_match.cc:210] Reading workspace...'\n"
                    "echo \"terminate called after throwing an instance of 'std::invalid_argument'\" >&2\n"
                    "echo '  what():  [patch_match.cc:379] Check failed: num_cuda_devices > 0 (0 vs. 0) ' >&2\n"
                    "echo '*** SIGABRT received at time=1765065600 on cpu 0 ***' >&2\n"
                    "echo '    @     0x7f9a9f7a55ec colmap::mvs::PatchMatchController::ReadGpuIndices()' >&2\n"
                    "kill -ABRT $$\n")
    fake.chmod(0o755)
    monkeypatch.setattr(colmap_mvs.sys, "executable", str(fake))
    job = {"workspace": str(tmp_path), "phases": ["patch_match", "fusion"], "patch_match": {}}
    with pytest.raises(FvgenError) as e:
        run_colmap_child(job, tmp_path / "colmap.log", 60)
    msg = str(e.value)
    assert msg.startswith("COLMAP PatchMatch stereo + stereo fusion was stopped by SIGABRT: "
                          "[patch_match.cc:379] Check failed: num_cuda_devices > 0 (0 vs. 0) (log: ")
    assert "\n" not in msg


def test_child_timeout_becomes_one_line(tmp_path, monkeypatch):
    fake = tmp_path / "fake_python"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(colmap_mvs.sys, "executable", str(fake))
    with pytest.raises(FvgenError, match=r"did not finish in 0.5 s"):
        run_colmap_child({"phases": ["fusion"]}, tmp_path / "colmap.log", 0.5)


# ----------------------------------------------------------------------------- whole backend


def test_colmap_dense_end_to_end_with_plane_depth_maps(tmp_path, monkeypatch, one_thread):
    """colmap_dense around the child: resize, depth range from the coarse sweep, workspace,
    COLMAP's real fusion, reading back and cleaning. PatchMatch (CUDA) is the one part replaced:
    the child's first phase writes the true depth/normal maps of the scene (a textured plane at
    z = 5) instead, then the real fusion runs in the child."""
    W, H, f = 128, 96, 110.0
    xs = (-0.4, 0.0, 0.4)
    cams = [Camera([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]],
                   np.array([[1, 0, 0, x], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), W, H) for x in xs]

    def texture(X, Y):  # smooth: at most ~0.15 rad per pixel, so nearest-pixel colours agree
        return 0.5 + 0.2 * np.sin(3 * X + 1) * np.cos(2 * Y) + 0.15 * np.sin(2 * X + 3 * Y)

    u, v = np.meshgrid(np.arange(W), np.arange(H))
    imgs = []
    for x in xs:
        X, Y = x + (u - (W - 1) / 2) * 5 / f, (v - (H - 1) / 2) * 5 / f
        imgs.append(np.stack([texture(X, Y), texture(X + 0.3, Y), texture(X, Y + 0.3)], -1))
    imgs = np.clip(np.stack(imgs), 0, 1).astype(np.float32)
    # the backend sees 2x larger images (resized to max_image_size) and 2x scaled cameras
    big = np.repeat(np.repeat(imgs, 2, axis=1), 2, axis=2)
    big_cams = [c.scaled(2 * W, 2 * H) for c in cams]
    monkeypatch.setattr(colmap_mvs, "colmap_available", lambda: (True, "test"))
    real_child = colmap_mvs.run_colmap_child
    seen = {}

    def child(job, log_path, timeout_s):
        assert job["phases"] == ["patch_match", "fusion"]
        seen["patch_match"] = job["patch_match"]
        ws = colmap_mvs.Path(job["workspace"])
        for line in (ws / "sparse" / "images.txt").read_text().splitlines()[3::2]:
            name = line.split()[-1]
            write_colmap_array(ws / "stereo" / "depth_maps" / f"{name}.geometric.bin", np.full((H, W), 5.0))
            nm = np.zeros((H, W, 3))
            nm[..., 2] = -1
            write_colmap_array(ws / "stereo" / "normal_maps" / f"{name}.geometric.bin", nm)
        return real_child({**job, "phases": ["fusion"]}, log_path, timeout_s)

    monkeypatch.setattr(colmap_mvs, "run_colmap_child", child)
    conf = ColmapMvsConf(max_image_size=W)
    cloud, info = colmap_dense(big, big_cams, None, conf, tmp_path, return_depths=True)
    assert info["stereo_size"] == [W, H] and info["range_source"] == "coarse sweep"
    pm = seen["patch_match"]
    assert pm["depth_min"] < 5.0 < pm["depth_max"] and pm["depth_max"] < 40
    assert pm["filter_min_num_consistent"] == 1 and pm["geom_consistency"] and pm["max_image_size"] == -1
    assert info["valid_fraction"] == [1.0, 1.0, 1.0] and info["depths"][0].shape == (H, W)
    assert info["points_fused"] > 0.9 * W * H and 0 < info["points"] <= info["points_fused"]
    np.testing.assert_allclose(cloud.xyz[:, 2], 5.0, atol=1e-3)
    assert cloud.conf.min() > 0 and cloud.conf.max() <= 1 and 0 <= cloud.rgb.min() and cloud.rgb.max() <= 1
    # colours: the plane's texture at the points (voxel averaging blurs a little)
    np.testing.assert_allclose(cloud.rgb[:, 0], texture(cloud.xyz[:, 0], cloud.xyz[:, 1]), atol=0.06)
    assert (tmp_path / "fused.ply").exists() and (tmp_path / "colmap.log").exists()
    # principal point convention: COLMAP's fusion back-projects integer pixel indices and fuses the
    # median of the pixels' points, so (an odd number of pixels) a fused point sits on a pixel of one
    # of the views: x = x_c + (col - cx) * 5 / f for an integer col. Written as cx + 0.5, every
    # point would be half a pixel off that grid.
    raw = read_fused_ply(tmp_path / "fused.ply")
    px = raw.xyz[:, 0] * f / 5 + (W - 1) / 2
    off = np.min([np.abs(px - x * f / 5 - np.round(px - x * f / 5)) for x in xs], axis=0)
    py = raw.xyz[:, 1] * f / 5 + (H - 1) / 2
    off_y = np.abs(py - np.round(py))
    on_grid = (off < 1e-3) & (off_y < 1e-3)
    assert on_grid.mean() > 0.7, (np.round(np.quantile(off, [0.1, 0.5, 0.9]), 3), on_grid.mean())


def _noise_plane_views(W=160, H=120, f=140.0, xs=(-0.4, 0.0, 0.4), z=5.0):
    """Views of a plane at depth z covered in world-fixed noise (bilinear in 0.04-unit cells)."""
    from scipy.ndimage import map_coordinates

    noise = np.random.default_rng(3).random((3, 400, 400))
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    cams, imgs = [], []
    for x in xs:
        cams.append(Camera([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]],
                           np.array([[1, 0, 0, x], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), W, H))
        X, Y = x + (u - (W - 1) / 2) * z / f, (v - (H - 1) / 2) * z / f
        coords = [(Y + 8) / 0.04, (X + 8) / 0.04]
        imgs.append(np.stack([map_coordinates(noise[k], coords, order=1) for k in range(3)], -1))
    return np.stack(imgs).astype(np.float32), cams


@pytest.mark.skipif(not colmap_available()[0], reason="needs pycolmap-cuda12 and a CUDA GPU")
def test_patch_match_on_gpu_recovers_a_plane(tmp_path):
    """Real PatchMatch + fusion (GPU hosts only): three views of a textured plane at depth 5."""
    imgs, cams = _noise_plane_views()
    cloud, info = colmap_dense(imgs, cams, None, ColmapMvsConf(), tmp_path, depth_range=(3.0, 8.0))
    assert min(info["valid_fraction"]) > 0.5, info["valid_fraction"]
    assert info["points"] > 0.3 * 160 * 120
    assert np.median(np.abs(cloud.xyz[:, 2] - 5.0)) < 0.02
    assert np.mean(np.abs(cloud.xyz[:, 2] - 5.0) < 0.1) > 0.9
    assert info["seconds_patch_match"] > 0 and info["seconds_fusion"] >= 0
