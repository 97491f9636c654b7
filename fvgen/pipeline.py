"""The chains of stages behind the CLI verbs: ``reconstruct`` (priors -> fit -> export) and
``warp``. Each verb holds the output folder's lock for its whole run and records ``run.json``.

Output folder layout (``OUT``):

- ``priors/``, ``fit/``, ``warp/<traj>/``: the stage folders (see :mod:`fvgen.stages`)
- ``scene.ply``: the fitted splats (INRIA layout, input cameras' frame)
- ``cameras/transforms.json``, ``cameras/cameras.json`` and ``cameras/colmap/`` (COLMAP text
  model with the sparse points): every input camera
- ``renders/``: the scene rendered at the input cameras
- ``run.json``: per stage its cache key, ``computed`` or ``cached``, seconds and key figures
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

from .cache import StageResult, replace_dir, run_lock, write_run_json
from .cameras import write_cameras_opencv_json, write_colmap_text, write_transforms_json
from .config import PipelineConf
from .errors import FvgenError
from .images import list_image_files, select_views
from .progress import progress_bar
from .stages import fit as fit_stage
from .stages import priors as priors_stage
from .stages import warp as warp_stage



def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise FvgenError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise FvgenError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


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
    files = list_image_files(images_dir)  # raises when there are none
    if len(files) < 2:
        raise FvgenError(f"need at least 2 images, found 1 in {images_dir} ({files[0].name})")
    files = select_views(files, views)
    inputs = priors_stage.PriorsInputs(tuple(files), Path(poses) if poses else None)
    return priors_stage.main(conf.images, conf.priors, inputs, out, device, force="priors" in force)


def export(out: Path, priors: StageResult, fit: StageResult) -> None:
    """The user-facing files at the top of ``OUT`` (rewritten on each run, atomically):
    ``scene.ply``, ``cameras/`` (transforms.json, cameras.json and a COLMAP text model, beside
    the images they describe in ``cameras/images/``) and ``renders/``."""
    pri = priors_stage.Priors.load(priors.path)
    tmp = out / ".scene.ply.tmp"
    shutil.copyfile(fit.path / "scene.ply", tmp)
    os.replace(tmp, out / "scene.ply")
    cams_tmp = out / ".cameras.tmp"
    shutil.rmtree(cams_tmp, ignore_errors=True)
    shutil.copytree(priors.path / "images", cams_tmp / "images")  # the pixels the cameras refer to
    cams = [replace(c, name=f"{Path(c.name).stem}.png") for c in pri.cameras]
    write_transforms_json(cams, cams_tmp / "transforms.json", file_prefix="images/")
    write_cameras_opencv_json(cams, cams_tmp / "cameras.json")
    sparse = pri.sparse if pri.sparse is not None else pri.points
    write_colmap_text(cams, cams_tmp / "colmap", sparse.xyz, sparse.rgb)
    replace_dir(cams_tmp, out / "cameras")
    renders_tmp = out / ".renders.tmp"
    shutil.rmtree(renders_tmp, ignore_errors=True)
    shutil.copytree(fit.path / "renders", renders_tmp)
    replace_dir(renders_tmp, out / "renders")


def reconstruct(images_dir: Path, views: int | None, out: Path, conf: PipelineConf, device: str = "auto",
                poses: Path | None = None, force: Iterable[str] = ()) -> dict:
    device = resolve_device(device)
    force = check_force(force, ("priors", "fit"))
    out = Path(out)
    with run_lock(out):
        pri = run_priors(conf, Path(images_dir), views, out, device, poses, force)
        fit = fit_with_progress(conf, pri, out, device, force)
        export(out, pri, fit)
        results = [pri, fit]
        write_run_json(out, command_line(), results, {"preset": conf.name, "device": device})
    return {"out": out, "results": results}


def fit_with_progress(conf: PipelineConf, pri: StageResult, out: Path, device: str, force: set[str]) -> StageResult:
    with progress_bar("fit 3DGS", conf.fit.iterations) as update:
        return fit_stage.main(conf.fit, pri, out, device, force="fit" in force, progress=update)


def find_priors(out: Path) -> StageResult:
    from .cache import read_stage

    meta = read_stage(out / "priors")
    if meta is None:
        raise FvgenError(f"no finished run in {out}: run `fvgen reconstruct IMAGES_DIR --out {out}` first")
    return StageResult("priors", meta["key"], out / "priors", "cached", 0.0, meta.get("figures", {}),
                       meta.get("run_id", ""))


def warp(out: Path, conf: PipelineConf, traj: str, frames: int | None, device: str = "auto",
         force: Iterable[str] = ()) -> StageResult:
    device = resolve_device(device)
    force = check_force(force, ("warp",))
    out = Path(out)
    with run_lock(out):
        pri, res = run_warp(out, conf, traj, frames, device, "warp" in force)
        write_run_json(out, command_line(), [pri, res], {"preset": conf.name, "device": device})
    return res


def run_warp(out: Path, conf: PipelineConf, traj: str, frames: int | None, device: str,
             force: bool) -> tuple[StageResult, StageResult]:
    """The finished priors of ``out`` and the warp stage along ``traj`` (for callers holding the
    lock of ``out``: ``warp`` and ``generate``)."""
    wconf = replace(conf.warp, traj=traj, frames=frames or conf.warp.frames)
    pri = find_priors(out)
    with progress_bar(f"warp {warp_stage.traj_name(traj)}", wconf.frames) as update:
        return pri, warp_stage.main(wconf, pri, out, device, force=force, progress=update)
