"""The flow-estimator interface every estimator implements."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.errors import WeightsError
from jdrl.files import file_problem
from jdrl.registry import Registry
from jdrl.weights import read_state_dict

FLOWS: Registry = Registry(
    "flow estimator",
    modules=["jdrl.flow.dis", "jdrl.flow.spynet", "jdrl.flow.raft", "jdrl.flow.pwcnet"],
)


class FlowEstimator(nn.Module):
    """A frozen optical-flow estimator.

    ``estimator(a, b)`` takes two ``(B, 3, H, W)`` RGB tensors in [0, 1] of any
    size and returns the flow ``(B, 2, H, W)`` in pixels with
    ``b(p + flow(p)) ~= a(p)``, on ``a``'s device, without gradient.

    Subclasses implement :meth:`estimate` on inputs whose sides are multiples
    of ``size_multiple``; this class resizes (``resize_mode="resize"``, bilinear,
    flow rescaled, as the released PWC-Net pipeline) or pads
    (``resize_mode="pad"``, replicate, cropped back) around it.
    """

    size_multiple: int = 1
    min_side: int = 1  # smaller inputs are brought up to this side (DIS refuses images under 12 px)
    resize_mode: str = "resize"

    def __init__(self) -> None:
        super().__init__()
        super().train(False)  # build_flow freezes the parameters once the subclass has made them

    def train(self, mode: bool = True) -> FlowEstimator:  # frozen: always in eval mode
        return super().train(False)

    def estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _follow_device(self, tensor: torch.Tensor) -> None:
        first = next(self.parameters(), None)
        if first is not None and first.device != tensor.device:
            self.to(tensor.device)

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"flow needs two (B, 3, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        self._follow_device(a)
        a, b = a.detach().float(), b.detach().float()
        height, width = a.shape[-2:]
        m = self.size_multiple
        target_h, target_w = (math.ceil(max(side, self.min_side) / m) * m for side in (height, width))
        if (target_h, target_w) == (height, width):
            return self.estimate(a, b)
        if self.resize_mode == "pad":
            pad = (0, target_w - width, 0, target_h - height)
            flow = self.estimate(F.pad(a, pad, mode="replicate"), F.pad(b, pad, mode="replicate"))
            return flow[:, :, :height, :width].contiguous()
        size = (target_h, target_w)
        a_r = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
        b_r = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        flow = F.interpolate(self.estimate(a_r, b_r), size=(height, width), mode="bilinear", align_corners=False)
        scale = torch.tensor([width / target_w, height / target_h], device=flow.device, dtype=flow.dtype)
        return flow * scale.view(1, 2, 1, 1)


def weights_for(path: str | os.PathLike | None, estimator: str, hint: str = "") -> dict:
    """The state dict at ``path`` for ``estimator``, or one error naming the path and the alternatives."""
    others = ", ".join(n for n in FLOWS.names() if n != estimator)
    if path is None:
        raise WeightsError(f"flow estimator {estimator!r} needs a weight file (weights=PATH). {hint} "
                           f"Other estimators: {others} (dis needs no weights).")
    problem = file_problem(Path(path).expanduser())
    if problem in ("no such file", "is a folder, not a file"):
        raise WeightsError(f"flow estimator {estimator!r}: weight file {path} "
                           f"{'not found' if problem == 'no such file' else 'is a folder'}. {hint} "
                           f"Other estimators: {others} (dis needs no weights).")
    return read_state_dict(path)
