"""Test-time adaptation as a setting of the generate stage (``[generate.adapt]``): it parses from a
preset, a model generator adapts before generating when ``steps > 0`` (other output, other key,
its report in the figures and run.json), and with ``steps = 0`` -- and for ``fill`` whatever the
setting -- the key and the output are what they were before the setting existed."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from fvgen.core.cache import StageResult, cache_key
from fvgen.core.config import with_overrides
from fvgen.core.errors import FvgenError
from fvgen.presets import load_preset, preset_names
from fvgen.stages import generate as generate_stage
from fvgen.videomodel.adapt import AdaptConf
from fvgen.videomodel.generators import FillGenerator, GenerateConf, GenerationInputs, make_generator

WARP = StageResult("warp/interp", "wkey", Path("warp/interp"), "computed", 0.0, {}, "wrun")
PRIORS = StageResult("priors", "pkey", Path("priors"), "computed", 0.0, {}, "prun")


def key_before_adaptation(conf: GenerateConf, generator, warp: StageResult, priors: StageResult) -> str:
    """The generate stage's key exactly as it was computed before ``GenerateConf.adapt`` existed
    (commit bca9fd9): every setting but generator, views and trajectory, the upstream tokens, the
    generator's key."""
    # (cuda_graph and keep_seen came later; keep_seen = False is the output of before)
    assert not conf.keep_seen
    settings = {k: v for k, v in asdict(conf).items()
                if k not in ("generator", "views", "trajectory", "adapt", "cuda_graph", "keep_seen")}
    return cache_key("generate", generate_stage.VERSION, settings, warp.token, priors.token, generator=generator.key)


