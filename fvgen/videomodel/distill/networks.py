"""The networks of the distillation, all started from the teacher (see :mod:`.teachers`: our
x0- or v-predicting UNet of :class:`fvgen.videomodel.model.TeacherModel`, or ViewCrafter's latent
v-predicting UNet):

- the *student*: a copy of the teacher's trained parts (UNet + reference encoder, or ViewCrafter's
  UNet + image resampler), run on 4 explicit timesteps of the teacher's schedule (999, 749, 499,
  249: the "trailing" spacing of both teachers' samplers, so a saved student runs in the teacher's
  own sampler unchanged with ``steps=4, cfg=1`` and eta 0); trained at a random step of its own
  chain (DMD2's backward simulation, :func:`student_sample`);
- the *fake-score network*: another copy, trained with the teacher's diffusion loss on detached
  student samples (the score of p_fake);
- the *discriminator*: the frozen teacher's encoder half (down blocks + mid block:
  :func:`unet_features` for ours, ``ViewCrafterUNet.encoder_features``) on noised clips, with
  trainable 3D-CNN heads (:class:`DiscriminatorHeads`) on its features.

Everything is in the teacher's denoising space, laid out [B, F, c, h, w]: folded pixels or
latents, and for residual models the clip *minus* the warp's fill. Every network's output is read
as an x0 prediction (:class:`~fvgen.videomodel.distill.teachers.ToX0`: the identity for x0
models, ``(√ᾱ x_t - √(1-ᾱ) v) / s(t)`` for v models, ``s`` ViewCrafter's dynamic rescale).
"""

from __future__ import annotations

import torch
from torch import nn

from ...core.errors import FvgenError
from ..model import ConfigMixin, ModelMixin, TeacherModel, register_to_config
from ..sample import rescale_cfg


# ----------------------------------------------------------------------------- teacher features

def unet_features(unet, sample: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> list[torch.Tensor]:
    """The encoder half of a diffusers ``UNetSpatioTemporalConditionModel``: the output of each
    down block and of the mid block, each [B*F, C_i, h_i, w_i] (the up blocks are not run).

    ``sample`` [B, F, C_in, h, w] (noisy target and conditioning, concatenated as in
    :meth:`TeacherModel.denoise`), ``t`` [B], ``tokens`` [B, S, D]; ``added_time_ids`` are zeros
    as in the teacher. Follows ``UNetSpatioTemporalConditionModel.forward`` of diffusers 0.3x-0.4x
    block for block (the test compares it with forward hooks on the full model)."""
    B, Fr = sample.shape[:2]
    t = torch.as_tensor(t, device=sample.device).reshape(-1).expand(B)
    emb = unet.time_embedding(unet.time_proj(t).to(sample.dtype))
    ids = torch.zeros(B, 3, device=sample.device, dtype=sample.dtype)
    aug = unet.add_embedding(unet.add_time_proj(ids.flatten()).reshape(B, -1).to(emb.dtype))
    emb = (emb + aug).repeat_interleave(Fr, dim=0)
    hidden = tokens.to(sample.dtype).repeat_interleave(Fr, dim=0)
    x = unet.conv_in(sample.flatten(0, 1))
    only_image = torch.zeros(B, Fr, dtype=x.dtype, device=x.device)
    feats = []
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            x, _ = block(hidden_states=x, temb=emb, encoder_hidden_states=hidden, image_only_indicator=only_image)
        else:
            x, _ = block(hidden_states=x, temb=emb, image_only_indicator=only_image)
        feats.append(x)
    feats.append(unet.mid_block(hidden_states=x, temb=emb, encoder_hidden_states=hidden,
                                image_only_indicator=only_image))
    return feats


class DiscriminatorHeads(ModelMixin, ConfigMixin):
    """One small 3D CNN per teacher feature level: [B*F, C, h, w] -> a logit per clip [B]; the
    clip's logit is the mean over levels. Each head: conv3d 3x3x3 -> GroupNorm -> SiLU ->
    conv3d 3x3x3 (stride 1x2x2) -> GroupNorm -> SiLU -> conv3d 1x1x1 -> mean over (F, h, w)."""

    @register_to_config
    def __init__(self, channels: tuple = (64, 128), hidden: int = 64, frames: int = 16):
        super().__init__()

        def gn(c):
            return nn.GroupNorm(min(8, c), c)

        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv3d(c, hidden, 3, padding=1), gn(hidden), nn.SiLU(),
                          nn.Conv3d(hidden, hidden, 3, stride=(1, 2, 2), padding=1), gn(hidden), nn.SiLU(),
                          nn.Conv3d(hidden, 1, 1))
            for c in channels)

    def forward(self, feats: list[torch.Tensor], batch: int) -> torch.Tensor:
        if len(feats) != len(self.heads):
            raise FvgenError(f"discriminator heads: {len(feats)} feature levels for {len(self.heads)} heads")
        out = 0.0
        for f, head in zip(feats, self.heads):
            x = f.reshape(batch, -1, *f.shape[1:]).transpose(1, 2)  # [B, C, F, h, w]
            out = out + head(x.to(head[0].weight.dtype)).float().mean((1, 2, 3, 4))
        return out / len(self.heads)


