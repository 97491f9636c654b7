"""The dense-stereo backend choice (MvsConf.backend): selection, its one-line errors, the record
in the priors' figures and the priors cache key."""

import sys
import types
from dataclasses import replace

import numpy as np
import pytest

from fvgen.core.config import from_dict
from fvgen.core.errors import FvgenError
from fvgen.core.images import ImagesConf
from fvgen.core.pointcloud import PointCloud
from fvgen.presets import PipelineConf
from fvgen.priors import colmap_mvs, mvs_backend
from fvgen.priors.backends import PriorsConf
from fvgen.priors.mvs import MvsConf


@pytest.fixture
def host(monkeypatch):
    """Pretend host: ``host(pycolmap=..., gpu=...)`` sets which pycolmap is importable (None: not
    installed; else its has_cuda) and whether torch sees a CUDA GPU; COLMAP's dense stereo is
    replaced by a stub that records its call (the real one needs the CUDA build and a GPU)."""
    import torch

    calls = []

    def set_host(pycolmap: bool | None = True, gpu: bool = True):
        if pycolmap is None:
            monkeypatch.setitem(sys.modules, "pycolmap", None)  # import raises ImportError
        else:
            fake = types.SimpleNamespace(has_cuda=pycolmap, __version__="4.2.1", patch_match_stereo=None,
                                         stereo_fusion=None, PatchMatchOptions=None, StereoFusionOptions=None)
            monkeypatch.setitem(sys.modules, "pycolmap", fake)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: int(gpu))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "pretend GPU")

        def colmap_dense(images, cameras, sparse, conf, device="cpu", **kw):
            calls.append(conf)
            return PointCloud(np.zeros((3, 3)), np.zeros((3, 3))), {"points": 3}

        monkeypatch.setattr(colmap_mvs, "colmap_dense", colmap_dense)
        return calls

    return set_host


def test_sweep_is_always_available(host):
    host(pycolmap=None, gpu=False)
    assert mvs_backend.select_backend("sweep") == "sweep"
    assert mvs_backend.select_backend("auto") == "sweep"


@pytest.mark.parametrize("setup, message", [
    ({"pycolmap": None}, "pycolmap cannot be imported"),
    ({"pycolmap": False}, "built without CUDA"),
    ({"gpu": False}, "no CUDA GPU"),
])
def test_colmap_refused_where_it_cannot_run(host, setup, message):
    host(**setup)
    with pytest.raises(FvgenError, match=message) as err:
        mvs_backend.select_backend("colmap")
    assert "\n" not in str(err.value)
    assert mvs_backend.select_backend("auto") == "sweep"  # auto falls back without a word


def test_colmap_picked_when_it_can_run(host):
    calls = host()
    assert mvs_backend.select_backend("colmap") == "colmap"
    assert mvs_backend.select_backend("auto") == "colmap"
    colmap_conf = colmap_mvs.ColmapMvsConf(num_iterations=3)
    cloud, info = mvs_backend.dense_cloud(np.zeros((2, 8, 8, 3), np.float32), [], None, MvsConf(), colmap_conf)
    assert info["backend"] == "colmap" and len(cloud) == 3 and calls == [colmap_conf]


def test_unknown_backend_is_one_line_error():
    with pytest.raises(FvgenError, match="unknown priors.mvs.backend 'cuda'"):
        mvs_backend.select_backend("cuda")
    conf = from_dict(PipelineConf, {"priors": {"mvs": {"backend": "sweep", "propagation_iters": 2}}})
    assert conf.priors.mvs.backend == "sweep" and conf.priors.mvs.propagation_iters == 2


def test_priors_cache_key_follows_the_backend_that_runs(host, tmp_path):
    from fvgen.stages import priors as stage

    files = []
    for i in range(2):
        f = tmp_path / f"v{i}.png"
        f.write_bytes(bytes([i]) * 64)  # the key hashes the files' bytes only
        files.append(f)
    inputs = stage.PriorsInputs(tuple(files))

    def key(backend: str, **kw) -> str:
        conf = replace(PriorsConf(), mvs=replace(MvsConf(), backend=backend, **kw))
        return stage.key(ImagesConf(), conf, inputs, "cpu")

    host(gpu=False)
    auto_cpu, sweep = key("auto"), key("sweep")
    assert auto_cpu != sweep  # the conf is hashed: asking differently is another key
    assert key("sweep", propagation_iters=2) != sweep
    host(gpu=True)
    assert key("auto") != auto_cpu  # same conf, another backend runs: another key
    assert key("colmap") not in (key("auto"), sweep)
    host(gpu=False)
    with pytest.raises(FvgenError, match="no CUDA GPU"):  # refused before any work
        stage.main(ImagesConf(), replace(PriorsConf(), mvs=replace(MvsConf(), backend="colmap")),
                   inputs, tmp_path / "out")


