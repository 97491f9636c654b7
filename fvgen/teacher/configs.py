"""Model presets and training configs of the teacher.

A *model preset* fixes the architecture and the clip size; it is written into every saved model
folder (``teacher.json``), so a folder alone says how to use it. Presets:

- ``tiny``: a few hundred thousand parameters, 64x32 pixels, 4 frames (tests only).
- ``embedded``: the model fvgen is meant to ship (~20 M parameters, 256x160, 16 frames, latent
  space of our own 8x AutoencoderKL; samples on a 2-core CPU in minutes).
- ``paper``: FVGen's 512x320, 16 frames, SVD-sized UNet (~1.5 B); never trained here: load your own
  diffusers-format folder with ``--model DIR``.

A *training config* (:class:`TrainConf`) is a preset name plus optimisation settings; named ones
live in :data:`TRAIN_CONFIGS`, and ``train_teacher`` also takes a TOML file with the same keys.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import FvgenError

D, C = "DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"
U, CU = "UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"


@dataclass(frozen=True)
class ModelPreset:
    name: str
    width: int  # clip size the model works at (pixels)
    height: int
    frames: int
    latent_channels: int = 4
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
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def cond_channels(self) -> int:
        # warp latent + validity mask + reference latent
        return 2 * self.latent_channels + 1

    def check(self) -> None:
        f = self.vae_factor * 2 ** (len(self.unet_channels) - 1)
        if self.width % f or self.height % f:
            raise FvgenError(f"model preset {self.name}: {self.width}x{self.height} must be a multiple of {f}")


PRESETS = {
    "tiny": ModelPreset("tiny", 64, 32, 4, vae_channels=(32, 32, 32), unet_channels=(32, 64), unet_heads=(1, 2),
                        unet_down=(C, D), unet_up=(U, CU), cross_attention_dim=32),
    "embedded": ModelPreset("embedded", 256, 160, 16),
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
    data: tuple[str, ...] = ()  # shard folders (made by `python -m fvgen.teacher.data build`)
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


TRAIN_CONFIGS = {
    "tiny": TrainConf(name="tiny", preset="tiny", batch_size=2, vae_batch=8, vae_steps=4, unet_steps=6, warmup=0,
                      ckpt_every=5, sample_every=5, sample_steps=2, log_every=1, bf16=False),
    "embedded": TrainConf(),
}


def load_train_config(spec: str, **overrides) -> TrainConf:
    """A named config (``tiny``, ``embedded``) or a TOML file of :class:`TrainConf` keys
    (``base = "embedded"`` picks the named config it starts from)."""
    if spec in TRAIN_CONFIGS:
        conf = TRAIN_CONFIGS[spec]
    else:
        p = Path(spec)
        if not p.is_file():
            raise FvgenError(f"teacher training config {spec!r}: use {', '.join(TRAIN_CONFIGS)} or a .toml file")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise FvgenError(f"{p}: not valid TOML ({e})") from None
        base = TRAIN_CONFIGS.get(data.pop("base", "embedded"))
        if base is None:
            raise FvgenError(f"{p}: base must be one of {', '.join(TRAIN_CONFIGS)}")
        known = {f.name for f in dataclasses.fields(TrainConf)}
        bad = set(data) - known
        if bad:
            raise FvgenError(f"{p}: unknown setting(s) {', '.join(sorted(bad))}")
        if "data" in data:
            data["data"] = tuple(str((p.parent / d).resolve()) if not Path(d).is_absolute() else d
                                 for d in data["data"])
        conf = dataclasses.replace(base, name=data.pop("name", p.stem), **data)
    conf = dataclasses.replace(conf, **{k: v for k, v in overrides.items() if v is not None})
    get_preset(conf.preset)
    return conf
