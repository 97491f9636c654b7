"""Model presets and training configs of the teacher.

A *model preset* fixes the architecture and the clip size; it is written into every saved model
folder (its ``fvgen_model.json`` config), so a folder alone says how to use it. Presets:

- ``tiny``: a few hundred thousand parameters, 64x32 pixels, 4 frames (tests only).
- ``embedded``: the model fvgen is meant to ship (~20 M parameters, 256x160, 16 frames; pixel space
  folded into 8x8 patches, generating a correction of a harmonic fill of the warp; samples on a
  2-core CPU in minutes).
- ``embedded-narrow``: ``embedded`` at half the UNet's width (5.6 M parameters against 21.2 M), the
  other side of issue 18's capacity-against-data comparison: run 8 predicts the fill's conditional
  mean no better than the fill on 1,320 examples, so a smaller model may generalise as well or better.
- ``embedded-latent``: the same UNet in the latent space of our own 8x AutoencoderKL (runs 1-2 on
  the H200: its autoencoder, trained on 9 real scenes, caps unseen frames at 19.35 dB, below a
  biharmonic fill of fern's warps; benchmarks/RESULTS.md).
- ``paper``: FVGen's 512x320, 16 frames, SVD-sized UNet (~1.5 B); never trained here: load your own
  diffusers-format folder with ``--model DIR``.

A *training config* (:class:`TrainConf`) is a preset name plus optimisation settings; named ones
live in :data:`TRAIN_CONFIGS`, and ``train_teacher`` also takes a TOML file with the same keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


from ..core.errors import FvgenError

D, C = "DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"
U, CU = "UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"


@dataclass(frozen=True)
class ModelPreset:
    name: str
    width: int  # clip size the model works at (pixels)
    height: int
    frames: int
    # "latent": diffusion in the latent space of our AutoencoderKL (vae_*); "pixel": in pixel space,
    # each patch x patch block folded into channels (pixel_unshuffle: lossless, nothing to train)
    space: str = "latent"
    patch: int = 8
    # pixel space only: generate the clip minus a classical fill of the warp (fill.py), which the
    # output adds back at the output size (a zero correction is the classical fill)
    residual: bool = False
    # which fill (fvgen.videomodel.fill.FILLS): "harmonic" beats biharmonic by 1 dB on held-out views, push-pull
    # by 1.1 dB (RESULTS.md, "Harmonic fill"); "push-pull" is what runs 3-5 were trained with
    fill: str = "push-pull"
    # what the UNet predicts: "v" (v-prediction, as ViewCrafter) or "x0", the clean sample: with
    # 192 numbers per 8x8-pixel cell and a 64-channel first layer the UNet cannot pass the noise
    # through, which v (mostly noise at low noise levels) needs and x0 (a smooth image) does not
    # (Li & He 2025, "Back to Basics: Let Denoising Generative Models Denoise"; run 3 in RESULTS.md)
    prediction: str = "v"
    latent_channels: int = 4  # pixel space: 3 * patch**2
    vae_channels: tuple[int, ...] = (32, 64, 128, 128)  # AutoencoderKL blocks; 2**(len-1) downsampling
    vae_layers: int = 1
    unet_channels: tuple[int, ...] = (64, 128, 192)
    unet_heads: tuple[int, ...] = (2, 4, 6)
    unet_down: tuple[str, ...] = (D, C, C)  # no attention at the highest resolution (see notes)
    unet_up: tuple[str, ...] = (CU, CU, U)
    unet_layers: int = 1
    cross_attention_dim: int = 128
    ref_patch: int = 2  # reference-latent patch size of the cross-attention tokens

    @property
    def latent_factor(self) -> int:
        """Pixels per latent cell along each side."""
        return self.patch if self.space == "pixel" else 2 ** (len(self.vae_channels) - 1)

    @property
    def mask_channels(self) -> int:
        # latent space: the mask area-pooled to one channel; pixel space: folded like the pixels
        return self.patch ** 2 if self.space == "pixel" else 1

    @property
    def cond_channels(self) -> int:
        # warp latent + validity mask (+ fill latent) + reference latent
        return (3 if self.residual else 2) * self.latent_channels + self.mask_channels

    def check(self) -> None:
        if self.space not in ("latent", "pixel"):
            raise FvgenError(f"model preset {self.name}: space must be latent or pixel, not {self.space!r}")
        if self.space == "pixel" and self.latent_channels != 3 * self.patch ** 2:
            raise FvgenError(f"model preset {self.name}: pixel space needs latent_channels = 3 * patch**2")
        if self.prediction not in ("v", "x0"):
            raise FvgenError(f"model preset {self.name}: prediction must be v or x0, not {self.prediction!r}")
        from .fill import FILLS

        if self.fill not in FILLS:
            raise FvgenError(f"model preset {self.name}: fill must be one of {', '.join(FILLS)}, not {self.fill!r}")
        if self.residual and self.space != "pixel":
            raise FvgenError(f"model preset {self.name}: residual generation needs pixel space")
        f = self.latent_factor * 2 ** (len(self.unet_channels) - 1)
        if self.width % f or self.height % f:
            raise FvgenError(f"model preset {self.name}: {self.width}x{self.height} must be a multiple of {f}")


PRESETS = {
    "tiny": ModelPreset("tiny", 64, 32, 4, vae_channels=(32, 32, 32), unet_channels=(32, 64), unet_heads=(1, 2),
                        unet_down=(C, D), unet_up=(U, CU), cross_attention_dim=32),
    "tiny-pixel": ModelPreset("tiny-pixel", 64, 32, 4, space="pixel", patch=4, residual=True, prediction="x0",
                              fill="harmonic", latent_channels=48,
                              unet_channels=(32, 64), unet_heads=(1, 2), unet_down=(C, D), unet_up=(U, CU),
                              cross_attention_dim=32),
    "embedded": ModelPreset("embedded", 256, 160, 16, space="pixel", patch=8, residual=True, prediction="x0",
                            fill="harmonic", latent_channels=192),
    "embedded-narrow": ModelPreset("embedded-narrow", 256, 160, 16, space="pixel", patch=8, residual=True,
                                   prediction="x0", fill="harmonic", latent_channels=192,
                                   unet_channels=(32, 64, 96), unet_heads=(1, 2, 3)),
    "embedded-latent": ModelPreset("embedded-latent", 256, 160, 16),
    "paper": ModelPreset("paper", 512, 320, 16, vae_channels=(128, 256, 512, 512), vae_layers=2,
                         unet_channels=(320, 640, 1280, 1280), unet_heads=(5, 10, 20, 20),
                         unet_down=(C, C, C, D), unet_up=(U, CU, CU, CU), unet_layers=2,
                         cross_attention_dim=1024),
}


def get_preset(name: str) -> ModelPreset:
    if name not in PRESETS:
        raise FvgenError(f"unknown teacher model preset {name!r}: use {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class TrainConf:
    name: str = "embedded"
    preset: str = "embedded"
    data: tuple[str, ...] = ()  # shard folders (made by `fvgen data build`)
    init_from: str = ""  # a model folder to start from (e.g. an earlier session's export)
    # examples whose meta.source contains this (e.g. "datasets-train/strecha_castle") are held out of
    # training and scored at every checkpoint: autoencoder round-trip PSNR, EMA denoiser loss
    val_source: str = ""
    batch_size: int = 8  # clips per process and UNet step
    vae_batch: int = 64  # frames per process and autoencoder step (independent of batch_size)
    vae_steps: int = 4000  # phase 1: the autoencoder (0: keep the init_from VAE)
    vae_augment: bool = False  # colour, crop-scale and flip augmentation of its frames (vae.augment_frames)
    unet_steps: int = 20000  # phase 2: the denoiser, VAE frozen
    vae_lr: float = 2e-4
    unet_lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: int = 200
    # "constant" after the warmup, or "cosine": down to lr_min_ratio x the rate at the phase's last step
    # (vae_steps / unet_steps). Why: runs are stopped by time, not by steps; a fine-tune of a
    # finished run (init_from) of a known length ends on a low rate instead of mid-plateau
    lr_schedule: str = "constant"
    lr_min_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    cond_drop: float = 0.1  # classifier-free guidance: drop all conditioning with this probability
    kl_weight: float = 1e-6
    ckpt_every: int = 500
    sample_every: int = 2000
    sample_steps: int = 25
    log_every: int = 20
    seed: int = 0
    bf16: bool = True  # autocast on CUDA
    augment: bool = True  # horizontal flip and time reversal of whole examples
    # per-clip colour augmentation of gt, warp, reference and fill alike (train.colour_augment):
    # channel order, gain 1 +- a, offset +- a/2; 0 off. Why: run 5's correction was mostly a
    # global colour shift learned from the training scenes' palettes (RESULTS.md, "fifth run")
    colour_augment: float = 0.0
    # probability that a clip's colours are also inverted (x -> 1 - x, with the transform above).
    # Why: in every training scene measured (8 of 9) the holes are brighter than their fill (light
    # backgrounds, sky), so run 6 learned to brighten every hole, wrong on the evaluation scenes
    # (RESULTS.md, "sixth run"); inverting half the clips makes that prior symmetric
    colour_invert: float = 0.0

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise FvgenError(f"train config {self.name}: lr_schedule must be constant or cosine, not {self.lr_schedule!r}")


TRAIN_CONFIGS = {
    "tiny": TrainConf(name="tiny", preset="tiny", batch_size=2, vae_batch=8, vae_steps=4, unet_steps=6, warmup=0,
                      ckpt_every=5, sample_every=5, sample_steps=2, log_every=1, bf16=False),
    "tiny-pixel": TrainConf(name="tiny-pixel", preset="tiny-pixel", batch_size=2, vae_steps=0, unet_steps=6,
                            warmup=0, ckpt_every=5, sample_every=5, sample_steps=2, log_every=1, bf16=False),
    "embedded": TrainConf(),
}


def load_train_config(spec: str, **overrides) -> TrainConf:
    """A named config (:data:`TRAIN_CONFIGS`) or a TOML file of :class:`TrainConf` keys, loaded
    strictly (unknown keys and wrong types are one-line errors); ``base`` names the config the file
    starts from: a named config (default ``embedded``) or another TOML file, relative to this one (so
    a variant, e.g. another model width, repeats only what it changes); ``data`` folders are relative
    to the file. ``overrides`` that are not None replace the config's values."""
    conf = _train_config_file_or_name(spec, ())
    conf = dataclasses.replace(conf, **{k: v for k, v in overrides.items() if v is not None})
    get_preset(conf.preset)
    return conf