def test_the_setting_parses_from_a_preset_toml(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('[generate]\ngenerator = "fill"\n\n[generate.adapt]\nsteps = 7\nlr = 3e-4\nrank = 0\n'
                 'crop = [0.6, 1.0]\nprior = "visibility"\n')
    conf = load_preset(str(p)).generate
    assert conf.adapt == AdaptConf(steps=7, lr=3e-4, rank=0, crop=(0.6, 1.0), prior="visibility")
    assert conf.generator == "fill" and conf.steps == GenerateConf.steps  # the rest keeps its defaults
    p.write_text("[generate.adapt]\nstepz = 7\n")
    with pytest.raises(FvgenError, match=r"unknown setting generate\.adapt\.stepz"):
        load_preset(str(p))
    p.write_text('[generate.adapt]\nprior = "oracle"\n')
    with pytest.raises(FvgenError, match="adapt prior"):
        load_preset(str(p))
    assert all(load_preset(n).generate.adapt.steps == 0 for n in preset_names())  # off in every preset
    # the command line's --adapt-steps is this dotted override
    assert with_overrides(load_preset("cpu"), **{"generate.adapt.steps": 3}).generate.adapt.steps == 3
    from typer.testing import CliRunner

    from fvgen.cli import app

    res = CliRunner().invoke(app, ["generate", "--generator", "fill", "--adapt-steps", "-1", "--out",
                                   str(tmp_path / "o"), "--device", "cpu"])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "adapt: steps" in lines[0], res.output


def test_fill_keeps_its_key_whatever_the_adaptation(monkeypatch):
    import fvgen.core.cache as cache

    monkeypatch.setattr(cache, "__version__", "pinned")  # the key hashes fvgen's version too
    fill = FillGenerator()
    conf = GenerateConf(generator="fill")
    # computed by the code of commit bca9fd9 (before the setting) with the same inputs and version
    assert generate_stage.key(conf, fill, WARP, PRIORS) == "692a0a2558252fa6"
    adapting = replace(conf, adapt=AdaptConf(steps=50, rank=0, lr=3e-4))
    assert generate_stage.key(adapting, make_generator(adapting), WARP, PRIORS) == "692a0a2558252fa6"
    assert fill.prepare(GenerationInputs(np.zeros((2, 4, 4, 3)), [], None)) is None  # nothing to prepare


def test_viewcrafter_refuses_adaptation_with_one_line(tmp_path):
    ckpt = tmp_path / "ViewCrafter_25.ckpt"
    ckpt.write_bytes(b"0")
    for conf in (GenerateConf(generator="viewcrafter", checkpoint=str(ckpt), adapt=AdaptConf(steps=1)),
                 GenerateConf(generator="viewcrafter", adapt=AdaptConf(steps=1))):
        with pytest.raises(FvgenError, match="not supported for ViewCrafter") as e:
            make_generator(conf)
        assert "\n" not in str(e.value)
    assert make_generator(GenerateConf(generator="viewcrafter", checkpoint=str(ckpt))).key.startswith("viewcrafter-")


@pytest.fixture(scope="module")
def adapt_run(tmp_path_factory):
    """A tiny pixel-space model folder and a finished priors folder of a textured room corner seen
    by 3 cameras (the scene of tests/videomodel/test_adapt.py)."""
    import torch

    from fvgen.core.images import save_image
    from fvgen.videomodel.model import TeacherModel
    from tests.videomodel.test_adapt import scene

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("adapt")
    TeacherModel.random("tiny-pixel", seed=0).save_pretrained(root / "model", dtype=None, info={"trained": True})
    imgs, cams, pri = scene()
    out = root / "out"
    pri.save(out / "priors")
    for c, img in zip(cams, imgs):
        save_image(out / "priors" / "images" / c.name, img)
    (out / "priors" / "stage.json").write_text(json.dumps({"key": "test", "figures": {}}))
    yield root
    torch.set_num_threads(n)


def test_generate_stage_adapts_a_model_generator(adapt_run):
    from fvgen.core.images import read_image
    from fvgen.pipeline import generate

    out = adapt_run / "out"

    def conf(adapt: AdaptConf):
        return with_overrides(load_preset("cpu"), **{"generate.generator": str(adapt_run / "model"),
                                                     "generate.trajectory": "interp", "generate.views": 4,
                                                     "generate.steps": 1, "generate.cfg": 1.0,
                                                     "generate.keep_seen": False, "generate.adapt": adapt})

    def frames(res):
        return np.stack([read_image(f) for f in sorted((res.path / "rgb").glob("*.png"))])

    # steps = 0: the key is the one from before the setting, and so is the output (no prepare, the model as loaded)
    plain_conf = conf(AdaptConf())
    plain = generate(out, plain_conf, device="cpu")
    plain_frames = frames(plain)  # read now: the folder generate/interp is replaced by the next run
    gen0 = make_generator(plain_conf.generate)
    meta = json.loads((out / "warp" / "interp" / "stage.json").read_text())
    warp = StageResult("warp/interp", meta["key"], out / "warp" / "interp", "cached", 0.0, {}, meta["run_id"])
    priors = StageResult("priors", "test", out / "priors", "cached", 0.0, {}, "")
    assert plain.key == key_before_adaptation(plain_conf.generate, gen0, warp, priors)
    assert "adapt" not in plain.figures
    from fvgen.render.warp import read_view_folder
    from fvgen.stages.priors import load as load_priors
    from fvgen.videomodel.generators import nearest_view

    cams, warps, masks = read_view_folder(warp.path)
    pri, images = load_priors(out / "priors")
    unprepared = gen0(warps, masks, cams, lambda i: images[nearest_view(cams[i], pri.cameras)])
    assert np.abs(plain_frames - np.stack(unprepared)).max() <= 1 / 255 + 1e-6  # PNG rounding only

    # steps > 0: adapted first, another key and other views, the report in the figures and run.json
    adapt = AdaptConf(steps=3, lr=3e-3, batch=2, clips_per_view=2, prior="visibility")
    adapted = generate(out, conf(adapt), device="cpu")
    assert adapted.status == "computed" and adapted.key != plain.key
    rep = adapted.figures["adapt"]
    assert rep["steps"] == 3 and rep["pairs"] == 3 and rep["seconds"] > 0 and rep["seconds_steps"] > 0
    assert rep["loss_after"] != rep["loss_before"]
    assert np.abs(frames(adapted) - plain_frames).max() > 2 / 255  # the adapted model made other views
    run = json.loads((out / "run.json").read_text())
    stage = [s for s in run["stages"] if s["stage"].startswith("generate")][0]
    assert stage["figures"]["adapt"]["loss_after"] == rep["loss_after"]
    assert generate(out, conf(adapt), device="cpu").status == "cached"
    assert generate(out, conf(replace(adapt, lr=1e-3)), device="cpu").key != adapted.key  # every setting keys it
    # an adapting generator called without the input views refuses instead of silently not adapting
    with pytest.raises(FvgenError, match="prepare"):
        make_generator(conf(adapt).generate)(warps, masks, cams, lambda i: images[0])


def test_keep_seen_keeps_the_warp_where_the_cloud_saw_and_keys_the_output(adapt_run):
    """``generate.keep_seen`` (the default): every seen pixel of a model's frames is the warp's, the
    holes are the model's; the setting enters the key of generators that redraw seen pixels only."""
    from fvgen.core.images import read_image
    from fvgen.pipeline import generate
    from fvgen.render.warp import read_view_folder

    out = adapt_run / "out"
    base = {"generate.generator": str(adapt_run / "model"), "generate.trajectory": "interp", "generate.views": 4,
            "generate.steps": 1, "generate.cfg": 1.0}
    frames = {}
    for keep in (False, True):
        res = generate(out, with_overrides(load_preset("cpu"), **base, **{"generate.keep_seen": keep}), device="cpu")
        frames[keep] = (res.key, np.stack([read_image(f) for f in sorted((res.path / "rgb").glob("*.png"))]))
    _, warp, masks = read_view_folder(out / "warp" / "interp")
    seen = np.stack(masks) > 0.5
    assert 0.05 < seen.mean() < 0.95
    warp8 = np.round(np.stack(warp) * 255) / 255
    assert np.abs(frames[True][1][seen] - warp8[seen]).max() <= 1 / 255 + 1e-6
    assert np.abs(frames[False][1][seen] - warp8[seen]).max() > 0.02  # the model redraws them
    assert np.array_equal(frames[True][1][~seen], frames[False][1][~seen])
    assert frames[True][0] != frames[False][0]
    fill = FillGenerator()
    assert generate_stage.key(GenerateConf(generator="fill", keep_seen=True), fill, WARP, PRIORS) == \
        generate_stage.key(GenerateConf(generator="fill", keep_seen=False), fill, WARP, PRIORS)
