"""The teachers the distiller can start from, behind one interface (:class:`DistillTeacher`):

- :class:`OwnTeacher`: a model folder of ``fvgen train teacher`` (:class:`~fvgen.videomodel.model.TeacherModel`:
  a diffusers spatio-temporal UNet + reference encoder, in pixel or latent space, x0 or v);
- :class:`ViewCrafterTeacher`: ``viewcrafter:PATH``, our ViewCrafter-compatible model
  (:mod:`fvgen.videomodel.viewcrafter`) from the official ``.ckpt`` or a ViewCrafter model folder.

The distiller works on clips of the teacher's denoising space laid out [B, F, c, h, w] and on
x0 predictions; a teacher adapter says how to get there from a pixel batch of the example shards
(:meth:`encode_batch`), how to noise a clean sample (:meth:`add_noise`), how to read its
network's output as x0 (:meth:`x0_net`), which networks the student and the fake-score network
copy and train (:attr:`parts`: for ViewCrafter the UNet and the image resampler; the CLIP image
tower, the VAE and the prompt tokens stay frozen and shared), the frozen teacher's encoder
features for the discriminator (:meth:`features`), the student's chain (:meth:`chain`,
:meth:`chain_step`: DDIM with eta 0 on the teacher sampler's own steps, so the saved student
runs in that sampler unchanged) and how a student is saved and loaded.

Every denoiser the adapter builds has one signature, ``net(noisy, t, cat, ref, keep)``, with
``lat = encode_batch(batch)`` holding ``x0`` (the clean target), ``cat`` (per-frame conditioning)
and ``ref`` (the reference view's conditioning); ``keep`` [B] is 1 for the conditional prediction
and 0 for the unconditional one of classifier-free guidance.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import nn

from ...core.errors import FvgenError
from ..model import RefEncoder, TeacherModel
from ..train.steps import Denoiser, diffusion_loss, encode_batch, make_train_scheduler

VIEWCRAFTER_PREFIX = "viewcrafter:"


class ToX0(nn.Module):
    """A denoiser's output as an x0 prediction (the identity for x0-predicting models). For
    ``prediction = "v"``: ``x0 = (√ᾱ_t x_t - √(1-ᾱ_t) v) / s(t)``, where ``s`` is a dynamic-rescale
    table (ViewCrafter: the network was trained on ``x_t = √ᾱ_t s(t) x0 + √(1-ᾱ_t) ε``; None: 1)."""

    def __init__(self, net: nn.Module, prediction: str, alphas_cumprod: torch.Tensor,
                 scale: torch.Tensor | None = None):
        super().__init__()
        self.net, self.prediction = net, prediction
        self.register_buffer("alphas", alphas_cumprod.float(), persistent=False)
        self.register_buffer("scale", None if scale is None else scale.float(), persistent=False)

    def forward(self, noisy, t, cat, ref, keep):
        out = self.net(noisy, t, cat, ref, keep)
        if self.prediction == "x0":
            return out
        return x0_from_v(out, noisy, t, self.alphas, self.scale)


def x0_from_v(v: torch.Tensor, noisy: torch.Tensor, t, alphas_cumprod: torch.Tensor,
              scale: torch.Tensor | None = None) -> torch.Tensor:
    """``(√ᾱ_t x_t - √(1-ᾱ_t) v) / s(t)`` (float32 maths, ``v``'s dtype out)."""
    idx = torch.as_tensor(t, device=noisy.device).reshape(-1)
    shape = (-1, *[1] * (noisy.ndim - 1))
    a = alphas_cumprod.to(noisy.device)[idx].float().reshape(shape)
    x0 = a.sqrt() * noisy.float() - (1 - a).sqrt() * v.float()
    if scale is not None:
        x0 = x0 / scale.to(noisy.device)[idx].float().reshape(shape)
    return x0.to(v.dtype)


def ddim_x0_step(alphas_cumprod: torch.Tensor, x0: torch.Tensor, t: int, t_prev: int, x: torch.Tensor,
                 scale: torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from an x0 prediction: ε from (x_t, x0), then
    ``x_prev = √ᾱ_p s(p) x0 + √(1-ᾱ_p) ε``; ``t_prev`` -1 is the end (ᾱ_0, diffusers'
    ``set_alpha_to_one=False`` and the official sampler alike); ``scale`` the dynamic-rescale table
    (None: 1), under which x_t = √ᾱ_t s(t) x0 + √(1-ᾱ_t) ε."""
    a_t, a_p = alphas_cumprod[t].double(), alphas_cumprod[max(t_prev, 0)].double()
    s_t = scale[t].double() if scale is not None else 1.0
    s_p = scale[max(t_prev, 0)].double() if scale is not None else 1.0
    x64, x064 = x.double(), x0.double()
    eps = (x64 - a_t.sqrt() * s_t * x064) / (1 - a_t).sqrt()
    return (a_p.sqrt() * s_p * x064 + (1 - a_p).sqrt() * eps).to(x.dtype)


class DistillTeacher(ABC):
    """What the distiller asks of a frozen teacher (see the module docstring)."""

    spec: str  # what was asked for: a folder, or viewcrafter:PATH
    model: object  # the teacher itself (a TeacherModel, a ViewCrafterPipeline)
    parts: tuple[str, ...]  # the networks a student / fake-score network copies and trains
    frames: int  # clip length the data must give
    fill: str | None = None  # the fill the example bank caches for each warp (residual models)
    info: dict  # the teacher's provenance (what the student's provenance quotes)
    sched: object  # its diffusers scheduler (alphas_cumprod on the teacher's device)
    guidance: float  # its sampler's own guidance scale: the real score's unless the config sets one

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @abstractmethod
    def encode_batch(self, batch: dict) -> dict:
        """Pixel batch of the example shards -> ``{"x0", "cat", "ref"}`` (no grad)."""

    @abstractmethod
    def trainable(self) -> dict[str, nn.Module]:
        """The teacher's own networks named in :attr:`parts` (copied, never trained in place)."""

    @abstractmethod
    def part_class(self, name: str) -> type:
        """The ``from_pretrained`` class of part ``name`` (resuming a run)."""

    @abstractmethod
    def denoiser(self, parts: dict | None = None) -> nn.Module:
        """``net(noisy, t, cat, ref, keep)`` -> the network's raw output, over ``parts`` (None: the
        teacher's own); one module, so DDP and the optimiser see the trained parts together."""

    @abstractmethod
    def x0_net(self, denoiser: nn.Module) -> nn.Module:
        """``denoiser`` with its output read as x0 (:class:`ToX0`)."""

    def real_x0(self, noisy: torch.Tensor, t: torch.Tensor, lat: dict, cfg: float,
                guidance_rescale: float) -> torch.Tensor:
        """The frozen teacher's x0 prediction (the "real score") with classifier-free guidance as
        its sampler applies it (:func:`.networks.teacher_x0`: on the x0 predictions)."""
        from .networks import teacher_x0

        if not hasattr(self, "_x0net"):
            self._x0net = self.x0_net(self.denoiser())
        return teacher_x0(self._x0net, noisy, t, lat, cfg, guidance_rescale)

    @abstractmethod
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t of clean samples x0 at timesteps t [B], as the teacher was trained."""

    @abstractmethod
    def diffusion_loss(self, denoiser: nn.Module, lat: dict, generator: torch.Generator | None) -> torch.Tensor:
        """The teacher's own training loss of ``denoiser`` on ``lat`` (the fake-score network's)."""

    @abstractmethod
    def features(self, noisy: torch.Tensor, t: torch.Tensor, lat: dict) -> list[torch.Tensor]:
        """The frozen teacher's encoder features of noisy clips, each [B*F, C_i, h_i, w_i];
        gradients flow to ``noisy``."""

    @abstractmethod
    def feature_channels(self) -> tuple[int, ...]: ...

    @abstractmethod
    def chain(self, steps: int) -> list[int]:
        """The student's timesteps for ``steps`` steps (the teacher sampler's trailing spacing)."""

    @abstractmethod
    def chain_step(self, x0: torch.Tensor, t: int, t_prev: int, x: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step of the teacher's sampler from x0 (``t_prev`` -1: the end)."""

    @abstractmethod
    def assemble(self, parts: dict):
        """A student of ``parts`` as the teacher's kind of model (sharing the frozen networks)."""

    @abstractmethod
    def save_student(self, parts: dict, folder: Path, dtype: torch.dtype | None, info: dict) -> None:
        """A folder the teacher's loader and sampler (or generator) run."""

    @abstractmethod
    def load_student(self, folder: Path) -> dict:
        """The trained parts of a folder :meth:`save_student` wrote."""

    @abstractmethod
    def preview(self, parts: dict, batch: dict, steps: int, generator: torch.Generator) -> tuple:
        """(warp, student sample, ground truth) of the batch's first clip, each [F, 3, H, W] in
        [-1, 1] at the model's size: the run's sample images."""


