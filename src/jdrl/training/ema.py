"""Weight averaging (``run.ema_decay``): an exponential moving average of the network's state.

``torch.optim.swa_utils.AveragedModel`` keeps a second copy of the whole module and has no
ramp-up of the decay; this keeps only the state dict (what is scored and exported), ramps the
decay up, and stores ``{decay, updates, state_dict}`` in the checkpoint (``ema``) so a resume
continues the same average.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from jdrl.errors import WeightsError


class WeightEMA:
    """Exponential moving average of a network's state (parameters and buffers): after each optimizer step,
    ``average = d * average + (1 - d) * current`` for floating-point entries; others are copied.

    ``d`` is ``decay``, or with ``warmup`` ``min(decay, (1 + n) / (10 + n))`` at the n-th update: with 0.999
    the initial weights would otherwise still hold 0.999 ** 500 = 61 % of the average after 500 steps."""

    def __init__(self, net: nn.Module, decay: float, warmup: bool = True):
        self.decay, self.warmup, self.updates = float(decay), bool(warmup), 0
        self.state = {key: value.detach().clone() for key, value in net.state_dict().items()}

    def current_decay(self) -> float:
        """The decay of the next update."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates + 1) / (10.0 + self.updates + 1))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        decay = self.current_decay()
        self.updates += 1
        for key, value in net.state_dict().items():
            average = self.state[key]
            if average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "state_dict": self.state}

    @torch.no_grad()
    def load(self, data: dict, source: str) -> None:
        stored = data.get("state_dict") or {}
        wrong = sorted(set(stored) ^ set(self.state)) + [key for key in sorted(set(stored) & set(self.state))
                                                          if stored[key].shape != self.state[key].shape]
        if wrong:
            raise WeightsError(f"{source} does not fit the network (keys: {', '.join(wrong[:8])})")
        for key, value in stored.items():
            self.state[key].copy_(value)
        self.updates = int(data.get("updates", 0))


@contextlib.contextmanager
def averaged_weights(net: nn.Module, ema: WeightEMA | None) -> Iterator[None]:
    """The EMA weights in ``net`` for the duration (validation); the trained ones restored exactly after."""
    if ema is None:
        yield
        return
    trained = {key: value.detach().clone() for key, value in net.state_dict().items()}
    net.load_state_dict(ema.state)
    try:
        yield
    finally:
        net.load_state_dict(trained)
