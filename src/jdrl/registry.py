"""Name -> factory registries (the timm pattern, populated lazily).

A :class:`Registry` knows which modules define its entries and imports them on
first lookup, so ``import jdrl`` stays cheap and has no side effects. Entries
register themselves with the :meth:`Registry.register` decorator; users can add
their own the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from jdrl.errors import UnknownNameError

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """A named collection of factories of one kind (networks, flow estimators, ...)."""

    def __init__(self, kind: str, modules: Iterable[str] = (), entry_point_group: str | None = None):
        self.kind = kind
        self._modules = tuple(modules)
        self._group = entry_point_group  # installed packages may add entries under this entry-point group
        self._entries: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._loaded = False

    def register(self, name: str | None = None, **info: Any) -> Callable[[T], T]:
        """Register a factory under ``name``; ``info`` is what the registry knows about it besides
        (for networks: their declared ``options``), read back with :meth:`info`."""
        def decorator(factory: T) -> T:
            key = name or factory.__name__
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
        if isinstance(entry, _LazyEntryPoint):
            entry = self._entries[name] = entry.resolve(self.kind)
        return entry

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


class _LazyEntryPoint:
    """A plugin entry, imported on first use (so listing names imports nothing)."""

    def __init__(self, point):  # noqa: ANN001 - importlib.metadata.EntryPoint
        self.point = point

    def resolve(self, kind: str):
        from jdrl.errors import ConfigError

        try:
            return self.point.load()
        except Exception as error:  # noqa: BLE001 - a broken plugin is the user's to fix, say which
            raise ConfigError(f"{kind} {self.point.name!r} (entry point {self.point.value}) cannot be loaded: "
                              f"{type(error).__name__}: {error}") from None
