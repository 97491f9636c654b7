"""End to end on the demo scene (made by fvgen/demo.py): reconstruct, the stage cache, warp,
render, an interrupted run, and eval on a real scene."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fvgen.core.config import from_dict, with_overrides
from fvgen.presets import PipelineConf
from fvgen.pipeline import reconstruct, warp

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo"
DATASETS = ROOT.parent / "shared" / "datasets"

SMALL = {
    "name": "test-small",
    "images": {"max_size": 240},
    "priors": {"sfm": {"matcher": "sift", "num_threads": 1}, "mvs": {"max_image_size": 240, "num_planes": 32, "coarse_planes": 32}},
    "warp": {"frames": 6},
    "fit": {"iterations": 30, "sh_degree": 1, "sh_degree_interval": 10, "max_init_points": 8000,
            "refine_start_iter": 10, "refine_every": 10},
}


def small_conf(**changes) -> PipelineConf:
    return with_overrides(from_dict(PipelineConf, SMALL), **changes)


def write_preset(path: Path) -> Path:
    lines = []

    def emit(prefix, d):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {json.dumps(v)}")
        for k, v in d.items():
            if isinstance(v, dict):
                emit(f"{prefix}.{k}" if prefix else k, v)

    emit("", SMALL)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    reconstruct(DEMO, 3, out, small_conf(), device="cpu")
    return out


def stages(out: Path) -> dict:
    return {s["stage"]: s for s in json.loads((out / "run.json").read_text())["stages"]}


def test_reconstruct_writes_the_outputs(run_dir):
    from fvgen.core.cameras import read_colmap_model, read_transforms_json
    from fvgen.render.splats import load_ply

    st = stages(run_dir)
    assert st["priors"]["status"] == "computed" and st["fit"]["status"] == "computed"
    assert st["priors"]["figures"]["registered_views"] == 3
    assert st["priors"]["figures"]["points"] > 1000
    assert st["fit"]["figures"]["gaussians"] > 0 and np.isfinite(st["fit"]["figures"]["final_loss"])
    splats = load_ply(run_dir / "scene.ply")
    assert splats["means"].shape[1] == 3 and torch.isfinite(splats["means"]).all()
    cams = read_transforms_json(run_dir / "cameras" / "transforms.json")
    assert len(cams) == 3 and [c.name for c in cams] == ["view_00.png", "view_04.png", "view_07.png"]
    for c in cams:  # transforms.json and the COLMAP model sit beside the images they describe
        assert (run_dir / "cameras" / "images" / c.name).is_file()
    assert len(read_colmap_model(run_dir / "cameras" / "colmap")) == 3
    assert sorted(p.name for p in (run_dir / "renders").iterdir()) == ["view_00.png", "view_04.png", "view_07.png"]
    # the splats live in the input cameras' frame: they sit in front of the cameras
    c2w = cams[1].c2w
    z = (splats["means"].numpy() - c2w[:3, 3]) @ c2w[:3, 2]
    assert np.median(z) > 0
    # the fit reproduces its training views better than a blank image would
    assert st["fit"]["figures"]["train_psnr"] > 14


def test_unchanged_rerun_is_cached_and_changes_recompute_downstream_only(run_dir, tmp_path):
    t0 = time.perf_counter()
    reconstruct(DEMO, 3, run_dir, small_conf(), device="cpu")
    assert time.perf_counter() - t0 < 10
    st = stages(run_dir)
    assert st["priors"]["status"] == "cached" and st["fit"]["status"] == "cached"
    key_before = st["fit"]["key"]
    reconstruct(DEMO, 3, run_dir, small_conf(**{"fit.iterations": 12}), device="cpu")
    st = stages(run_dir)
    assert st["priors"]["status"] == "cached" and st["fit"]["status"] == "computed"
    assert st["fit"]["key"] != key_before and st["fit"]["figures"]["iterations"] == 12
    reconstruct(DEMO, 3, run_dir, small_conf(**{"fit.iterations": 12}), device="cpu", force=["fit"])
    st = stages(run_dir)
    assert st["priors"]["status"] == "cached" and st["fit"]["status"] == "computed"
    # a recomputed stage invalidates the stages after it, even under an unchanged key
    reconstruct(DEMO, 3, run_dir, small_conf(**{"fit.iterations": 12}), device="cpu", force=["priors"])
    st = stages(run_dir)
    assert st["priors"]["status"] == "computed" and st["fit"]["status"] == "computed"
    assert not list(run_dir.glob(".*.tmp-*"))


def test_warp_writes_videos_masks_and_cameras(run_dir):
    from fvgen.core.cameras import read_transforms_json
    from fvgen.core.images import read_image

    res = warp(run_dir, small_conf(**{"warp.traj": "orbit", "warp.frames": 6}), device="cpu")
    folder = run_dir / "warp" / "orbit"
    assert res.path == folder and res.status == "computed"
    for f in ("rgb.mp4", "mask.mp4", "transforms.json", "cameras.json"):
        assert (folder / f).stat().st_size > 0, f
    warp_cams = read_transforms_json(folder / "transforms.json")
    assert len(warp_cams) == 6 and all((folder / "rgb" / c.name).is_file() for c in warp_cams)
    masks = np.stack([read_image(p)[..., 0] > 0.5 for p in sorted((folder / "mask").glob("*.png"))])
    assert masks.shape[0] == 6
    assert 0.2 < masks.mean() < 1.0  # the prior covers much of each frame, and leaves holes
    assert warp(run_dir, small_conf(**{"warp.traj": "orbit", "warp.frames": 6}), device="cpu").status == "cached"
    assert stages(run_dir)["warp/orbit"]["status"] == "cached"


def test_render_cli(run_dir, tmp_path):
    out = tmp_path / "orbit.mp4"
    res = subprocess.run([sys.executable, "-m", "fvgen", "render", str(run_dir / "scene.ply"), "--frames", "4",
                          "--out", str(out), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 1000
    import imageio.v3 as iio

    assert iio.imread(out).shape[0] == 4


def test_interrupted_run_resumes_cleanly(tmp_path):
    """Kill a CLI run during the fit, then run it again: the priors are reused, no temporary
    folder survives, and the result equals an uninterrupted run's."""
    preset = write_preset(tmp_path / "small.toml")
    out = tmp_path / "out"
    def cmd(folder, iterations):
        return [sys.executable, "-m", "fvgen", "reconstruct", str(DEMO), "--views", "3", "--preset", str(preset),
                "--out", str(folder), "--device", "cpu", "--iterations", str(iterations)]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(cmd(out, 400), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob(".fit.tmp-*")):
        time.sleep(0.2)
    assert list(out.glob(".fit.tmp-*")), "the fit never started"
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (out / "priors" / "stage.json").exists()
    assert not (out / "fit" / "stage.json").exists()
    assert (out / ".lock").exists()  # the killed run's; its flock died with it
    res = subprocess.run(cmd(out, 30), capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    st = stages(out)
    assert st["priors"]["status"] == "cached" and st["fit"]["status"] == "computed"
    assert not list(out.glob(".*.tmp-*"))
    assert not (out / ".lock").exists()  # taken over, then removed at the end
    # stderr is not a terminal: progress comes as plain lines, and none for the cached priors
    assert not [ln for ln in res.stderr.splitlines() if ln.startswith("priors")] and "\r" not in res.stderr
    fit_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("fit 3DGS")]
    assert fit_lines[0].startswith("fit 3DGS  25/30 (83 %)  elapsed ") and " eta " in fit_lines[0]  # every 25 steps
    assert "loss" in fit_lines[0] and fit_lines[-1].startswith("fit 3DGS done in ")
    fresh = tmp_path / "fresh"
    res = subprocess.run(cmd(fresh, 30), capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    from fvgen.render.splats import load_ply

    a, b = load_ply(out / "scene.ply"), load_ply(fresh / "scene.ply")
    assert a["means"].shape == b["means"].shape
    assert torch.allclose(a["means"], b["means"], atol=1e-4)


@pytest.mark.skipif(not (DATASETS / "fern").exists(), reason="../shared/datasets not present")
def test_eval_on_fern_with_gt_poses(tmp_path):
    from fvgen.pipeline import evaluate

    m = evaluate(DATASETS / "fern", [1, 10, 19], [0, 8], "gt", tmp_path / "eval",
                 small_conf(**{"fit.iterations": 40}), device="cpu")
    data = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert data["poses"] == "gt" and len(data["per_view"]) == 2
    assert 8 < data["results"]["psnr"] < 40 and 0 < data["results"]["ssim"] <= 1
    assert data["results"]["lpips"] is None and "unavailable" in data["lpips_reason"]
    assert (tmp_path / "eval" / "compare" / "image000.png").exists()
    assert m["results"] == data["results"]


def test_fit_with_extra_views_weights_and_masks(run_dir):
    """The fit takes extra views (as generated clips will come) with their own weight and
    per-pixel masks; a warp folder has exactly that layout (rgb/, mask/, cameras.json)."""
    from fvgen.pipeline import find_priors
    from fvgen.stages import fit as fit_stage

    res = warp(run_dir, small_conf(**{"warp.traj": "orbit", "warp.frames": 6}), device="cpu")
    pri = find_priors(run_dir)
    conf = small_conf(**{"fit.iterations": 12}).fit
    extra = fit_stage.ExtraViews(res.path, res.token, weight=0.25)
    out = fit_stage.main(conf, pri, run_dir, "cpu", extra=[extra])
    assert out.status == "computed"
    assert out.figures["input_views"] == 3 and out.figures["extra_views"] == 6
    assert np.isfinite(out.figures["final_loss"])
    again = fit_stage.main(conf, pri, run_dir, "cpu", extra=[fit_stage.ExtraViews(res.path, res.token, weight=0.5)])
    assert again.status == "computed" and again.key != out.key  # the weight is part of the key


def test_reconstruct_with_the_fill_generator_caches_every_stage(tmp_path):
    """priors -> warp (coverage) -> generate (fill) -> fit on photos + generated views, every stage
    cached, --force generate redoing generate and fit only; cameras/ and report.html hold the views."""
    from fvgen.core.cameras import read_transforms_json
    from fvgen.core.images import read_image

    conf = small_conf(**{"generate.generator": "fill", "generate.views": 4, "fit.iterations": 12})
    out = tmp_path / "run"
    res = reconstruct(DEMO, 3, out, conf, device="cpu")
    assert [r.stage for r in res["results"]] == ["priors", "warp/coverage", "generate/coverage", "fit"]
    gen = out / "generate" / "coverage"
    conf_map = read_image(gen / "mask" / "frame_0000.png")
    assert 0.0 < conf_map.min() < conf_map.max() <= 1.0  # soft: seen pixels above filled ones
    assert len(list((gen / "rgb").glob("*.png"))) == 4
    fit = res["results"][-1].figures
    assert fit["input_views"] == 3 and fit["extra_views"] == 4
    assert len(read_transforms_json(out / "cameras" / "transforms.json")) == 7
    paths = [f["file_path"] for f in json.loads((out / "cameras" / "transforms.json").read_text())["frames"]]
    assert sum(p.startswith("generated/") for p in paths) == 4
    assert all((out / "cameras" / p).is_file() for p in paths)
    page = (out / "report.html").read_text()
    assert page.count("data:image/jpeg;base64,") >= 3 + 4 * 3 and "Generated views" in page
    run = json.loads((out / "run.json").read_text())
    assert run["generator"] == "fill" and [s["stage"] for s in run["stages"]][-2:] == ["generate/coverage", "fit"]
    again = reconstruct(DEMO, 3, out, conf, device="cpu")
    assert all(r.status == "cached" for r in again["results"])
    forced = reconstruct(DEMO, 3, out, conf, device="cpu", force=["generate"])
    assert [r.status for r in forced["results"]] == ["cached", "cached", "computed", "computed"]


def test_photos_alone_write_no_generated_stages(run_dir):
    assert not (run_dir / "generate").exists() and not (run_dir / "warp" / "coverage").exists()
    stages = [st["stage"] for st in json.loads((run_dir / "run.json").read_text())["stages"]]
    assert "priors" in stages and not any(st.startswith("generate") for st in stages)


def test_generated_views_the_fit_left_out_are_not_exported(tmp_path):
    """A generated view under generate.min_coverage taught the fit nothing: cameras/ must not list it."""
    conf = small_conf(**{"generate.generator": "fill", "generate.views": 4, "fit.iterations": 6,
                         "generate.min_coverage": 1.0})  # no warp covers every pixel: all four left out
    out = tmp_path / "run"
    res = reconstruct(DEMO, 3, out, conf, device="cpu")
    fit = res["results"][-1].figures
    assert fit["extra_views"] == 0 and fit["extra_views_dropped"] == 4 and fit["extra_views_used"] == []
    paths = [f["file_path"] for f in json.loads((out / "cameras" / "transforms.json").read_text())["frames"]]
    assert len(paths) == 3 and not any(p.startswith("generated/") for p in paths)
    assert not list((out / "cameras" / "generated").glob("*.png"))
