"""The ``fvgen`` command line: thin wrappers over :mod:`fvgen.pipeline` and :mod:`fvgen.evaluate`.

Every verb exits 0 only on success; user errors print one line (``error: ...``) and exit 2.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import List, Optional

import typer

from .errors import FvgenError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="fvgen: a few photos in, a 3D Gaussian Splatting scene out.")

DEVICE_HELP = "auto (CUDA when available), cpu or cuda"
PRESET_HELP = ("preset name from pipelines/ (default, cpu, paper) or a .toml file; when not given: default "
               "with a CUDA GPU, cpu without one")
TRAJ_HELP = "orbit, spiral, interp, or a .json camera path (cameras_opencv.json / transforms.json)"
FORCE_HELP = ("recompute a stage even when cached, and every stage after it: priors or fit (reconstruct, eval), "
              "warp (warp), or all; repeatable")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FvgenError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; finished stages are kept and the next run resumes from them", 130)
        except MemoryError:
            _fail("out of memory; try the cpu preset or smaller images (images.max_size)", 3)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # a bug, not a user error: one line, traceback on request
            if os.environ.get("FVGEN_DEBUG"):
                raise
            _fail(f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
                  "(set FVGEN_DEBUG=1 for the traceback)", 1)
    return wrapper


MATCHER_HELP = ("SfM matches: auto (SIFT, then XFeat + LighterGlue when a view does not register), sift or "
                "xfeat-lighterglue (overrides the preset)")


def _conf(preset: str | None, device: str):
    """The named preset; without one, ``default`` where the run gets a CUDA GPU and ``cpu``
    elsewhere (the default preset's fit would take hours on a CPU)."""
    from .config import load_preset
    from .pipeline import resolve_device

    if preset is None:
        preset = "default" if resolve_device(device) == "cuda" else "cpu"
    return load_preset(preset)  # its name is shown with the results and kept in run.json


def _echo_results(results, out: Path, preset: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"fvgen run in {out} (preset {preset})")
    for col in ("stage", "status", "seconds", "key figures"):
        t.add_column(col)
    for r in results:
        figs = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in r.figures.items() if not isinstance(v, (dict, list)))
        t.add_row(r.stage, r.status, f"{r.seconds:.1f}", figs)
    Console(stderr=True).print(t)


@app.command()
@handle_errors
def reconstruct(
    images_dir: Path = typer.Argument(..., help="folder with 2-10 photos of one scene"),
    views: Optional[int] = typer.Option(None, "--views", "-n", help="use N views spread over the folder "
                                        "(sorted by name, indices round(linspace(0, count-1, N))); default all"),
    out: Path = typer.Option(Path("fvgen_out"), "--out", "-o", help="output folder"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=PRESET_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    poses: Optional[Path] = typer.Option(None, "--poses", help="known cameras: transforms.json, a COLMAP "
                                         "model folder, poses_bounds.npy or cameras_opencv.json"),
    priors: Optional[str] = typer.Option(None, "--priors", help="priors backend: sfm (default) or dust3r"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="DUSt3R checkpoint (.pth) for --priors dust3r"),
    matcher: Optional[str] = typer.Option(None, "--matcher", help=MATCHER_HELP),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="3DGS fit steps (overrides the preset)"),
    force: List[str] = typer.Option([], "--force", help=FORCE_HELP),
):
    """Recover poses and a dense point cloud, fit 3DGS, write OUT/scene.ply, cameras and renders."""
    from .config import with_overrides
    from .pipeline import reconstruct as run

    conf = _conf(preset, device)
    changes = {}
    if priors:
        changes["priors.backend"] = priors
    if checkpoint:
        changes["priors.checkpoint"] = str(checkpoint)
    if matcher:
        changes["priors.sfm.matcher"] = matcher
    if iterations is not None:
        if iterations < 1:
            raise FvgenError("--iterations must be at least 1")
        changes["fit.iterations"] = iterations
    conf = with_overrides(conf, **changes)
    res = run(images_dir, views, out, conf, device, poses, force)
    _echo_results(res["results"], out, conf.name)
    typer.echo(str(out / "scene.ply"))