# ----------------------------------------------------------------------------- our teacher

class OwnTeacher(DistillTeacher):
    """A model folder of ``fvgen train teacher``."""

    parts = ("unet", "ref")
    guidance = 1.0  # every evaluation of our teachers since run 4 samples with CFG 1 (3.0 was worse)

    def __init__(self, model: TeacherModel, spec: str = ""):
        self.model, self.spec = model, spec
        self.frames = model.preset.frames
        self.fill = model.preset.fill if model.preset.residual else None
        self.info = model.info
        self.sched = make_train_scheduler(model)
        self.sched.alphas_cumprod = self.sched.alphas_cumprod.to(model.device)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def encode_batch(self, batch):
        return encode_batch(self.model, batch)

    def trainable(self):
        return {"unet": self.model.unet, "ref": self.model.ref}

    def part_class(self, name):
        from diffusers import UNetSpatioTemporalConditionModel

        return {"unet": UNetSpatioTemporalConditionModel, "ref": RefEncoder}[name]

    def denoiser(self, parts=None):
        parts = parts or {}
        return Denoiser(self.model, parts.get("unet"), parts.get("ref"))

    def x0_net(self, denoiser):
        return ToX0(denoiser, self.model.preset.prediction, self.sched.alphas_cumprod)

    def add_noise(self, x0, noise, t):
        return self.sched.add_noise(x0, noise, t)

    def diffusion_loss(self, denoiser, lat, generator):
        return diffusion_loss(self.model, denoiser, lat, self.sched, 0.0, generator)

    def features(self, noisy, t, lat):
        from .networks import full_condition, unet_features

        cat, tokens = full_condition(self.model, lat, noisy.shape[1])
        return unet_features(self.model.unet, torch.cat([noisy, cat.to(noisy.dtype)], 2), t, tokens)

    def feature_channels(self):
        from .networks import feature_channels

        return feature_channels(self.model.unet)

    def chain(self, steps):
        from .networks import x0_scheduler

        return [int(t) for t in x0_scheduler(self.model, steps).timesteps]

    def chain_step(self, x0, t, t_prev, x):
        return ddim_x0_step(self.sched.alphas_cumprod, x0, t, t_prev, x)

    def assemble(self, parts: dict) -> TeacherModel:
        """The student as a TeacherModel (the teacher's preset and schedule)."""
        m = TeacherModel(self.model.preset, unet=parts["unet"], vae=self.model.vae, ref=parts["ref"])
        m.scheduler_config = dict(self.model.scheduler_config)
        return m

    def save_student(self, parts, folder, dtype, info):
        self.assemble(parts).save_pretrained(folder, dtype=dtype, info=info)

    def load_student(self, folder):
        s = TeacherModel.from_pretrained(folder, self.device)
        return {"unet": s.unet, "ref": s.ref}

    @torch.no_grad()
    def preview(self, parts, batch, steps, generator):
        from ..sample import sample_latents

        out = sample_latents(self.assemble(parts).eval(), batch["ref"][:1], batch["warp"][:1], batch["mask"][:1],
                             steps, cfg=1.0, generator=generator)
        return batch["warp"][0], out[0], batch["gt"][0]


