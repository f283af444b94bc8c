"""SpyNet (Ranjan & Black 2017): a 6-level spatial-pyramid flow network, BasicSR weight layout.

The network follows BasicSR's ``SpyNet``: ImageNet-normalised RGB, an average-pooled
pyramid, and at each level a 5-conv ``BasicModule`` that refines the doubled coarser
flow from ``cat(a, warp(b, flow), flow)``. Its flow ``flow(ref=a, supp=b)`` moves the
supporting frame onto the reference (``b(p + flow) ~= a``), which is our convention as is.

The weights (e.g. ``spynet_sintel_final.pth``) carry a research licence: they are loaded
from a path the user gives, never shipped.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.flow.base import FLOWS, FlowEstimator, weights_for
from jdrl.flow.warp import warp
from jdrl.weights import load_strict, strip_prefix

LEVELS = 6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicModule(nn.Module):
    """One pyramid level: 8 channels (a, warped b, flow) -> flow residual, five 7x7 convs."""

    def __init__(self) -> None:
        super().__init__()
        widths = (8, 32, 64, 32, 16, 2)
        layers: list[nn.Module] = []
        for index, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
            if index:
                layers.append(nn.ReLU(inplace=False))
            layers.append(nn.Conv2d(cin, cout, kernel_size=7, stride=1, padding=3))
        self.basic_module = nn.Sequential(*layers)  # conv indices 0, 2, 4, 6, 8 as in the weight file

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basic_module(x)


def _upsample_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Double the flow's resolution and values; replicate-pad a row/column where a side was odd."""
    up = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
    pad_h, pad_w = size[0] - up.shape[-2], size[1] - up.shape[-1]
    if pad_h or pad_w:
        up = F.pad(up, (0, pad_w, 0, pad_h), mode="replicate")
    return up


class SpyNet(FlowEstimator):
    """SpyNet flow ``b(p + flow(p)) ~= a(p)``; inputs resized to a multiple of 32 (as BasicSR)."""

    size_multiple = 32
    resize_mode = "resize"

    def __init__(self) -> None:
        super().__init__()
        self.basic_module = nn.ModuleList(BasicModule() for _ in range(LEVELS))
        # Not in the weight file, so not persistent: strict loading sees exactly BasicSR's keys.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _pyramid(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Normalised image at 6 scales, coarsest first."""
        levels = [(image - self.mean) / self.std]
        for _ in range(LEVELS - 1):
            levels.insert(0, F.avg_pool2d(levels[0], kernel_size=2, stride=2, count_include_pad=False))
        return levels

    def estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        refs, supps = self._pyramid(a), self._pyramid(b)
        coarsest = refs[0]
        # BasicSR starts from zeros at half the coarsest size; doubling zeros gives zeros, so start there.
        flow = coarsest.new_zeros(coarsest.shape[0], 2, *coarsest.shape[-2:])
        for level, (ref, supp) in enumerate(zip(refs, supps)):
            up = flow if level == 0 else _upsample_flow(flow, ref.shape[-2:])
            # BasicSR's flow_warp (align_corners=True, border) is exactly our warp.
            flow = self.basic_module[level](torch.cat([ref, warp(supp, up, padding_mode="border"), up], 1)) + up
        return flow


@FLOWS.register("spynet")
def build_spynet(weights: str | os.PathLike | None = None) -> SpyNet:
    """SpyNet with the weights at ``weights`` (BasicSR layout, optionally under ``params``)."""
    state = weights_for(
        weights, "spynet", "SpyNet needs BasicSR-layout weights, e.g. spynet_sintel_final.pth (research licence)."
    )
    model = SpyNet()
    load_strict(model, strip_prefix(state, "module."), str(weights))
    return model
