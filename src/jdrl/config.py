"""Typed configuration: dataclasses <-> YAML, presets with inheritance, dotted overrides.

* A config is a tree of dataclasses. :func:`from_dict` builds one from plain
  data, strictly: unknown keys and values of the wrong type are errors that
  name the offending key.
* YAML files may start from another file or preset with ``base: NAME``.
* ``key.sub=value`` overrides are parsed as YAML scalars (``1e-4``, ``true``,
  ``[1, 2]``, ``null``), never evaluated as code.
* A field that names an implementation reads its choices from a registry (:func:`named`): a
  name registered there (by this package or by a user) is a valid value, and an unknown one is
  refused with the registry's names.
* Every number has a declared range beside its field (:func:`ranged`); :func:`validate`
  reports every violation of a whole config at once, with the dotted key, the value and
  what is allowed. YAML aliases are refused (a few bytes of nested aliases can expand to
  gigabytes), and so are documents over :data:`MAX_CONFIG_BYTES`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from jdrl.errors import ConfigError
from jdrl.files import file_problem, read_text, write_text

C = TypeVar("C")
MAX_CONFIG_BYTES = 1_000_000  # a config is a page of text, not a data file


# ---------------------------------------------------------------------- declared ranges


@dataclasses.dataclass(frozen=True)
class Range:
    """What a numeric field allows: bounds (each inclusive or not), finiteness, and a reason shown on failure."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = True

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # types are checked when the config is built
        if isinstance(value, float) and self.finite and not math.isfinite(value):
            return "must be a finite number"  # (an int is always finite, however large: math.isfinite overflows)
        for bound, ok, _words in ((self.ge, lambda v, b: v >= b, ">="), (self.gt, lambda v, b: v > b, ">"),
                                 (self.le, lambda v, b: v <= b, "<="), (self.lt, lambda v, b: v < b, "<")):
            if bound is not None and not ok(value, bound):
                return f"must be {self.describe()}"
        return None

    def describe(self) -> str:
        parts = [f"{words} {bound:g}" for bound, words in ((self.ge, ">="), (self.gt, ">"), (self.le, "<="),
                                                           (self.lt, "<")) if bound is not None]
        return " and ".join(parts) if parts else "finite"


POSITIVE = Range(gt=0)
NON_NEGATIVE = Range(ge=0)
AT_LEAST_ONE = Range(ge=1)
FRACTION = Range(ge=0, le=1)
#: every count has an upper bound a user reaches only on purpose (a typo such as 1e308 is refused, not run)
COUNT = Range(ge=1, le=10**9)  # items: pairs, images
STEPS = Range(ge=1, le=10**9)  # schedule lengths and intervals, in steps or epochs
PIXELS = Range(ge=1, le=65_536)  # an image side, crop or tile in px


def ranged(default: Any = dataclasses.MISSING, check: Range = NON_NEGATIVE, **kwargs: Any) -> Any:
    """A dataclass field whose number(s) must satisfy ``check`` (also each item of a list/tuple value)."""
    metadata = {**kwargs.pop("metadata", {}), "range": check}
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


class Choices:
    """The names a :func:`named` field allows: a registry's (anything with ``names()`` and ``in``, read each time, so
    a name registered later is allowed) and a few more that mean "none of them" (``also``)."""

    def __init__(self, registry: Any, also: Iterable[str] = ()):
        self.registry, self.also = registry, tuple(also)

    def names(self) -> list[str]:
        return [*self.registry.names(), *self.also]

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and (value in self.also or value in self.registry):
            return None
        return f"is not one of {', '.join(map(repr, self.names()))}"


def named(default: Any, registry: Any, also: Iterable[str] = (), **kwargs: Any) -> Any:
    """A dataclass string field whose value must be a name in ``registry`` (a :class:`jdrl.registry.Registry`) or one
    of ``also`` (e.g. ``"none"``); checked when a config is built (:func:`from_dict`) and by :func:`validate`."""
    metadata = {**kwargs.pop("metadata", {}), "choices": Choices(registry, also)}
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def violations(config: Any, where: str = "") -> list[str]:
    """Every declared-range violation of a config tree, as ``"key: value must be ..."``."""
    found = []
    for f in dataclasses.fields(config):
        value, key = getattr(config, f.name), where + f.name
        if dataclasses.is_dataclass(value):
            found += violations(value, key + ".")
            continue
        choices = f.metadata.get("choices")
        if choices is not None:
            problem = choices.problem(value)
            if problem:
                found.append(f"{key}: {value!r} {problem}")
            continue
        check = f.metadata.get("range")
        if check is None or value is None:
            continue
        items = enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]
        for index, item in items:
            problem = check.problem(item)
            if problem:
                found.append(f"{key}{'' if index is None else f'[{index}]'}: {item!r} {problem}")
    return found


def validate(config: C) -> C:
    """``config`` itself if every declared range holds and nothing in it is set to no effect (a config class
    may list such settings in a ``conflicts()`` method); else one :class:`ConfigError` listing every problem."""
    found = violations(config)
    if not found and callable(getattr(config, "conflicts", None)):
        found = list(config.conflicts())  # type: ignore[attr-defined]
    if found:
        raise ConfigError(f"{len(found)} invalid config value(s):\n  " + "\n  ".join(found))
    return config