def _train_config_file_or_name(spec: str, seen: tuple[Path, ...]) -> TrainConf:
    from ..core.config import from_dict, read_toml

    if spec in TRAIN_CONFIGS:
        return TRAIN_CONFIGS[spec]
    p = Path(spec)
    if not p.is_file():
        raise FvgenError(f"teacher training config {spec!r}: use {', '.join(TRAIN_CONFIGS)} or a .toml file")
    if p.resolve() in seen:
        raise FvgenError(f"{p}: its base chain comes back to itself")
    data = read_toml(p)
    base_spec = data.pop("base", "embedded")
    if not isinstance(base_spec, str) or (base_spec not in TRAIN_CONFIGS and not base_spec.endswith(".toml")):
        raise FvgenError(f"{p}: base must be one of {', '.join(TRAIN_CONFIGS)} or a .toml file")
    if base_spec not in TRAIN_CONFIGS:
        base_spec = str(p.parent / base_spec)
    base = _train_config_file_or_name(base_spec, seen + (p.resolve(),))
    if "data" in data and isinstance(data["data"], list):
        data["data"] = [d if Path(d).is_absolute() else str((p.parent / d).resolve()) for d in data["data"]]
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConf)}
    return from_dict(TrainConf, {**fields, "name": p.stem, **data}, where=f"{p.name}: ")
