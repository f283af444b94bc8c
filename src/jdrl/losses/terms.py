"""Extra loss terms by name (:data:`LOSS_TERMS`), added to the objective with ``loss.terms={name: weight}``.

A factory ``factory(**options) -> term`` with ``term(restored, blurry, sharp) -> scalar tensor``; a term
whose ``needs_outputs`` attribute is true is called with the keywords ``outputs`` (the network's auxiliary
outputs, :func:`jdrl.nets.training_outputs`), ``stage`` and ``objective`` (the :class:`~jdrl.losses.JDRLLoss`)
too. The built-in ``stage_deblur`` is MPRNet's multi-stage supervision under JDRL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from jdrl.errors import ConfigError
from jdrl.registry import Registry

if TYPE_CHECKING:
    from jdrl.losses.jdrl import JDRLLoss

# Extra loss terms by name: ``factory(**options) -> term(restored, blurry, sharp) -> scalar tensor``; a term
# with a true ``needs_outputs`` attribute is called with the keywords ``outputs``, ``stage`` and ``objective`` too.
LOSS_TERMS: Registry = Registry("loss term")
TermFn = Callable[..., torch.Tensor]


def needs_outputs(term: object) -> bool:
    """Whether a loss term asks for the network's auxiliary outputs (its ``needs_outputs`` attribute)."""
    return bool(getattr(term, "needs_outputs", False))


@LOSS_TERMS.register("stage_deblur")
class StageDeblur:
    """``sum over the auxiliary images of JDRLLoss.deblur_loss(image, blurry, sharp, stage)``.

    The objective's own deblurring term (misalignment-tolerant in ``jdrl`` mode: each image gets
    its own flow and calibration mask; Charbonnier to the raw GT in ``pixel`` mode) applied to
    every auxiliary image of the network (an auxiliary output with the restored image's shape,
    :mod:`jdrl.nets`), e.g. MPRNet's stages 2 and 1: MPRNet's multi-stage supervision under JDRL.
    ``-o "loss.terms={stage_deblur: 0.5}"``; ``{stage_deblur: {weight: 0.5, outputs: [stage2]}}``
    supervises only the named ones. The reblurring term stays on the restored image only.
    """

    needs_outputs = True

    def __init__(self, outputs: Sequence[str] | None = None):
        if isinstance(outputs, str):
            outputs = [outputs]
        if outputs is not None and (not outputs or not all(isinstance(name, str) for name in outputs)):
            raise ConfigError(f"loss.terms.stage_deblur.outputs must be a non-empty list of output names, "
                              f"got {outputs!r}")
        self.outputs = None if outputs is None else list(outputs)

    def images(self, restored: torch.Tensor, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The auxiliary outputs this term supervises (by name), checked to be images of the restored scene."""
        shapes = ", ".join(f"{name} {tuple(value.shape)}" for name, value in outputs.items()) or "none"
        if self.outputs is not None:
            unknown = [name for name in self.outputs if name not in outputs]
            if unknown:
                raise ConfigError(f"loss term 'stage_deblur': the network has no auxiliary output {unknown} "
                                  f"(it has: {shapes})")
            chosen = {name: outputs[name] for name in self.outputs}
        else:
            chosen = {name: value for name, value in outputs.items() if value.shape == restored.shape}
        wrong = [name for name, value in chosen.items() if value.shape != restored.shape]
        if not chosen or wrong:
            raise ConfigError(
                f"loss term 'stage_deblur' supervises auxiliary images of the restored scene (shape "
                f"{tuple(restored.shape)}, like the restored image); the network's auxiliary outputs are: "
                f"{shapes}")
        return chosen

    def __call__(self, restored: torch.Tensor, blurry: torch.Tensor, sharp: torch.Tensor, *,
                 outputs: Mapping[str, torch.Tensor], stage: str, objective: JDRLLoss) -> torch.Tensor:
        images = self.images(restored, outputs)
        return sum((objective.deblur_loss(image, blurry, sharp, stage) for image in images.values()),
                   start=restored.new_zeros(()))
