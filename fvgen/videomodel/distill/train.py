"""Distilling the teacher into a 4-step student (issue 19; FVGen, arXiv 2508.06392, sec. 3.3):
``train_distill(teacher, out_dir, ...)`` / ``fvgen train distill --teacher DIR --out DIR --data ...``.

The teacher (:mod:`.teachers`): a model folder of ``fvgen train teacher``, or ``viewcrafter:PATH``,
our ViewCrafter-compatible model with the official ``ViewCrafter_16.ckpt`` / ``ViewCrafter_25.ckpt``
(``--clip-vocab`` for its prompt's text tokens) or a ViewCrafter model folder; the training clips
are the same example shards, brought to the ViewCrafter model's size as its generator does.

Two stages in one resumable run (``--stage gan|dmd|all`` picks what this call runs):

1. ``gan`` (``gan_steps``): the student (teacher init, 4 steps, backward simulation) against a
   discriminator made of the frozen teacher's encoder features on noised clips and trainable 3D
   heads; non-saturating loss, real clips positive, student clips negative.
2. ``dmd`` (``dmd_steps``): distribution matching with the softened reverse KL
   KL(½ p_real + ½ p_fake || p_real): per student update, ``fake_updates`` updates of the
   fake-score network (teacher init, the teacher's diffusion loss on detached student samples)
   and of the discriminator (so its density ratio follows the student), then the student step on
   ``w * (x0_fake - x0_real)`` with ``w = 2 / (1 + r)`` from the discriminator
   (:mod:`.losses` derives it), plus ``dmd_gan_weight`` x the GAN generator loss.

Ablations (``--ablation``, the paper's table plus plain DMD): ``full``; ``no-gan-init`` (no
stage 1, the discriminator learns during stage 2 only); ``gan-only`` (stage 1 only);
``gan-softkl`` (stage 2 without the GAN term on the student); ``plain-dmd`` (full, weight 1:
DMD's KL(p_fake || p_real)); and ours, ``full-reg`` (full plus ``reg_weight`` x the squared error
between the student's clip and the real clip it was conditioned on, DMD's original regression term
with the paired ground truth as its target: a distribution-matched student samples, and a sample
scores under the posterior mean in PSNR, which the end-to-end fit rewards; the term trades some of
that sharpness for distortion).

bf16 autocast on CUDA, AdamW, gradient clipping, EMA of the student, DDP with ``torchrun``
(each rank its slice of every global batch, rank 0 writes), chunks bounded by ``max_minutes`` or a
stop file, as the teacher's training (:mod:`fvgen.videomodel.train`, whose data loader this reuses:
the same example shards; clips of the teacher's length, ``teacher.frames``).

``OUT`` layout::

    config.json      the DistillConf of the run (ablation applied)
    log.jsonl        one line per logged step (stage, step, losses, D(real), D(fake), weight, ...)
    ckpt/            resume state: state.json (stage, step, data position), student/ (a model folder
                     of the teacher's kind), fake_<part>/ ema_<part>/ for each trained part (ours:
                     unet, ref; ViewCrafter: unet, resampler), disc/, optim_student/ optim_fake/ optim_disc/
    model/           the student (EMA weights, bf16; its config says steps 4, cfg 1, eta 0): ours, a
                     teacher-format folder that the teacher's loader and sampler run
                     (``sample_latents(..., steps=4, cfg=1.0)``); ViewCrafter's, a ViewCrafter model
                     folder (:mod:`fvgen.videomodel.viewcrafter.folder`) that ``--generator OUT/model``
                     (the ViewCrafter generator) runs with 4 steps, guidance 1, eta 0
    samples/         <stage>_XXXXXXX.mp4 / .png: warp | student (4 steps) | ground truth (model size)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...core.cache import replace_dir
from ...core.errors import FvgenError
from ..model import MAX_SHARD
from ..train.distributed import Dist, start_process
from ..train.run import Run
from ..train.state import load_optimizer, save_optimizer
from .losses import disc_loss, dmd_loss, gen_loss, softened_kl_weight
from .networks import DiscriminatorHeads, disc_logits, student_sample
from .teachers import (VIEWCRAFTER_PREFIX, DistillTeacher, ToX0, copy_parts, load_teacher,  # noqa: F401 (re-exported)
                       viewcrafter_path)

STAGES = ("gan", "dmd", "all")
RESUME_FIXED = ("teacher", "ablation", "student_steps", "softened")  # settings a resumed run must keep
# ablations that share stage 1 (they differ in stage 2 only): one finished GAN stage can start each
# (``--from-stage1``), so that their comparison is not also one of GAN stages
SHARED_STAGE1 = ("full", "gan-softkl", "plain-dmd", "full-reg")


@dataclass(frozen=True)
class DistillConf:
    name: str = "embedded"
    teacher: str = ""  # the teacher model folder (fvgen_model.json, unet/, ref/, ...) or viewcrafter:PATH
    clip_vocab: str = ""  # viewcrafter:PATH.ckpt only: OpenCLIP's vocabulary (the prompt's text tokens)
    variant: str = ""  # viewcrafter:PATH.ckpt only: 512 or 1024 ("" = from the file)
    data: tuple[str, ...] = ()  # example shard folders, the teacher's (fvgen data build)
    val_source: str = ""  # examples whose meta.source contains this are left out
    ablation: str = "full"  # the recipe when --ablation is not given (ABLATIONS)
    batch_size: int = 4  # clips per process and step
    student_steps: int = 4  # its timesteps: the teacher sampler's trailing spacing (999, 749, 499, 249)
    gan_steps: int = 4000  # stage 1 (the paper: about 4k iterations)
    dmd_steps: int = 4000  # stage 2 student updates
    fake_updates: int = 5  # fake-score (and discriminator) updates per student update in stage 2 (DMD2: 5)
    softened: bool = True  # weight 2 / (1 + r) (FVGen); False: plain DMD, weight 1
    dmd_gan_weight: float = 0.01  # the GAN generator loss on the student in stage 2 (0: none); not tuned
    # stage 2: weight of the mean squared error between the student's x0 and the real clip's (the
    # paired ground truth); 0 in FVGen, 1 in the full-reg ablation (not tuned)
    reg_weight: float = 0.0
    # guidance of the teacher's x0 (the "real score"; DMD distils a guided teacher with > 1); None:
    # the teacher sampler's own (``DistillTeacher.guidance``): 1.0 for ours, as every evaluation of our
    # teachers since run 4 samples (CFG 3.0 was worse); 7.5 for ViewCrafter, as its official inference
    real_cfg: float | None = None
    guidance_rescale: float = 0.7  # with real_cfg > 1, as the sampler
    t_min: int = 20  # DMD and discriminator timesteps: uniform in [t_min, t_max) (DMD: 0.02T to 0.98T)
    t_max: int = 980
    disc_hidden: int = 64  # channels of the 3D heads
    student_lr: float = 1e-5
    fake_lr: float = 1e-5
    disc_lr: float = 1e-4
    weight_decay: float = 0.0
    warmup: int = 0
    lr_schedule: str = "constant"  # or "cosine" (fvgen.videomodel.train.steps.lr_at), per stage
    lr_min_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ckpt_every: int = 250
    sample_every: int = 500
    log_every: int = 10
    seed: int = 0
    bf16: bool = True  # autocast on CUDA
    augment: bool = True  # horizontal flip and time reversal of whole examples, as the teacher's training

    def check(self) -> None:
        def bad(msg):
            raise FvgenError(f"distillation config {self.name}: {msg}")

        if self.ablation not in ABLATIONS:
            bad(f"ablation must be one of {', '.join(ABLATIONS)}, not {self.ablation!r}")
        if self.student_steps < 1 or self.student_steps > 50:
            bad(f"student_steps must be in 1..50, not {self.student_steps}")
        if not 0 <= self.t_min < self.t_max <= 1000:
            bad(f"need 0 <= t_min < t_max <= 1000, not {self.t_min}, {self.t_max}")
        if self.fake_updates < 1:
            bad(f"fake_updates must be at least 1, not {self.fake_updates}")
        if self.batch_size < 1:
            bad(f"batch_size must be at least 1, not {self.batch_size}")
        if self.gan_steps < 0 or self.dmd_steps < 0 or self.gan_steps + self.dmd_steps == 0:
            bad("gan_steps and dmd_steps must be >= 0, and not both 0")
        if self.lr_schedule not in ("constant", "cosine"):
            bad(f"lr_schedule must be constant or cosine, not {self.lr_schedule!r}")
        if self.dmd_gan_weight < 0:
            bad("dmd_gan_weight must be >= 0")
        if self.reg_weight < 0:
            bad("reg_weight must be >= 0")


# what each ablation changes (applied over the config and any overrides)
ABLATIONS = {
    "full": {},
    "no-gan-init": {"gan_steps": 0},
    "gan-only": {"dmd_steps": 0},
    "gan-softkl": {"dmd_gan_weight": 0.0},
    "plain-dmd": {"softened": False},
    "full-reg": {"reg_weight": 1.0},
}

DISTILL_CONFIGS = {
    # full-reg by default: +0.67 dB over the paper's recipe at equal length on the 36 held-out views,
    # one sample within 0.22 dB of the teacher's best (benchmarks/RESULTS.md, "The regression term")
    "embedded": DistillConf(ablation="full-reg"),
    "tiny-pixel": DistillConf(name="tiny-pixel", batch_size=2, gan_steps=3, dmd_steps=3, fake_updates=2,
                              ckpt_every=2, sample_every=3, log_every=1, bf16=False, student_lr=1e-4,
                              fake_lr=1e-4, disc_lr=1e-3, disc_hidden=8),
}
# the same small run for a tiny ViewCrafter-format teacher (CPU tests)
DISTILL_CONFIGS["tiny-viewcrafter"] = dataclasses.replace(DISTILL_CONFIGS["tiny-pixel"], name="tiny-viewcrafter")


def load_distill_config(spec: str = "embedded", ablation: str | None = None, **overrides) -> DistillConf:
    """A named config (``embedded``, ``tiny-pixel``, ``tiny-viewcrafter``), then ``overrides`` (None values ignored),
    then the ablation's changes."""
    if spec not in DISTILL_CONFIGS:
        raise FvgenError(f"unknown distillation config {spec!r}: use {', '.join(DISTILL_CONFIGS)}")
    conf = DISTILL_CONFIGS[spec]
    known = {f.name for f in dataclasses.fields(DistillConf)}
    unknown = set(overrides) - known
    if unknown:
        raise FvgenError(f"unknown distillation setting(s) {', '.join(sorted(unknown))}")
    conf = dataclasses.replace(conf, **{k: v for k, v in overrides.items() if v is not None})
    ablation = ablation or conf.ablation
    if ablation not in ABLATIONS:
        raise FvgenError(f"unknown ablation {ablation!r}: use {', '.join(ABLATIONS)}")
    conf = dataclasses.replace(conf, ablation=ablation, **ABLATIONS[ablation])
    conf.check()
    return conf


