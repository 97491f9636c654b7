"""The pieces of one training step: the modules DDP wraps, batch encoding, the diffusion loss,
the learning-rate schedule and the per-clip colour augmentation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..model import TeacherModel
from ..vae import vae_loss

X0_MIN_SIGMA2 = 0.05  # x0-prediction's v-space loss weight 1 / sigma_t^2 is capped at 20

# ----------------------------------------------------------------------------- modules for DDP

class Denoiser(nn.Module):
    """UNet + reference encoder as one module (one DDP wrapper, one optimizer)."""

    def __init__(self, model: TeacherModel, unet: nn.Module | None = None, ref: nn.Module | None = None):
        super().__init__()
        self.unet, self.ref = unet or model.unet, ref or model.ref  # e.g. the EMA copies, for validation
        self._model = [model]

    def forward(self, noisy, t, cat_nolref, ref_latent, keep):
        m = self._model[0]
        tokens = self.ref(ref_latent) * keep[:, None, None]
        Fr = noisy.shape[1]
        cat = torch.cat([cat_nolref, ref_latent[:, None].expand(-1, Fr, -1, -1, -1)], 2) * keep[:, None, None, None, None]
        return m.denoise(noisy, t, cat, tokens, unet=self.unet)


class VaeLoss(nn.Module):
    def __init__(self, vae, kl_weight):
        super().__init__()
        self.vae, self.kl_weight = vae, kl_weight

    def forward(self, x):
        return vae_loss(self.vae, x, self.kl_weight)


# ----------------------------------------------------------------------------- steps

@torch.no_grad()
def encode_batch(model: TeacherModel, batch: dict) -> dict:
    """Pixel batch -> latents: target (sampled; a residual model's is the correction of the fill),
    per-frame conditioning (no reference part), ref latent."""
    cat, _, base = model.condition(batch["ref"], batch["warp"], batch["mask"], batch.get("fill"))
    x0 = model.to_target(model.encode(batch["gt"], sample=True), base)
    c = model.preset.latent_channels
    return {"x0": x0, "cat": cat[:, :, :-c], "ref": cat[:, 0, -c:]}


def lr_at(step: int, base: float, warmup: int, total: int, schedule: str = "constant", min_ratio: float = 0.1) -> float:
    """The learning rate at ``step`` (0-based): linear warmup over ``warmup`` steps, then constant or
    a cosine from ``base`` down to ``min_ratio * base`` at ``total`` (held there after). The schedule
    name is checked where the config is made (:class:`TrainConf`)."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule != "cosine" or total <= warmup:
        return base
    x = min(1.0, (step - warmup) / (total - warmup))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * x)))


def colour_augment(batch: dict, amount: float, generator: torch.Generator, invert: float = 0.0) -> dict:
    """The same random colour transform for every image of a clip: channel order (half the clips),
    per-channel gain in [1 - amount, 1 + amount] and offset in [-amount / 2, amount / 2] (in [0, 1]
    units), then with probability ``invert`` inversion (x -> 1 - x). Affine per channel and not
    clamped, so a cached fill stays exactly the fill of the transformed warp (push-pull and harmonic
    fills are affine-equivariant, negative gains included); the mask is unchanged."""
    ref = batch["ref"]
    B, dev = ref.shape[0], ref.device
    perm = torch.stack([torch.randperm(3, generator=generator) if torch.rand(1, generator=generator).item() < 0.5
                        else torch.arange(3) for _ in range(B)])
    gain = 1 + amount * (2 * torch.rand(B, 3, generator=generator) - 1)
    offset = amount * (torch.rand(B, 3, generator=generator) - 0.5)
    flip = torch.rand(B, 1, generator=generator) < invert
    gain, offset = torch.where(flip, -gain, gain), torch.where(flip, 1 - offset, offset)
    perm, gain, offset = perm.to(dev), gain.to(dev), offset.to(dev)
    out = dict(batch)
    for k in ("gt", "warp", "ref", "fill"):
        if k not in batch:
            continue
        x = batch[k]
        lead = (B,) + (1,) * (x.ndim - 4)  # clips [B, F, 3, H, W] or reference [B, 3, H, W]
        idx = perm.reshape(*lead, 3, 1, 1).expand_as(x)
        x = torch.gather(x, x.ndim - 3, idx)
        g, o = gain.reshape(*lead, 3, 1, 1), offset.reshape(*lead, 3, 1, 1)
        out[k] = ((x + 1) / 2 * g + o) * 2 - 1
    return out


def diffusion_loss(model: TeacherModel, denoiser: nn.Module, lat: dict, scheduler, cond_drop: float,
                   generator: torch.Generator | None = None, t_max: int | None = None) -> torch.Tensor:
    """The training loss at timesteps drawn uniformly in [0, t_max) (default: all of them)."""
    x0 = lat["x0"]
    B = x0.shape[0]
    dev = x0.device
    t = torch.randint(0, t_max or scheduler.config.num_train_timesteps, (B,), generator=generator).to(dev)
    noise = torch.randn(x0.shape, generator=generator).to(dev, x0.dtype)
    noisy = scheduler.add_noise(x0, noise, t)
    keep = (torch.rand(B, generator=generator) >= cond_drop).to(dev, x0.dtype)
    out = denoiser(noisy, t, lat["cat"], lat["ref"], keep)
    if model.preset.prediction == "x0":
        # x0-prediction scored in v-space (Li & He 2025): v_hat - v = (x0 - x0_hat) / sigma_t, so the
        # loss is |x0_hat - x0|^2 / sigma_t^2, with sigma_t^2 clamped where it vanishes (t -> 0)
        a = scheduler.alphas_cumprod.to(dev)[t].float().reshape(-1, *[1] * (x0.ndim - 1))
        w = 1.0 / (1.0 - a).clamp_min(X0_MIN_SIGMA2)
        return (w * (out.float() - x0.float()) ** 2).mean()
    return F.mse_loss(out.float(), scheduler.get_velocity(x0, noise, t).float())


def make_train_scheduler(model: TeacherModel):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**model.scheduler_config)