# ----------------------------------------------------------------------------- ViewCrafter

class ViewCrafterDenoiser(nn.Module):
    """The ViewCrafter UNet and image resampler as ``net(noisy, t, cat, ref, keep)`` on [B, F, c, h, w]
    clips: ``cat`` the render latents (concatenated to the noisy latent), ``ref`` the reference
    view's CLIP image tokens (through the resampler into cross-attention after the prompt's text
    tokens), fps the variant's. ``keep`` 0 gives the official unconditional inputs: the empty
    prompt's tokens and the CLIP tokens of an all-zero image, the same render latents."""

    def __init__(self, teacher: ViewCrafterTeacher, unet: nn.Module, resampler: nn.Module):
        super().__init__()
        self.unet, self.resampler = unet, resampler
        self._teacher = [teacher]  # not a sub-module: its networks are not this module's parameters

    def context(self, ref: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        tc = self._teacher[0]
        B = ref.shape[0]
        text = tc.prompt_embeds.expand(B, -1, -1)
        clip = ref
        if keep is not None:
            k = keep.reshape(-1, 1, 1) > 0.5
            text = torch.where(k, text, tc.null_embeds.expand(B, -1, -1))
            clip = torch.where(k, clip, tc.null_image_tokens.to(clip.dtype).expand(B, -1, -1))
        image = self.resampler(clip)
        return torch.cat([text.to(image.dtype), image], 1)

    def forward(self, noisy, t, cat, ref, keep):
        tc = self._teacher[0]
        B = noisy.shape[0]
        x = torch.cat([noisy, cat.to(noisy.dtype)], 2).transpose(1, 2)  # [B, 8, F, h, w]
        t = torch.as_tensor(t, device=noisy.device).reshape(-1).expand(B)
        v = self.unet(x, t, self.context(ref, keep), torch.full((B,), tc.variant.fs, device=noisy.device))
        return v.transpose(1, 2)


class ViewCrafterTeacher(DistillTeacher):
    """Our ViewCrafter-compatible model as the teacher: latents of its VAE (posterior samples
    times 0.18215, frame by frame, as its pipeline encodes), v-prediction on the zero-terminal-SNR
    schedule with the dynamic rescale (x_t = √ᾱ_t s(t) x0 + √(1-ᾱ_t) ε), the prompt's text tokens
    (computed once), the reference view's CLIP tokens through the resampler, fps = the variant's.
    The student and the fake-score network copy the UNet and the resampler.

    Clips are brought to the variant's size as the ViewCrafter generator does (scaled to cover,
    centre-cropped; warp holes black before resizing)."""

    parts = ("unet", "resampler")
    guidance = 7.5  # the official inference's (with guidance rescale 0.7)

    def __init__(self, pipe, variant, spec: str, info: dict | None = None):
        from ..viewcrafter import DEFAULT_PROMPT, dynamic_rescale_table, make_scheduler

        self.pipe, self.variant, self.spec = pipe, variant, spec
        self.model = pipe
        self.info = dict(info or {})
        self.frames = variant.frames
        for name in ("unet", "vae", "resampler", "image_encoder", "text_encoder"):
            net = getattr(pipe, name, None)
            if net is not None:
                net.requires_grad_(False).eval()
        dev = self.device
        self.sched = make_scheduler()
        self.sched.alphas_cumprod = self.sched.alphas_cumprod.to(dev)
        self.scale = dynamic_rescale_table(pipe.base_scale, num_train_timesteps=len(self.sched.alphas_cumprod)).to(dev)
        self.prompt = DEFAULT_PROMPT
        with torch.no_grad():
            self.prompt_embeds = pipe.encode_prompt(self.prompt, 1).float()
            self.null_embeds = pipe.encode_prompt("", 1).float()
            zero = torch.zeros(1, 3, variant.height, variant.width, device=dev, dtype=pipe.model_dtype)
            self.null_image_tokens = pipe.image_encoder(zero).float()
        # the two prompts are all the distillation needs of the text tower: keep their tokens, free it
        pipe.stored_prompts = {self.prompt: self.prompt_embeds, "": self.null_embeds}
        if getattr(pipe, "text_encoder", None) is not None:
            pipe.register_modules(text_encoder=None)

    @property
    def device(self) -> torch.device:
        return self.pipe.model_device

    # -- data -----------------------------------------------------------------------------
    def to_model_size(self, x: torch.Tensor) -> torch.Tensor:
        """[..., 3, H, W] in [-1, 1] -> [..., 3, h, w] at the variant's size (crop to its aspect, resize)."""
        from ..viewcrafter.generate import fit_frames

        return fit_frames(x.float(), self.variant.height, self.variant.width).clamp(-1, 1)

    @torch.no_grad()
    def model_clips(self, batch: dict) -> dict:
        """gt, renders (holes black) [B, F, 3, h, w] and the reference [B, 3, h, w] at the model size."""
        valid = batch["mask"] > 0.5
        renders = torch.where(valid, batch["warp"], -torch.ones_like(batch["warp"]))  # black holes, as the official renders
        return {"gt": self.to_model_size(batch["gt"]), "renders": self.to_model_size(renders),
                "ref": self.to_model_size(batch["ref"])}

    @torch.no_grad()
    def latents(self, clips: torch.Tensor) -> torch.Tensor:
        from ..viewcrafter.vae import encode_frames

        vae = self.pipe.vae
        return encode_frames(vae, clips.transpose(1, 2).to(vae.dtype)).float().transpose(1, 2)

    @torch.no_grad()
    def encode_batch(self, batch):
        m = self.model_clips(batch)
        tokens = self.pipe.image_encoder(m["ref"].to(self.pipe.model_dtype)).float()
        return {"x0": self.latents(m["gt"]), "cat": self.latents(m["renders"]), "ref": tokens}

    # -- networks -------------------------------------------------------------------------
    def trainable(self):
        return {"unet": self.pipe.unet, "resampler": self.pipe.resampler}

    def part_class(self, name):
        from ..viewcrafter import ImageResampler, ViewCrafterUNet

        return {"unet": ViewCrafterUNet, "resampler": ImageResampler}[name]

    def denoiser(self, parts=None):
        parts = parts or self.trainable()
        return ViewCrafterDenoiser(self, parts["unet"], parts["resampler"])

    def x0_net(self, denoiser):
        return ToX0(denoiser, "v", self.sched.alphas_cumprod, self.scale)

    def _coef(self, t: torch.Tensor, ndim: int, table: torch.Tensor) -> torch.Tensor:
        return table[torch.as_tensor(t, device=table.device).reshape(-1)].float().reshape(-1, *[1] * (ndim - 1))

    def real_x0(self, noisy, t, lat, cfg, guidance_rescale):
        """Guidance as the official sampler applies it: on v (:func:`~fvgen.videomodel.viewcrafter.guided_v`,
        then guidance rescale), the unconditional pass with the empty prompt and a zero image."""
        from ..viewcrafter import guided_v

        den = self.denoiser()
        B = noisy.shape[0]
        keep = torch.ones(B, device=noisy.device)
        if cfg == 1.0:
            v = den(noisy, t, lat["cat"], lat["ref"], keep).float()
        else:
            t = torch.as_tensor(t, device=noisy.device).reshape(-1).expand(B)
            two = lambda x: torch.cat([x, x])  # noqa: E731
            v_u, v_c = den(two(noisy), two(t), two(lat["cat"]), two(lat["ref"]), torch.cat([keep * 0, keep])).float().chunk(2)
            v = guided_v(v_c, v_u, cfg, guidance_rescale)
        return x0_from_v(v, noisy, t, self.sched.alphas_cumprod, self.scale)

    def add_noise(self, x0, noise, t):
        scaled = x0 * self._coef(t, x0.ndim, self.scale).to(x0.device, x0.dtype)
        return self.sched.add_noise(scaled, noise, torch.as_tensor(t, device=x0.device))

    def diffusion_loss(self, denoiser, lat, generator):
        """v-prediction loss on the rescaled latents (the official training's ``p_losses`` with
        dynamic rescale: target ``v(s(t) x0, ε, t)``)."""
        import torch.nn.functional as F

        x0 = lat["x0"]
        B, dev = x0.shape[0], x0.device
        t = torch.randint(0, self.sched.config.num_train_timesteps, (B,), generator=generator).to(dev)
        noise = torch.randn(x0.shape, generator=generator).to(dev, x0.dtype)
        out = denoiser(self.add_noise(x0, noise, t), t, lat["cat"], lat["ref"], torch.ones(B, device=dev))
        target = self.sched.get_velocity(x0 * self._coef(t, x0.ndim, self.scale).to(dev, x0.dtype), noise, t)
        return F.mse_loss(out.float(), target.float())

    def features(self, noisy, t, lat):
        den = ViewCrafterDenoiser(self, self.pipe.unet, self.pipe.resampler)
        B = noisy.shape[0]
        x = torch.cat([noisy, lat["cat"].to(noisy.dtype)], 2).transpose(1, 2)
        t = torch.as_tensor(t, device=noisy.device).reshape(-1).expand(B)
        return self.pipe.unet.encoder_features(x, t, den.context(lat["ref"]),
                                               torch.full((B,), self.variant.fs, device=noisy.device))

    def feature_channels(self):
        return self.pipe.unet.feature_channels()

    # -- the student's chain ----------------------------------------------------------------
    def chain(self, steps):
        return self.pipe.timesteps_for(steps)

    def chain_step(self, x0, t, t_prev, x):
        """The pipeline's DDIM step (:func:`fvgen.videomodel.viewcrafter.ddim_step`, eta 0, with the
        dynamic rescale) written on x0."""
        return ddim_x0_step(self.sched.alphas_cumprod, x0, t, t_prev, x, self.scale)

    # -- students ---------------------------------------------------------------------------
    def assemble(self, parts: dict):
        """The student as a ViewCrafter pipeline (the teacher's VAE, image tower and prompt tokens)."""
        from ..viewcrafter import ViewCrafterPipeline, make_scheduler

        p = ViewCrafterPipeline(parts["unet"], self.pipe.vae, parts["resampler"], self.pipe.image_encoder,
                                make_scheduler(), base_scale=self.pipe.base_scale)
        p.stored_prompts = {self.prompt: self.prompt_embeds, "": self.null_embeds}
        return p

    def save_student(self, parts, folder, dtype, info):
        from ..viewcrafter import save_viewcrafter_folder

        nets = {"unet": parts["unet"], "resampler": parts["resampler"], "image_encoder": self.pipe.image_encoder,
                "vae": self.pipe.vae}
        save_viewcrafter_folder(folder, nets, self.variant, self.prompt_embeds, self.null_embeds, self.prompt,
                                {**info, "teacher": self.spec}, dtype)

    def load_student(self, folder):
        from ..viewcrafter import load_viewcrafter_folder

        pipe, _, _ = load_viewcrafter_folder(folder, self.device, torch.float32)
        return {"unet": pipe.unet, "resampler": pipe.resampler}

    @torch.no_grad()
    def preview(self, parts, batch, steps, generator):
        m = self.model_clips({k: v[:1] for k, v in batch.items()})
        pipe = self.assemble(parts)
        was = {k: v.training for k, v in parts.items()}
        out = pipe(m["renders"].transpose(1, 2), m["ref"], prompt=self.prompt, timesteps=self.chain(steps),
                   guidance_scale=1.0, eta=0.0, fps=self.variant.fs, generator=generator)
        for k, v in parts.items():  # the pipeline puts its networks in eval mode
            v.train(was[k])
        return m["renders"][0], out[0].transpose(0, 1), m["gt"][0]


# ----------------------------------------------------------------------------- loading

def viewcrafter_path(spec: str) -> Path:
    """The file or folder of ``viewcrafter:PATH``; a one-line error when it is neither a file nor a
    ViewCrafter model folder."""
    from ..viewcrafter import is_viewcrafter_folder

    raw = spec[len(VIEWCRAFTER_PREFIX):]
    path = Path(raw)
    if not raw or not (path.is_file() or is_viewcrafter_folder(path)):
        what = "folder is not a ViewCrafter model folder" if raw and path.is_dir() else "checkpoint not found"
        raise FvgenError(f"ViewCrafter teacher {what}: {raw or '(none)'} (--teacher viewcrafter:PATH/ViewCrafter_25.ckpt "
                         "or viewcrafter:PATH/ViewCrafter_16.ckpt, the official weights)")
    return path


def load_teacher(spec: str | Path, device, dtype=torch.float32, clip_vocab: str | None = None,
                 variant: str | None = None) -> DistillTeacher:
    """The frozen teacher (eval mode, no parameter gradients): a model folder of ``fvgen train
    teacher``, or ``viewcrafter:PATH`` (the official ``.ckpt`` with ``clip_vocab``, or a ViewCrafter
    model folder)."""
    spec = str(spec)
    if not spec:
        raise FvgenError("no teacher given (--teacher DIR: a model/ folder written by `fvgen train teacher`, "
                         "or viewcrafter:PATH/ViewCrafter_25.ckpt)")
    if spec.startswith(VIEWCRAFTER_PREFIX):
        from ..viewcrafter import load_viewcrafter, read_viewcrafter_config

        path = viewcrafter_path(spec)
        info = read_viewcrafter_config(path)[2] if path.is_dir() else {"checkpoint": str(path)}
        pipe, v = load_viewcrafter(path, variant or None, clip_vocab or None, device, dtype)
        return ViewCrafterTeacher(pipe, v, spec, info)
    t = TeacherModel.from_pretrained(Path(spec), device, dtype)
    for m in t.modules().values():
        m.requires_grad_(False)
    return OwnTeacher(t.eval(), spec)


def copy_parts(teacher: DistillTeacher) -> dict[str, nn.Module]:
    """Trainable copies of the teacher's :attr:`~DistillTeacher.parts` (a student's or fake score's start)."""
    return {k: copy.deepcopy(m) for k, m in teacher.trainable().items()}
