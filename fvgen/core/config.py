"""The one config system: frozen dataclasses filled strictly from TOML.

Every configurable component (a pipeline stage's settings, a model preset, a training config)
is a frozen dataclass beside its component. :func:`from_dict` builds one from nested dicts,
refusing unknown keys, wrong types and missing required fields with a one-line
:class:`FvgenError` (a typo in a preset must not silently fall back to a default); :func:`load_toml`
reads a file into one; :func:`with_overrides` changes nested fields written as ``"fit.iterations"``, and
:func:`parse_assignments` reads them from ``KEY=VALUE`` strings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import tomllib

from .errors import FvgenError


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from a nested dict, refusing unknown keys, wrong types and missing
    required fields (those without a default), each with a one-line FvgenError naming the dotted key."""
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
    # after the unknown keys: a misspelt key is reported as such (with the known ones), not as a missing one
    absent = [name for name, f in known.items() if f.init and name not in data
              and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if absent:
        raise FvgenError(f"missing setting {', '.join(where + name for name in absent)} (it has no default)")
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


def parse_assignments(items) -> dict:
    """``["KEY=VALUE", ...]`` (command-line settings) -> ``{KEY: value}``, each VALUE read as a TOML
    value (``2``, ``0.55``, ``true``, ``"x"``); a dotted KEY stays one key (for :func:`with_overrides`)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise FvgenError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError as e:
            raise FvgenError(f"{item!r}: the value is not a TOML value ({e})") from None
    return out


def read_toml(path: Path) -> dict:
    """A TOML file as a dict; a missing or malformed file is a one-line FvgenError."""
    path = Path(path)
    if not path.is_file():
        raise FvgenError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise FvgenError(f"{path}: not valid TOML ({e})") from None


def load_toml(cls, path: Path, base=None):
    """Dataclass ``cls`` from a TOML file, strictly; keys the file does not set come from ``base``
    (an instance of ``cls``) when given, else from the class defaults."""
    data = read_toml(path)
    if base is not None:
        data = {**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, **data}
    return from_dict(cls, data, where=f"{Path(path).name}: ")


def with_overrides(conf, **changes):
    """``dataclasses.replace`` for nested fields written as ``"fit.iterations"``."""
    for dotted, value in changes.items():
        head, _, rest = dotted.partition(".")
        if rest:
            conf = dataclasses.replace(conf, **{head: with_overrides(getattr(conf, head), **{rest: value})})
        else:
            conf = dataclasses.replace(conf, **{head: value})
    return conf