def feature_channels(unet) -> tuple[int, ...]:
    """Channels of :func:`unet_features`' outputs: each down block's, then the mid block's."""
    ch = tuple(int(c) for c in unet.config.block_out_channels)
    return ch + (ch[-1],)


def disc_logits(teacher, heads: nn.Module, noisy: torch.Tensor, t: torch.Tensor, lat: dict) -> torch.Tensor:
    """Discriminator logits [B] of noisy clips [B, F, c, h, w] at timesteps t [B] under their
    conditioning ``lat`` (``teacher.encode_batch``); ``teacher`` a
    :class:`~fvgen.videomodel.distill.teachers.DistillTeacher`, frozen (no parameter gradients),
    but gradients flow to ``noisy``."""
    return heads(teacher.features(noisy, t, lat), noisy.shape[0])


def full_condition(teacher: TeacherModel, lat: dict, frames: int, ref_encoder: nn.Module | None = None):
    """Our teacher's ``encode_batch`` split conditioning -> (concat channels [B, F, cond, h, w],
    tokens [B, S, D])."""
    ref = lat["ref"]
    cat = torch.cat([lat["cat"], ref[:, None].expand(-1, frames, -1, -1, -1)], 2)
    return cat, (ref_encoder or teacher.ref)(ref)


# ----------------------------------------------------------------------------- predictions

def ones(lat: dict) -> torch.Tensor:
    return torch.ones(lat["ref"].shape[0], device=lat["ref"].device, dtype=lat["ref"].dtype)


def teacher_x0(teacher_net: nn.Module, noisy: torch.Tensor, t: torch.Tensor, lat: dict, cfg: float = 1.0,
               guidance_rescale: float = 0.0) -> torch.Tensor:
    """The frozen teacher's x0 prediction [B, F, c, h, w] (the "real score"), with classifier-free
    guidance as its sampler does it (:func:`fvgen.videomodel.sample.rescale_cfg`) when ``cfg != 1``.
    ``teacher_net``: a :class:`fvgen.videomodel.train.steps.Denoiser` of the teacher."""
    keep = ones(lat)
    if cfg == 1.0:
        return teacher_net(noisy, t, lat["cat"], lat["ref"], keep).float()
    two = lambda x: torch.cat([x, x])  # noqa: E731
    out = teacher_net(two(noisy), two(t), two(lat["cat"]), two(lat["ref"]), torch.cat([keep * 0, keep])).float()
    uncond, cond = out.chunk(2)
    return rescale_cfg(uncond + cfg * (cond - uncond), cond, guidance_rescale)


def x0_scheduler(teacher: TeacherModel, steps: int):
    """The teacher sampler's DDIM schedule (:func:`fvgen.videomodel.sample.make_scheduler`) stepping
    on x0 predictions: the same chain for a v-predicting teacher, whose outputs :class:`ToX0` converts."""
    from diffusers import DDIMScheduler

    s = DDIMScheduler(**{**teacher.scheduler_config, "prediction_type": "sample"}, set_alpha_to_one=False)
    s.set_timesteps(int(steps))
    return s


def student_sample(student_net: nn.Module, teacher, lat: dict, steps: int, k: int,
                   noise: torch.Tensor, grad: bool = True) -> tuple[torch.Tensor, int]:
    """Backward simulation (DMD2): run the student's own chain from pure noise ``noise``
    [B, F, c, h, w] for ``k`` of its ``steps`` DDIM steps (eta 0, no grad: the teacher sampler's
    chain, ``teacher.chain`` / ``teacher.chain_step``), then its x0 prediction at timestep ``k``
    (with grad when ``grad``). ``student_net``: an x0 network, ``net(noisy, t, cat, ref, keep)``.

    Returns (x0 [B, F, c, h, w], the timestep it was predicted at)."""
    if not 0 <= k < steps:
        raise FvgenError(f"student step {k} outside 0..{steps - 1}")
    ts = teacher.chain(steps)
    keep = ones(lat)
    x = noise  # DDIM's initial noise sigma is 1
    with torch.no_grad():
        for i, t in enumerate(ts[:k]):
            x0 = student_net(x, torch.full((x.shape[0],), t, device=x.device), lat["cat"], lat["ref"], keep)
            x = teacher.chain_step(x0.float(), t, ts[i + 1] if i + 1 < len(ts) else -1, x.float()).to(noise.dtype)
    t = ts[k]
    with torch.set_grad_enabled(grad):
        x0 = student_net(x, torch.full((x.shape[0],), t, device=x.device), lat["cat"], lat["ref"], keep)
    return x0, t
