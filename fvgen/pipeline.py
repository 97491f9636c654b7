"""The chains of stages behind the CLI verbs: ``reconstruct`` (priors -> fit -> export), ``warp``,
``generate``, ``eval`` and ``render``. Each verb that writes an output folder holds its lock for the
whole run and records ``run.json``; the stages themselves live in :mod:`fvgen.stages`.

Output folder layout (``OUT``):

- ``priors/``, ``fit/``, ``warp/<traj>/``: the stage folders (see :mod:`fvgen.stages`)
- ``scene.ply``: the fitted splats (INRIA layout, input cameras' frame)
- ``cameras/transforms.json``, ``cameras/cameras.json`` and ``cameras/colmap/`` (COLMAP text
  model with the sparse points): every input camera (as the fit refined it with
  ``fit.pose_refine``)
- ``renders/``: the scene rendered at the input cameras
- ``run.json``: per stage its cache key, ``computed`` or ``cached``, seconds and key figures
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

from .core.cache import StageResult, replace_dir, run_lock, write_run_json
from .core.cameras import (
    write_cameras_opencv_json,
    write_colmap_text,
    write_transforms_json,
)
from .core.devices import resolve_device
from .core.errors import FvgenError
from .core.images import drop_duplicate_photos, list_image_files, select_views
from .core.progress import notice, progress_bar
from .core.trajectories import trajectory_name
from .presets import PipelineConf
from .priors.prior import Priors
from .render.video import RenderConf
from .stages import fit as fit_stage
from .stages import generate as generate_stage
from .stages import priors as priors_stage
from .stages import warp as warp_stage


def check_force(force: Iterable[str], allowed: Sequence[str]) -> set[str]:
    """``--force`` values for a command that runs the stages ``allowed`` (``all`` = every one)."""
    force = set(force)
    if "all" in force:
        return set(allowed)
    unknown = force - set(allowed)
    if unknown:
        raise FvgenError(f"--force takes {', '.join(allowed)} or all here, not {', '.join(sorted(unknown))}")
    return force


def command_line() -> str:
    return " ".join(["fvgen", *sys.argv[1:]])


def run_priors(conf: PipelineConf, images_dir: Path, views: int | None, out: Path, device: str,
               poses: Path | None, force: set[str]) -> StageResult:
    # raises when there are none; says which files were skipped or dropped, and when --views exceeds the photos
    files = select_views(drop_duplicate_photos(list_image_files(images_dir, notify=True)), views)
    inputs = priors_stage.PriorsInputs(tuple(files), Path(poses) if poses else None)
    return priors_stage.main(conf.images, conf.priors, inputs, out, device, force="priors" in force)


def export(out: Path, priors: StageResult, fit: StageResult, generated: StageResult | None = None) -> None:
    """The user-facing files at the top of ``OUT`` (rewritten on each run, atomically):
    ``scene.ply``, ``cameras/`` (transforms.json, cameras.json and a COLMAP text model, beside
    the images they describe in ``cameras/images/``; with generated views, those the fit learned
    from too, their frames in ``cameras/generated/``) and ``renders/``."""
    from .core.cameras import read_cameras_opencv_json

    pri = Priors.load(priors.path)
    tmp = out / ".scene.ply.tmp"
    shutil.copyfile(fit.path / "scene.ply", tmp)
    os.replace(tmp, out / "scene.ply")
    cams_tmp = out / ".cameras.tmp"
    shutil.rmtree(cams_tmp, ignore_errors=True)
    shutil.copytree(priors.path / "images", cams_tmp / "images")  # the pixels the cameras refer to
    # the cameras the splats were fitted to: refined ones with fit.pose_refine
    cams = [replace(c, name=f"{Path(c.name).stem}.png") for c in fit_stage.input_cameras(fit, pri.cameras)]
    prefix = "images/"
    if generated is not None:  # every generated frame with its camera, beside the photos
        gen = read_cameras_opencv_json(generated.path / "cameras.json")
        used = fit_stage.generated_views_used(fit)  # views of zero confidence taught the fit nothing
        if used is not None:
            gen = [c for c in gen if c.name in used]
        (cams_tmp / "generated").mkdir()
        for c in gen:
            shutil.copyfile(generated.path / "rgb" / f"{Path(c.name).stem}.png",
                            cams_tmp / "generated" / f"{Path(c.name).stem}.png")
        cams = [replace(c, name=f"images/{c.name}") for c in cams] + \
               [replace(c, name=f"generated/{Path(c.name).stem}.png") for c in gen]
        prefix = ""
    write_transforms_json(cams, cams_tmp / "transforms.json", file_prefix=prefix)
    write_cameras_opencv_json(cams, cams_tmp / "cameras.json")
    sparse = pri.sparse if pri.sparse is not None else pri.points
    write_colmap_text(cams, cams_tmp / "colmap", sparse.xyz, sparse.rgb)
    replace_dir(cams_tmp, out / "cameras")
    renders_tmp = out / ".renders.tmp"
    shutil.rmtree(renders_tmp, ignore_errors=True)
    shutil.copytree(fit.path / "renders", renders_tmp)
    replace_dir(renders_tmp, out / "renders")


STAGES = ("priors", "warp", "generate", "fit")


def checked_generator(conf: PipelineConf, device: str):
    """The preset's generator (None for ``none``), refused with one line before any work when it
    cannot run; its notice, if it has one (the shipped student's licence), goes to stderr."""
    from .videomodel.generators import make_generator

    generator = make_generator(conf.generate, device)
    if generator is not None and generator.notice:
        notice(generator.notice)
    return generator


def run_generation(conf: PipelineConf, generator, pri: StageResult, out: Path, device: str,
                   force: set[str]) -> list[StageResult]:
    """Warp along the generated views' trajectory, then generate: the two stage results (none for
    ``generator`` None, i.e. ``--generator none``)."""
    if generator is None:
        return []
    g = conf.generate
    wconf = replace(conf.warp, traj=g.trajectory, frames=g.views)
    with progress_bar(f"warp {trajectory_name(g.trajectory)}", g.views) as update:
        w = warp_stage.main(wconf, pri, out, device, force="warp" in force, progress=update)
    with progress_bar(f"generate ({generator.name})", generator.steps(w.figures["frames"])) as update:
        gen = generate_stage.main(g, generator, w, pri, out, device, force="generate" in force, progress=update,
                                  priors_conf=conf.priors)
    return [w, gen]


def reconstruct(images_dir: Path, views: int | None, out: Path, conf: PipelineConf, device: str = "auto",
                poses: Path | None = None, force: Iterable[str] = ()) -> dict:
    """``fvgen reconstruct``: priors -> (warp -> generate, unless ``generate.generator = none``) ->
    fit on the photos and the generated views -> export."""
    device = resolve_device(device)
    force = check_force(force, STAGES)
    generator = checked_generator(conf, device)  # refuse before any work
    out = Path(out)
    with run_lock(out):
        pri = run_priors(conf, Path(images_dir), views, out, device, poses, force)
        gen = run_generation(conf, generator, pri, out, device, force)
        fit = fit_with_progress(conf, pri, out, device, force, gen[-1:])
        export(out, pri, fit, gen[-1] if gen else None)
        results = [pri, *gen, fit]
        write_run_json(out, command_line(), results, {"preset": conf.name, "device": device,
                                                      "generator": conf.generate.generator})
        report(out, f"fvgen reconstruct {Path(images_dir).name}", results, out / "scene.ply", device)
    return {"out": out, "results": results}


def report(out: Path, title: str, results: Sequence[StageResult], scene: Path, device: str,
           metrics: dict | None = None) -> Path:
    """``OUT/report.html`` for a run whose stages are ``results`` (priors first; warp and generate
    when there were generated views)."""
    from .core.images import read_image
    from .evaluation.report import write_report

    by_stage = {r.stage.split("/")[0]: r for r in results}
    inputs = [(f.name, read_image(f)) for f in sorted((by_stage["priors"].path / "images").glob("*.png"))]
    return write_report(out / "report.html", title, inputs, generated=getattr(by_stage.get("generate"), "path", None),
                        warp=getattr(by_stage.get("warp"), "path", None), scene=scene, metrics=metrics,
                        compare=out / "compare", stages=[r.to_json() for r in results], device=device)


def fit_with_progress(conf: PipelineConf, pri: StageResult, out: Path, device: str, force: set[str],
                      generated: Sequence[StageResult] = ()) -> StageResult:
    extra = [fit_stage.ExtraViews(g.path, g.token) for g in generated]
    # (a view the generate stage left at confidence 0 drops out, which can shorten a "kept" fit again)
    with progress_bar("fit 3DGS", conf.fit.total_iterations(bool(extra))) as update:
        return fit_stage.main(conf.fit, pri, out, device, extra=extra, force="fit" in force, progress=update)


def find_priors(out: Path) -> StageResult:
    from .core.cache import read_stage

    meta = read_stage(out / "priors")
    if meta is None:
        raise FvgenError(f"no finished run in {out}: run `fvgen reconstruct IMAGES_DIR --out {out}` first")
    return StageResult("priors", meta["key"], out / "priors", "cached", 0.0, meta.get("figures", {}),
                       meta.get("run_id", ""))


def warp(out: Path, conf: PipelineConf, device: str = "auto", force: Iterable[str] = ()) -> StageResult:
    """``fvgen warp``: the cached priors of ``out`` drawn along ``conf.warp.traj``."""
    device = resolve_device(device)
    force = check_force(force, ("warp",))
    out = Path(out)
    with run_lock(out):
        pri, res = run_warp(out, conf, device, "warp" in force)
        write_run_json(out, command_line(), [pri, res], {"preset": conf.name, "device": device})
    return res


def run_warp(out: Path, conf: PipelineConf, device: str, force: bool) -> tuple[StageResult, StageResult]:
    """The finished priors of ``out`` and the warp stage along ``conf.warp.traj`` (for callers
    holding the lock of ``out``)."""
    pri = find_priors(out)
    with progress_bar(f"warp {trajectory_name(conf.warp.traj)}", conf.warp.frames) as update:
        return pri, warp_stage.main(conf.warp, pri, out, device, force=force, progress=update)


def generate(out: Path, conf: PipelineConf, device: str = "auto", force: Iterable[str] = ()) -> StageResult:
    """``fvgen generate``: the cached priors of ``out`` warped along ``conf.generate.trajectory``
    (``conf.generate.views`` frames), then ``conf.generate.generator``; returns the generate stage."""
    if conf.generate.generator == "none":
        raise FvgenError("--generator none generates nothing: use --generator student, fill, or a model folder")
    device = resolve_device(device)
    force = check_force(force, ("warp", "generate"))
    generator = checked_generator(conf, device)  # refuse before any work
    out = Path(out)
    with run_lock(out):
        pri = find_priors(out)
        w, res = run_generation(conf, generator, pri, out, device, force)
        write_run_json(out, command_line(), [pri, w, res], {"preset": conf.name, "device": device,
                                                             "generator": conf.generate.generator})
    return res


def evaluate(scene_dir: Path, train: Sequence[int], test: Sequence[int], poses: str, out: Path,
             conf: PipelineConf, device: str = "auto", force: Iterable[str] = ()) -> dict:
    """``fvgen eval``: priors and fit on the ``train`` views of a posed scene, then the ``test``
    views scored (:mod:`fvgen.evaluation.heldout`); writes ``OUT/metrics.json`` and ``OUT/compare/``."""
    import time

    from . import __version__
    from .core.cameras import load_poses
    from .core.images import read_image, resize_image
    from .core.undistort import undistort_image
    from .evaluation.heldout import map_test_cameras, scene_image_files, score_heldout
    from .render.splats import load_ply

    if poses not in ("gt", "estimated"):
        raise FvgenError(f"--poses takes gt or estimated, not {poses!r}")
    device = resolve_device(device)
    force = check_force(force, STAGES)
    generator = checked_generator(conf, device)  # refuse before any work
    scene_dir, out = Path(scene_dir), Path(out)
    files = scene_image_files(scene_dir)
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise FvgenError(f"views {overlap} are in both --train and --test")
    if len(train) < 2:
        raise FvgenError("--train needs at least 2 views")
    train_files = [files[i] for i in train]
    test_files = [files[i] for i in test]
    start = time.perf_counter()
    with run_lock(out):
        inputs = priors_stage.PriorsInputs(tuple(train_files), scene_dir if poses == "gt" else None)
        pri_res = priors_stage.main(conf.images, conf.priors, inputs, out, device, force="priors" in force)
        gen = run_generation(conf, generator, pri_res, out, device, force)
        fit_res = fit_with_progress(conf, pri_res, out, device, force, gen[-1:])
        pri = Priors.load(pri_res.path)
        size = (pri.cameras[0].width, pri.cameras[0].height)
        gt_test = load_poses(scene_dir, [f.name for f in test_files], size)
        alignment = None
        test_cams = gt_test
        # Test cameras go into the frame of the train cameras the splats were fitted to: estimated
        # ones, or ground-truth ones the fit refined (the refinement may shift the frame a little).
        if poses == "estimated" or conf.fit.pose_refine:
            gt_train = load_poses(scene_dir, [f.name for f in train_files], size)
            test_cams, alignment = map_test_cameras(gt_train, fit_stage.input_cameras(fit_res, pri.cameras), gt_test)
            alignment["train_cameras"] = "refined by the fit" if conf.fit.pose_refine else "priors"
        targets = [undistort_image(resize_image(read_image(f), *size), c)[0] for f, c in zip(test_files, gt_test)]
        splats = load_ply(fit_res.path / "scene.ply", device=device)
        scores = score_heldout(splats, test_cams, targets, [f.name for f in test_files], out, conf.eval)
        metrics = {
            "fvgen": __version__,
            "scene": str(scene_dir),
            "preset": conf.name,
            "poses": poses,
            "train": [f.name for f in train_files],
            "test": [f.name for f in test_files],
            "image_size": list(size),
            "results": scores["results"],  # the headline: aligned with --align-test-poses, else raw
            "headline": scores["headline"],
            "results_raw": scores["results_raw"],
            "results_aligned": scores["results_aligned"],
            "pose_alignment": scores["pose_alignment"],
            "lpips_reason": scores["lpips_reason"],
            "implementation": scores["implementation"],
            "alignment": alignment,
            "per_view": scores["per_view"],
            "generator": conf.generate.generator,
            "fit": fit_res.figures,
            "priors": pri_res.figures,
            "stages": {r.stage: {"status": r.status, "seconds": round(r.seconds, 2)} for r in (pri_res, *gen, fit_res)},
            "device": device,
            "seconds": round(time.perf_counter() - start, 2),
        }
        tmp = out / ".metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=1, default=float))
        os.replace(tmp, out / "metrics.json")
        write_run_json(out, command_line(), [pri_res, *gen, fit_res], {"preset": conf.name, "device": device,
                                                                      "generator": conf.generate.generator})
        report(out, f"fvgen eval {scene_dir.name} ({poses} poses)", [pri_res, *gen, fit_res],
               fit_res.path / "scene.ply", device, metrics)
    return metrics


def render_scene(scene: Path, traj: str | None, cameras: Path | None, out: Path | None, conf: RenderConf = RenderConf(),
                 device: str = "auto") -> Path:
    """``fvgen render``: a splat scene along ``traj`` (or at ``cameras``) into an mp4."""
    from .core.cameras import read_camera_file
    from .core.trajectories import NAMED, make_trajectory
    from .core.video import write_mp4
    from .render.splats import load_ply
    from .render.video import render_frames

    scene = Path(scene)
    device = resolve_device(device)
    splats = load_ply(scene, device=device)
    if cameras is None:
        cameras = next((c for c in (scene.parent / "cameras" / "transforms.json", scene.parent / "transforms.json")
                        if c.exists()), None)
        if cameras is None:
            raise FvgenError(f"no cameras for {scene}: pass --cameras transforms.json (fvgen writes it to "
                             "OUT/cameras/transforms.json)")
        given = False
    else:
        given = True
    ref = read_camera_file(cameras)
    if traj is None:
        traj = "given" if given else "orbit"
    cams = ref if traj == "given" else make_trajectory(traj, ref, conf.frames, splats["means"].cpu().numpy())
    name = traj if traj in (*NAMED, "given") else Path(traj).stem
    out = Path(out) if out else scene.with_name(f"{scene.stem}_{name}.mp4")
    if out.suffix.lower() != ".mp4":
        raise FvgenError(f"--out must end in .mp4, got {out}")
    with progress_bar(f"render {name}", len(cams)) as update:
        imgs = render_frames(splats, cams, update)
    write_mp4(out, imgs, conf.fps)
    return out