def _grid(offset: float, n: int = 6) -> np.ndarray:
    """n^3 points one unit apart, starting at ``offset`` on every axis."""
    a = np.arange(n, dtype=np.float64) + offset
    return np.stack(np.meshgrid(a, a, a, indexing="ij"), -1).reshape(-1, 3)


@pytest.fixture
def two_backends(host, monkeypatch):
    """A host where COLMAP can run, with both backends replaced by stubs returning fixed clouds that
    share some points: the sweep a 6^3 grid in red, COLMAP the same grid moved by 3 units in blue
    (3^3 = 27 points in common). Returns the calls each stub got and the two clouds."""
    from fvgen.priors import mvs

    host()
    calls = {"sweep": [], "colmap": []}
    sweep_xyz, colmap_xyz = _grid(0.0), _grid(3.0)
    sweep_cloud = PointCloud(sweep_xyz.astype(np.float32), np.tile([1.0, 0, 0], (len(sweep_xyz), 1)).astype(np.float32),
                             np.full(len(sweep_xyz), 0.5, np.float32))
    colmap_cloud = PointCloud(colmap_xyz.astype(np.float32),
                              np.tile([0, 0, 1.0], (len(colmap_xyz), 1)).astype(np.float32))

    def dense_point_cloud(images, cameras, sparse, conf, device="cpu", **kw):
        calls["sweep"].append(conf)
        return sweep_cloud, {"points": len(sweep_cloud), "seconds": 1.25}

    def colmap_dense(images, cameras, sparse, conf, device="cpu", **kw):
        calls["colmap"].append(conf)
        return colmap_cloud, {"backend": "colmap", "points": len(colmap_cloud), "seconds": 7.5}

    monkeypatch.setattr(mvs, "dense_point_cloud", dense_point_cloud)
    monkeypatch.setattr(colmap_mvs, "colmap_dense", colmap_dense)
    return calls, sweep_cloud, colmap_cloud


def test_sweep_plus_colmap_is_the_union_of_both_clouds(two_backends):
    calls, sweep_cloud, colmap_cloud = two_backends
    assert mvs_backend.select_backend("sweep+colmap") == "sweep+colmap"
    assert mvs_backend.select_backend("auto") == "colmap"  # auto keeps its meaning
    # no outlier removal here: it would drop the grids' corners (union_cloud's test covers it)
    conf = replace(MvsConf(), backend="sweep+colmap", propagation_iters=2, ncc_threshold=0.55, outlier_neighbors=0)
    colmap_conf = colmap_mvs.ColmapMvsConf(num_iterations=3)
    cloud, info = mvs_backend.dense_cloud(np.zeros((2, 8, 8, 3), np.float32), [], None, conf, colmap_conf)
    assert calls == {"sweep": [conf], "colmap": [colmap_conf]}  # the sweep with its propagation settings

    # every point of either cloud, the 27 both hold once, and nothing else
    expected = {tuple(p) for p in np.round(sweep_cloud.xyz, 4)} | {tuple(p) for p in np.round(colmap_cloud.xyz, 4)}
    got = [tuple(p) for p in np.round(cloud.xyz, 4)]
    assert len(got) == len(set(got)) == len(expected) == 2 * 216 - 27
    assert set(got) == expected
    # a point only one backend found keeps its colour and confidence (COLMAP gave none: 1); a merged
    # one averages them
    rgb = {tuple(p): c for p, c in zip(got, cloud.rgb)}
    conf_of = {tuple(p): c for p, c in zip(got, cloud.conf)}
    assert np.allclose(rgb[(0.0, 0.0, 0.0)], [1, 0, 0]) and np.isclose(conf_of[(0.0, 0.0, 0.0)], 0.5)
    assert np.allclose(rgb[(8.0, 8.0, 8.0)], [0, 0, 1]) and np.isclose(conf_of[(8.0, 8.0, 8.0)], 1.0)
    assert np.allclose(rgb[(4.0, 4.0, 4.0)], [0.5, 0, 0.5]) and np.isclose(conf_of[(4.0, 4.0, 4.0)], 0.75)

    assert info["backend"] == "sweep+colmap"
    assert (info["points_sweep"], info["points_colmap"], info["points"]) == (216, 216, len(cloud))
    assert info["points_fused"] == 2 * 216  # before the merge
    assert (info["seconds_sweep"], info["seconds_colmap"]) == (1.25, 7.5)
    assert info["seconds"] >= 1.25 + 7.5 and info["seconds_union"] >= 0
    assert info["parts"]["sweep"]["points"] == 216 and info["parts"]["colmap"]["backend"] == "colmap"


