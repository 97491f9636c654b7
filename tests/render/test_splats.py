import numpy as np
import pytest
import torch

from fvgen.core.errors import FvgenError
from fvgen.render.splats import init_splats, knn_mean_distance, load_ply, save_ply, sh0_to_rgb


def _random_splats(n=50, degree=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    return {"means": torch.randn(n, 3, generator=g), "scales": torch.randn(n, 3, generator=g) - 3,
            "quats": torch.randn(n, 4, generator=g), "opacities": torch.randn(n, generator=g),
            "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.randn(n, k, 3, generator=g)}


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_round_trip_is_exact(tmp_path, degree):
    s = _random_splats(degree=degree)
    save_ply(s, tmp_path / "scene.ply")
    back = load_ply(tmp_path / "scene.ply")
    for k in s:
        assert back[k].shape == s[k].shape
        assert torch.equal(back[k], s[k].float()), k


def test_ply_has_inria_layout(tmp_path):
    from plyfile import PlyData

    s = _random_splats(n=3, degree=1)
    save_ply(s, tmp_path / "scene.ply")
    names = PlyData.read(str(tmp_path / "scene.ply"))["vertex"].data.dtype.names
    assert names[:9] == ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")
    assert names[9:18] == tuple(f"f_rest_{i}" for i in range(9))
    assert names[18:] == ("opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
    v = PlyData.read(str(tmp_path / "scene.ply"))["vertex"].data
    # f_rest is channel-major: the first 3 are red's coefficients 1..3
    assert np.allclose(v["f_rest_1"], s["shN"][:, 1, 0].numpy())
    assert np.allclose(v["f_rest_3"], s["shN"][:, 0, 1].numpy())


def test_ply_refuses_nan_and_reads_errors(tmp_path):
    s = _random_splats(n=4)
    s["means"][0, 0] = float("nan")
    with pytest.raises(FvgenError, match="NaN"):
        save_ply(s, tmp_path / "bad.ply")
    with pytest.raises(FvgenError, match="not found"):
        load_ply(tmp_path / "missing.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(FvgenError):
        load_ply(tmp_path / "junk.ply")
    from fvgen.core.pointcloud import PointCloud

    PointCloud(np.zeros((3, 3)), np.zeros((3, 3))).save_ply(tmp_path / "cloud.ply")
    with pytest.raises(FvgenError, match="not a Gaussian splat"):
        load_ply(tmp_path / "cloud.ply")


def test_init_from_points():
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    rgb = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], np.float32)
    s = init_splats(xyz, rgb, sh_degree=2, init_opacity=0.1)
    assert torch.allclose(sh0_to_rgb(s["sh0"][:, 0]), torch.from_numpy(rgb), atol=1e-6)
    assert torch.allclose(torch.sigmoid(s["opacities"]), torch.full((4,), 0.1))
    assert s["shN"].shape == (4, 8, 3)
    d = knn_mean_distance(torch.from_numpy(xyz), k=3)
    assert torch.allclose(d[0], torch.tensor(1.0))
    assert torch.allclose(torch.exp(s["scales"][0]), torch.ones(3))
