"""RAFT (Teed & Deng 2020) small and large, from torchvision.

torchvision's ``raft(image1, image2)`` samples ``image2``'s features at
``coords1 = p + flow`` to match ``image1(p)``, so ``image2(p + flow) ~= image1(p)``:
with ``image1 = a`` and ``image2 = b`` that is our convention unchanged.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.errors import WeightsError
from jdrl.flow.base import FLOWS, FlowEstimator, weights_for
from jdrl.weights import load_strict, strip_prefix

# The correlation pyramid pools the 1/8-resolution features 3 times and needs >= 2 cells left.
MIN_SIDE = 128
DEFAULT = "default"


class RAFTFlow(FlowEstimator):
    """A torchvision RAFT network behind the flow interface; inputs padded to a multiple of 8 (and >= 128)."""

    size_multiple = 8
    resize_mode = "pad"

    def __init__(self, net: nn.Module, num_flow_updates: int = 12) -> None:
        super().__init__()
        if num_flow_updates < 1:
            raise ValueError(f"num_flow_updates must be at least 1, not {num_flow_updates}")
        self.net = net
        self.num_flow_updates = num_flow_updates

    def estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        height, width = a.shape[-2:]
        pad = (0, max(MIN_SIDE - width, 0), 0, max(MIN_SIDE - height, 0))
        if any(pad):
            a, b = F.pad(a, pad, mode="replicate"), F.pad(b, pad, mode="replicate")
        flows = self.net(a * 2.0 - 1.0, b * 2.0 - 1.0, num_flow_updates=self.num_flow_updates)
        return flows[-1][:, :, :height, :width].contiguous()


def _architecture(name: str) -> nn.Module:
    """An untrained torchvision RAFT of the given variant."""
    from torchvision.models import optical_flow

    return getattr(optical_flow, name)(weights=None, progress=False)


def _pretrained_state(name: str, download: bool) -> dict:
    """torchvision's default weights for ``name`` from its cache; fetched when missing only if ``download``."""
    from torchvision.models import optical_flow

    enum = {"raft_small": optical_flow.Raft_Small_Weights, "raft_large": optical_flow.Raft_Large_Weights}[name]
    weights = enum.DEFAULT
    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    others = ", ".join(n for n in FLOWS.names() if n != name)
    cached = os.path.join(cache, os.path.basename(weights.url))
    if not download and not os.path.isfile(cached):
        raise WeightsError(
            f"flow estimator {name!r} needs weights: torchvision's pretrained file is not in its cache ({cached}). "
            f"Pass weights='{DEFAULT}' to download it (online), put the file there, or pass weights=PATH to a "
            f"saved state dict. Other estimators: {others} (dis needs no weights)."
        )
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:  # noqa: BLE001 - offline, proxy, bad hash: all mean "no usable weights"
        raise WeightsError(
            f"flow estimator {name!r}: torchvision's pretrained weights ({weights.url}) are not in its cache "
            f"({cache}) and could not be downloaded ({type(error).__name__}: {error}). Put that file in {cache} "
            f"on this machine, or pass weights=PATH to a saved state dict. "
            f"Other estimators: {others} (dis needs no weights)."
        ) from None


def build_raft(name: str, weights: str | os.PathLike | None, num_flow_updates: int) -> RAFTFlow:
    """``name`` with weights from a path; ``None``: torchvision's pretrained ones if cached; ``"default"``: those,
    downloaded if needed."""
    if weights is None or (isinstance(weights, str) and weights == DEFAULT):
        state, source = _pretrained_state(name, download=weights is not None), f"torchvision's {name} weights"
    else:
        state, source = strip_prefix(weights_for(weights, name), "module."), str(weights)
    net = _architecture(name)
    load_strict(net, state, source)
    return RAFTFlow(net, num_flow_updates)


@FLOWS.register("raft_small")
def build_raft_small(weights: str | os.PathLike | None = None, num_flow_updates: int = 12) -> RAFTFlow:
    return build_raft("raft_small", weights, num_flow_updates)


@FLOWS.register("raft_large")
def build_raft_large(weights: str | os.PathLike | None = None, num_flow_updates: int = 12) -> RAFTFlow:
    return build_raft("raft_large", weights, num_flow_updates)
