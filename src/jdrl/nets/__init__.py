"""Deblurring networks behind one interface.

``create_net(name, **opts)`` (or ``create_net(checkpoint=PATH)``) returns an ``nn.Module``
whose ``forward(x)`` maps an RGB batch ``(B, 3, H, W)`` in [0, 1] to the restored RGB batch
of the same shape. Each network has an int attribute ``size_multiple``: H and W must be
multiples of it (callers pad, e.g. by reflection, and crop the output back).

Networks (``net_names()``): ``unet`` (the paper's baseline, released ``VGG_Deblur``),
``mprnet`` (three-stage MPRNet, deblurring configuration), ``ifan`` (the paper's third
backbone), ``nafnet_w32``/``nafnet_w64``, ``restormer`` and ``lakdnet``/``lakdnet_large``
(today's defocus networks, official parameter names). A new network is one module with an
``@NETS.register("name")`` factory, listed in ``NETS`` (:mod:`jdrl.nets.registry`); a network of the user's is
``"package.module:Class"`` or an entry point in the group ``jdrl.nets``.

**Auxiliary outputs (training only).** What the objective and every metric see is always
what ``forward(x)`` returns. A network with more outputs (MPRNet's earlier stages, IFAN's
filters and disparity map) may also define ``training_outputs(x) -> dict[str, Tensor]``:
one forward pass that returns every output by name, ``"restored"`` being exactly what
``forward(x)`` returns and every other entry an auxiliary output. Training calls it
(through :func:`training_outputs`) instead of ``forward`` only when a loss term asks for
auxiliary outputs (``needs_outputs``, e.g. ``stage_deblur``), so a network without it, or a
run without such a term, costs exactly what it did. An auxiliary output with the restored
image's shape ``(B, 3, H, W)`` is an image of the restored scene (what ``stage_deblur``
supervises); any other shape (a map, filters) is for terms that know the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jdrl.errors import ConfigError
from jdrl.nets.factory import NetSpec, create_net, describe
from jdrl.nets.registry import NETS

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
    "has_training_outputs",
    "net_names",
    "split_training_outputs",
    "training_outputs",
]



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


def has_training_outputs(net: nn.Module) -> bool:
    """Whether ``net`` offers auxiliary outputs for training (a callable ``training_outputs``)."""
    return callable(getattr(net, "training_outputs", None))


def split_training_outputs(result: Any, net_name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A ``training_outputs`` result -> ``(restored, auxiliary outputs)``, with a readable error on a bad one."""
    import torch

    if not isinstance(result, Mapping) or not isinstance(result.get("restored"), torch.Tensor):
        got = sorted(map(str, result)) if isinstance(result, Mapping) else type(result).__name__
        raise ConfigError(f"network {net_name!r}: training_outputs(x) must return a dict of tensors with the "
                          f"restored image (what forward(x) returns) under 'restored', got {got}")
    auxiliary = {str(name): value for name, value in result.items() if name != "restored"}
    for name, value in auxiliary.items():
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"network {net_name!r}: training_outputs(x)[{name!r}] is a {type(value).__name__}, "
                              "not a tensor")
    return result["restored"], auxiliary


def training_outputs(net: nn.Module, x: torch.Tensor, net_name: str | None = None
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(restored, auxiliary outputs)`` of one forward pass; ``restored`` is what ``net(x)`` returns.

    A network without ``training_outputs`` has none: a :class:`~jdrl.errors.ConfigError` naming it.
    """
    name = net_name or describe(net).name
    method = getattr(net, "training_outputs", None)
    if not callable(method):
        raise ConfigError(f"network {name!r} has no auxiliary outputs (no training_outputs(x) method; mprnet has "
                          "its earlier stages, ifan its filters and disparity map)")
    return split_training_outputs(method(x), name)
