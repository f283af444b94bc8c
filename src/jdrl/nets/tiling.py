"""How to tile each network: the overlap its tiles need and the tile side its memory allows.

Tiled inference (:mod:`jdrl.inference`) reproduces the whole-image output only when every
kept pixel sees the context the network uses, and its memory is set by the tile. Both
depend on the network: the paper's UNet sees +-112 px, Restormer's channel attention and
the channel-attention pooling of NAFNet and MPRNet see the whole image (no overlap makes
a tiled output exact), LaKDNet's large kernels reach far, and the memory one pixel costs
differs fourfold between networks. A network's :class:`TileHint` says what ``--tile auto``
and the default ``--overlap`` of ``jdrl deblur`` use for it, taken from (the first found):

1. the network's own optional ``tile_hint`` attribute, a :class:`TileHint` or a mapping
   with some of its fields (``{"overlap": 128, "tile": 768}``): the plugin contract
   (README, "Any network");
2. the network's record (:mod:`jdrl.nets.record`, beside each built-in network; by registry name,
   ``net.jdrl_spec.name``, set by ``create_net``; all of them: ``TILE_HINTS``), for the default
   configuration of each built-in network;
3. :data:`FALLBACK`: the numbers every network got before hints existed (the paper's
   UNet: 512 px tiles on the CPU, 256 px overlap, images up to 2 MP whole).

The built-in numbers are measured by ``benchmarks/tiling.py`` (docs/RESULTS.md, "Tiling"; whole
512² vs its 256² corner, random weights). Overlap: float rounding where the receptive field is finite
(unet +-112 px, ifan), 1e-3 where far context fades (nafnet, lakdnet), else where the error stops
falling (restormer's channel attention and mprnet's quarter split and channel-attention pooling are
global: ~0.1 remains at any overlap). CPU tile: the activation memory of the UNet's 512 px tile, at
least twice the overlap; whole: up to the UNet's 2 MP memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from jdrl.errors import ConfigError
from jdrl.nets.record import describe, net_record, records

CUDA_TILE_SCALE = 2  # CUDA tiles are this many times the CPU side (accelerators hold more)


@dataclass(frozen=True)
class TileHint:
    """How a network is tiled by default.

    overlap: pixels neighbouring tiles share so that the tiled output matches the whole
        image to ``tolerance`` (2 x the context margin + the 32 px cross-fade).
    tile: tile side on the CPU (``CUDA_TILE_SCALE`` times it on CUDA); sized so one tile's
        activations take about what the paper's UNet takes at 512 px.
    max_whole_pixels: ``--tile auto`` runs images up to this many pixels whole.
    tolerance: the max |tiled - whole| ``overlap`` was chosen for, measured with random
        weights (1e-5: float rounding, the receptive field is covered; 1e-3: far context
        whose influence fades; larger: global operations that no overlap reproduces).
    """

    overlap: int = 256
    tile: int = 512
    max_whole_pixels: int = 2_000_000
    tolerance: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("overlap", "tile", "max_whole_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "overlap" else 1):
                raise ConfigError(f"tile hint: {name} must be an int >= {0 if name == 'overlap' else 1}, got {value!r}")
        if self.overlap >= self.tile:
            raise ConfigError(f"tile hint: overlap ({self.overlap}) must be smaller than the tile ({self.tile})")

    def tile_for(self, device_type: str) -> int:
        """The tile side on a device type (``"cpu"``, ``"cuda"``, ...)."""
        return self.tile * CUDA_TILE_SCALE if device_type == "cuda" else self.tile


FALLBACK = TileHint()


def __getattr__(name: str) -> Any:
    """``TILE_HINTS``: the built-in networks' hints by registry name, read from their records (jdrl.nets.record)."""
    if name == "TILE_HINTS":
        return {key: record.tile for key, record in records().items() if record.tile is not None}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def as_hint(value: Any, where: str = "tile_hint") -> TileHint:
    """A :class:`TileHint` from a hint or a mapping of some of its fields (the others: :data:`FALLBACK`'s)."""
    if isinstance(value, TileHint):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a jdrl.nets.tiling.TileHint or a mapping, got {type(value).__name__}")
    known = {field.name for field in fields(TileHint)}
    unknown = sorted(set(map(str, value)) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    try:
        return replace(FALLBACK, **value)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def tile_hint(net: Any) -> TileHint:
    """The network's :class:`TileHint`: its own ``tile_hint``, the built-in one of its registry name, or the fallback."""
    own = getattr(net, "tile_hint", None)
    if own is not None:
        return as_hint(own, f"{type(net).__name__}.tile_hint")
    record = net_record(describe(net).name)
    return record.tile if record is not None and record.tile is not None else FALLBACK
