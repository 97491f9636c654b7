"""The procedural demo scene: loadable images and cameras, deterministic for a seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fvgen.core.cameras import load_poses, read_cameras_opencv_json
from fvgen.core.procedural import demo_cameras, make_demo_scene
from fvgen.core.images import list_image_files, load_images

W, H = 96, 72


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return make_demo_scene(tmp_path_factory.mktemp("demo"), n_views=3, width=W, height=H, seed=0)


def test_writes_loadable_images_and_cameras(scene):
    files = list_image_files(scene)
    assert [f.name for f in files] == ["view_00.jpg", "view_01.jpg", "view_02.jpg"]
    li = load_images(files)
    assert li.images.shape == (3, H, W, 3)
    assert 0.1 < li.images.mean() < 0.9 and li.images.std() > 0.05  # not blank
    cams = read_cameras_opencv_json(scene / "cameras_opencv.json")
    assert [c.name for c in cams] == li.names
    assert all((c.width, c.height) == (W, H) for c in cams)
    np.testing.assert_allclose(cams[0].K[:2, 2], [(W - 1) / 2, (H - 1) / 2])
    for c in cams:
        R = c.c2w[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) == pytest.approx(1.0)
        assert R[1, 1] < -0.8  # camera y (image down) is the world's -y (y up): upright views
    # the same cameras through the generic dispatcher, at another size
    lp = load_poses(scene, li.names, (W // 2, H // 2))
    np.testing.assert_allclose(lp[1].c2w, cams[1].c2w)
    assert lp[1].fx == pytest.approx(cams[1].fx / 2)
    data = json.loads((scene / "cameras_opencv.json").read_text())
    assert set(data["frames"][0]) >= {"file", "w", "h", "K", "dist", "c2w"}


def test_cameras_sweep_an_arc():
    cams = demo_cameras(8, W, H)
    z = [c.c2w[:3, 2] for c in cams]
    ang = np.degrees(np.arccos(np.clip(np.dot(z[0], z[-1]), -1, 1)))
    assert 25 < ang < 45
    centres = np.stack([c.center for c in cams])
    assert np.all(np.diff(centres[:, 0]) > 0)  # left to right


def test_deterministic_for_seed(scene, tmp_path):
    again = make_demo_scene(tmp_path / "again", n_views=3, width=W, height=H, seed=0)
    for name in ("view_00.jpg", "view_02.jpg", "cameras_opencv.json"):
        assert (again / name).read_bytes() == (scene / name).read_bytes()
    other = make_demo_scene(tmp_path / "other", n_views=3, width=W, height=H, seed=1)
    assert (other / "view_00.jpg").read_bytes() != (scene / "view_00.jpg").read_bytes()


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from fvgen.cli import app

    res = CliRunner().invoke(app, ["demo", str(tmp_path / "cli"), "--views", "2", "--width", "48", "--height", "36"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == [
        "cameras_opencv.json", "view_00.jpg", "view_01.jpg"]