# ---------------------------------------------------------------------- dict <-> dataclass


def from_dict(cls: type[C], data: Mapping[str, Any] | None, where: str = "") -> C:
    """Build dataclass ``cls`` from ``data``, checking every key and value."""
    data = dict(data or {})
    not_names = [key for key in data if not isinstance(key, str)]
    if not_names:
        raise ConfigError(f"{where or 'the config'}: key {not_names[0]!r} is not a name (keys are words such as "
                          f"{', '.join(f.name for f in dataclasses.fields(cls))[:80]}); quote it if it is meant")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}; valid: {', '.join(sorted(fields))}")
    values = {name: _coerce(hints[name], value, where + name) for name, value in data.items()}
    for name, value in values.items():
        choices = fields[name].metadata.get("choices")
        problem = choices.problem(value) if choices is not None else None
        if problem:
            raise ConfigError(f"{where}{name}: {value!r} {problem}")
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
        if origin is tuple and args and Ellipsis not in args:  # tuple[float, float]: exactly that many items
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected a list of {len(args)} items, got {list(value)!r}")
            return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
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
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key}: {str(value)[:20]}... ({len(str(value))} digits) is too large for a number") from None
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
    if _has_undecodable_bytes(raw):  # a file name that is not UTF-8 (argv keeps it as surrogates): a plain string
        return key.strip().split("."), raw
    try:
        value = safe_yaml(raw, f"override {text!r}") if raw.strip() else ""
    except ConfigError as error:
        raise ConfigError(f"override {text!r}: cannot parse value ({error})") from None
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string
    return key.strip().split("."), value


def _has_undecodable_bytes(text: str) -> bool:
    return any("\udc80" <= character <= "\udcff" for character in text)


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return any(c in text.lower() for c in ".e") and text.lower() not in ("nan", "inf", "-inf")


def refuse_repeated_overrides(overrides: Iterable[str]) -> None:
    """A :class:`ConfigError` when a key is given twice, or a section after a key in it (``net.name=...`` then
    ``net={...}``): on a command line that is a slip, and which value is meant cannot be told. (In Python,
    :func:`apply_overrides` applies a list in order, the last value winning, so lists can be composed.)"""
    given: dict = {}  # what the overrides so far set, as a tree
    for text in overrides:
        path, value = parse_override(text)
        if _sets_again(given, path):
            raise ConfigError(f"-o {text} sets {'.'.join(path)} again (an earlier -o gave it or a part of it); "
                              "give each key once")
        _set_path(given, path, value if isinstance(value, dict) else True)


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Apply dotted overrides to a nested dict, in order (returns a new dict)."""
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


def _sets_again(given: dict, path: list[str]) -> bool:
    """Whether an override of ``path`` would replace a key that an earlier override set."""
    node: Any = given
    for part in path:
        if not isinstance(node, dict):
            return True  # an earlier override set a value where this one needs a section
        if part not in node:
            return False
        node = node[part]
    return True  # this very key, or a section holding keys set before


def _set_path(tree: dict, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


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
    problem = file_problem(path, allow_empty=True)
    if path.suffix in (".yaml", ".yml") or problem != "no such file" or os.sep in str(name_or_path):
        if problem == "no such file":
            raise ConfigError(f"config file {path} does not exist")
        try:
            text, where = read_text(path, MAX_CONFIG_BYTES, "YAML config"), path.parent
        except ValueError as error:
            raise ConfigError(f"config file {path}: {error}") from None
    else:
        resource = resources.files(PRESET_PACKAGE) / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise ConfigError(f"no config file or preset named {str(name_or_path)!r}; presets: {', '.join(preset_names())}")
        text, where = resource.read_text(), None
    data = safe_yaml(text, str(name_or_path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path}: a config must be a mapping at the top level")
    if "base" in data and not isinstance(data["base"], str):
        raise ConfigError(f"{name_or_path}: base: {data['base']!r} must be a preset name or a YAML file path")
    return data, where


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses aliases (``*name``: nested aliases expand exponentially, "billion laughs") and
    keys given twice in one mapping (PyYAML would keep the last one silently)."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"YAML aliases (*{event.anchor}) are not allowed in configs (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
        seen = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key ([a, b]: ...): PyYAML's own error follows
                continue
            if duplicate:
                raise yaml.YAMLError(f"the key {key!r} is given twice in one mapping (line {key_node.start_mark.line + 1}); "
                                     "which one is meant cannot be told")
        return super().construct_mapping(node, deep=deep)


def safe_yaml(text: str, where: str) -> Any:
    """Parse a config's YAML text: size-limited, no aliases, no code; errors name ``where``."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: {len(text)} bytes is too large for a config (limit {MAX_CONFIG_BYTES})")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML ({str(error).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config") from None


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
    return validate(from_dict(cls, apply_overrides(data, overrides)))


def dump_yaml(config: Any, path: str | os.PathLike | None = None) -> str:
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    if path is not None:
        write_text(path, text)
    return text

