"""Pipeline configuration: frozen dataclasses, filled from named TOML presets in ``pipelines/``.

A preset only lists what differs from the defaults below; unknown keys are an error (a typo in a
preset must not silently fall back to a default). ``--preset`` takes a preset name (``default``,
``cpu``, ``paper``...) or a path to a TOML file.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FvgenError
from .dust3r import Dust3rConf
from .fit import FitConf
from .mvs import MvsConf
from .sfm import SfmConf


@dataclass(frozen=True)
class ImagesConf:
    max_size: int = 640  # long side, in pixels, of the images every stage works on


@dataclass(frozen=True)
class PriorsConf:
    backend: str = "sfm"  # "sfm" (pycolmap + plane-sweep MVS) or "dust3r" (needs a checkpoint)
    checkpoint: str = ""  # DUSt3R checkpoint path (backend "dust3r")
    sfm: SfmConf = field(default_factory=SfmConf)
    mvs: MvsConf = field(default_factory=MvsConf)
    dust3r: Dust3rConf = field(default_factory=Dust3rConf)


@dataclass(frozen=True)
class WarpConf:
    traj: str = "orbit"
    frames: int = 25
    width: int = 0  # 0: the input images' size
    height: int = 0
    point_radius_px: float = 0.0  # 0: from the cloud's point spacing
    fps: int = 10
    # torch: our z-buffer (any device); gsplat: gsplat's CUDA rasterizer with near-opaque splats;
    # auto: gsplat on CUDA when installed. The default stays torch: gsplat's splats are Gaussians, so
    # its validity mask is a superset of the z-buffer's (mask IoU 0.85-0.91, benchmarks/RESULTS.md;
    # tests/test_points_render.py), and the teacher's training warps are drawn by the z-buffer.
    renderer: str = "torch"


@dataclass(frozen=True)
class RenderConf:
    frames: int = 60
    fps: int = 20


@dataclass(frozen=True)
class PipelineConf:
    name: str = "default"
    images: ImagesConf = field(default_factory=ImagesConf)
    priors: PriorsConf = field(default_factory=PriorsConf)
    warp: WarpConf = field(default_factory=WarpConf)
    fit: FitConf = field(default_factory=FitConf)
    render: RenderConf = field(default_factory=RenderConf)


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from a nested dict, refusing unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise FvgenError(f"unknown setting {where}{key} (known: {', '.join(known)})")
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, dict):
                raise FvgenError(f"setting {where}{key} must be a table")
            kwargs[key] = from_dict(typ, value, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, typ, f"{where}{key}")
    return cls(**kwargs)


def _coerce(value, typ, name):
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):  # e.g. int | None
        for option in typing.get_args(typ):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, name)
            except FvgenError:
                continue
        raise FvgenError(f"setting {name} must be {typ}, got {value!r}")
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FvgenError(f"setting {name} must be a number, got {value!r}")
        return float(value)
    if typ in (int, str, bool):
        if type(value) is not typ:
            raise FvgenError(f"setting {name} must be {typ.__name__}, got {value!r}")
        return value
    if origin is tuple or typ is tuple:
        if not isinstance(value, (list, tuple)):
            raise FvgenError(f"setting {name} must be a list, got {value!r}")
        return tuple(value)
    if origin is typing.Literal:
        if value not in typing.get_args(typ):
            raise FvgenError(f"setting {name} must be one of {typing.get_args(typ)}, got {value!r}")
    return value


def presets_dir() -> Path:
    repo = Path(__file__).resolve().parents[1] / "pipelines"
    if repo.is_dir():
        return repo
    from importlib.resources import files

    return Path(str(files("fvgen") / "pipelines"))


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def load_preset(name_or_path: str) -> PipelineConf:
    p = Path(name_or_path)
    if not (p.suffix == ".toml" and p.exists()):
        p = presets_dir() / f"{name_or_path}.toml"
        if not p.exists():
            raise FvgenError(f"unknown preset {name_or_path!r}: use one of {', '.join(preset_names())} "
                             "or a path to a .toml file")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise FvgenError(f"{p}: not valid TOML ({e})") from None
    data.setdefault("name", p.stem)
    return from_dict(PipelineConf, data)


def with_overrides(conf, **changes):
    """``dataclasses.replace`` for nested fields written as ``"fit.iterations"``."""
    for dotted, value in changes.items():
        head, _, rest = dotted.partition(".")
        if rest:
            conf = dataclasses.replace(conf, **{head: with_overrides(getattr(conf, head), **{rest: value})})
        else:
            conf = dataclasses.replace(conf, **{head: value})
    return conf
