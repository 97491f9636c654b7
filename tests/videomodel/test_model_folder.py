"""The video model folder: a diffusers ConfigMixin container (``fvgen_model.json`` + one
ModelMixin sub-folder per network), strict about its config, and still reading the folders written
before it (``teacher.json``, format ``fvgen-teacher-1``)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

from fvgen.core.errors import FvgenError  # noqa: E402
from fvgen.videomodel.distill.student import student_sampling  # noqa: E402
from fvgen.videomodel.generators import GenerateConf, make_generator  # noqa: E402
from fvgen.videomodel.model import (CONFIG_NAME, LEGACY_CONFIG, MAX_SHARD, TeacherModel, read_model_config,  # noqa: E402
                                    resolve_model)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_pixel():
    torch.set_num_threads(2)
    return TeacherModel.random("tiny-pixel", seed=0)


@pytest.fixture(scope="module")
def saved(tiny_pixel, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "m"
    tiny_pixel.save_pretrained(folder, dtype=None, info={"trained": True, "unet_steps": 6})
    return folder


def write_old_folder(model: TeacherModel, folder: Path, info: dict) -> Path:
    """A model folder exactly as ``TeacherModel.save`` wrote it up to commit c480408: the networks'
    and the scheduler's diffusers sub-folders (unchanged since) and ``teacher.json`` holding the
    format, the preset, the parameter counts and the provenance, dumped with ``indent=1``."""
    from diffusers import DDPMScheduler

    for name, m in model.modules().items():
        m.save_pretrained(folder / name, safe_serialization=True, max_shard_size=MAX_SHARD)
    DDPMScheduler(**model.scheduler_config).save_pretrained(folder / "scheduler")
    meta = {"format": "fvgen-teacher-1", "preset": dataclasses.asdict(model.preset),
            "params": model.num_params(), **info}
    (folder / "teacher.json").write_text(json.dumps(meta, indent=1))
    return folder


def same_weights(a: TeacherModel, b: TeacherModel) -> bool:
    if a.modules().keys() != b.modules().keys():
        return False
    for name, m in a.modules().items():
        sa, sb = m.state_dict(), b.modules()[name].state_dict()
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
            return False
    return True


def test_folder_is_a_diffusers_container(tiny_pixel, saved):
    config = TeacherModel.load_config(saved)  # diffusers' own reader
    assert config["_class_name"] == "TeacherModel" and "_diffusers_version" in config
    assert config["preset"] == json.loads(json.dumps(dataclasses.asdict(tiny_pixel.preset)))
    assert config["provenance"]["trained"] is True and config["provenance"]["params"] == tiny_pixel.num_params()
    assert not (saved / LEGACY_CONFIG).exists()
    for net in ("unet", "ref"):  # each network its own ModelMixin folder
        assert (saved / net / "config.json").is_file() and list((saved / net).glob("*.safetensors"))
    assert not (saved / "vae").exists()  # pixel space
    loaded = TeacherModel.from_pretrained(saved)
    assert loaded.preset == tiny_pixel.preset and same_weights(loaded, tiny_pixel)
    assert loaded.info["trained"] is True and loaded.info["unet_steps"] == 6
    assert loaded.config["preset"]["name"] == "tiny-pixel" and loaded.scheduler_config == tiny_pixel.scheduler_config
    assert tiny_pixel.info == {"trained": False}  # saving with info= does not change the model's own
    assert read_model_config(saved) == (tiny_pixel.preset, loaded.info)


def test_old_teacher_json_folder_loads(tiny_pixel, tmp_path):
    old = write_old_folder(tiny_pixel, tmp_path / "old", {
        "trained": True, "unet_steps": 6, "student": {"steps": 4, "cfg": 1.0, "timesteps": [999, 749, 499, 249]}})
    assert not (old / CONFIG_NAME).exists()
    loaded = TeacherModel.from_pretrained(old)
    assert loaded.preset == tiny_pixel.preset and same_weights(loaded, tiny_pixel)
    assert loaded.info == {"trained": True, "unet_steps": 6,
                           "student": {"steps": 4, "cfg": 1.0, "timesteps": [999, 749, 499, 249]}}
    assert loaded.scheduler_config == tiny_pixel.scheduler_config
    # everything that reads the folder reads the old one: the resolver, the student's sampling, the generator
    assert resolve_model(old) == old and student_sampling(old) == {"steps": 4, "cfg": 1.0}
    g = make_generator(GenerateConf(generator=str(old)), "cpu")
    assert (g.conf.steps, g.conf.cfg) == (4, 1.0) and g.steps(4) == 4
    # re-saved, it is a new folder with one config
    loaded.save_pretrained(old, dtype=None)
    assert (old / CONFIG_NAME).is_file() and not (old / LEGACY_CONFIG).exists()
    assert TeacherModel.from_pretrained(old).info["student"]["steps"] == 4


def test_old_folders_keep_their_refusals(tiny_pixel, tmp_path):
    untrained = write_old_folder(tiny_pixel, tmp_path / "untrained", {"trained": False})
    with pytest.raises(FvgenError, match="untrained"):
        resolve_model(untrained)
    bad = write_old_folder(tiny_pixel, tmp_path / "bad", {"trained": True})
    meta = json.loads((bad / LEGACY_CONFIG).read_text())
    meta["preset"]["frame"] = 4
    (bad / LEGACY_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(FvgenError, match=r"unknown setting .*teacher.json: preset\.frame "):
        TeacherModel.from_pretrained(bad)
    (bad / LEGACY_CONFIG).write_text(json.dumps({**meta, "format": "fvgen-teacher-0"}))
    with pytest.raises(FvgenError, match="unsupported format 'fvgen-teacher-0'"):
        read_model_config(bad)


def _set(path, *keys):
    def change(config):
        *parents, last = keys
        target = config
        for k in parents:
            target = target[k]
        if path is None:
            del target[last]
        else:
            target[last] = path
    return change


@pytest.mark.parametrize("change, message", [
    (_set(64, "preset", "widht"), r"unknown setting .*fvgen_model.json: preset\.widht \(known: name, width"),
    (_set("64", "preset", "width"), r"preset\.width must be int, got '64'"),
    (_set(None, "preset", "width"), r"missing setting .*fvgen_model.json: preset\.width \(it has no default\)$"),
    (_set("voxel", "preset", "space"), "space must be latent or pixel"),
    (_set([1], "preset"), "preset must be a table"),
    (_set(True, "provnance"), r"unknown key provnance \(known: preset, provenance, format_version\)"),
    (_set("yes", "provenance"), "provenance must be a table"),
    (_set("fvgen-videomodel-9", "format_version"), "unsupported format 'fvgen-videomodel-9'"),
    (_set("UNet2DModel", "_class_name"), "a 'UNet2DModel' config, not a TeacherModel"),
])
def test_config_errors_are_one_line(saved, tmp_path, change, message):
    """diffusers' from_config would drop an unknown key with a warning; the model folder refuses it."""
    folder = tmp_path / "m"
    folder.mkdir()
    config = json.loads((saved / CONFIG_NAME).read_text())
    change(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(FvgenError, match=message) as e:
        TeacherModel.from_pretrained(folder)
    assert "\n" not in str(e.value)


def test_folder_messages_are_one_line(tmp_path):
    for folder, message in ((tmp_path / "missing", "teacher model folder not found"),
                            (tmp_path, "is not a teacher model folder")):
        with pytest.raises(FvgenError, match=message) as e:
            resolve_model(folder)
        assert "\n" not in str(e.value)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(FvgenError, match="not valid JSON"):
        read_model_config(tmp_path)


def test_missing_diffusers_is_one_line(saved):
    """Without diffusers the folder is refused with the install hint, not a NameError."""
    code = ("import sys; sys.modules['diffusers'] = None\n"
            "from fvgen.core.errors import FvgenError\n"
            "from fvgen.videomodel.model import TeacherModel\n"
            "try:\n"
            f"    TeacherModel.from_pretrained({str(saved)!r})\n"
            "except FvgenError as e:\n"
            "    print('refused:', e)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "refused: the teacher needs diffusers: pip install 'diffusers>=0.30'"
