"""What jdrl knows about each built-in network besides its code, in one record beside it (timm's
``pretrained_cfg`` as the model): how it is tiled, and what its released weight files look like.

Each network module registers its record with its factory::

    @NETS.register("unet", options=OPTIONS, record=NetRecord(tile=TileHint(...), released=ReleasedFile(...)))

and every reader asks :func:`net_record` (or :func:`records`): the tile hint (:mod:`jdrl.nets.tiling`),
the JDRL authors' files (:mod:`jdrl.nets.released`), the backbone authors' files
(:mod:`jdrl.nets.official`) and the released test code's border crop (:mod:`jdrl.evaluation.protocol`).
A network of the user's has no record: it gets :data:`~jdrl.nets.tiling.FALLBACK` or its own ``tile_hint``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from jdrl.nets.registry import NETS

if TYPE_CHECKING:
    from torch import nn

    from jdrl.nets.tiling import TileHint


def frozen(values: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class ReleasedFile:
    """A checkpoint of the JDRL authors' release (docs/REPRODUCE.md).

    signature: one state-dict key only this network has (after ``module.`` is removed).
    options: build options such a file needs (the released UNet was trained on BGR images).
    border: the released test code's crop, a border mode of :func:`jdrl.evaluation.protocol.evaluate`.
    """

    signature: str
    options: Mapping[str, Any] = field(default_factory=frozen)
    border: str | None = None


@dataclass(frozen=True)
class OfficialFile:
    """A weight file of the backbone's own authors (SPEC §6).

    module: the backbone module whose ``official_state_dict``, ``SIGNATURE_KEYS`` and ``infer_options`` read it.
    fixed: options the official test code used that the weights cannot tell (NAFNet's TLC).
    match: the options read off a file that make it this registry name rather than the module's
        other one (``{}``: the module's default name).
    """

    module: str
    fixed: Mapping[str, Any] = field(default_factory=frozen)
    match: Mapping[str, Any] = field(default_factory=frozen)

    def fits(self, options: Mapping[str, Any]) -> bool:
        return all(options.get(key) == value for key, value in self.match.items())


@dataclass(frozen=True)
class NetRecord:
    """One built-in network's record: its tile hint and the weight files it has been released as."""

    tile: TileHint | None = None  # None: jdrl.nets.tiling.FALLBACK
    released: ReleasedFile | None = None
    official: OfficialFile | None = None


@dataclass(frozen=True)
class NetSpec:
    """What a network is and where its weights came from (no tensors)."""

    name: str
    options: dict = field(default_factory=dict)
    source: str = "new"  # new | jdrl | released
    path: str | None = None
    step: int | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "options": dict(self.options), "source": self.source, "path": self.path,
                "step": self.step}


def describe(net: nn.Module) -> NetSpec:
    """The :class:`NetSpec` of a network made by :func:`create_net` (a plain one for any other module)."""
    spec = getattr(net, "jdrl_spec", None)
    return spec if isinstance(spec, NetSpec) else NetSpec(type(net).__name__)


def net_record(name: str) -> NetRecord | None:
    """The record registered with network ``name`` (``None`` for plugins, code names and unknown names)."""
    record = NETS.info(name).get("record") if name in NETS else None
    return record if isinstance(record, NetRecord) else None


def records() -> dict[str, NetRecord]:
    """Every registered network's record, by registry name."""
    return {name: record for name in NETS.names() if (record := net_record(name)) is not None}


def record_of(net: Any) -> tuple[str, NetRecord] | None:
    """``(registry name, record)`` of a network: by its spec (``create_net``), else by its class when a built-in
    network's registered factory is the class itself (``UNet(...)`` built directly); ``None`` for any other."""
    name = describe(net).name
    record = net_record(name)
    if record is not None:
        return name, record
    for name in NETS.names():
        record = net_record(name)
        if record is not None and NETS.get(name) is type(net):
            return name, record
    return None
