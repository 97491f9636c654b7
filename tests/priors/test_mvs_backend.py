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
