import json

import numpy as np
import pytest

from fvgen.core.cameras import Camera, look_at, write_cameras_opencv_json
from fvgen.core.errors import FvgenError
from fvgen.core.trajectories import make_trajectory, scene_centre

K = [[100, 0, 63.5], [0, 100, 47.5], [0, 0, 1]]


def _ring(n, degrees, radius=4.0):
    cams = []
    for i, a in enumerate(np.radians(np.linspace(-degrees / 2, degrees / 2, n))):
        eye = np.array([radius * np.sin(a), -1.0, -radius * np.cos(a)])
        cams.append(Camera(K, look_at(eye, np.zeros(3), np.array([0, -1.0, 0])), 128, 96, name=f"v{i}.png"))
    return cams


def test_scene_centre_of_converging_cameras():
    assert np.allclose(scene_centre(_ring(5, 90)), 0, atol=1e-6)


@pytest.mark.parametrize("spec", ["orbit", "spiral", "interp"])
def test_named_trajectories_look_at_the_scene(spec):
    cams = _ring(3, 40)
    traj = make_trajectory(spec, cams, 12, np.zeros((1, 3)))
    assert len(traj) == 12
    for c in traj:
        assert np.allclose(c.c2w[:3, :3].T @ c.c2w[:3, :3], np.eye(3), atol=1e-6)
        assert np.linalg.det(c.c2w[:3, :3]) > 0
        # the scene centre is in front of every camera, and the image is upright like the inputs
        assert (np.zeros(3) - c.center) @ c.c2w[:3, 2] > 0
        assert c.c2w[:3, 1] @ cams[1].c2w[:3, 1] > 0.9
        assert (c.width, c.height) == (128, 96)


def test_interp_passes_through_inputs():
    cams = _ring(3, 40)
    traj = make_trajectory("interp", cams, 5, None)
    assert np.allclose(traj[0].c2w, cams[0].c2w, atol=1e-6)
    assert np.allclose(traj[2].c2w, cams[1].c2w, atol=1e-6)
    assert np.allclose(traj[-1].c2w, cams[2].c2w, atol=1e-6)


def test_orbit_is_full_turn_for_object_captures_and_arc_otherwise():
    full = make_trajectory("orbit", _ring(6, 300), 8, None)
    spread = np.ptp([np.arctan2(c.center[0], -c.center[2]) for c in full])
    assert spread > np.radians(250)
    arc = make_trajectory("orbit", _ring(3, 30), 8, None)
    ang = [np.degrees(np.arctan2(c.center[0], -c.center[2])) for c in arc]
    assert 55 < np.ptp(ang) < 65  # twice the 30-degree input spread


def test_json_path_and_errors(tmp_path):
    cams = _ring(4, 40)
    write_cameras_opencv_json(cams, tmp_path / "path.json")
    traj = make_trajectory(str(tmp_path / "path.json"), cams, 99, None)
    assert len(traj) == 4 and np.allclose(traj[1].c2w, cams[1].c2w)
    with pytest.raises(FvgenError, match="unknown trajectory"):
        make_trajectory("zigzag", cams, 5, None)
    with pytest.raises(FvgenError, match="not found"):
        make_trajectory(str(tmp_path / "missing.json"), cams, 5, None)
    (tmp_path / "bad.json").write_text(json.dumps({"frames": [{"x": 1}]}))
    with pytest.raises(FvgenError):
        make_trajectory(str(tmp_path / "bad.json"), cams, 5, None)
