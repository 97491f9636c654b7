"""The teacher model: spatio-temporal UNet denoiser + reference tokens, in a latent or a pixel space.

Two spaces (``ModelPreset.space``):

- ``latent``: our AutoencoderKL (8x), 4 channels per latent cell (runs 1-2; the paper preset);
- ``pixel``: each ``patch x patch`` block of pixels folded into channels (``pixel_unshuffle``:
  exact, nothing to train). With ``residual`` the denoiser generates the clip *minus* a classical
  fill of the warp (the preset's ``fill``, :mod:`fvgen.videomodel.fill`), so a zero output is the classical
  fill and training only has to learn corrections.

Input of the denoiser, per frame, in that space (``h = H / f``, ``w = W / f``)::

    [ noisy target (c) | warp (c) | validity mask (1 area-pooled, or f*f folded) | fill (c, residual only) | reference (c) ]

plus cross-attention tokens of the reference view (its latent cut into ``ref_patch`` patches,
projected, with a fixed 2D sin-cos position code). Classifier-free guidance drops *all* of this
conditioning (zeros) at once. The UNet predicts ``v`` (v-prediction) or, for ``prediction = "x0"``,
the clean sample (diffusers' ``prediction_type="sample"``), on a zero-terminal-SNR schedule.
``added_time_ids`` of the SVD UNet are unused (zeros).

On disk a model is a folder (diffusers-style, every weight file a safetensors shard <= 15 MB),
written by :meth:`TeacherModel.save_pretrained` and read by :meth:`TeacherModel.from_pretrained`::

    fvgen_model.json   the container's diffusers config (ConfigMixin): ``preset`` (the ModelPreset
                       fields: architecture, space, clip size), ``provenance`` (trained or not,
                       steps, training config, a student's sampling), ``format_version``
    unet/              UNetSpatioTemporalConditionModel (save_pretrained)
    vae/               AutoencoderKL (latent space only)
    ref/               RefEncoder
    scheduler/         DDPMScheduler config (prediction type, rescale_betas_zero_snr, trailing)

Folders written before the container (``teacher.json``, format ``fvgen-teacher-1``: the same
sub-folders, the preset and provenance in one hand-written JSON) still load.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checkpoints import read_format_json
from ..core.errors import FvgenError
from .configs import ModelPreset, get_preset
from .fill import fill_holes

CONFIG_NAME = "fvgen_model.json"  # the container's diffusers config (ConfigMixin.save_config)
FORMAT = "fvgen-videomodel-2"
LEGACY_CONFIG, LEGACY_FORMAT = "teacher.json", "fvgen-teacher-1"  # folders written before the container
MAX_SHARD = "15MB"
# shipped model folders: ``student`` (the distilled 4-step student, shipped) and ``embedded`` (the teacher,
# not shipped while it does not beat the harmonic fill); ``--generator student|teacher`` name them
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "embedded"

try:  # diffusers is an optional dependency of fvgen as a whole; the teacher needs it
    from diffusers import AutoencoderKL, DDPMScheduler, UNetSpatioTemporalConditionModel
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.utils import logging as _dlog

    _dlog.set_verbosity_error()
except ImportError:  # pragma: no cover
    ModelMixin, ConfigMixin = nn.Module, object

    def register_to_config(fn):
        return fn


def require_diffusers() -> None:
    """A one-line error instead of a NameError deep in the teacher when diffusers is missing."""
    if ModelMixin is nn.Module:
        raise FvgenError("the teacher needs diffusers: pip install 'diffusers>=0.30'")


SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                        beta_end=0.012, rescale_betas_zero_snr=True, prediction_type="v_prediction",
                        timestep_spacing="trailing", clip_sample=False)


def _sincos_2d(h: int, w: int, dim: int, device, dtype) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                          torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    q = dim // 4
    freqs = torch.exp(-math.log(10000.0) * torch.arange(q, device=device, dtype=torch.float32) / max(q, 1))
    parts = []
    for c in (x.reshape(-1), y.reshape(-1)):
        a = c[:, None] * freqs[None]
        parts += [a.sin(), a.cos()]
    pe = torch.cat(parts, 1)
    if pe.shape[1] < dim:
        pe = F.pad(pe, (0, dim - pe.shape[1]))
    return pe.to(dtype)


class RefEncoder(ModelMixin, ConfigMixin):
    """Reference-view latent -> cross-attention tokens [B, (h/p)*(w/p), dim]."""

    @register_to_config
    def __init__(self, latent_channels: int = 4, dim: int = 128, patch: int = 2):
        super().__init__()
        self.proj = nn.Conv2d(latent_channels, dim, patch, stride=patch)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, ref_latent: torch.Tensor) -> torch.Tensor:
        x = self.proj(ref_latent)
        b, d, h, w = x.shape
        x = x.flatten(2).transpose(1, 2) + _sincos_2d(h, w, d, x.device, x.dtype)[None]
        return x + self.mlp(x)


def build_unet(p: ModelPreset) -> "UNetSpatioTemporalConditionModel":
    return UNetSpatioTemporalConditionModel(
        sample_size=None, in_channels=p.latent_channels + p.cond_channels, out_channels=p.latent_channels,
        down_block_types=p.unet_down, up_block_types=p.unet_up, block_out_channels=p.unet_channels,
        addition_time_embed_dim=32, projection_class_embeddings_input_dim=96, layers_per_block=p.unet_layers,
        cross_attention_dim=p.cross_attention_dim, num_attention_heads=p.unet_heads, num_frames=p.frames)


def build_vae(p: ModelPreset) -> "AutoencoderKL":
    n = len(p.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=p.vae_channels,
                         layers_per_block=p.vae_layers, latent_channels=p.latent_channels,
                         sample_size=max(p.width, p.height), scaling_factor=1.0, force_upcast=False)


def count_params(m: nn.Module) -> int:
    return sum(x.numel() for x in m.parameters())


class TeacherModel(ConfigMixin):
    """The three networks, the preset and the noise schedule: a diffusers ``ConfigMixin``
    container (like a pipeline), not itself an ``nn.Module``; each network is a ModelMixin with
    its own ``save_pretrained``/``from_pretrained`` sub-folder.

    Its config (``self.config``, saved as ``fvgen_model.json``): ``preset``, the
    :class:`ModelPreset` fields as a dict (``self.preset`` is the dataclass); ``provenance``, what
    the folder it was loaded from said (``self.info`` is the live copy that the next save writes);
    ``format_version``. ``unet``, ``vae`` (None in pixel space) and ``ref`` are keyword-only and
    not part of the config."""

    config_name = CONFIG_NAME
    ignore_for_config = ["unet", "vae", "ref"]

    @register_to_config
    def __init__(self, preset: ModelPreset | dict, provenance: dict | None = None, format_version: str = FORMAT,
                 *, unet=None, vae=None, ref: RefEncoder | None = None):
        require_diffusers()
        if isinstance(preset, ModelPreset):
            self.register_to_config(preset=dataclasses.asdict(preset))  # the config holds plain JSON values
        else:
            preset = preset_from_dict(preset)
        self.preset, self.unet, self.vae, self.ref = preset, unet, vae, ref
        self.info = dict(provenance or {})
        self.scheduler_config = dict(SCHEDULER_CONFIG)
        if preset.prediction == "x0":
            self.scheduler_config["prediction_type"] = "sample"

    # ---------------------------------------------------------------- construction and I/O
    @classmethod
    def random(cls, preset: str | ModelPreset, seed: int = 0) -> "TeacherModel":
        p = get_preset(preset) if isinstance(preset, str) else preset
        p.check()
        require_diffusers()
        torch.manual_seed(seed)
        vae = build_vae(p) if p.space == "latent" else None
        return cls(p, {"trained": False}, unet=build_unet(p), vae=vae,
                   ref=RefEncoder(p.latent_channels, p.cross_attention_dim, p.ref_patch))

    def modules(self) -> dict[str, nn.Module]:
        return {k: m for k, m in (("unet", self.unet), ("vae", self.vae), ("ref", self.ref)) if m is not None}

    def to(self, device=None, dtype=None) -> "TeacherModel":
        for m in self.modules().values():
            m.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def train(self, mode: bool = True) -> "TeacherModel":
        for m in self.modules().values():
            m.train(mode)
        return self

    def eval(self) -> "TeacherModel":
        return self.train(False)

    def num_params(self) -> dict[str, int]:
        return {k: count_params(m) for k, m in self.modules().items()}

    def save_pretrained(self, folder: Path, dtype: torch.dtype | None = torch.bfloat16, info: dict | None = None,
                        modules: dict | None = None) -> Path:
        """Write the model folder; ``dtype`` casts the stored weights (bf16 to ship, None keeps them).
        ``info`` adds provenance to ``self.info`` for this folder only; ``modules`` overrides parts
        (e.g. the EMA UNet)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, m in {**self.modules(), **(modules or {})}.items():
            m = getattr(m, "module", m)  # unwrap DDP
            if dtype is not None:
                m = copy.deepcopy(m).to(dtype)
            m.save_pretrained(folder / name, safe_serialization=True, max_shard_size=MAX_SHARD)
        DDPMScheduler(**self.scheduler_config).save_pretrained(folder / "scheduler")
        saved = copy.copy(self)  # the same networks; only the copy's config takes this folder's provenance
        saved.register_to_config(provenance={**self.info, **(info or {}), "params": self.num_params()})
        saved.save_config(folder)
        (folder / LEGACY_CONFIG).unlink(missing_ok=True)  # a re-saved old folder: one config, the new one
        return folder

    @classmethod
    def read_config(cls, folder: Path) -> dict:
        """The constructor's config arguments (``preset`` as a checked :class:`ModelPreset`,
        ``provenance``, ``format_version``) of a model folder, without its weights; strictly: an
        unknown key, a mistyped preset value or another format is a one-line FvgenError (diffusers'
        own ``from_config`` drops unknown keys with a warning). Reads old ``teacher.json`` folders too."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FvgenError(f"teacher model folder not found: {folder}")
        require_diffusers()
        if (folder / CONFIG_NAME).is_file():
            path = folder / CONFIG_NAME
            try:
                config = cls.load_config(folder)
            except EnvironmentError:  # diffusers: "It looks like the config file at ... is not a valid JSON file"
                raise FvgenError(f"{path}: not valid JSON") from None
            if not isinstance(config, dict) or config.get("_class_name") != cls.__name__:
                found = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
                raise FvgenError(f"{path}: a {found!r} config, not a {cls.__name__}")
            init, unknown, _ = cls.extract_init_dict(config)
            if unknown:
                known = [k for k in inspect.signature(cls.__init__).parameters
                         if k != "self" and k not in cls.ignore_for_config]
                raise FvgenError(f"{path}: unknown key {', '.join(map(str, unknown))} (known: {', '.join(known)})")
        elif (folder / LEGACY_CONFIG).is_file():
            path = folder / LEGACY_CONFIG
            init = _legacy_init(path)
        else:
            raise FvgenError(f"{folder} is not a teacher model folder (no {CONFIG_NAME} or {LEGACY_CONFIG}; expected "
                             "unet/, vae/, ref/, scheduler/ as written by `fvgen train teacher`)")
        if init.get("format_version", FORMAT) != FORMAT:
            raise FvgenError(f"{path}: unsupported format {init['format_version']!r} (expected {FORMAT})")
        if not isinstance(init.get("provenance") or {}, dict):
            raise FvgenError(f"{path}: provenance must be a table, got {init['provenance']!r}")
        return {**init, "preset": preset_from_dict(init.get("preset"), where=f"{path}: ")}

    @classmethod
    def from_pretrained(cls, folder: Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> "TeacherModel":
        """The model a folder holds (either format), in eval mode on ``device``."""
        folder = Path(folder)
        init = cls.read_config(folder)
        space = init["preset"].space
        parts = ("unet", "vae", "ref") if space == "latent" else ("unet", "ref")
        missing = [s for s in parts if not (folder / s / "config.json").is_file()]
        if missing:
            raise FvgenError(f"{folder}: missing {', '.join(missing)} (each a diffusers save_pretrained folder)")
        from diffusers.utils import logging as diffusers_logging

        # diffusers' own bar for sharded weights would cut through the stage's progress line
        bar = diffusers_logging.is_progress_bar_enabled()
        diffusers_logging.disable_progress_bar()
        try:
            unet = UNetSpatioTemporalConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype)
            vae = _load_vae(folder / "vae", dtype) if space == "latent" else None
            ref = RefEncoder.from_pretrained(folder / "ref", torch_dtype=dtype)
        except (OSError, ValueError, RuntimeError) as e:
            raise FvgenError(f"cannot load teacher weights from {folder}: {' '.join(str(e).split())[:200]}") from None
        finally:
            if bar:
                diffusers_logging.enable_progress_bar()
        m = cls(**init, unet=unet, vae=vae, ref=ref)
        if (folder / "scheduler" / DDPMScheduler.config_name).is_file():
            saved = DDPMScheduler.load_config(folder / "scheduler")
            m.scheduler_config.update({k: v for k, v in saved.items() if k in SCHEDULER_CONFIG})
        return m.to(device).eval()

    # ---------------------------------------------------------------- latent space
    @property
    def scaling(self) -> float:
        return float(self.vae.config.scaling_factor) if self.vae is not None else 1.0

    def encode(self, x: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """Images [..., 3, H, W] in [-1, 1] -> scaled latents [..., c, h, w] (pixel space: folded patches)."""
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])
        if self.vae is None:
            z = F.pixel_unshuffle(flat, self.preset.patch)
        else:
            d = self.vae.encode(flat).latent_dist
            z = (d.sample(generator) if sample else d.mode()) * self.scaling
        return z.reshape(*lead, *z.shape[-3:])

    def decode(self, z: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        lead = z.shape[:-3]
        flat = z.reshape(-1, *z.shape[-3:])
        if self.vae is None:
            out = F.pixel_shuffle(flat, self.preset.patch)
        else:
            flat = flat / self.scaling
            out = torch.cat([self.vae.decode(flat[i:i + chunk]).sample for i in range(0, len(flat), chunk)])
        return out.reshape(*lead, *out.shape[-3:])

    def condition(self, ref: torch.Tensor, warp: torch.Tensor, mask: torch.Tensor, fill: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Pixel-space conditioning -> (concat channels [B, F, cond_channels, h, w] with the reference
        part last, tokens [B, S, D], base [B, F, c, h, w] or None).

        ref [B, 3, H, W], warp [B, F, 3, H, W] in [-1, 1]; mask [B, F, 1, H, W] in [0, 1]
        (warp pixels outside the mask are set to 0 here, whatever the renderer put there).
        ``base`` is the fill's latent for residual models: the denoiser's target is ``x0 - base``;
        ``fill`` [B, F, 3, H, W] in [-1, 1] passes that fill in when it is already made (training
        examples cache it: the harmonic fill is a sizeable part of a training step)."""
        B, Fr = warp.shape[:2]
        valid = (mask > 0.5).to(warp.dtype)
        wl = self.encode(warp * valid)
        f = self.preset.latent_factor
        flat_mask = valid.reshape(B * Fr, 1, *mask.shape[-2:])
        if self.preset.space == "pixel":
            ml = F.pixel_unshuffle(flat_mask, f)
        else:
            ml = F.avg_pool2d(flat_mask.float(), f)
        ml = ml.reshape(B, Fr, -1, *wl.shape[-2:]).to(wl.dtype)
        rl = self.encode(ref)
        parts, base = [wl, ml], None
        if self.preset.residual:
            if fill is None:
                fill = fill_holes(self.preset.fill, warp.reshape(B * Fr, *warp.shape[2:]).float(), flat_mask.float())
            base = self.encode(fill.to(wl.dtype)).reshape(wl.shape)
            parts.append(base)
        cat = torch.cat([*parts, rl[:, None].expand(-1, Fr, -1, -1, -1)], 2)
        return cat, self.ref(rl), base

    def to_target(self, x0: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        """Latents of a clip -> what the denoiser generates (the correction of the fill, residual models)."""
        return x0 if base is None else x0 - base.to(x0.dtype)

    def denoise(self, noisy: torch.Tensor, t: torch.Tensor, cat: torch.Tensor, tokens: torch.Tensor,
                unet=None) -> torch.Tensor:
        """The UNet's prediction (v, or x0 for ``prediction = "x0"``) for noisy latents [B, F, c, h, w]
        at timesteps t [B]."""
        unet = unet or self.unet
        B = noisy.shape[0]
        t = torch.as_tensor(t, device=noisy.device).reshape(-1).expand(B)
        ids = torch.zeros(B, 3, device=noisy.device, dtype=noisy.dtype)
        return unet(torch.cat([noisy, cat.to(noisy.dtype)], 2), t, tokens.to(noisy.dtype), ids).sample


def preset_from_dict(values, where: str = "") -> ModelPreset:
    """A :class:`ModelPreset` from its fields as a dict (a model config's ``preset``), strictly:
    unknown keys, wrong types and missing fields are one-line errors; the preset is checked."""
    from ..core.config import from_dict

    if not isinstance(values, dict):
        raise FvgenError(f"{where}preset must be a table of ModelPreset fields, got {values!r}")
    preset = from_dict(ModelPreset, values, where=f"{where}preset.")
    try:
        preset.check()
    except FvgenError as e:
        raise FvgenError(f"{where}{e}") from None
    return preset


def _legacy_init(path: Path) -> dict:
    """The constructor's config arguments from an old ``teacher.json`` (format ``fvgen-teacher-1``:
    ``{"format", "preset": {...}, "params": {...}, **provenance}``), read as that format's own
    loader did."""
    meta = read_format_json(path, "format", LEGACY_FORMAT)
    return {"preset": meta.get("preset"),
            "provenance": {k: v for k, v in meta.items() if k not in ("format", "preset", "params")}}


def read_model_config(folder: Path) -> tuple[ModelPreset, dict]:
    """The preset and the provenance (``trained``, steps, training config, ``student``...) of a
    model folder, without loading its weights (:meth:`TeacherModel.read_config`)."""
    init = TeacherModel.read_config(folder)
    return init["preset"], dict(init.get("provenance") or {})


def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` has a model config (new or old format); says nothing of its validity."""
    return any((Path(folder) / name).is_file() for name in (CONFIG_NAME, LEGACY_CONFIG))


def _load_vae(folder: Path, dtype):
    cls_name = AutoencoderKL.load_config(folder).get("_class_name", "AutoencoderKL")
    if cls_name == "AutoencoderKL":
        return AutoencoderKL.from_pretrained(folder, torch_dtype=dtype)
    if cls_name == "AutoencoderKLTemporalDecoder":  # SVD's VAE, for paper-scale external weights
        from diffusers import AutoencoderKLTemporalDecoder

        return AutoencoderKLTemporalDecoder.from_pretrained(folder, torch_dtype=dtype)
    raise FvgenError(f"{folder}: unsupported VAE class {cls_name}")


def weights_hash(folder: Path) -> str:
    """Content hash of a model folder's configs and weights (part of the generate cache key)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors")):
        h.update(str(f.relative_to(folder)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def inference_dtype(device: str | torch.device) -> torch.dtype:
    """The dtype to hold a model's weights in for sampling on ``device``: bf16 on CUDA, where sampling
    runs under bf16 autocast anyway (shipped weights are bf16 values, so nothing is rounded): half the
    weights' memory at the same speed (autocast casts fp32 weights once per sampling and caches them:
    the paper-size student's 4 UNet passes took 0.620 s with bf16 weights, 0.618 s with fp32, H100;
    ``benchmarks/sampling.py --bf16-weights``); fp32 elsewhere, where sampling runs without autocast."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def resolve_model(model: str | Path | None) -> Path:
    """The model folder to generate with; refuses (FvgenError, one line) when there is none.

    ``None`` means the shipped teacher weights, which do not exist (the student ships instead)."""
    if model is None or str(model) in ("", "embedded"):
        if is_model_folder(DEFAULT_WEIGHTS):
            return DEFAULT_WEIGHTS
        raise FvgenError("no trained teacher weights ship with fvgen: pass --model DIR (e.g. fvgen's shipped student, "
                         f"{WEIGHTS_DIR / 'student'}), a folder "
                         "written by `fvgen train teacher` (its model/ folder) or diffusers-format paper weights")
    p = Path(model)
    _, info = read_model_config(p)
    if info.get("trained") is False and not info.get("allow_untrained"):
        raise FvgenError(f"{p} holds untrained (random) teacher weights; refusing to output noise as views "
                         "(train it with `fvgen train teacher` first)")
    return p
