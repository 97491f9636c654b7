"""Generators: what turns warps (the point cloud drawn at novel cameras, holes where it saw nothing)
into novel views, behind one interface, and the per-pixel confidence the fit gives those views.

- ``none``: no generated views at all (``reconstruct`` fits the photos alone).
- ``fill``: the warp with its holes filled by our harmonic fill (:func:`.fill.harmonic_fill`); no
  model, runs anywhere, and the honest baseline every learned generator must beat end to end.
- ``student``: our shipped 4-step student (``fvgen/videomodel/weights/student``, distilled from the
  run-8 teacher; its model card says how and what it measures); ``teacher``: our teacher, which
  does not ship (it does not beat the fill: refused with one line); or a model folder
  (``--generator PATH``, a folder written by ``fvgen train teacher`` or ``fvgen train distill``). With
  ``generate.adapt.steps > 0`` a copy of the model is first fine-tuned on the input views
  (:mod:`.adapt`, leave one out) through :meth:`Generator.prepare`; off in every preset.
- ``viewcrafter``: the paper's teacher, our ViewCrafter-compatible model with the user's official
  checkpoint (``generate.checkpoint``; ``generate.clip_vocab``, OpenCLIP's BPE vocabulary file), or
  a ViewCrafter model folder (a distilled student: ``--generator viewcrafter --checkpoint DIR`` or
  ``--generator DIR``). No test-time adaptation (``generate.adapt.steps > 0`` is refused).

:func:`view_confidence` weighs each generated pixel: pixels the point cloud saw get 1, filled or
generated pixels ``hole_confidence``, both times a falloff with the camera's distance from the
nearest input camera, so views far from every photo count less; a view the warp covers less than
``min_coverage`` of gets 0 everywhere (the fit leaves it out).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from ..core.cameras import Camera
from ..core.errors import FvgenError
from .adapt import AdaptConf
from .distill.student import student_sampling

if TYPE_CHECKING:
    from ..priors.backends import PriorsConf
    from ..priors.prior import Priors

BUILTIN = ("none", "fill", "teacher", "student", "viewcrafter")


@dataclass(frozen=True)
class GenerateConf:
    generator: str = "none"  # none | fill | teacher | student | viewcrafter | a model folder
    views: int = 24  # generated views (the coverage trajectory's budget)
    trajectory: str = "coverage"  # coverage | interp | orbit | spiral | a .json camera path
    # confidence of the generated views' pixels in the fit: 1 where the point cloud saw the pixel,
    # ``hole_confidence`` where the generator made it up; times exp(-d / distance_falloff), d the
    # camera's distance from the nearest input camera over the inputs' mean spacing (0: no falloff)
    hole_confidence: float = 0.1
    distance_falloff: float = 2.0
    # a view whose warp covers less than this fraction of its pixels gets confidence 0 everywhere
    # and the fit leaves it out: a clip's frames that look past the scene are one invented colour
    # (dtu_scan24: 0-4 % covered frames beside an input camera); 0 keeps every view
    min_coverage: float = 0.2
    # video models only
    steps: int = 50
    cfg: float = 3.0  # classifier-free guidance scale (1: off)
    guidance_rescale: float = 0.7
    strength: float = 1.0  # 1: from pure noise; < 1: from the noised fill of the warp (SDEdit), fewer steps
    seed: int = 0
    # on a GPU, replay each window's whole sampling as one CUDA graph (fvgen.videomodel.graphed):
    # "auto" from 3 windows on (a capture costs over 2 eager runs), "on", "off"; progress then moves
    # per window; the same frames up to bf16 rounding (not in the cache key)
    cuda_graph: str = "auto"
    # the warp's own colour on every pixel the point cloud saw, the generator's only in the holes.
    # Why: those pixels get full confidence in the fit, and a sampled model redraws them with its
    # sampling noise (the distilled student of run 8: 1.0 dB lower on the held-out clips than with
    # the warp kept there; the teacher's one step: 0.05 dB; benchmarks/RESULTS.md, "Distillation")
    keep_seen: bool = True
    fps: int = 10
    # viewcrafter only: the official checkpoint, OpenCLIP's vocabulary, the variant ("" = from the
    # file); its sampling follows the official inference (guidance 7.5, rescale 0.7, eta 1)
    checkpoint: str = ""
    clip_vocab: str = ""
    variant: str = ""
    # model folders only: test-time adaptation to the input views before generating (``[generate.adapt]``;
    # ``steps = 0``, the default, is off). On fern (CPU) LoRA rank 4, 50 steps moved the held-out PSNR
    # from 20.13 to 20.09 dB for 250 s of pairs and steps: off in every preset (README, "Adaptation to the input views")
    adapt: AdaptConf = field(default_factory=AdaptConf)

    def __post_init__(self):
        if self.views < 1:
            raise FvgenError(f"generate.views must be at least 1, got {self.views}")
        if not 0.0 <= self.hole_confidence <= 1.0:
            raise FvgenError(f"generate.hole_confidence must be in [0, 1], got {self.hole_confidence}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise FvgenError(f"generate.min_coverage must be in [0, 1], got {self.min_coverage}")
        if self.distance_falloff < 0:
            raise FvgenError(f"generate.distance_falloff must be >= 0, got {self.distance_falloff}")
        if self.steps < 1:
            raise FvgenError("--steps must be at least 1")
        if not 0.0 < self.strength <= 1.0:
            raise FvgenError(f"--strength must be in (0, 1], got {self.strength}")
        from .sample import CUDA_GRAPH_SETTINGS

        if self.cuda_graph not in CUDA_GRAPH_SETTINGS:
            raise FvgenError(f"generate.cuda_graph must be auto, on or off, not {self.cuda_graph!r}")


def with_student_sampling(conf: GenerateConf, student: dict | None) -> GenerateConf:
    """``conf`` with a distilled student's own steps and CFG (``student``: ``{"steps", "cfg"}`` of its
    folder, None for a teacher), unless other values than the defaults (the teacher's: 50 steps,
    CFG 3.0) were set."""
    if student is None or (conf.steps, conf.cfg) != (GenerateConf.steps, GenerateConf.cfg):
        return conf
    return replace(conf, steps=int(student["steps"]), cfg=float(student["cfg"]))


@dataclass(frozen=True)
class GenerationInputs:
    """What the input views give a generator before it generates: the priors stage's images
    [N, H, W, 3] (floats in [0, 1]), their cameras (at that size), the priors, and the priors
    settings (the leave-one-out priors of :mod:`.adapt` are made with its dense stereo)."""

    images: np.ndarray
    cameras: Sequence[Camera]
    priors: "Priors"
    priors_conf: "PriorsConf | None" = None


class Generator(ABC):
    """Warped frames [H, W, 3] and masks [H, W] (1 = seen) along ``cameras`` -> frames [H, W, 3],
    all floats in [0, 1]. ``references(i)`` gives the input photo nearest frame ``i`` (video models
    condition on it). ``key`` identifies what it computes (name, settings, weights) for the cache.
    ``prepare(inputs)`` runs once before the first call with the input views (test-time adaptation)."""

    name = "?"
    notice: str | None = None  # one line the user should read before its views are used (e.g. a licence)
    adapts = False  # True when ``prepare`` changes what the generator computes (the stage keys on its inputs then)
    # False where the output already is the warp on every seen pixel (``generate.keep_seen`` changes nothing)
    regenerates_seen = True

    @property
    @abstractmethod
    def key(self) -> str:
        """What the generator computes, for the generate stage's cache key."""

    def steps(self, frames: int) -> int:
        """Progress units of ``prepare`` and one call on ``frames`` frames."""
        return frames

    def prepare(self, inputs: GenerationInputs, progress: Callable | None = None) -> dict | None:
        """Use the input views before generating; returns a report for the stage's figures (None:
        nothing done, as for every generator that does not adapt)."""
        return None

    @abstractmethod
    def __call__(self, frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], cameras: Sequence[Camera],
                 references: Callable[[int], np.ndarray], progress: Callable | None = None) -> list[np.ndarray]:
        """The generated frames."""


