"""Deblurring networks behind one interface.

``create_net(name, **opts)`` (or ``create_net(checkpoint=PATH)``) returns an ``nn.Module``
whose ``forward(x)`` maps an RGB batch ``(B, 3, H, W)`` in [0, 1] to the restored RGB batch
of the same shape. Each network has an int attribute ``size_multiple``: H and W must be
multiples of it (callers pad, e.g. by reflection, and crop the output back).

Networks (``net_names()``): ``unet`` (the paper's baseline, released ``VGG_Deblur``),
``mprnet`` (three-stage MPRNet, deblurring configuration), ``ifan`` (the paper's third
backbone), ``nafnet_w32``/``nafnet_w64``, ``restormer`` and ``lakdnet``/``lakdnet_large``
(today's defocus networks, official parameter names). A new network is one module with an
``@NETS.register("name")`` factory, listed in ``NETS`` below; a network of the user's is
``"package.module:Class"`` or an entry point in the group ``jdrl.nets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jdrl.nets.factory import NetSpec, create_net, describe
from jdrl.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "NETS",
    "NetSpec",
    "check_input_size",
    "count_parameters",
    "create_net",
    "describe",
    "net_names",
]

NETS: Registry = Registry("network", modules=["jdrl.nets.unet", "jdrl.nets.mprnet", "jdrl.nets.ifan", "jdrl.nets.nafnet",
                                   "jdrl.nets.restormer", "jdrl.nets.lakdnet"], entry_point_group="jdrl.nets")


def net_names() -> list[str]:
    return NETS.names()


def count_parameters(net: nn.Module) -> int:
    """Number of distinct trainable values (a parameter shared by several layers counts once)."""
    return sum(p.numel() for p in net.parameters())


def check_input_size(x: torch.Tensor, multiple: int, net_name: str) -> None:
    """Fail with a readable message (instead of a shape error deep inside) on a badly sized input."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{net_name} expects an RGB batch (B, 3, H, W), got shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"{net_name} needs H and W to be multiples of {multiple}, got {height}x{width}; "
            "pad the input (e.g. reflect) and crop the output back"
        )