@app.command()
@handle_errors
def warp(
    out: Path = typer.Option(Path("fvgen_out"), "--out", "-o", help="a folder written by `fvgen reconstruct`"),
    traj: str = typer.Option("orbit", "--traj", "-t", help=TRAJ_HELP),
    frames: Optional[int] = typer.Option(None, "--frames", "-f", help="frames along the trajectory"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=PRESET_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    force: List[str] = typer.Option([], "--force", help=FORCE_HELP),
):
    """Render the point-cloud prior along a trajectory: RGB video, validity-mask video, cameras."""
    from .pipeline import warp as run

    if frames is not None and frames < 2:
        raise FvgenError("--frames must be at least 2")
    conf = _conf(preset, device)
    res = run(out, conf, traj, frames, device, force)
    _echo_results([res], out, conf.name)
    typer.echo(str(res.path / "rgb.mp4"))


@app.command()
@handle_errors
def generate(
    out: Path = typer.Option(Path("fvgen_out"), "--out", "-o", help="a folder written by `fvgen reconstruct`"),
    traj: str = typer.Option("orbit", "--traj", "-t", help=TRAJ_HELP),
    frames: Optional[int] = typer.Option(None, "--frames", "-f", help="frames along the trajectory"),
    model: Optional[Path] = typer.Option(None, "--model", help="teacher model folder (teacher.json + "
                                         "diffusers subfolders); none ships trained yet"),
    steps: Optional[int] = typer.Option(None, "--steps", help="denoising steps (default 50)"),
    cfg: Optional[float] = typer.Option(None, "--cfg", help="classifier-free guidance scale (default 3.0; 1 = off)"),
    strength: Optional[float] = typer.Option(None, "--strength", help="in (0, 1]: start from the warp's fill "
                                             "noised this far (SDEdit; runs round(steps x strength) steps); "
                                             "default 1, from pure noise"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=PRESET_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    force: List[str] = typer.Option([], "--force", help="recompute warp, generate or all"),
):
    """Novel-view video from the cached priors: warp along a trajectory, then the video model."""
    from .stages.generate import generate as run

    if frames is not None and frames < 2:
        raise FvgenError("--frames must be at least 2")
    conf = _conf(preset, device)
    res = run(out, conf, traj, frames, model, steps, device, force, cfg, strength=strength)
    _echo_results([res], out, conf.name)
    typer.echo(str(res.path / "rgb.mp4"))


train_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train fvgen's models.")
app.add_typer(train_app, name="train")


@train_app.command("teacher")
@handle_errors
def train_teacher(
    config: str = typer.Option("embedded", "--config", help="training config name (tiny, tiny-pixel, embedded) or .toml file"),
    out: Path = typer.Option(..., "--out", "-o", help="training folder (checkpoints, log.jsonl, samples, model/)"),
    data: List[Path] = typer.Option([], "--data", help="folders of example shards (python -m fvgen.teacher.data build)"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="checkpoint and stop after this long"),
    no_resume: bool = typer.Option(False, "--no-resume", help="start over instead of resuming from OUT/ckpt"),
):
    """Train (or resume) the point-cloud-conditioned video diffusion teacher; torchrun for several GPUs."""
    from .teacher.train import train_teacher as run

    overrides = {"data": tuple(str(d) for d in data)} if data else {}
    res = run(config, out, resume=not no_resume, max_minutes=max_minutes, **overrides)
    typer.echo(f"{res['status']} at step {res['step']} ({res['phase']}): {res.get('model') or out}")


@app.command()
@handle_errors
def render(
    scene: Path = typer.Argument(..., help="a Gaussian splat .ply (INRIA layout)"),
    traj: Optional[str] = typer.Option(None, "--traj", "-t", help=TRAJ_HELP + "; default orbit, or the "
                                       "--cameras themselves when given"),
    cameras: Optional[Path] = typer.Option(None, "--cameras", help="transforms.json or cameras_opencv.json of "
                                           "the scene's cameras (default: cameras/transforms.json beside the .ply)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="video path (default: beside the .ply)"),
    frames: int = typer.Option(60, "--frames", "-f", help="frames along a named trajectory"),
    fps: int = typer.Option(20, "--fps"),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
):
    """Render a splat scene along a trajectory into an mp4 video."""
    from .render_video import render_scene

    path = render_scene(scene, traj, cameras, out, frames, fps, device)
    typer.echo(str(path))


@app.command("eval")
@handle_errors
def eval_(
    scene_dir: Path = typer.Argument(..., help="a posed scene: images/ plus cameras_opencv.json, "
                                     "transforms.json, poses_bounds.npy, cameras.npz or a COLMAP model"),
    train: str = typer.Option(..., "--train", help="comma-separated indices of the training views"),
    test: str = typer.Option(..., "--test", help="comma-separated indices of the held-out views"),
    poses: str = typer.Option("gt", "--poses", help="gt (the scene's cameras) or estimated (our priors)"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (metrics.json, compare/)"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=PRESET_HELP),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="3DGS fit steps (overrides the preset)"),
    matcher: Optional[str] = typer.Option(None, "--matcher", help=MATCHER_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    force: List[str] = typer.Option([], "--force", help=FORCE_HELP),
):
    """Fit on the train views of a posed scene and score renders of the test views (PSNR, SSIM)."""
    from .config import with_overrides
    from .evaluate import evaluate, parse_indices, scene_image_files

    n = len(scene_image_files(scene_dir))
    conf = _conf(preset, device)
    if iterations is not None:
        conf = with_overrides(conf, **{"fit.iterations": iterations})
    if matcher:
        conf = with_overrides(conf, **{"priors.sfm.matcher": matcher})
    m = evaluate(scene_dir, parse_indices(train, n, "train"), parse_indices(test, n, "test"), poses, out,
                 conf, device, force)
    r = m["results"]
    lp = "n/a" if r["lpips"] is None else f"{r['lpips']:.3f}"
    typer.echo(f"PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.3f}  LPIPS {lp}  ->  {out / 'metrics.json'}")


@app.command()
@handle_errors
def presets():
    """List the named presets."""
    from .config import preset_names, presets_dir

    for name in preset_names():
        typer.echo(f"{name}\t{presets_dir() / (name + '.toml')}")


@app.command()
@handle_errors
def demo(out: Path = typer.Argument(Path("assets/demo"), help="folder for the demo photos"),
         views: int = typer.Option(8, "--views", help="number of photos")):
    """Render the procedural demo scene (photos + ground-truth cameras) into a folder."""
    from .demo import make_demo_scene

    typer.echo(str(make_demo_scene(out, n_views=views)))


def main() -> None:
    # Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU, spinning threads
    # made our CPU rasterizer 10-30x slower. Must be set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()


if __name__ == "__main__":
    main()