# ----------------------------------------------------------------------------- the losses on a batch

class Distiller:
    """The three trained networks (student, fake score, discriminator heads), the frozen teacher
    (a :class:`~.teachers.DistillTeacher`), their optimisers and one function per loss and per
    update. No data handling: :class:`DistillRun` feeds it batches (``lat``: ``teacher.encode_batch``
    of a pixel batch). ``student`` / ``fake``: the trained parts (``teacher.parts``), copies of the
    teacher's when None."""

    def __init__(self, conf: DistillConf, teacher: DistillTeacher, student: dict | None = None,
                 fake: dict | None = None, heads: nn.Module | None = None, wrap=lambda m: m):
        self.conf, self.teacher = conf, teacher
        dev = teacher.device
        self.dev = dev
        student = student if student is not None else copy_parts(teacher)
        fake = fake if fake is not None else copy_parts(teacher)
        for m in (*student.values(), *fake.values()):
            m.requires_grad_(True).train()
        self.student_parts, self.fake_parts = student, fake
        if heads is None:
            heads = DiscriminatorHeads(teacher.feature_channels(), conf.disc_hidden, teacher.frames)
        self.heads = heads.to(dev).requires_grad_(True).train()
        self.sched = teacher.sched
        self.student_den = teacher.denoiser(student)
        self.fake_den = teacher.denoiser(fake)
        # the wrapped (DDP) networks take part in their own update; the plain ones elsewhere
        self.student_ddp, self.fake_ddp, self.heads_ddp = wrap(self.student_den), wrap(self.fake_den), wrap(self.heads)
        self.student = teacher.x0_net(self.student_ddp)
        self.student_plain = teacher.x0_net(self.student_den)
        self.fake_x0 = teacher.x0_net(self.fake_den)
        self.teacher_x0net = teacher.x0_net(teacher.denoiser())

        def opt(params, lr):
            return torch.optim.AdamW(params, lr=lr, weight_decay=conf.weight_decay, betas=(0.9, 0.99))

        self.opt = {"student": opt(self.student_den.parameters(), conf.student_lr),
                    "fake": opt(self.fake_den.parameters(), conf.fake_lr),
                    "disc": opt(self.heads.parameters(), conf.disc_lr)}
        self.ema = {k: copy.deepcopy(m).requires_grad_(False) for k, m in student.items()}

    @property
    def real_cfg(self) -> float:
        """The real score's guidance: the config's, else the teacher sampler's own."""
        return self.conf.real_cfg if self.conf.real_cfg is not None else self.teacher.guidance

    # -- random draws, all from one CPU generator (reproducible across devices) -------------
    def noise_like(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        return torch.randn(x.shape, generator=gen).to(x.device, x.dtype)

    def timesteps(self, n: int, gen: torch.Generator | None) -> torch.Tensor:
        return torch.randint(self.conf.t_min, self.conf.t_max, (n,), generator=gen).to(self.dev)

    def noised(self, x0: torch.Tensor, t: torch.Tensor, gen) -> torch.Tensor:
        return self.teacher.add_noise(x0, self.noise_like(x0, gen), t)

    def sample(self, lat: dict, gen, grad: bool, net: nn.Module | None = None) -> torch.Tensor:
        """A student sample [B, F, c, h, w] at a random step of its chain (backward simulation)."""
        k = int(torch.randint(0, self.conf.student_steps, (1,), generator=gen))
        noise = self.noise_like(lat["x0"], gen)
        x0, _ = student_sample(net or self.student_plain, self.teacher, lat, self.conf.student_steps, k, noise, grad)
        return x0

    def logits(self, noisy, t, lat, heads=None) -> torch.Tensor:
        return disc_logits(self.teacher, heads or self.heads, noisy, t, lat)

    # -- losses ----------------------------------------------------------------------------
    def disc_loss(self, lat: dict, fake_x0: torch.Tensor, gen) -> tuple[torch.Tensor, dict]:
        """Real clips (``lat["x0"]``) positive, student clips negative, both noised at the same timesteps."""
        B = fake_x0.shape[0]
        t = self.timesteps(B, gen)
        both = torch.cat([self.noised(lat["x0"], t, gen), self.noised(fake_x0.detach().to(lat["x0"].dtype), t, gen)])
        two = {k: torch.cat([v, v]) for k, v in lat.items() if k in ("cat", "ref")}
        lg = self.logits(both, torch.cat([t, t]), two, self.heads_ddp)
        lr, lf = lg[:B], lg[B:]
        return disc_loss(lr, lf), {"d_real": float(torch.sigmoid(lr.detach()).mean()),
                                   "d_fake": float(torch.sigmoid(lf.detach()).mean())}

    def gan_gen_loss(self, lat: dict, x0: torch.Tensor, gen) -> torch.Tensor:
        t = self.timesteps(x0.shape[0], gen)
        return gen_loss(self.logits(self.noised(x0, t, gen), t, lat))

    def dmd_student_loss(self, lat: dict, x0: torch.Tensor, gen) -> tuple[torch.Tensor, dict]:
        """The distribution-matching loss of student samples ``x0`` (with grad) on noised copies."""
        c = self.conf
        t = self.timesteps(x0.shape[0], gen)
        xt = self.noised(x0.detach(), t, gen)
        with torch.no_grad():
            real = self.teacher.real_x0(xt, t, lat, self.real_cfg, c.guidance_rescale)
            fake = self.fake_x0(xt, t, lat["cat"], lat["ref"], torch.ones_like(t, dtype=xt.dtype))
            weight = softened_kl_weight(self.logits(xt, t, lat)) if c.softened else None
        loss, _ = dmd_loss(x0, fake, real, weight)
        figs = {"fake_minus_real": float((fake - real).abs().mean())}
        if weight is not None:
            figs["weight"] = float(weight.mean())
        return loss, figs

    def regression_loss(self, lat: dict, x0: torch.Tensor) -> torch.Tensor:
        """Mean squared error of student samples ``x0`` against the real clips they were conditioned on
        (``lat["x0"]``, the teacher's target space: the correction to the fill for residual models)."""
        return torch.nn.functional.mse_loss(x0.float(), lat["x0"].float())

    def fake_loss(self, lat: dict, x0: torch.Tensor, gen) -> torch.Tensor:
        """The teacher's diffusion loss of the fake-score network on detached student samples."""
        return self.teacher.diffusion_loss(self.fake_ddp, {**lat, "x0": x0.detach().to(lat["x0"].dtype)}, gen)

    # -- updates ---------------------------------------------------------------------------
    def _update(self, name: str, loss: torch.Tensor, params) -> float:
        opt = self.opt[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(list(params), self.conf.grad_clip)
        opt.step()
        return float(gn)

    def update_ema(self, updates: int) -> None:
        d = min(self.conf.ema_decay, (1 + updates) / (10 + updates))
        with torch.no_grad():
            for k, src in self.student_parts.items():
                for pe, p in zip(self.ema[k].parameters(), src.parameters()):
                    pe.lerp_(p, 1 - d)

    def disc_update(self, lat, fake_x0, gen) -> dict:
        loss, figs = self.disc_loss(lat, fake_x0, gen)
        return {"loss_disc": float(loss.detach()), "gn_disc": self._update("disc", loss, self.heads.parameters()), **figs}

    def gan_step(self, lat: dict, gen, autocast) -> dict:
        """Stage 1: one student update on the GAN loss, then one discriminator update."""
        with autocast():
            x0 = self.sample(lat, gen, grad=True, net=self.student)
            loss = self.gan_gen_loss(lat, x0, gen)
        out = {"loss_gen": float(loss.detach()), "gn_student": self._update("student", loss, self.student_den.parameters())}
        with autocast():
            out.update(self.disc_update(lat, x0.detach(), gen))
        return out

    def dmd_step(self, lat: dict, gen, autocast) -> dict:
        """Stage 2: ``fake_updates`` x (fresh student sample, fake-score update, discriminator update
        when the weight or the GAN term needs it), then one student update."""
        c = self.conf
        need_disc = c.softened or c.dmd_gan_weight > 0
        out: dict = {}
        for _ in range(c.fake_updates):
            with autocast():
                with torch.no_grad():
                    xs = self.sample(lat, gen, grad=False)
                lf = self.fake_loss(lat, xs, gen)
            out["loss_fake"] = float(lf.detach())
            out["gn_fake"] = self._update("fake", lf, self.fake_den.parameters())
            if need_disc:
                with autocast():
                    out.update(self.disc_update(lat, xs, gen))
        with autocast():
            x0 = self.sample(lat, gen, grad=True, net=self.student)
            loss, figs = self.dmd_student_loss(lat, x0, gen)
            out["loss_dmd"] = float(loss.detach())
            if c.dmd_gan_weight > 0:
                lg = self.gan_gen_loss(lat, x0, gen)
                out["loss_gen"] = float(lg.detach())
                loss = loss + c.dmd_gan_weight * lg
            if c.reg_weight > 0:
                lr = self.regression_loss(lat, x0)
                out["loss_reg"] = float(lr.detach())
                loss = loss + c.reg_weight * lr
        out["gn_student"] = self._update("student", loss, self.student_den.parameters())
        return {**out, **figs}

    def student_view(self, ema: bool = True):
        """The student as the teacher's kind of model (a TeacherModel, or a ViewCrafter pipeline),
        EMA or live weights."""
        return self.teacher.assemble(self.ema if ema else self.student_parts)


# ----------------------------------------------------------------------------- the run

class DistillRun(Run):
    """The teacher training's run (data loader, log, budget, DDP helpers) around a :class:`Distiller`."""

    def __init__(self, conf: DistillConf, out: Path, resume: bool, max_minutes: float | None, dist: Dist,
                 num_workers: int | None = None, stop_file: str | Path | None = None, command: str = ""):
        self.conf, self.out, self.dist = conf, Path(out), dist
        self.stop_file = Path(stop_file) if stop_file else None
        self.t_start = self.t_launch = time.time()
        self.budget = None if not max_minutes else max_minutes * 60.0
        self.dev = dist.device
        self.ckpt = self.out / "ckpt"
        self.state = {"stage": "gan" if conf.gan_steps > 0 else "dmd", "step": 0, "updates": 0, "epoch": 0,
                      "pos": 0, "seconds": 0.0, "config": asdict(conf), "command": command}
        resumed = resume and (self.ckpt / "state.json").is_file()
        self.teacher = load_teacher(conf.teacher, self.dev, clip_vocab=conf.clip_vocab, variant=conf.variant)
        student = fake = heads = None
        if resumed:
            saved = json.loads((self.ckpt / "state.json").read_text())
            now = json.loads(json.dumps(asdict(conf)))
            # step counts, data and rates may change between chunks; what was distilled may not
            diff = [k for k in RESUME_FIXED if saved["config"].get(k) != now[k]]
            if diff:
                raise FvgenError(f"{self.out} holds a distillation run with another {', '.join(diff)} "
                                 f"({', '.join(str(saved['config'].get(k)) for k in diff)}); use another --out or --no-resume")
            self.state.update(saved, config=now, command=command or saved.get("command", ""))
            student = self.teacher.load_student(self.ckpt / "student")
            fake = self._load_parts("fake")
            heads = DiscriminatorHeads.from_pretrained(self.ckpt / "disc").to(self.dev)
        self.dd = Distiller(conf, self.teacher, student, fake, heads, wrap=self._wrap)
        if resumed and all((self.ckpt / f"ema_{k}").is_dir() for k in self.teacher.parts):
            # a warm start (pack_warm_start) has no EMA: it restarts from the student's weights
            self.dd.ema = {k: m.requires_grad_(False) for k, m in self._load_parts("ema").items()}
        if resumed:
            for k, opt in self.dd.opt.items():
                load_optimizer(opt, self.ckpt / f"optim_{k}")
        self.resumed = resumed
        self.num_workers = (8 if self.dev.type == "cuda" else 1) if num_workers is None else num_workers
        self.log_f = open(self.out / "log.jsonl", "a") if dist.main else None

    def data_spec(self):
        return self.teacher.frames, self.teacher.fill

    def _load_parts(self, prefix: str) -> dict:
        """ckpt/<prefix>_<part>/ of each trained part (fake score, EMA of the student)."""
        return {k: self.teacher.part_class(k).from_pretrained(self.ckpt / f"{prefix}_{k}").to(self.dev)
                for k in self.teacher.parts}

    # -- checkpoints and exports ------------------------------------------------------------
    def checkpoint(self, *_):
        self.state["seconds"] += time.time() - self.t_start
        self.t_start = time.time()
        if self.dist.main:
            dd, tmp = self.dd, self.out / ".ckpt.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self.teacher.save_student(dd.student_parts, tmp / "student", None, {"trained": False, "checkpoint": True})
            named = [("disc", dd.heads)] + [(f"fake_{k}", m) for k, m in dd.fake_parts.items()] + \
                [(f"ema_{k}", m) for k, m in dd.ema.items()]
            for name, m in named:
                m.save_pretrained(tmp / name, safe_serialization=True, max_shard_size=MAX_SHARD)
            for k, opt in dd.opt.items():
                save_optimizer(opt, tmp / f"optim_{k}")
            (tmp / "state.json").write_text(json.dumps(self.state, indent=1))
            replace_dir(tmp, self.ckpt)
        self.dist.barrier()

    def export(self, *_):
        """out/model: the student (EMA, bf16), a folder of the teacher's kind that samples with 4 steps, no CFG."""
        if not self.dist.main:
            return
        c, tmp = self.conf, self.out / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        done = {"gan": self.state["step"] if self.state["stage"] == "gan" else self.state.get("gan_done", c.gan_steps),
                "dmd": self.state["step"] if self.state["stage"] == "dmd" else (c.dmd_steps if self.state["stage"] == "done" else 0)}
        info = self.teacher.info
        teacher_info = {k: info.get(k) for k in ("unet_steps", "train_config", "checkpoint") if k in info}
        self.teacher.save_student(self.dd.ema, tmp, torch.bfloat16, {
            "trained": True, "ema": True,
            "student": {"steps": c.student_steps, "cfg": 1.0, "eta": 0.0, "timesteps": self.teacher.chain(c.student_steps),
                        "ablation": c.ablation, "gan_steps": done["gan"], "dmd_steps": done["dmd"],
                        "real_cfg": self.dd.real_cfg,
                        "teacher": str(c.teacher), "teacher_info": teacher_info, "distill_config": asdict(c),
                        "command": self.state.get("command", "")}})
        shutil.rmtree(self.out / "model", ignore_errors=True)
        os.replace(tmp, self.out / "model")

    @torch.no_grad()
    def sample(self, batch: dict, tag: str):
        if not self.dist.main:
            return
        from ...core.video import write_mp4, write_pngs
        with self._autocast():
            warp, out, gt = self.teacher.preview(self.dd.ema, batch, self.conf.student_steps,
                                                 torch.Generator().manual_seed(0))

        def img(x):
            return ((x.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()

        row = np.concatenate([img(warp), img(out), img(gt)], axis=2)
        d = self.out / "samples"
        write_pngs(d, [row[len(row) // 2]], [tag])
        try:  # a host without ffmpeg must not stop training (as the teacher's)
            write_mp4(d / f"{tag}.mp4", list(row), fps=8)
        except Exception as e:  # noqa: BLE001
            for tmp in d.glob(f".{tag}.tmp.*"):
                tmp.unlink()
            self.log(warning=f"sample video not written: {type(e).__name__}: {str(e)[:160]}")

    # -- the loop ---------------------------------------------------------------------------
    def _lr_all(self, total: int):
        c = self.conf
        for name, base in (("student", c.student_lr), ("fake", c.fake_lr), ("disc", c.disc_lr)):
            self._lr(self.dd.opt[name], base, total)

    def run_stage(self, stage: str) -> str:
        c, dd = self.conf, self.dd
        total = c.gan_steps if stage == "gan" else c.dmd_steps
        it = self.batches()
        gen = torch.Generator().manual_seed(c.seed * 1000 + self.state["updates"] * 7 + self.dist.rank)
        t0, seen, status = time.time(), 0, "done"
        while self.state["step"] < total:
            batch = next(it)
            if c.augment and torch.rand(1, generator=gen).item() < 0.5:
                for k in ("gt", "warp", "mask", "fill"):  # time reversal, reference frame kept first
                    if k in batch:
                        batch[k] = torch.cat([batch[k][:, :1], batch[k][:, 1:].flip(1)], 1)
            self._lr_all(total)
            with self._autocast():
                lat = self.teacher.encode_batch(batch)
            figs = (dd.gan_step if stage == "gan" else dd.dmd_step)(lat, gen, self._autocast)
            self.state["updates"] += 1
            dd.update_ema(self.state["updates"])
            self.state["step"] += 1
            seen += batch["gt"].shape[0]
            s = self.state["step"]
            if s % c.log_every == 0 or s == total:
                figs = {k: self.dist.all_mean(v) if k.startswith("loss") else v for k, v in figs.items()}
                self.log(stage=stage, step=s, lr=dd.opt["student"].param_groups[0]["lr"],
                         clips_per_s=seen * self.dist.world / (time.time() - t0), **figs)
                t0, seen = time.time(), 0
            if c.sample_every and s % c.sample_every == 0:
                self.sample(batch, f"{stage}_{s:07d}")
            if s % c.ckpt_every == 0 and s < total:
                self.checkpoint()
                self.export()
            if s < total and self.over_budget():
                status = "paused"
                break
        if status == "done":
            if stage == "gan":
                self.state["gan_done"] = self.state["step"]
            self.state.update(stage="dmd" if stage == "gan" and c.dmd_steps > 0 else "done", step=0)
        self.checkpoint()
        self.export()
        return status


def train_distill(teacher: str | Path, out_dir: str | Path, stage: str = "all", ablation: str | None = None,
                  config: str = "embedded", resume: bool = True, max_minutes: float | None = None,
                  num_workers: int | None = None, stop_file: str | Path | None = None, command: str = "",
                  from_stage1: str | Path | None = None, warm_start: str | Path | None = None,
                  **overrides) -> dict:
    """Distil ``teacher`` (a model folder of ``fvgen train teacher``, or ``viewcrafter:PATH``: the
    official ViewCrafter ``.ckpt``, with ``clip_vocab``, or a ViewCrafter model folder) into a 4-step student in ``out_dir``
    (resumes from ``out_dir/ckpt``). ``stage``: ``gan`` runs (the rest of) stage 1 only, ``dmd``
    stage 2 only (stage 1 must be finished, or the ablation has none), ``all`` both.
    ``from_stage1``: a distillation folder whose stage 1 is finished and stage 2 not begun; a new
    ``out_dir`` starts from its checkpoint (and log), so that the stage-2 ablations (``full``,
    ``gan-softkl``, ``plain-dmd``) can branch from one GAN stage. ``warm_start``: a folder of
    :func:`pack_warm_start` (another machine's run, carried back); a new ``out_dir`` resumes from it
    with fresh optimisers and the EMA restarted from the student.

    Returns ``{"status": "done" | "paused", "stage", "step", "model": out/model}``."""
    if stage not in STAGES:
        raise FvgenError(f"--stage must be one of {', '.join(STAGES)}, not {stage!r}")
    if overrides.get("data"):
        overrides["data"] = tuple(str(Path(d).resolve()) for d in overrides["data"])
    spec = str(teacher)
    if spec.startswith(VIEWCRAFTER_PREFIX):  # viewcrafter:PATH, its path made absolute as a folder's is
        path = spec[len(VIEWCRAFTER_PREFIX):]
        spec = VIEWCRAFTER_PREFIX + (str(Path(path).resolve()) if path else "")
        viewcrafter_path(spec)  # a missing checkpoint fails here, before OUT is made
        if overrides.get("clip_vocab"):
            overrides["clip_vocab"] = str(Path(overrides["clip_vocab"]).resolve())
    elif spec:
        spec = str(Path(spec).resolve())
    conf = load_distill_config(config, ablation, teacher=spec, **overrides)
    if not conf.data:
        raise FvgenError("no example shards given (--data DIR ...: the teacher's, `fvgen data build`)")
    out = Path(out_dir)
    if from_stage1 is not None and warm_start is not None:
        raise FvgenError("--from-stage1 and --warm-start exclude each other")
    # a later chunk of a branched or warm-started run resumes its own checkpoint
    own = resume and (out / "ckpt" / "state.json").is_file()
    if from_stage1 is not None and not own:
        _branch(Path(from_stage1), out, conf)
    if warm_start is not None and not own:
        _warm_start(Path(warm_start), out)
    out.mkdir(parents=True, exist_ok=True)
    dist = start_process(conf.seed)
    run = DistillRun(conf, out, resume, max_minutes, dist, num_workers, stop_file, command)
    if dist.main:
        (out / "config.json").write_text(json.dumps(asdict(conf), indent=1))
    if stage == "dmd" and run.state["stage"] == "gan":
        raise FvgenError(f"the GAN stage is not finished (step {run.state['step']} of {conf.gan_steps}): run "
                         "--stage gan (or all) first, or --ablation no-gan-init")
    status, ran = "done", False
    if run.state["stage"] == "gan" and stage in ("gan", "all"):
        status, ran = run.run_stage("gan"), True
    if status == "done" and run.state["stage"] == "dmd" and stage in ("dmd", "all"):
        # a chunk makes at least one step; one that finished stage 1 stops at its budget
        status = "paused" if ran and run.over_budget() else run.run_stage("dmd")
    res = {"status": status, "stage": run.state["stage"], "step": run.state["step"],
           "model": str(out / "model") if (out / "model").is_dir() else None}
    if dist.main:
        run.log(event="exit", **res)
    return res


def _branch(src: Path, out: Path, conf: DistillConf) -> None:
    """Start ``out`` from ``src``'s checkpoint at the end of stage 1 (``train_distill(from_stage1=)``)."""
    state_file = src / "ckpt" / "state.json"
    if not state_file.is_file():
        raise FvgenError(f"--from-stage1 {src}: no distillation checkpoint there (ckpt/state.json)")
    state = json.loads(state_file.read_text())
    if not (state.get("stage") == "dmd" and state.get("step") == 0):
        raise FvgenError(f"--from-stage1 {src}: its run is at stage {state.get('stage')} step {state.get('step')}, "
                         "not at the end of stage 1 (run it with --stage gan)")
    if conf.ablation not in SHARED_STAGE1 or state["config"].get("ablation") not in SHARED_STAGE1:
        raise FvgenError(f"--from-stage1 branches only {', '.join(SHARED_STAGE1)} from one of them, not "
                         f"{conf.ablation} from {state['config'].get('ablation')}")
    if out.resolve() == src.resolve():
        raise FvgenError("--from-stage1 must name another folder than --out")
    # the branch's own stage-2 settings, so that its chunks resume it as that ablation
    state["config"].update(ablation=conf.ablation, softened=conf.softened, dmd_gan_weight=conf.dmd_gan_weight,
                           reg_weight=conf.reg_weight)
    state["branched_from"] = str(src.resolve())
    _seed_checkpoint(src / "ckpt", out, state)
    if (src / "log.jsonl").is_file():
        shutil.copyfile(src / "log.jsonl", out / "log.jsonl")


WARM_START_FORMAT = "fvgen-distill-warm-1"


def pack_warm_start(run_dir: str | Path, dest: str | Path) -> Path:
    """A distillation run's checkpoint made small enough to carry between machines: the student's
    live weights, the fake score and the discriminator heads, in bf16, and the run's state (stage,
    step, data position); no EMA, no optimiser states (a quarter of the checkpoint). ``--warm-start``
    resumes from it."""
    from safetensors.torch import load_file, save_file

    src, dest = Path(run_dir) / "ckpt", Path(dest)
    if not (src / "state.json").is_file():
        raise FvgenError(f"{run_dir}: no distillation checkpoint (ckpt/state.json)")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    keep = [d for d in sorted(src.iterdir()) if d.is_dir() and (d.name in ("student", "disc") or d.name.startswith("fake_"))]
    for d in keep:
        for f in d.rglob("*"):
            if f.is_dir():
                continue
            out = tmp / f.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            if f.suffix == ".safetensors":
                tensors = {k: v.to(torch.bfloat16) if v.dtype == torch.float32 else v for k, v in load_file(f).items()}
                save_file(tensors, out, metadata={"format": "pt"})
            else:
                shutil.copyfile(f, out)
    state = json.loads((src / "state.json").read_text())
    state["warm_start"] = {"format": WARM_START_FORMAT, "from": str(Path(run_dir).resolve()), "dtype": "bfloat16",
                           "dropped": ["ema", "optimizers"]}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def _warm_start(src: Path, out: Path) -> None:
    """Start ``out`` from a :func:`pack_warm_start` folder (``train_distill(warm_start=)``)."""
    state_file = src / "state.json"
    if not state_file.is_file() or json.loads(state_file.read_text()).get("warm_start", {}).get("format") != WARM_START_FORMAT:
        raise FvgenError(f"--warm-start {src}: not a packed distillation checkpoint (benchmarks/gpu_distill.sh pack)")
    _seed_checkpoint(src, out)


def _seed_checkpoint(src: Path, out: Path, state: dict | None = None) -> None:
    """``out/ckpt`` becomes a copy of the checkpoint folder ``src`` (with ``state`` as its
    state.json when given), made aside and moved in whole."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".ckpt.seed"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    if state is not None:
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(out / "ckpt", ignore_errors=True)
    os.replace(tmp, out / "ckpt")
