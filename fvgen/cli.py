"""The ``fvgen`` command line: thin wrappers over :mod:`fvgen.pipeline` (and the training entry
points of :mod:`fvgen.videomodel`).

Every verb exits 0 only on success; user errors print one line (``error: ...``) and exit 2.
Options that a preset also sets (``--traj``, ``--frames``, ``--iterations``, ``--matcher``...)
default to the preset's value: the command line overrides a preset only where it is given.
Options shared by several verbs are declared once below.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, List, Optional, Tuple

import typer

from .core.errors import FvgenError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="fvgen: a few photos in, a 3D Gaussian Splatting scene out.")



def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"fvgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """fvgen: a few photos in, a 3D Gaussian Splatting scene out."""


# ----------------------------------------------------------------------------- shared options

OutDir = Annotated[Path, typer.Option("--out", "-o", help="output folder (written by `fvgen reconstruct`)")]
Preset = Annotated[Optional[str], typer.Option(
    "--preset", "-p", help="preset name from pipelines/ (default, cpu, paper) or a .toml file; when not given: "
    "default with a CUDA GPU, cpu without one")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda")]
Traj = Annotated[Optional[str], typer.Option(
    "--traj", "-t", help="orbit, spiral, interp, or a .json camera path (cameras_opencv.json / transforms.json); "
    "default: the preset's")]
Frames = Annotated[Optional[int], typer.Option("--frames", "-f", help="frames along the trajectory (default: the preset's)")]
Matcher = Annotated[Optional[str], typer.Option(
    "--matcher", help="SfM matches: auto (SIFT, then XFeat + LighterGlue when a view does not register), sift or "
    "xfeat-lighterglue (default: the preset's)")]
Iterations = Annotated[Optional[int], typer.Option("--iterations", help="3DGS fit steps (default: the preset's)")]
PoseRefine = Annotated[Optional[bool], typer.Option(
    "--pose-refine/--no-pose-refine", help="refine the input cameras' poses jointly with the 3DGS fit (for estimated "
    "poses; the first camera and the scene scale stay fixed); exports and eval use the refined cameras "
    "(default: the preset's fit.pose_refine)")]
GeneratorOpt = Annotated[Optional[str], typer.Option(
    "--generator", "-g", help="what makes the novel views the fit also learns from: none (the photos alone), fill "
    "(the warp with its holes harmonically filled), student (the shipped 4-step video model), viewcrafter, or a "
    "model folder (default: the preset's: student for default, none for cpu)")]
Checkpoint = Annotated[Optional[Path], typer.Option(
    "--checkpoint", help="model weights: DUSt3R's .pth for --priors dust3r, ViewCrafter's .ckpt for --generator viewcrafter")]
ClipVocab = Annotated[Optional[Path], typer.Option(
    "--clip-vocab", help="OpenCLIP's bpe_simple_vocab_16e6.txt.gz, for --generator viewcrafter")]
GeneratedViews = Annotated[Optional[int], typer.Option(
    "--generated-views", help="how many novel views to generate (default: the preset's)")]
AdaptSteps = Annotated[Optional[int], typer.Option(
    "--adapt-steps", help="model generators: fine-tune a copy of the model on the input views (leave one out) for "
    "N steps before generating; 0 = off (default: the preset's generate.adapt.steps, 0 in every preset)")]


def force_option(stages: str):
    return typer.Option([], "--force", help=f"recompute a stage even when cached, and every stage after it: {stages}, "
                        "or all; repeatable")


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


def resolve_conf(preset: str | None, device: str, **overrides):
    """The named preset (without one: ``default`` where the run gets a CUDA GPU, ``cpu`` elsewhere,
    since the default preset's fit would take hours on a CPU) with the options given on the
    command line applied (``"fit.iterations": 500``; ``None`` = not given, the preset's value stays)."""
    from .core.config import with_overrides
    from .core.devices import resolve_device
    from .presets import load_preset

    if preset is None:
        preset = "default" if resolve_device(device) == "cuda" else "cpu"
    changes = {k: v for k, v in overrides.items() if v is not None}
    for key, minimum in (("eval.align_steps", 1), ("fit.iterations", 1), ("warp.frames", 2), ("render.frames", 2), ("render.fps", 1)):
        if key in changes and changes[key] < minimum:
            raise FvgenError(f"--{key.split('.')[1].replace('_', '-')} must be at least {minimum}")
    return with_overrides(load_preset(preset), **changes)


def checkpoint_overrides(priors: str | None, generator: str | None, checkpoint: Path | None,
                         clip_vocab: Path | None) -> dict:
    """Where ``--checkpoint`` goes: the ViewCrafter generator's weights with ``--generator viewcrafter``,
    else DUSt3R's (``--priors dust3r``)."""
    out = {"generate.clip_vocab": str(clip_vocab) if clip_vocab else None}
    if checkpoint is not None:
        out["generate.checkpoint" if generator == "viewcrafter" and priors != "dust3r" else "priors.checkpoint"] = str(checkpoint)
    return out


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


# ----------------------------------------------------------------------------- verbs

@app.command()
@handle_errors
def reconstruct(
    images_dir: Path = typer.Argument(..., help="folder with 2-10 photos of one scene"),
    views: Optional[int] = typer.Option(None, "--views", "-n", help="use N views spread over the folder "
                                        "(sorted by name, indices round(linspace(0, count-1, N)), after duplicates "
                                        "are dropped); default all"),
    out: OutDir = Path("fvgen_out"),
    preset: Preset = None,
    device: Device = "auto",
    poses: Optional[Path] = typer.Option(None, "--poses", help="known cameras: transforms.json, a COLMAP "
                                         "model folder, poses_bounds.npy, cameras_opencv.json or DTU cameras.npz"),
    priors: Optional[str] = typer.Option(None, "--priors", help="priors backend: sfm (default) or dust3r"),
    checkpoint: Checkpoint = None,
    clip_vocab: ClipVocab = None,
    matcher: Matcher = None,
    iterations: Iterations = None,
    pose_refine: PoseRefine = None,
    generator: GeneratorOpt = None,
    generated_views: GeneratedViews = None,
    adapt_steps: AdaptSteps = None,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show the SfM library's own log lines"),
    force: List[str] = force_option("priors, warp, generate or fit"),
):
    """Recover poses and a dense point cloud, generate novel views, fit 3DGS; write OUT/scene.ply,
    cameras and renders. Files that are not images are skipped and duplicate photos (byte-identical,
    or the same photo re-saved or resized) are dropped, each with a one-line note on stderr."""
    from .pipeline import reconstruct as run

    conf = resolve_conf(preset, device, **{"priors.backend": priors, "priors.sfm.matcher": matcher,
                                           "fit.iterations": iterations, "fit.pose_refine": pose_refine,
                                           "generate.generator": generator, "generate.adapt.steps": adapt_steps,
                                           "generate.views": generated_views, "priors.sfm.verbose": verbose or None,
                                           **checkpoint_overrides(priors, generator, checkpoint, clip_vocab)})
    res = run(images_dir, views, out, conf, device, poses, force)
    _echo_results(res["results"], out, conf.name)
    typer.echo(str(out / "scene.ply"))


@app.command()
@handle_errors
def warp(
    out: OutDir = Path("fvgen_out"),
    traj: Traj = None,
    frames: Frames = None,
    preset: Preset = None,
    device: Device = "auto",
    force: List[str] = force_option("warp"),
):
    """Render the point-cloud prior along a trajectory: RGB video, validity-mask video, cameras."""
    from .pipeline import warp as run

    conf = resolve_conf(preset, device, **{"warp.traj": traj, "warp.frames": frames})
    res = run(out, conf, device, force)
    _echo_results([res], out, conf.name)
    typer.echo(str(res.path / "rgb.mp4"))


@app.command()
@handle_errors
def generate(
    out: OutDir = Path("fvgen_out"),
    generator: GeneratorOpt = None,
    traj: Optional[str] = typer.Option(None, "--traj", "-t", help="coverage (planned from the prior), orbit, spiral, "
                                       "interp, or a .json camera path (default: the preset's, coverage)"),
    frames: Optional[int] = typer.Option(None, "--frames", "-f", help="views along the trajectory (default: the "
                                         "preset's generate.views)"),
    model: Optional[Path] = typer.Option(None, "--model", help="a video model folder (same as --generator DIR)"),
    checkpoint: Checkpoint = None,
    clip_vocab: ClipVocab = None,
    steps: Optional[int] = typer.Option(None, "--steps", help="denoising steps of a video model (default 50; "
                                        "a distilled student's own, 4)"),
    cfg: Optional[float] = typer.Option(None, "--cfg", help="classifier-free guidance scale (default 3.0, a "
                                        "distilled student's 1.0; 1 = off)"),
    strength: Optional[float] = typer.Option(None, "--strength", help="in (0, 1]: start from the warp's fill "
                                             "noised this far (SDEdit; runs round(steps x strength) steps); "
                                             "default 1, from pure noise"),
    adapt_steps: AdaptSteps = None,
    preset: Preset = None,
    device: Device = "auto",
    force: List[str] = force_option("warp or generate"),
):
    """Novel views from the cached priors: warp along a trajectory, then the generator."""
    from .pipeline import generate as run

    if model is not None and generator is not None:
        raise FvgenError("give --generator or --model, not both")
    conf = resolve_conf(preset, device, **{"generate.generator": str(model) if model else generator,
                                           "generate.trajectory": traj, "generate.views": frames,
                                           "generate.steps": steps, "generate.cfg": cfg, "generate.strength": strength,
                                           "generate.adapt.steps": adapt_steps,
                                           **checkpoint_overrides(None, generator, checkpoint, clip_vocab)})
    res = run(out, conf, device, force)
    _echo_results([res], out, conf.name)
    typer.echo(str(res.path / "rgb.mp4"))


@app.command()
@handle_errors
def render(
    scene: Path = typer.Argument(..., help="a Gaussian splat .ply (INRIA layout)"),
    traj: Optional[str] = typer.Option(None, "--traj", "-t", help="orbit, spiral, interp or a .json camera path; "
                                       "default orbit, or the --cameras themselves when given"),
    cameras: Optional[Path] = typer.Option(None, "--cameras", help="transforms.json or cameras_opencv.json of "
                                           "the scene's cameras (default: cameras/transforms.json beside the .ply)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="video path (default: beside the .ply)"),
    frames: Frames = None,
    fps: Optional[int] = typer.Option(None, "--fps", help="video frame rate (default: the preset's)"),
    preset: Preset = None,
    device: Device = "auto",
):
    """Render a splat scene along a trajectory into an mp4 video."""
    from .pipeline import render_scene

    conf = resolve_conf(preset, device, **{"render.frames": frames, "render.fps": fps})
    typer.echo(str(render_scene(scene, traj, cameras, out, conf.render, device)))


@app.command("eval")
@handle_errors
def eval_(
    scene_dir: Path = typer.Argument(..., help="a posed scene: images/ plus cameras_opencv.json, "
                                     "transforms.json, poses_bounds.npy, cameras.npz or a COLMAP model"),
    train: str = typer.Option(..., "--train", help="comma-separated 0-based indices, into the name-sorted images, "
                              "of the training views"),
    test: str = typer.Option(..., "--test", help="comma-separated 0-based indices of the held-out views"),
    poses: str = typer.Option("gt", "--poses", help="gt (the scene's cameras) or estimated (our priors)"),
    out: OutDir = Path("fvgen_eval"),
    preset: Preset = None,
    iterations: Iterations = None,
    pose_refine: PoseRefine = None,
    matcher: Matcher = None,
    generator: GeneratorOpt = None,
    generated_views: GeneratedViews = None,
    adapt_steps: AdaptSteps = None,
    align_test_poses: Optional[bool] = typer.Option(
        None, "--align-test-poses/--no-align-test-poses", help="also score each test view after aligning its camera's "
        "pose (6-DoF, nothing else) on the frozen fitted scene, and make that the headline (metrics.json keeps both); "
        "the protocol of pose-free methods for --poses estimated (default: the preset's eval.align_test_poses)"),
    align_steps: Optional[int] = typer.Option(None, "--align-steps", help="pose-alignment steps per test view "
                                              "(default: the preset's eval.align_steps)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show the SfM library's own log lines"),
    checkpoint: Checkpoint = None,
    clip_vocab: ClipVocab = None,
    device: Device = "auto",
    force: List[str] = force_option("priors, warp, generate or fit"),
):
    """Fit on the train views of a posed scene and score renders of the test views (PSNR, SSIM) at the
    preset's image size (images.max_size: 320 px long side with the cpu preset)."""
    from .evaluation.heldout import parse_indices, scene_image_files
    from .pipeline import evaluate

    n = len(scene_image_files(scene_dir))
    conf = resolve_conf(preset, device, **{"fit.iterations": iterations, "fit.pose_refine": pose_refine,
                                           "priors.sfm.matcher": matcher,
                                           "generate.generator": generator, "generate.views": generated_views,
                                           "generate.adapt.steps": adapt_steps,
                                           "eval.align_test_poses": align_test_poses, "eval.align_steps": align_steps,
                                           "priors.sfm.verbose": verbose or None,
                                           **checkpoint_overrides(None, generator, checkpoint, clip_vocab)})
    m = evaluate(scene_dir, parse_indices(train, n, "train"), parse_indices(test, n, "test"), poses, out,
                 conf, device, force)
    r = m["results"]
    lp = "n/a" if r["lpips"] is None else f"{r['lpips']:.3f}"
    line = f"PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.3f}  LPIPS {lp}"
    if m["results_aligned"] is not None:
        raw = m["results_raw"]
        line += f"  (test poses aligned; raw PSNR {raw['psnr']:.2f} dB  SSIM {raw['ssim']:.3f})"
    typer.echo(f"{line}  ->  {out / 'metrics.json'}")


@app.command()
@handle_errors
def presets():
    """List the named presets."""
    from .presets import preset_names, presets_dir

    for name in preset_names():
        typer.echo(f"{name}\t{presets_dir() / (name + '.toml')}")


@app.command()
@handle_errors
def demo(out: Path = typer.Argument(Path("fvgen_demo"), help="folder for the demo photos"),
         views: int = typer.Option(8, "--views", help="number of photos"),
         width: int = typer.Option(480, "--width"), height: int = typer.Option(360, "--height"),
         seed: int = typer.Option(0, "--seed")):
    """Render the procedural demo scene (photos + ground-truth cameras) into a folder."""
    from .core.procedural import make_demo_scene

    typer.echo(str(make_demo_scene(out, n_views=views, width=width, height=height, seed=seed)))


# ----------------------------------------------------------------------------- training

train_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train fvgen's models.")
app.add_typer(train_app, name="train")
data_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Training examples for the video models.")
app.add_typer(data_app, name="data")


def _finish_training(result: dict) -> None:
    """The training summary as one JSON line (rank 0 of a torchrun job), then the process group closed."""
    import json

    import torch

    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(json.dumps(result))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@train_app.command("teacher")
@handle_errors
def train_teacher(
    config: str = typer.Option("embedded", "--config", help="training config name (tiny, tiny-pixel, embedded) or a "
                               ".toml file of its keys (configs/)"),
    out: Path = typer.Option(..., "--out", "-o", help="training folder (checkpoints, log.jsonl, samples, model/)"),
    data: List[Path] = typer.Option([], "--data", help="folders of example shards (`fvgen data build`); "
                                    "override the config's"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="checkpoint and stop after this long"),
    stop_file: Optional[Path] = typer.Option(None, "--stop-file", help="checkpoint and stop (paused) as soon as "
                                             "this file exists"),
    no_resume: bool = typer.Option(False, "--no-resume", help="start over instead of resuming from OUT/ckpt"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="a model folder to start from"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="clips per process and step"),
    vae_steps: Optional[int] = typer.Option(None, "--vae-steps", help="autoencoder steps (latent presets)"),
    unet_steps: Optional[int] = typer.Option(None, "--unet-steps", help="denoiser steps"),
    benchmark: int = typer.Option(0, "--benchmark", help="measure samples/s over N steps on random data instead"),
    workers: Optional[int] = typer.Option(None, "--workers", help="threads that decode the example shards at start"),
):
    """Train (or resume) the point-cloud-conditioned video diffusion teacher. Several GPUs:
    torchrun --nproc_per_node=N -m fvgen train teacher ..."""

    from .videomodel.train import train_teacher as run

    res = run(config, out, resume=not no_resume, max_minutes=max_minutes, benchmark=benchmark,
              num_workers=workers, stop_file=stop_file, data=tuple(str(d) for d in data) or None,
              init_from=str(init_from) if init_from else None, batch_size=batch_size, vae_steps=vae_steps,
              unet_steps=unet_steps)
    _finish_training(res)


@train_app.command("distill")
@handle_errors
def train_distill(
    teacher: str = typer.Option(..., "--teacher", help="the teacher's model folder (the model/ of `fvgen train teacher`), "
                                "or viewcrafter:PATH/ViewCrafter_25.ckpt (the official ViewCrafter weights)"),
    out: Path = typer.Option(..., "--out", "-o", help="distillation folder (checkpoints, log.jsonl, samples, model/)"),
    data: List[Path] = typer.Option([], "--data", help="folders of example shards (`fvgen data build`), the teacher's"),
    stage: str = typer.Option("all", "--stage", help="gan (stage 1), dmd (stage 2; stage 1 finished) or all"),
    ablation: Optional[str] = typer.Option(None, "--ablation", help="full (the paper's recipe), no-gan-init, "
                                           "gan-only, gan-softkl, plain-dmd or full-reg (full plus a regression to the "
                                           "real clip; the embedded config's default, measured best)"),
    config: str = typer.Option("embedded", "--config", help="distillation config: embedded, tiny-pixel or "
                               "tiny-viewcrafter"),
    gan_steps: Optional[int] = typer.Option(None, "--gan-steps", help="stage-1 steps"),
    dmd_steps: Optional[int] = typer.Option(None, "--dmd-steps", help="stage-2 student updates"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="clips per process and step"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="checkpoint and stop after this long"),
    stop_file: Optional[Path] = typer.Option(None, "--stop-file", help="checkpoint and stop (paused) as soon as "
                                             "this file exists"),
    no_resume: bool = typer.Option(False, "--no-resume", help="start over instead of resuming from OUT/ckpt"),
    workers: Optional[int] = typer.Option(None, "--workers", help="threads that decode the example shards at start"),
    clip_vocab: Optional[Path] = typer.Option(None, "--clip-vocab", help="viewcrafter:PATH.ckpt only: OpenCLIP's "
                                              "bpe_simple_vocab_16e6.txt.gz (the prompt's text tokens)"),
    variant: Optional[str] = typer.Option(None, "--variant", help="viewcrafter:PATH only: 512 or 1024 (default: from "
                                          "the file)"),
    real_cfg: Optional[float] = typer.Option(None, "--real-cfg", help="guidance of the teacher's score in the DMD "
                                             "stage (default: its sampler's: 1 for ours, 7.5 for ViewCrafter)"),
    from_stage1: Optional[Path] = typer.Option(None, "--from-stage1", help="start from this distillation folder's "
                                               "finished GAN stage (ablations full, gan-softkl, plain-dmd, full-reg)"),
    warm_start: Optional[Path] = typer.Option(None, "--warm-start", help="start from a packed checkpoint of another "
                                              "run (fresh optimisers; benchmarks/gpu_distill.sh pack)"),
):
    """Distil the teacher into a 4-step student: a GAN stage on the teacher's features, then
    distribution matching with the softened reverse KL (FVGen). With --teacher viewcrafter:PATH the
    student is a ViewCrafter model folder (--generator OUT/model). Several GPUs:
    torchrun --nproc_per_node=N -m fvgen train distill ..."""

    from .pipeline import command_line
    from .videomodel.distill.train import train_distill as run

    res = run(teacher, out, stage, ablation, config, resume=not no_resume, max_minutes=max_minutes,
              num_workers=workers, stop_file=stop_file, command=command_line(),
              data=tuple(str(d) for d in data) or None, gan_steps=gan_steps, dmd_steps=dmd_steps,
              batch_size=batch_size, clip_vocab=str(clip_vocab) if clip_vocab else None, variant=variant,
              real_cfg=real_cfg, from_stage1=from_stage1, warm_start=warm_start)
    _finish_training(res)


@data_app.command("build")
@handle_errors
def data_build(
    out: Path = typer.Option(..., "--out", "-o", help="folder for the example shards (.npz)"),
    preset: str = typer.Option("embedded", "--preset", help="video model preset whose clip size the examples take"),
    scenes: List[str] = typer.Option(["all"], "--scenes", help="names under shared/datasets-train or folders; repeatable"),
    per_scene: int = typer.Option(4, "--per-scene", help="examples per scene"),
    procedural: int = typer.Option(0, "--procedural", help="procedural room examples"),
    max_size: int = typer.Option(320, "--max-size", help="long side the priors and warps are made at"),
    seed: int = typer.Option(0, "--seed"),
    pipeline_preset: str = typer.Option("cpu", "--pipeline-preset", help="fvgen preset whose [priors] settings are used"),
    device: Device = "cpu",
    min_coverage: float = typer.Option(0.05, "--min-coverage", help="skip examples whose warps cover less"),
    min_warp_psnr: float = typer.Option(0.0, "--min-warp-psnr", help="skip examples whose warps match the real "
                                        "frames worse (dB, covered pixels; 0: keep all)"),
    clips_per_prior: int = typer.Option(1, "--clips-per-prior", help="clips per dense prior, each from one of its "
                                        "sparse views"),
    no_triangulate: bool = typer.Option(False, "--no-triangulate", help="skip SfM triangulation with the known poses "
                                        "(MVS finds its depth range)"),
    workers: int = typer.Option(1, "--workers", help="processes (one scene per task)"),
    photos: int = typer.Option(0, "--photos", help="single-photo warp-back examples from shared/photos"),
    photo_share: float = typer.Option(0.0, "--photo-share", help="instead of --photos: this share of all examples "
                                      "are warp-back photo examples"),
    photo_sets: List[str] = typer.Option(["all"], "--photo-sets", help="sets under shared/photos or folders; repeatable"),
    depth: str = typer.Option("mixed", "--depth", help="warp-back synthetic depth: planes, field or mixed"),
    input_view: Optional[Tuple[float, float]] = typer.Option(None, "--input-view", help="LO HI: warp-back input "
                                                             "cameras see this fraction of the canvas per side"),
    texture_drop: Optional[float] = typer.Option(None, "--texture-drop", help="warp-back: drop up to this fraction "
                                                 "of the least textured prior points"),
    retries: int = typer.Option(3, "--retries", help="redraws per planned dense prior when a draw fails, so each "
                                "scene reaches its quota"),
):
    """Write training examples: dense priors of 2-3 posed views warped along the real camera path, and
    single-photo warp-back examples (--photos / --photo-share). Every scene gets the same quota."""
    from .presets import load_preset
    from .videomodel.data import build
    from .videomodel.data.warpback import WarpbackConf

    extra = {k: v for k, v in (("input_view", tuple(input_view) if input_view else None),
                                ("texture_drop", texture_drop)) if v is not None}
    warpback = WarpbackConf(depth=depth, max_size=max_size, **extra)
    files = build(out, preset, scenes, per_scene, procedural, max_size, seed, load_preset(pipeline_preset).priors,
                  device, min_coverage, clips_per_prior, not no_triangulate, workers, min_warp_psnr,
                  photos, photo_share, photo_sets, warpback, retries)
    typer.echo(f"{len(files)} examples in {out}")


@data_app.command("pack")
@handle_errors
def data_pack(
    out: Path = typer.Option(..., "--out", "-o", help="folder for the packed scenes"),
    scenes: List[str] = typer.Option(["all"], "--scenes", help="names under shared/datasets-train or folders"),
    max_size: int = typer.Option(320, "--max-size", help="long side of the copied images"),
    photos: bool = typer.Option(False, "--photos", help="pack the photo sets (shared/photos) instead, --scenes "
                                "naming sets (default all)"),
):
    """Copy training scenes (or, with --photos, photo sets) with their images downsized, e.g. to carry
    them to a GPU host."""
    from .videomodel.data import pack, pack_photos

    n = pack_photos(out, scenes, max_size) if photos else pack(out, scenes, max_size)
    typer.echo(f"{n} images in {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
