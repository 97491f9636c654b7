"""Training the teacher: ``train_teacher(config, out_dir)`` / ``fvgen train teacher``.

Two phases in one resumable run: (1) the AutoencoderKL on single frames (``vae_steps``), then its
latent scale is calibrated; (2) the UNet + reference encoder on v-prediction with the VAE frozen
(``unet_steps``), dropping all conditioning with probability ``cond_drop`` (classifier-free
guidance). bf16 autocast on CUDA, AdamW with warm-up, gradient clipping, EMA of the denoiser.

Multi-GPU: launch the same command with ``torchrun --nproc_per_node=N``; the torch.distributed
environment variables switch on DDP (NCCL), each rank takes its slice of a seeded permutation of the
examples, rank 0 writes everything.

``OUT`` layout::

    log.jsonl        one line per logged step (phase, step, loss, lr, samples/s ...)
    ckpt/            resume state: state.json (phase, step, epoch, data position), unet/ vae/ ref/
                     ema_unet/ ema_ref/ (save_pretrained, shards <= 15 MB) and optim/ (AdamW state
                     in safetensors shards <= 15 MB); every file <= 16 MiB
    model/           the usable model (EMA weights, bf16): what ``fvgen generate --model`` takes
    samples/         step_XXXXXXX.mp4: warp | sample | ground truth, and .png of the middle frame

``max_minutes`` bounds a chunk (so does ``stop_file``, as soon as it exists): at the budget the run checkpoints and returns ``status: paused``;
calling it again resumes (``resume=True``). ``benchmark`` steps measure samples/s on random data.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...core.cache import replace_dir
from ...core.errors import FvgenError
from ..configs import TrainConf, load_train_config
from ..model import MAX_SHARD, TeacherModel
from ..vae import augment_frames, calibrate_scaling
from .distributed import Dist, start_process
from .state import load_optimizer, save_optimizer
from .steps import (
    Denoiser,
    VaeLoss,
    colour_augment,
    diffusion_loss,
    encode_batch,
    lr_at,
    make_train_scheduler,
)

# ----------------------------------------------------------------------------- the run

class Run:
    def __init__(self, conf: TrainConf, out: Path, resume: bool, max_minutes: float | None, dist: Dist,
                 num_workers: int | None = None, stop_file: str | Path | None = None):
        self.conf, self.out, self.dist = conf, Path(out), dist
        self.stop_file = Path(stop_file) if stop_file else None
        self.t_start = time.time()  # start of the current accounting interval (state["seconds"])
        self.t_launch = self.t_start  # start of this chunk: the max_minutes budget runs from here
        self.budget = None if not max_minutes else max_minutes * 60.0
        self.dev = dist.device
        self.ckpt = self.out / "ckpt"
        self.state = {"phase": "vae" if conf.vae_steps > 0 else "unet", "step": 0, "epoch": 0, "pos": 0,
                      "seconds": 0.0, "config": asdict(conf)}
        resumed = resume and (self.ckpt / "state.json").is_file()
        if resumed:
            self.state.update(json.loads((self.ckpt / "state.json").read_text()))
            self.model = TeacherModel.from_pretrained(self.ckpt, self.dev, torch.float32)
        elif conf.init_from:
            self.model = TeacherModel.from_pretrained(Path(conf.init_from), self.dev, torch.float32)
        else:
            self.model = TeacherModel.random(conf.preset, conf.seed).to(self.dev)
        if not resumed and self.model.vae is None:  # pixel space: no autoencoder phase
            self.state["phase"] = "unet"
        self.model.info["trained"] = False
        self.resumed = resumed
        self.num_workers = (8 if self.dev.type == "cuda" else 1) if num_workers is None else num_workers
        self.log_f = open(self.out / "log.jsonl", "a") if dist.main else None

    # -- data --------------------------------------------------------------------------
    def data_spec(self) -> tuple[int, str | None]:
        """(frames per clip, the fill the bank caches or None) of the model being trained."""
        p = self.model.preset
        return p.frames, (p.fill if p.residual else None)

    def _bank(self):
        from ..data import ExampleBank

        if not hasattr(self, "_examples"):
            t0 = time.time()
            held = self.conf.val_source
            frames, fill = self.data_spec()
            self._examples = ExampleBank(self.conf.data, frames, self.dev, self.num_workers or 1,
                                         (lambda src: held not in src) if held else None, fill)
            self._val = None
            if held:
                self._val = ExampleBank(self.conf.data, frames, self.dev, self.num_workers or 1,
                                        lambda src: held in src, fill)
            self.log(event="data", examples=len(self._examples), held_out=len(self._val) if self._val else 0,
                     seconds=round(time.time() - t0, 1))
        return self._examples

    @torch.no_grad()
    def validate(self, phase: str, ema: dict | None = None) -> None:
        """Score the held-out examples (``val_source``), main process only: the autoencoder's round
        trip (PSNR on up to 64 frames) or the EMA denoiser's loss on up to 8 clips at fixed noise."""
        self._bank()
        if self._val is None or not self.dist.main:
            return
        from ...core.metrics import psnr

        m = self.model
        batch = self._val.batch(range(min(8, len(self._val))))
        with self._autocast():
            if phase == "vae":
                x = batch["gt"].flatten(0, 1)[:64]
                rec = m.decode(m.encode(x)).float().clamp(-1, 1)
                self.log(phase=phase, step=self.state["step"], val_psnr=psnr((rec + 1) / 2, (x.float() + 1) / 2))
            else:
                den = Denoiser(m, ema["unet"], ema["ref"]) if ema else Denoiser(m)
                lat = encode_batch(m, batch)
                sched = make_train_scheduler(m)
                sched.alphas_cumprod = sched.alphas_cumprod.to(self.dev)
                loss = diffusion_loss(m, den, lat, sched, 0.0, torch.Generator().manual_seed(1234))
                self.log(phase=phase, step=self.state["step"], val_loss=float(loss))

    def batches(self):
        """Infinite batches for this rank, resuming at the recorded (epoch, position): each epoch a
        seeded permutation of the examples, rank r taking its slice of every global batch; ``pos``
        counts the batches handed out, so a checkpoint never skips or repeats examples."""
        bank = self._bank()
        B, W, r = self.conf.batch_size, self.dist.world, self.dist.rank
        n = len(bank)
        if n < B * W:
            raise FvgenError(f"{n} training examples are fewer than one global batch ({B * W})")
        epoch, pos = self.state["epoch"], self.state["pos"]
        while True:
            perm = np.random.default_rng([self.conf.seed, epoch]).permutation(n)
            while pos + B * W <= n:
                idx = perm[pos + r * B:pos + r * B + B].tolist()
                flip = None
                if self.conf.augment:  # seeded by position: a resumed run sees the same flips
                    flip = torch.from_numpy(np.random.default_rng([self.conf.seed, epoch, pos, r]).random(B) < 0.5)
                pos += B * W
                self.state["epoch"], self.state["pos"] = epoch, pos
                yield bank.batch(idx, flip)
            epoch, pos = epoch + 1, 0

    # -- logging, checkpoints ----------------------------------------------------------
    def log(self, **kw):
        if self.log_f:
            self.log_f.write(json.dumps({"time": round(time.time(), 1), **kw}) + "\n")
            self.log_f.flush()

    def over_budget(self) -> bool:
        stop = self.stop_file is not None and self.stop_file.exists()
        return self.dist.any(stop or (self.budget is not None and time.time() - self.t_launch > self.budget))

    def checkpoint(self, opt, ema: dict | None):
        self.state["seconds"] += time.time() - self.t_start
        self.t_start = time.time()
        if self.dist.main:
            tmp = self.out / ".ckpt.tmp"
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            self.model.save_pretrained(tmp, dtype=None, info={"trained": False, "checkpoint": True})
            if ema:
                for k, m in ema.items():
                    m.save_pretrained(tmp / f"ema_{k}", safe_serialization=True, max_shard_size=MAX_SHARD)
            if opt is not None:
                save_optimizer(opt, tmp / "optim")
            (tmp / "state.json").write_text(json.dumps(self.state, indent=1))
            replace_dir(tmp, self.ckpt)
        self.dist.barrier()

    def export(self, ema: dict | None):
        """The usable model folder (EMA weights, bf16)."""
        if not self.dist.main:
            return
        import shutil

        tmp = self.out / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        vae_steps = self.conf.vae_steps if self.state["phase"] == "unet" else self.state["step"]
        self.model.save_pretrained(tmp, dtype=torch.bfloat16, modules=ema,
                                   info={"trained": True, "vae_steps": vae_steps if self.model.vae is not None else 0,
                                         "unet_steps": self.state["step"] if self.state["phase"] == "unet" else 0,
                                         "train_config": asdict(self.conf), "ema": bool(ema)})
        shutil.rmtree(self.out / "model", ignore_errors=True)
        os.replace(tmp, self.out / "model")

    # -- phases ------------------------------------------------------------------------
    def _opt(self, params, lr):
        return torch.optim.AdamW(params, lr=lr, weight_decay=self.conf.weight_decay, betas=(0.9, 0.99))

    def _lr(self, opt, base, total):
        lr = lr_at(self.state["step"], base, self.conf.warmup, total, self.conf.lr_schedule, self.conf.lr_min_ratio)
        for g in opt.param_groups:
            g["lr"] = lr

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.conf.bf16 and self.dev.type == "cuda")

    def _wrap(self, module):
        if self.dist.enabled:
            return nn.parallel.DistributedDataParallel(module, device_ids=[self.dist.local] if self.dev.type == "cuda" else None)
        return module

    def train_vae(self) -> str:
        c = self.conf
        vae = self.model.vae
        vae.train()
        net = self._wrap(VaeLoss(vae, c.kl_weight))
        opt = self._opt(vae.parameters(), c.vae_lr)
        if self.resumed:
            load_optimizer(opt, self.ckpt / "optim")
        it = self.batches()
        aug_gen = torch.Generator().manual_seed(c.seed * 1000 + self.state["step"] * 7 + self.dist.rank)
        t0, seen = time.time(), 0
        while self.state["step"] < c.vae_steps:
            batch = next(it)
            x = torch.cat([batch["gt"].flatten(0, 1), batch["ref"]])  # frames are independent images
            x = x[torch.randperm(len(x))[: c.vae_batch]]
            if c.vae_augment:
                x = augment_frames(x, aug_gen)
            self._lr(opt, c.vae_lr, c.vae_steps)
            with self._autocast():
                loss, figs = net(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(vae.parameters(), c.grad_clip)
            opt.step()
            self.state["step"] += 1
            seen += len(x)
            s = self.state["step"]
            if s % c.log_every == 0 or s == c.vae_steps:
                self.log(phase="vae", step=s, loss=self.dist.all_mean(float(loss.detach())), grad_norm=float(gn),
                         images_per_s=seen * self.dist.world / (time.time() - t0), **figs)
                t0, seen = time.time(), 0
            if s % c.ckpt_every == 0 and s < c.vae_steps:
                self.validate("vae")
                self.checkpoint(opt, None)
            if s < c.vae_steps and self.over_budget():
                self.checkpoint(opt, None)
                return "paused"
        # calibrate the latent scale on a batch, then switch phase
        vae.eval()
        self.validate("vae")
        batch = next(it)
        frames = batch["gt"].flatten(0, 1)[:64]
        scale = calibrate_scaling(vae, frames)
        if self.dist.enabled:
            scale = self.dist.all_mean(scale)
            vae.register_to_config(scaling_factor=scale)
        self.log(phase="vae", step=self.state["step"], scaling_factor=scale)
        self.state.update(phase="unet", step=0)
        self.resumed = False  # the VAE optimizer state is not the UNet's
        self.checkpoint(None, None)
        return "done"

    def train_unet(self) -> str:
        c = self.conf
        m = self.model
        if m.vae is not None:
            m.vae.eval().requires_grad_(False)
        den = Denoiser(m)
        den.train()
        ema = {"unet": copy.deepcopy(m.unet).requires_grad_(False), "ref": copy.deepcopy(m.ref).requires_grad_(False)}
        if self.resumed and (self.ckpt / "ema_unet").is_dir():
            from diffusers import UNetSpatioTemporalConditionModel

            from ..model import RefEncoder

            ema["unet"] = UNetSpatioTemporalConditionModel.from_pretrained(self.ckpt / "ema_unet").to(self.dev).requires_grad_(False)
            ema["ref"] = RefEncoder.from_pretrained(self.ckpt / "ema_ref").to(self.dev).requires_grad_(False)
        net = self._wrap(den)
        opt = self._opt(den.parameters(), c.unet_lr)
        if self.resumed:
            load_optimizer(opt, self.ckpt / "optim")
        sched = make_train_scheduler(m)
        sched.alphas_cumprod = sched.alphas_cumprod.to(self.dev)
        it = self.batches()
        gen = torch.Generator().manual_seed(c.seed * 1000 + self.state["step"] * 7 + self.dist.rank)
        t0, seen = time.time(), 0
        status = "done"
        while self.state["step"] < c.unet_steps:
            batch = next(it)
            if c.augment and torch.rand(1, generator=gen).item() < 0.5:
                for k in ("gt", "warp", "mask", "fill"):  # time reversal, reference frame kept first
                    if k in batch:
                        batch[k] = torch.cat([batch[k][:, :1], batch[k][:, 1:].flip(1)], 1)
            if c.colour_augment > 0 or c.colour_invert > 0:
                batch = colour_augment(batch, c.colour_augment, gen, c.colour_invert)
            self._lr(opt, c.unet_lr, c.unet_steps)
            with self._autocast():
                lat = encode_batch(m, batch)
                loss = diffusion_loss(m, net, lat, sched, c.cond_drop, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(den.parameters(), c.grad_clip)
            opt.step()
            with torch.no_grad():
                d = min(c.ema_decay, (1 + self.state["step"]) / (10 + self.state["step"]))
                for k, src in (("unet", m.unet), ("ref", m.ref)):
                    for pe, p in zip(ema[k].parameters(), src.parameters()):
                        pe.lerp_(p, 1 - d)
            self.state["step"] += 1
            seen += batch["gt"].shape[0]
            s = self.state["step"]
            if s % c.log_every == 0 or s == c.unet_steps:
                self.log(phase="unet", step=s, loss=self.dist.all_mean(float(loss.detach())), grad_norm=float(gn),
                         lr=opt.param_groups[0]["lr"], clips_per_s=seen * self.dist.world / (time.time() - t0))
                t0, seen = time.time(), 0
            if c.sample_every and s % c.sample_every == 0:
                self.sample(ema, batch, s)
            if s % c.ckpt_every == 0 and s < c.unet_steps:
                self.validate("unet", ema)
                self.checkpoint(opt, ema)
                self.export(ema)
            if s < c.unet_steps and self.over_budget():
                status = "paused"
                break
        self.validate("unet", ema)
        self.checkpoint(opt, ema)
        self.export(ema)
        return status

    @torch.no_grad()
    def sample(self, ema: dict, batch: dict, step: int):
        if not self.dist.main:
            return
        from ...core.video import write_mp4, write_pngs
        from ..sample import sample_latents

        m = self.model
        view = TeacherModel(m.preset, unet=ema["unet"], vae=m.vae, ref=ema["ref"])
        view.scheduler_config = m.scheduler_config
        view.eval()
        out = sample_latents(view, batch["ref"][:1], batch["warp"][:1], batch["mask"][:1], self.conf.sample_steps,
                             cfg=3.0, generator=torch.Generator().manual_seed(0), autocast=self.conf.bf16)
        for net in ("unet", "ref"):
            ema[net].train(False)
        def img(x):
            return ((x.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
        row = np.concatenate([img(batch["warp"][0]), img(out[0]), img(batch["gt"][0])], axis=2)
        d = self.out / "samples"
        write_pngs(d, [row[len(row) // 2]], [f"step_{step:07d}"])
        try:  # a sample video is a nicety: a host without ffmpeg (the lent H200) must not stop training
            write_mp4(d / f"step_{step:07d}.mp4", list(row), fps=8)
        except Exception as e:  # noqa: BLE001 (imageio raises several unrelated types)
            for tmp in d.glob(f".step_{step:07d}.tmp.*"):
                tmp.unlink()
            self.log(step=step, warning=f"sample video not written: {type(e).__name__}: {str(e)[:160]}")
        self.model.unet.train()
        self.model.ref.train()

    def benchmark(self, steps: int) -> dict:
        """samples/s of UNet training steps on random data (the data pipeline excluded)."""
        c, m, p = self.conf, self.model, self.model.preset
        den = Denoiser(m).train()
        net = self._wrap(den)
        opt = self._opt(den.parameters(), c.unet_lr)
        sched = make_train_scheduler(m)
        sched.alphas_cumprod = sched.alphas_cumprod.to(self.dev)
        B, Fr = c.batch_size, p.frames
        batch = {"gt": torch.rand(B, Fr, 3, p.height, p.width, device=self.dev) * 2 - 1,
                 "warp": torch.rand(B, Fr, 3, p.height, p.width, device=self.dev) * 2 - 1,
                 "mask": (torch.rand(B, Fr, 1, p.height, p.width, device=self.dev) > 0.3).float(),
                 "ref": torch.rand(B, 3, p.height, p.width, device=self.dev) * 2 - 1}
        times = []
        for i in range(steps + 2):
            if self.dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.time()
            with self._autocast():
                lat = encode_batch(m, batch)
                loss = diffusion_loss(m, net, lat, sched, c.cond_drop)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if self.dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.time() - t)
        st = float(np.median(times[2:]))
        res = {"world_size": self.dist.world, "batch_per_gpu": B, "frames": Fr, "size": [p.width, p.height],
               "s_per_step": st, "samples_per_s": B * self.dist.world / st, "params": m.num_params(),
               "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if self.dev.type == "cuda" else None}
        self.log(benchmark=res)
        return res


def train_teacher(config_path: str | Path, out_dir: str | Path, resume: bool = True, max_minutes: float | None = None,
                  benchmark: int = 0, num_workers: int | None = None, stop_file: str | Path | None = None,
                  **overrides) -> dict:
    """Train (or resume) the teacher described by ``config_path`` (a name in
    :data:`~fvgen.videomodel.configs.TRAIN_CONFIGS` or a TOML file) into ``out_dir``.

    Returns ``{"status": "done" | "paused" | "benchmark", "phase", "step", "model": out/model or None, ...}``."""
    conf = load_train_config(str(config_path), **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dist = start_process(conf.seed)
    run = Run(conf, out, resume, max_minutes, dist, num_workers, stop_file)
    if dist.main:
        (out / "config.json").write_text(json.dumps(asdict(conf), indent=1))
    if benchmark:
        return {"status": "benchmark", **run.benchmark(benchmark)}
    if not conf.data:
        raise FvgenError("the training config lists no example shards (data = [...]); build them with "
                         "`fvgen data build --out DIR`")
    status = "done"
    if run.state["phase"] == "vae":
        status = run.train_vae()
    if status != "paused" and run.state["phase"] == "unet" and not run.over_budget():
        status = run.train_unet()
    elif status != "paused":
        status = "paused"
    res = {"status": status, "phase": run.state["phase"], "step": run.state["step"],
           "model": str(out / "model") if (out / "model").is_dir() else None}
    if dist.main:
        run.log(event="exit", **res)
    return res
