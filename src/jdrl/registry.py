"""Name -> implementation registries (the timm pattern, populated lazily).

A :class:`Registry` knows which modules define its entries and imports them on
first lookup, so ``import jdrl`` stays cheap and has no side effects. Entries
register themselves with the :meth:`Registry.register` decorator; users can add
their own the same way. A registry may also name entries it imports only when one
is looked up (``lazy={name: "package.module[:attribute]"}``): listing those names
imports nothing (the CLI's commands, so that ``jdrl --help`` never imports torch).

Every name-to-implementation choice of the package is a registry (docs/ARCHITECTURE.md):
networks (``NETS``), flow estimators (``FLOWS``), loss terms (``LOSS_TERMS``), objectives
(``OBJECTIVES``), calibration masks (``MASKS``), reblurring kernels and implementations
(``REBLUR_KERNELS``, ``REBLUR_IMPLEMENTATIONS``), run loggers (``LOGGERS``) and the CLI's
commands (``COMMANDS``). A config field that names one is declared with
:func:`jdrl.config.named`, so a registered name is a valid value by itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from jdrl.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of implementations of one kind (networks, flow estimators, ...).

    Args:
        kind: what an entry is, in words (error messages say ``unknown <kind> 'x'; choose one of: ...``).
        modules: the modules whose ``@register`` decorators define the entries, imported on first lookup.
        entry_point_group: installed packages may add entries under this entry-point group.
        lazy: entries named here and imported only when looked up: ``{name: "package.module"}`` (the
            module itself) or ``{name: "package.module:attribute"}``.
        sort: :meth:`names` (and iteration) in alphabetical order, or else in the order of registration
            (for choices with a natural order: the paper's first, ``none`` last; the CLI's commands).
    """

    def __init__(self, kind: str, modules: Iterable[str] = (), entry_point_group: str | None = None,
                 lazy: Mapping[str, str] | None = None, sort: bool = True):
        self.kind = kind
        self._modules = tuple(modules)
        self._group = entry_point_group
        self._sort = sort
        self._entries: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._loaded = False
        for name, target in (lazy or {}).items():
            self._entries[name] = _LazyTarget(target)  # type: ignore[assignment]
            self._info[name] = {}

    def register(self, name: str | None = None, **info: Any) -> Callable[[T], T]:
        """Register a factory under ``name``; ``info`` is what the registry knows about it besides
        (for networks: their declared ``options``), read back with :meth:`info`."""
        def decorator(factory: T) -> T:
            key = name or getattr(factory, "__name__")  # noqa: B009 - T need not declare __name__
            if key in self._entries and self._entries[key] is not factory:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = factory
            self._info[key] = dict(info)
            return factory

        return decorator

    def info(self, name: str) -> dict[str, Any]:
        """What was registered with ``name`` besides its factory (``{}`` for plugins and unknown names)."""
        self._load()
        return self._info.get(name, {})

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)
            if self._group:
                self._load_plugins()

    def _load_plugins(self) -> None:
        """Entries of installed packages: ``[project.entry-points."GROUP"] name = "package.module:factory"``."""
        from importlib.metadata import entry_points

        for point in entry_points(group=self._group):
            if point.name not in self._entries:
                self._entries[point.name] = _LazyEntryPoint(point)  # type: ignore[assignment]

    def get(self, name: str) -> T:
        self._load()
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None
        if isinstance(entry, (_LazyEntryPoint, _LazyTarget)):
            entry = self._entries[name] = entry.resolve(self.kind)
        return entry

    def names(self) -> list[str]:
        """Every registered name: sorted, or in the order of registration (``sort=False``)."""
        self._load()
        return sorted(self._entries) if self._sort else list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


class _LazyEntryPoint:
    """A plugin entry, imported on first use (so listing names imports nothing)."""

    def __init__(self, point):  # noqa: ANN001 - importlib.metadata.EntryPoint
        self.point = point

    def resolve(self, kind: str):
        try:
            return self.point.load()
        except Exception as error:  # noqa: BLE001 - a broken plugin is the user's to fix, say which
            raise ConfigError(f"{kind} {self.point.name!r} (entry point {self.point.value}) cannot be loaded: "
                              f"{type(error).__name__}: {error}") from None


class _LazyTarget:
    """An entry named in the registry's ``lazy=``: ``package.module`` or ``package.module:attribute``,
    imported on first use."""

    def __init__(self, target: str):
        self.target = target

    def resolve(self, kind: str):
        module_name, _, attribute = self.target.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attribute) if attribute else module


def lazy_exports(package: str, exports: dict[str, str], eager: Iterable[str] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) that import ``exports`` (name -> module) on first use.

    ``eager`` are names the package imports itself, listed by ``__dir__`` beside the lazy ones."""
    names = sorted({*exports, *eager})

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
