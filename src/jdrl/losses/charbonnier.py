"""The Charbonnier loss (a smooth L1, Charbonnier et al. 1994) as a function and a module (the kornia pattern)."""

from __future__ import annotations

import torch
from torch import nn


def charbonnier_loss(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``mean(sqrt((x - y)^2 + eps^2))``: a smooth L1 (Charbonnier et al. 1994); ``eps`` in the images' units."""
    diff = x - y
    return torch.sqrt(diff * diff + eps * eps).mean()


#: the name the objective and its users have always imported
charbonnier = charbonnier_loss


class CharbonnierLoss(nn.Module):
    """``CharbonnierLoss(eps)(x, y)`` is :func:`charbonnier_loss` ``(x, y, eps)``."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return charbonnier_loss(x, y, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"
