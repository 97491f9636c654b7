"""Pipeline presets: :class:`PipelineConf` gathers every stage's config (each defined beside its
component) and is filled from the named TOML presets in ``pipelines/`` by the strict loader of
:mod:`fvgen.core.config`.

A preset only lists what differs from the defaults; unknown keys and wrong types are one-line
errors. ``--preset`` takes a preset name (``default``, ``cpu``, ``paper``...) or a ``.toml`` path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .core.config import from_dict, read_toml
from .core.errors import FvgenError
from .core.images import ImagesConf
from .evaluation.align import EvalConf
from .fit import FitConf
from .priors.backends import PriorsConf
from .render.video import RenderConf
from .render.warp import WarpConf
from .videomodel.generators import GenerateConf


@dataclass(frozen=True)
class PipelineConf:
    name: str = "default"
    images: ImagesConf = field(default_factory=ImagesConf)
    priors: PriorsConf = field(default_factory=PriorsConf)
    warp: WarpConf = field(default_factory=WarpConf)
    generate: GenerateConf = field(default_factory=GenerateConf)
    fit: FitConf = field(default_factory=FitConf)
    render: RenderConf = field(default_factory=RenderConf)
    eval: EvalConf = field(default_factory=EvalConf)


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
    data = read_toml(p)
    data.setdefault("name", p.stem)
    return from_dict(PipelineConf, data)
