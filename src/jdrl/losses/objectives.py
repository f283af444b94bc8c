"""The objectives ``loss.objective`` names (:data:`OBJECTIVES`): what the deblurring term compares.

``jdrl``   the paper: the ground truth moved onto the output by a frozen flow, calibration mask, cycle
           deformation, plus the reblurring term; the warm-up stage compares with the ground truth
           warped onto the input.
``pixel``  Charbonnier to the raw ground truth (ablation #1): no flow, no mask, no reblurring.
``cobi``   CoBi to the raw ground truth (the paper's comparison objective, Zhang et al. 2019,
           :mod:`jdrl.cobi`; ``loss.cobi_options``): no flow, no reblurring.

An objective is an ``nn.Module`` made by ``factory(config: JDRLConfig)``; it says which of the
objective's parts it uses (``deforms``: the flow deformation and calibration mask; ``reblurs``: the
reblurring term) and computes the deblurring term. ``@OBJECTIVES.register("name")`` adds one, and
``loss.objective`` may then name it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from jdrl.cobi import CoBiLoss
from jdrl.registry import Registry

if TYPE_CHECKING:
    from jdrl.losses.jdrl import JDRLConfig, JDRLLoss

#: objectives by name: ``factory(config: JDRLConfig) -> Objective``
OBJECTIVES: Registry = Registry("objective", sort=False)


class Objective(nn.Module):
    """The deblurring criterion of :class:`~jdrl.losses.JDRLLoss` (its ``criterion``)."""

    deforms: bool = False  # the target is the ground truth moved by the flow (loss.deform, loss.flow, loss.mask)
    reblurs: bool = False  # the reblurring term is added (loss.reblur, loss.alpha)

    def __init__(self, config: JDRLConfig):
        super().__init__()

    def deblur_loss(self, loss: JDRLLoss, output: torch.Tensor, blurry: torch.Tensor, sharp: torch.Tensor,
                    stage: str) -> torch.Tensor:
        """The deblurring term (the part logged as ``deblur``) for any image of the restored scene."""
        raise NotImplementedError

    def total(self, loss: JDRLLoss, restored: torch.Tensor, blurry: torch.Tensor, sharp: torch.Tensor,
              stage: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The objective before extra terms, and its parts (detached): here the deblurring term alone."""
        total = self.deblur_loss(loss, restored, blurry, sharp, stage)
        return total, {"total": total.detach(), "deblur": total.detach()}


@OBJECTIVES.register("jdrl")
class JDRLObjective(Objective):
    """The paper's objective (Eqs. (1)-(7)); the warm-up stage is Charbonnier to the GT warped onto the input."""

    deforms = reblurs = True

    def deblur_loss(self, loss, output, blurry, sharp, stage):
        if stage == "warmup":
            return loss._char(output, loss._warmup_target(blurry, sharp))
        return loss._deblur_term(output, sharp, {})

    def total(self, loss, restored, blurry, sharp, stage):
        if stage == "warmup":
            return super().total(loss, restored, blurry, sharp, stage)
        return loss._full(restored, blurry, sharp)


@OBJECTIVES.register("pixel")
class PixelObjective(Objective):
    """Charbonnier to the raw ground truth at every stage (ablation #1)."""

    def deblur_loss(self, loss, output, blurry, sharp, stage):
        return loss._char(output, sharp)


@OBJECTIVES.register("cobi")
class CoBiObjective(Objective):
    """CoBi to the raw ground truth at every stage (``loss.cobi_options``: :class:`jdrl.cobi.CoBiLoss`'s options)."""

    def __init__(self, config: JDRLConfig):
        super().__init__(config)

        self.cobi = CoBiLoss(**config.cobi_options)

    def deblur_loss(self, loss, output, blurry, sharp, stage):
        return self.cobi(output, sharp)
