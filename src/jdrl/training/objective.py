"""The network and the loss as one module (what DDP wraps and what ``run.compile`` compiles)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.autograd.profiler import record_function

from jdrl.errors import ConfigError
from jdrl.losses import JDRLLoss
from jdrl.nets import has_training_outputs, split_training_outputs
from jdrl.nets.factory import describe


class Objective(nn.Module):
    """Network + loss in one module, so DDP sees every trained parameter in one forward.

    The loss sees the network's ``forward`` output; only when a loss term needs auxiliary outputs
    (``loss.needs_outputs``, e.g. ``stage_deblur``) is ``net.training_outputs`` called instead
    (:mod:`jdrl.nets`: one pass, the same restored image plus the auxiliary outputs).
    """

    def __init__(self, net: nn.Module, loss: JDRLLoss, compile_net: bool = False, net_name: str | None = None):
        super().__init__()
        self.net, self.loss = net, loss
        self.net_name = net_name or describe(net).name
        self._aux = loss.needs_outputs
        if self._aux and not has_training_outputs(net):
            raise ConfigError(
                f"loss.terms {list(loss.output_terms)} need the network's auxiliary outputs, and network "
                f"{self.net_name!r} has none (no training_outputs(x) method, README 'Any network of yours'; "
                "mprnet offers its earlier stages)")
        run: Callable[[torch.Tensor], Any] = net.training_outputs if self._aux else net  # type: ignore[assignment]
        # run.compile: the network's forward compiled (torch.compile); its parameters stay self.net's
        self._forward = torch.compile(run) if compile_net else run

    def forward(self, blur: torch.Tensor, sharp: torch.Tensor, stage: str, frozen: bool, amp: torch.dtype | None):
        with torch.autocast(device_type=blur.device.type, dtype=amp, enabled=amp is not None):
            with record_function("jdrl.network"):
                if frozen:
                    with torch.no_grad():
                        result = self._forward(blur)
                else:
                    result = self._forward(blur)
        if not self._aux:
            return self.loss(result, blur, sharp, stage=stage)
        restored, outputs = split_training_outputs(result, self.net_name)
        try:
            return self.loss(restored, blur, sharp, stage=stage, outputs=outputs)
        except ConfigError as error:  # a term refusing these outputs: say which network gave them
            raise ConfigError(f"network {self.net_name!r}: {error}") from None