def test_union_cloud_is_what_the_benchmark_scores(two_backends):
    """benchmarks/colmap_mvs.py's --union rows call union_cloud on the clouds it measured: the same
    cloud as the backend's for the same clouds and conf."""
    _, sweep_cloud, colmap_cloud = two_backends
    conf = replace(MvsConf(), backend="sweep+colmap")
    cloud, _ = mvs_backend.dense_cloud(np.zeros((2, 8, 8, 3), np.float32), [], None, conf)
    union, counts = mvs_backend.union_cloud([sweep_cloud, colmap_cloud], conf)
    assert np.array_equal(union.xyz, cloud.xyz) and np.array_equal(union.rgb, cloud.rgb)
    assert counts["points"] == len(cloud) and counts["points_fused"] == 2 * 216
    # the union is cleaned as one cloud: a stray point far from both is an outlier there
    stray = PointCloud(np.vstack([colmap_cloud.xyz, [[60.0, 60.0, 60.0]]]).astype(np.float32),
                       np.vstack([colmap_cloud.rgb, [[0, 1.0, 0]]]).astype(np.float32))
    union, counts = mvs_backend.union_cloud([sweep_cloud, stray], conf)
    assert counts["points_after_outliers"] < counts["points_fused"] == 2 * 216 + 1
    assert np.abs(union.xyz).max() < 10
    with pytest.raises(FvgenError, match="no points"):
        mvs_backend.union_cloud([PointCloud(np.zeros((0, 3)), np.zeros((0, 3)))], conf)


@pytest.mark.parametrize("setup, message", [
    ({"pycolmap": None}, "pycolmap cannot be imported"),
    ({"pycolmap": False}, "built without CUDA"),
    ({"gpu": False}, "no CUDA GPU"),
])
def test_sweep_plus_colmap_refused_where_colmap_cannot_run(host, monkeypatch, setup, message):
    from fvgen.priors import mvs

    host(**setup)
    swept = []
    monkeypatch.setattr(mvs, "dense_point_cloud", lambda *a, **k: swept.append(1))
    with pytest.raises(FvgenError, match=message) as err:
        mvs_backend.dense_cloud(np.zeros((2, 8, 8, 3), np.float32), [], None, replace(MvsConf(), backend="sweep+colmap"))
    assert str(err.value).startswith('priors.mvs.backend = "sweep+colmap" cannot run: ')
    assert "\n" not in str(err.value)
    assert swept == []  # refused before any work, no fallback to the sweep alone


def test_priors_cache_key_tells_sweep_plus_colmap_apart(host, tmp_path):
    from fvgen.stages import priors as stage

    files = []
    for i in range(2):
        files.append(tmp_path / f"v{i}.png")
        files[-1].write_bytes(bytes([i]) * 64)  # the key hashes the files' bytes only
    inputs = stage.PriorsInputs(tuple(files))

    def key(backend: str) -> str:
        return stage.key(ImagesConf(), replace(PriorsConf(), mvs=replace(MvsConf(), backend=backend)), inputs, "cpu")

    host(gpu=True)
    keys = {b: key(b) for b in mvs_backend.BACKENDS}
    assert len(set(keys.values())) == len(keys)
    assert key("sweep+colmap") == keys["sweep+colmap"]  # and stable
    host(gpu=False)
    with pytest.raises(FvgenError, match="no CUDA GPU"):  # refused before any work
        stage.main(ImagesConf(), replace(PriorsConf(), mvs=replace(MvsConf(), backend="sweep+colmap")),
                   inputs, tmp_path / "out")
