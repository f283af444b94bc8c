"""The training objective and its parts.

* :mod:`jdrl.losses.jdrl`: the JDRL objective ``JDRLLoss(JDRLConfig)`` (paper Eqs. (1)-(7)).
* :mod:`jdrl.losses.objectives`: what ``loss.objective`` names (:data:`OBJECTIVES`: ``jdrl``, ``pixel``, ``cobi``).
* :mod:`jdrl.losses.terms`: extra loss terms by name (:data:`LOSS_TERMS`, ``loss.terms``; ``stage_deblur``).
* :mod:`jdrl.losses.charbonnier`: the Charbonnier loss, function and module (``charbonnier_loss``, ``CharbonnierLoss``).

Every name importers used from the former ``jdrl/losses.py`` is importable from here.
"""

from jdrl.losses.charbonnier import CharbonnierLoss, charbonnier, charbonnier_loss
from jdrl.losses.jdrl import CORE_PARTS, NO_REBLUR, STAGES, JDRLConfig, JDRLLoss
from jdrl.losses.objectives import OBJECTIVES, CoBiObjective, JDRLObjective, Objective, PixelObjective
from jdrl.losses.terms import LOSS_TERMS, StageDeblur, TermFn, needs_outputs

__all__ = [
    "CORE_PARTS",
    "LOSS_TERMS",
    "NO_REBLUR",
    "OBJECTIVES",
    "STAGES",
    "CharbonnierLoss",
    "CoBiObjective",
    "JDRLConfig",
    "JDRLLoss",
    "JDRLObjective",
    "Objective",
    "PixelObjective",
    "StageDeblur",
    "TermFn",
    "charbonnier",
    "charbonnier_loss",
    "needs_outputs",
]
