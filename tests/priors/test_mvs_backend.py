"""The dense-stereo backend choice (MvsConf.backend): selection, its one-line errors, the record
in the priors' figures and the priors cache key."""

import sys
import types
from dataclasses import replace

import numpy as np
import pytest

from fvgen import mvs_backend
from fvgen.config import PipelineConf, PriorsConf, from_dict
from fvgen.errors import FvgenError
from fvgen.mvs import MvsConf
from fvgen.prior import PointCloud


@pytest.fixture
def host(monkeypatch):
    """Pretend host: ``host(module=..., pycolmap=..., gpu=...)`` sets whether a COLMAP backend
    module exists, which pycolmap is importable (None: not installed; else its has_cuda) and
    whether torch sees a CUDA GPU."""
    import torch

    def set_host(module: bool = True, pycolmap: bool | None = True, gpu: bool = True):
        fake = None
        if module:
            def colmap_dense(images, cameras, sparse, conf, device="cpu", **kw):
                return PointCloud(np.zeros((3, 3)), np.zeros((3, 3))), {"points": 3}

            fake = types.SimpleNamespace(colmap_dense=colmap_dense, colmap_available=lambda: True)
        monkeypatch.setattr(mvs_backend, "_colmap_module", lambda: fake)
        if pycolmap is None:
            monkeypatch.setitem(sys.modules, "pycolmap", None)  # import raises ImportError
        else:
            monkeypatch.setitem(sys.modules, "pycolmap", types.SimpleNamespace(has_cuda=pycolmap))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)

    return set_host


def test_sweep_is_always_available(host):
    host(module=False, pycolmap=None, gpu=False)
    assert mvs_backend.select_backend("sweep") == "sweep"
    assert mvs_backend.select_backend("auto") == "sweep"


@pytest.mark.parametrize("setup, message", [
    (dict(module=False), "no COLMAP stereo backend"),
    (dict(pycolmap=None), "pycolmap is not installed"),
    (dict(pycolmap=False), "not built with CUDA"),
    (dict(gpu=False), "no CUDA GPU"),
])
def test_colmap_refused_where_it_cannot_run(host, setup, message):
    host(**setup)
    with pytest.raises(FvgenError, match=message) as err:
        mvs_backend.select_backend("colmap")
    assert "\n" not in str(err.value)
    assert mvs_backend.select_backend("auto") == "sweep"  # auto falls back without a word


def test_colmap_picked_when_it_can_run(host):
    host()
    assert mvs_backend.select_backend("colmap") == "colmap"
    assert mvs_backend.select_backend("auto") == "colmap"
    cloud, info = mvs_backend.dense_cloud(np.zeros((2, 8, 8, 3), np.float32), [], None, MvsConf())
    assert info["backend"] == "colmap" and len(cloud) == 3


def test_unknown_backend_is_one_line_error():
    with pytest.raises(FvgenError, match="unknown priors.mvs.backend 'cuda'"):
        mvs_backend.select_backend("cuda")
    conf = from_dict(PipelineConf, {"priors": {"mvs": {"backend": "sweep", "propagation_iters": 2}}})
    assert conf.priors.mvs.backend == "sweep" and conf.priors.mvs.propagation_iters == 2


def test_priors_cache_key_follows_the_backend_that_runs(host, tmp_path):
    from fvgen.config import ImagesConf
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
