"""The network registry: the built-in networks' modules, imported on first lookup, and plugins of the
entry-point group ``jdrl.nets`` (:class:`jdrl.registry.Registry`). Each entry's info holds its declared
``options`` (:mod:`jdrl.nets.options`) and its ``record`` (:mod:`jdrl.nets.record`)."""

from __future__ import annotations

from jdrl.registry import Registry

NETS: Registry = Registry("network", modules=["jdrl.nets.unet", "jdrl.nets.mprnet", "jdrl.nets.ifan", "jdrl.nets.nafnet",
                                   "jdrl.nets.restormer", "jdrl.nets.lakdnet"], entry_point_group="jdrl.nets")
