"""Typed configuration: dataclasses <-> YAML, presets with inheritance, dotted overrides.

* A config is a tree of dataclasses. :func:`from_dict` builds one from plain
  data, strictly: unknown keys and values of the wrong type are errors that
  name the offending key.
* YAML files may start from another file or preset with ``base: NAME``.
* ``key.sub=value`` overrides are parsed as YAML scalars (``1e-4``, ``true``,
  ``[1, 2]``, ``null``), never evaluated as code.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from jdrl.errors import ConfigError

C = TypeVar("C")


# ---------------------------------------------------------------------- dict <-> dataclass


def from_dict(cls: type[C], data: Mapping[str, Any] | None, where: str = "") -> C:
    """Build dataclass ``cls`` from ``data``, checking every key and value."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}; valid: {', '.join(sorted(fields))}")
    values = {name: _coerce(hints[name], value, where + name) for name, value in data.items()}
    return cls(**values)


def _coerce(kind: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {kind}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(kind, value, key + ".")
    if origin in (list, tuple, Iterable) or kind in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or kind is tuple else items
    if origin in (dict, Mapping) or kind is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def to_dict(config: Any) -> dict:
    """A config as plain YAML-safe data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


# ----------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-4"`` -> ``(["optim", "lr"], 0.0001)``."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: cannot parse value ({error})") from None
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string
    return key.strip().split("."), value


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return any(c in text.lower() for c in ".e") and text.lower() not in ("nan", "inf", "-inf")


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Apply dotted overrides to a nested dict (returns a new dict)."""
    data = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def merge(base: Mapping, update: Mapping) -> dict:
    """Recursive dict merge; ``update`` wins."""
    out = _deep_copy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = _deep_copy(value)
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# ------------------------------------------------------------------------------ presets

PRESET_PACKAGE = "jdrl.presets"


def preset_names() -> list[str]:
    folder = resources.files(PRESET_PACKAGE)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml_source(name_or_path: str | os.PathLike) -> tuple[dict, Path | None]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        text, where = path.read_text(), path.parent
    else:
        resource = resources.files(PRESET_PACKAGE) / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise ConfigError(f"no config file or preset named {str(name_or_path)!r}; presets: {', '.join(preset_names())}")
        text, where = resource.read_text(), None
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path}: a config must be a mapping at the top level")
    return data, where


def load_yaml_tree(name_or_path: str | os.PathLike, _seen: tuple[str, ...] = ()) -> dict:
    """Read a YAML config or preset, resolving ``base:`` chains."""
    key = str(name_or_path)
    if key in _seen:
        raise ConfigError(f"config inheritance loop: {' -> '.join(_seen + (key,))}")
    data, where = _read_yaml_source(name_or_path)
    base = data.pop("base", None)
    if base is None:
        return data
    base_ref = where / base if where is not None and (where / base).exists() else base
    return merge(load_yaml_tree(base_ref, _seen + (key,)), data)


def load_config(cls: type[C], name_or_path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> C:
    """Preset name or YAML path (or ``None`` for the defaults) + overrides -> typed config."""
    data = load_yaml_tree(name_or_path) if name_or_path is not None else {}
    return from_dict(cls, apply_overrides(data, overrides))


def dump_yaml(config: Any, path: str | os.PathLike | None = None) -> str:
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text

