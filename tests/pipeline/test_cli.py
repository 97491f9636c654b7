"""The user's command lines: bad input gives one line on stderr and a non-zero exit, never a
traceback; --help works on every verb."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def fvgen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fvgen", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(res, pattern):
    assert res.returncode != 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and pattern in lines[0], lines[0]


def _img(path, size=(64, 48), seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).convert(mode).save(path)


@pytest.mark.parametrize("verb", ["reconstruct", "warp", "render", "eval", "presets", "demo"])
def test_help(verb):
    res = fvgen(verb, "--help")
    assert res.returncode == 0 and "Usage" in res.stdout


def test_no_args_shows_help():
    res = fvgen()
    assert "reconstruct" in res.stdout + res.stderr


def test_missing_folder(tmp_path):
    assert_one_line_error(fvgen("reconstruct", tmp_path / "nope", "--out", tmp_path / "o"), "not found")


def test_empty_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    assert_one_line_error(fvgen("reconstruct", tmp_path / "photos", "--out", tmp_path / "o"), "no image")


def test_one_image(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    _img(d / "a.jpg")
    assert_one_line_error(fvgen("reconstruct", d, "--out", tmp_path / "o"), "at least 2 images")


def test_file_instead_of_folder(tmp_path):
    _img(tmp_path / "a.jpg")
    assert_one_line_error(fvgen("reconstruct", tmp_path / "a.jpg", "--out", tmp_path / "o"), "not a folder")


def test_corrupt_image(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    _img(d / "a.jpg")
    (d / "b.jpg").write_bytes(b"this is not a jpeg")
    res = fvgen("reconstruct", d, "--out", tmp_path / "o")
    assert_one_line_error(res, "b.jpg")
    # nothing half-written is left as a finished stage
    assert not (tmp_path / "o" / "priors" / "stage.json").exists()


def test_mixed_aspect_ratios(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    _img(d / "a.jpg", (64, 48))
    _img(d / "b.jpg", (48, 64))
    assert_one_line_error(fvgen("reconstruct", d, "--out", tmp_path / "o"), "aspect ratios")


def test_views_that_do_not_register(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    _img(d / "a.png", (160, 120), seed=1)
    _img(d / "b.png", (160, 120), seed=2)
    res = fvgen("reconstruct", d, "--out", tmp_path / "o", "--preset", "cpu", "--device", "cpu")
    assert_one_line_error(res, "register")
    assert "both tried" in res.stderr  # auto: SIFT, then XFeat + LighterGlue
    res = fvgen("reconstruct", d, "--out", tmp_path / "o", "--preset", "cpu", "--device", "cpu", "--matcher", "sift")
    assert_one_line_error(res, "try --matcher auto")


def test_bad_options(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    _img(d / "a.jpg")
    _img(d / "b.jpg", seed=1)
    assert_one_line_error(fvgen("reconstruct", d, "--preset", "nope", "--out", tmp_path / "o"), "unknown preset")
    assert_one_line_error(fvgen("reconstruct", d, "--views", "1", "--out", tmp_path / "o"), "--views")
    assert_one_line_error(fvgen("reconstruct", d, "--force", "everything", "--out", tmp_path / "o"), "--force")
    assert_one_line_error(fvgen("reconstruct", d, "--device", "tpu", "--out", tmp_path / "o"), "device")
    assert_one_line_error(fvgen("reconstruct", d, "--priors", "dust3r", "--out", tmp_path / "o"), "checkpoint")
    assert_one_line_error(fvgen("reconstruct", d, "--matcher", "orb", "--out", tmp_path / "o"), "unknown matcher")
    assert_one_line_error(fvgen("reconstruct", d, "--generator", "magic", "--out", tmp_path / "o"), "unknown generator")
    assert_one_line_error(fvgen("reconstruct", d, "--generator", "teacher", "--out", tmp_path / "o"),
                          "no trained teacher")
    assert_one_line_error(fvgen("reconstruct", d, "--generator", "fill", "--generated-views", "0", "--out",
                                tmp_path / "o"), "generate.views")
    assert_one_line_error(fvgen("generate", "--generator", "none", "--out", tmp_path / "o"), "generates nothing")
    bad = tmp_path / "bad.toml"
    bad.write_text("[fit]\ninput_share = 2.0\n")
    assert_one_line_error(fvgen("reconstruct", d, "--preset", bad, "--out", tmp_path / "o"), "fit.input_share")
    assert not (tmp_path / "o" / "priors").exists()  # refused before any work


def test_warp_and_render_without_a_run(tmp_path):
    assert_one_line_error(fvgen("warp", "--out", tmp_path / "empty"), "no finished run")
    assert_one_line_error(fvgen("render", tmp_path / "scene.ply"), "not found")
    (tmp_path / "scene.ply").write_bytes(b"garbage")
    assert_one_line_error(fvgen("render", tmp_path / "scene.ply"), "scene.ply")


def test_eval_bad_indices(tmp_path):
    d = tmp_path / "scene" / "images"
    d.mkdir(parents=True)
    for i in range(3):
        _img(d / f"{i}.png", seed=i)
    assert_one_line_error(fvgen("eval", tmp_path / "scene", "--train", "0,1", "--test", "7", "--out", tmp_path / "o"),
                          "out of range")
    assert_one_line_error(fvgen("eval", tmp_path / "scene", "--train", "0,1", "--test", "1", "--out", tmp_path / "o"),
                          "both")


def test_version():
    from fvgen import __version__

    res = fvgen("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"fvgen {__version__}"


def test_notices_say_what_was_used_then_a_refusal_leaves_no_folder(tmp_path):
    """A .txt beside the photos and a duplicate photo: one note each; with one photo left the run
    is refused (exit 2, one error line) and the output folder it created is gone."""
    d = tmp_path / "photos"
    d.mkdir()
    _img(d / "a.png", (160, 120), seed=1)
    (d / "b.png").write_bytes((d / "a.png").read_bytes())
    (d / "notes.txt").write_text("x")
    res = fvgen("reconstruct", d, "--out", tmp_path / "o", "--views", "5", "--preset", "cpu", "--device", "cpu")
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert lines[0] == "note: skipped 1 file(s) that are not images: notes.txt"
    assert lines[1] == "note: dropped 1 duplicate photo(s), which would only skew the fit: b.png (= a.png)"
    assert lines[2] == "note: --views 5 but there are 1 photos: using all 1"
    assert lines[3].startswith("error: need at least 2 images") and len(lines) == 4
    assert not (tmp_path / "o").exists()