class FillGenerator(Generator):
    """The harmonic fill of each warp's holes, batched in torch on ``device``."""

    name = "fill"
    regenerates_seen = False

    def __init__(self, device: str = "cpu", iters: int = 300):
        self.device, self.iters = device, iters

    @property
    def key(self) -> str:
        return f"fill-harmonic-{self.iters}"

    @torch.no_grad()
    def __call__(self, frames, masks, cameras, references, progress=None):
        from .fill import harmonic_fill

        out = []
        for i, (f, m) in enumerate(zip(frames, masks)):
            img = torch.as_tensor(np.asarray(f, np.float32), device=self.device).permute(2, 0, 1)[None]
            valid = torch.as_tensor(np.asarray(m) > 0.5, dtype=torch.float32, device=self.device)[None, None]
            out.append(harmonic_fill(img, valid, iters=self.iters)[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
            if progress is not None:
                progress(i + 1, {})
        return out


class ModelGenerator(Generator):
    """A video model folder (our teacher or student format) sampled along the trajectory."""

    def __init__(self, folder: Path, conf: GenerateConf, device: str = "cpu", name: str | None = None):
        """``name``: what progress lines and the stage's figures call it (default ``model:FOLDER``)."""
        from .model import resolve_model, weights_hash

        self.folder = resolve_model(folder)
        conf = with_student_sampling(conf, student_sampling(self.folder))
        self.conf, self.device = conf, device
        self.name = name or f"model:{self.folder}"
        self.adapts = conf.adapt.steps > 0
        self._key = f"model-{weights_hash(self.folder)}-{conf.steps}-{conf.cfg}-{conf.guidance_rescale}-" \
                    f"{conf.strength}-{conf.seed}"
        if self.adapts:  # without adaptation the key stays what it was before adaptation existed
            self._key += "-adapt-" + "-".join(f"{k}={v}" for k, v in asdict(conf.adapt).items())
        self._adapted = None  # the adapted copy of the model, once prepare() made it

    @property
    def key(self) -> str:
        return self._key

    def steps(self, frames: int) -> int:
        from .model import read_model_config
        from .sample import run_steps, windows

        preset, _ = read_model_config(self.folder)
        return self.conf.adapt.steps + run_steps(self.conf.steps, self.conf.strength) * len(windows(frames, preset.frames))

    def prepare(self, inputs: GenerationInputs, progress: Callable | None = None) -> dict | None:
        """With ``conf.adapt.steps > 0``: a copy of the model fine-tuned on the input views'
        leave-one-out pairs (:func:`.adapt.adapt`), which the calls then sample; its report (the
        held leave-one-out loss before and after, seconds for the pairs and the steps)."""
        if not self.adapts:
            return None
        from .adapt import adapt
        from .model import TeacherModel

        model = TeacherModel.from_pretrained(self.folder, self.device, torch.float32)
        log = None
        if progress is not None:
            log = lambda step, loss: progress(step + 1, {"adapt loss": loss})  # noqa: E731
        self._adapted, report = adapt(model, np.asarray(inputs.images, np.float32), inputs.cameras, inputs.priors,
                                      self.conf.adapt, self.device, inputs.priors_conf, log=log)
        return report

    def __call__(self, frames, masks, cameras, references, progress=None):
        from .model import TeacherModel, inference_dtype
        from .sample import generate_clip

        if self.adapts and self._adapted is None:
            raise FvgenError("generate.adapt.steps > 0: the model adapts to the input views first (prepare(inputs), "
                             "as the generate stage does)")
        if self._adapted is not None:
            model, done = self._adapted, self.conf.adapt.steps
            if progress is not None:  # the sampling's units follow the adaptation's
                progress = (lambda p: lambda i, fields: p(done + i, fields))(progress)
        else:
            model = TeacherModel.from_pretrained(self.folder, self.device, inference_dtype(self.device))
        c = self.conf
        binary = [(np.asarray(m) > 0.5).astype(np.float32) for m in masks]
        return generate_clip(model, references, frames, binary, c.steps, c.cfg, c.guidance_rescale, c.seed,
                             progress, strength=c.strength, cuda_graph=c.cuda_graph)


class ViewCrafterGenerator(Generator):
    """ViewCrafter through :func:`.viewcrafter.viewcrafter_fill`: the official weights
    (``conf.checkpoint`` a ``.ckpt``; official sampling: guidance 7.5, eta 1) or a ViewCrafter model
    folder (a student of ``fvgen train distill --teacher viewcrafter:PATH``: its own steps, CFG 1 and
    eta 0 unless other steps / CFG are set)."""

    name = "viewcrafter"

    def __init__(self, conf: GenerateConf, device: str = "cpu"):
        from .viewcrafter import is_viewcrafter_folder, read_viewcrafter_config
        from .viewcrafter.checkpoint import CHECKPOINT_HINT

        if conf.adapt.steps > 0:
            raise FvgenError("test-time adaptation (generate.adapt.steps > 0) is not supported for ViewCrafter "
                             "generators: set it to 0")
        if not conf.checkpoint:
            raise FvgenError(f"--generator viewcrafter needs the official checkpoint: {CHECKPOINT_HINT}")
        path = Path(conf.checkpoint)
        self.guidance, self.eta = 7.5, 1.0  # the official inference's
        if path.is_dir():
            if not is_viewcrafter_folder(path):
                raise FvgenError(f"{path} is not a ViewCrafter model folder (nor a checkpoint file): {CHECKPOINT_HINT}")
            from .model import weights_hash

            _, _, provenance = read_viewcrafter_config(path)
            if provenance.get("trained") is False and not provenance.get("allow_untrained"):
                raise FvgenError(f"{path} holds untrained (random) ViewCrafter weights; refusing to output noise as views")
            student = provenance.get("student")
            if isinstance(student, dict):
                conf = with_student_sampling(conf, student)
                self.guidance, self.eta = conf.cfg, float(student.get("eta", 0.0))
            weights = weights_hash(path)
        elif path.is_file():
            st = path.stat()
            weights = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        else:
            raise FvgenError(f"ViewCrafter checkpoint not found: {path}")
        self.conf, self.device = conf, device
        self._key = f"viewcrafter-{weights}-{conf.variant}-{conf.steps}-{self.guidance}-{self.eta}-{conf.seed}"

    @property
    def key(self) -> str:
        return self._key

    def steps(self, frames: int) -> int:
        return self.conf.steps

    def __call__(self, frames, masks, cameras, references, progress=None):
        from .viewcrafter import load_viewcrafter, viewcrafter_fill

        c = self.conf
        dtype = torch.bfloat16 if str(self.device).startswith("cuda") else torch.float32
        pipe, variant = load_viewcrafter(c.checkpoint, c.variant or None, c.clip_vocab or None, self.device, dtype)
        out = viewcrafter_fill(pipe, variant, references, np.stack(frames), np.stack(masks), steps=c.steps, seed=c.seed,
                               guidance_scale=self.guidance, eta=self.eta,
                               progress=(lambda i, n: progress(i, {})) if progress else None)
        return list(out)


def make_generator(conf: GenerateConf, device: str = "cpu") -> Generator | None:
    """The generator ``conf.generator`` names (None for ``none``); refuses with one line before any
    work when it cannot run (no shipped weights, a folder that is not a model)."""
    name = conf.generator
    if name == "none":
        return None
    if name == "fill":
        return FillGenerator(device)
    if name in ("teacher", "student"):
        from .model import WEIGHTS_DIR, is_model_folder

        folder = WEIGHTS_DIR / ("embedded" if name == "teacher" else "student")
        if not is_model_folder(folder):
            raise FvgenError(f"no trained {name} weights ship with fvgen (the teacher does not beat the harmonic fill "
                             f"on held-out views): use --generator student, fill, or PATH to a model folder")
        gen = ModelGenerator(folder, conf, device, name=name)
        if name == "student":
            gen.notice = ("the shipped student was trained partly on scenes licensed for non-commercial use only "
                          f"({folder / 'README.md'}); --generator none fits the photos alone")
        return gen
    if name == "viewcrafter":
        return ViewCrafterGenerator(conf, device)
    if Path(name).exists():
        from .viewcrafter import is_viewcrafter_folder

        if is_viewcrafter_folder(name):  # a distilled ViewCrafter student
            return ViewCrafterGenerator(replace(conf, checkpoint=name), device)
        return ModelGenerator(Path(name), conf, device)
    raise FvgenError(f"unknown generator {name!r}: use {', '.join(BUILTIN)} or a model folder")


def nearest_view(cam: Camera, inputs: Sequence[Camera]) -> int:
    """Index of the input camera closest to ``cam`` (centre distance over the inputs' spread plus
    viewing-direction angle)."""
    cs = np.stack([c.center for c in inputs])
    scale = max(float(np.linalg.norm(cs - cs.mean(0), axis=1).mean()), 1e-6)
    d = np.linalg.norm(cs - cam.center, axis=1) / scale
    ang = np.array([np.arccos(np.clip(c.c2w[:3, 2] @ cam.c2w[:3, 2], -1, 1)) for c in inputs])
    return int(np.argmin(d + ang))


def input_spacing(inputs: Sequence[Camera]) -> float:
    """The inputs' mean distance to their nearest other input (the unit of camera distances)."""
    cs = np.stack([c.center for c in inputs])
    d = np.linalg.norm(cs[:, None] - cs[None], axis=-1) + np.eye(len(cs)) * 1e18
    return max(float(d.min(1).mean()) if len(cs) > 1 else 1.0, 1e-9)


def view_confidence(masks: Sequence[np.ndarray], cameras: Sequence[Camera], inputs: Sequence[Camera],
                    conf: GenerateConf) -> list[np.ndarray]:
    """Per-pixel confidence [H, W] in [0, 1] of each generated view (see the module docstring)."""
    cs = np.stack([c.center for c in inputs])
    unit = input_spacing(inputs)
    out = []
    for m, cam in zip(masks, cameras):
        seen = np.clip(np.asarray(m, np.float32), 0, 1)
        if float(np.mean(seen > 0.5)) < conf.min_coverage:
            out.append(np.zeros_like(seen))
            continue
        c = seen + (1 - seen) * conf.hole_confidence
        if conf.distance_falloff > 0:
            d = float(np.linalg.norm(cs - cam.center, axis=1).min()) / unit
            c = c * np.exp(-d / conf.distance_falloff)
        out.append(c.astype(np.float32))
    return out


def generator_summary(conf: GenerateConf) -> str:
    """A short, stable name of the generator for reports and run.json."""
    if conf.generator in BUILTIN:
        return conf.generator
    return f"model:{hashlib.sha256(str(Path(conf.generator).resolve()).encode()).hexdigest()[:8]}"
