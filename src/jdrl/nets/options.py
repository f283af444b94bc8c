"""Declared options of the built-in networks, checked before anything is built.

Network options reach a constructor from the command line, a YAML config, a checkpoint,
a model folder's ``config.json`` or a Hub repository. Whatever the source, a registered
network's options are checked against the :class:`Option` rules it declares
(``NETS.register(name, options=...)``): the type, the range of every number (finite, within
bounds), the length of every list and the allowed words. Every problem is reported at once,
naming where the options came from. Then :func:`check_size` builds the network on the meta
device (shapes only, no memory) and refuses one over :data:`MAX_PARAMETERS`, so a file that
asks for a width of 10**6 is a clear error, not a terabyte allocation.

A network of the user's (``package.module:Class``, an entry point) declares no rules; its
options must still be plain data with finite numbers (:func:`plain_data_problems`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jdrl.config import Range
from jdrl.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

#: the largest network jdrl builds (4 GB of float32 weights; the largest built-in, NAFNet-w64, has 68 M)
MAX_PARAMETERS = 1_000_000_000
_MAX_DEPTH = 8  # nesting of lists/mappings in options read from files
_MAX_ITEMS = 256


@dataclass(frozen=True)
class Option:
    """What one option allows.

    kind: ``"int"``, ``"float"`` (an int is accepted), ``"bool"``, ``"word"`` (one of ``choices``),
        ``"ints"`` (a list of ints, ``length`` items if set, else 1 to ``max_items``) or
        ``"int_or_pair"`` (an int or a list of two).
    check: the range of the number(s).
    nullable: ``None`` is allowed too.
    """

    kind: str
    check: Range = Range()
    choices: tuple[str, ...] = ()
    length: int | None = None
    max_items: int = 16
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None if self.nullable else "must not be null"
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind == "word":
            return None if value in self.choices else f"must be one of {', '.join(map(repr, self.choices))}"
        if self.kind in ("int", "float"):
            return _number_problem(value, self.kind, self.check)
        if self.kind == "int_or_pair" and not isinstance(value, (list, tuple)):
            return _number_problem(value, "int", self.check)
        if not isinstance(value, (list, tuple)):
            return "must be a list of integers"
        wanted = 2 if self.kind == "int_or_pair" else self.length
        if wanted is not None and len(value) != wanted:
            return f"must have {wanted} items, got {len(value)}"
        if not 1 <= len(value) <= self.max_items:
            return f"must have 1 to {self.max_items} items, got {len(value)}"
        for index, item in enumerate(value):
            problem = _number_problem(item, "int", self.check)
            if problem:
                return f"item {index} ({item!r}) {problem}"
        return None


def integer(ge: float = 0, le: float = 4096) -> Option:
    return Option("int", Range(ge=ge, le=le))


def number(ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None
           ) -> Option:
    return Option("float", Range(ge=ge, gt=gt, le=le, lt=lt))


def flag() -> Option:
    return Option("bool")


def word(*choices: str) -> Option:
    return Option("word", choices=choices)


def integers(ge: float = 0, le: float = 4096, length: int | None = None, max_items: int = 16) -> Option:
    return Option("ints", Range(ge=ge, le=le), length=length, max_items=max_items)


def _number_problem(value: Any, kind: str, check: Range) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be an integer" if kind == "int" else "must be a number"
    if kind == "int" and not isinstance(value, int):
        if not (math.isfinite(value) and float(value).is_integer()):
            return "must be an integer"
    return check.problem(value)


def option_problems(options: Mapping[str, Any], rules: Mapping[str, Option]) -> list[str]:
    """Every way ``options`` break ``rules``: unknown names, wrong types, numbers out of range."""
    problems = []
    for name, value in options.items():
        rule = rules.get(name)
        if rule is None:
            problems.append(f"{name}: unknown option; valid: {', '.join(sorted(rules))}")
            continue
        problem = rule.problem(value)
        if problem:
            problems.append(f"{name}: {_shown(value)} {problem}")
    return problems


def plain_data_problems(value: Any, where: str = "options", depth: int = 0) -> list[str]:
    """Problems of options that must be plain data: str/int/float/bool/None, lists, string-keyed mappings,
    finite numbers, bounded nesting and size."""
    if depth > _MAX_DEPTH:
        return [f"{where}: nested deeper than {_MAX_DEPTH} levels"]
    if value is None or isinstance(value, (bool, str)):
        return [f"{where}: a string of {len(value)} characters is too long"] if isinstance(value, str) \
            and len(value) > 10_000 else []
    if isinstance(value, (int, float)):
        return [] if math.isfinite(value) else [f"{where}: {value!r} is not a finite number"]
    if isinstance(value, Mapping):
        if len(value) > _MAX_ITEMS:
            return [f"{where}: {len(value)} entries (at most {_MAX_ITEMS})"]
        found = []
        for key, item in value.items():
            if not isinstance(key, str):
                found.append(f"{where}: key {key!r} is not a string")
            else:
                found += plain_data_problems(item, f"{where}.{key}", depth + 1)
        return found
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_ITEMS:
            return [f"{where}: {len(value)} items (at most {_MAX_ITEMS})"]
        return [p for index, item in enumerate(value) for p in plain_data_problems(item, f"{where}[{index}]", depth + 1)]
    return [f"{where}: a {type(value).__name__} is not plain data"]


def check_options(name: str, options: Mapping[str, Any], rules: Mapping[str, Option] | None, where: str) -> None:
    """Raise one :class:`ConfigError` listing every problem of ``options`` for network ``name``."""
    problems = plain_data_problems(dict(options))
    if not problems and rules is not None:
        problems = option_problems(options, rules)
    if problems:
        raise ConfigError(f"network {name!r} options from {where}: " + "; ".join(problems))


def check_size(name: str, factory: Callable[..., Any], options: Mapping[str, Any], where: str) -> None:
    """Build the network on the meta device (no memory) and refuse one over :data:`MAX_PARAMETERS`."""
    import torch

    try:
        with torch.device("meta"):
            net: nn.Module = factory(**options)
        count = sum(p.numel() for p in net.parameters())
    except (TypeError, ValueError, OverflowError, RuntimeError) as error:
        raise ConfigError(f"network {name!r} with options {_shown(dict(options))} from {where}: {error}") from None
    if count > MAX_PARAMETERS:
        raise ConfigError(f"network {name!r} with options {_shown(dict(options))} from {where} would have "
                          f"{count:,} parameters (at most {MAX_PARAMETERS:,}); check the options")


def _shown(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."



def build_with_defaults(cls: Callable[..., Any], defaults: Mapping[str, Any], options: Mapping[str, Any], name: str,
                        valid: Iterable[str]) -> Any:
    """``cls(**defaults, **options)`` after refusing options outside ``valid`` by name (a registered factory's body)."""
    valid = tuple(valid)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown {name} option(s) {', '.join(unknown)}; choose from {', '.join(valid)}")
    return cls(**{**defaults, **options})
