"""The named choices of the method, in one torch-free place.

The modules that implement them (``jdrl.flow.mask``, ``jdrl.flow.warp``,
``jdrl.evaluation.protocol_record``, ``jdrl.data.augment``) import them from here, and so does
the CLI, which lists them in ``--help`` without importing torch.
"""

from __future__ import annotations

#: calibration-mask rules (jdrl.flow.mask): the released grey-value rule, the paper's Eq. (4), a global-motion fit, off
MASK_MODES = ("reference", "paper", "parametric", "none")
#: backward-warp conventions (jdrl.flow.warp): exact pixel centres, or the authors' flow_resample
WARP_CONVENTIONS = ("exact", "released")
#: border handling in evaluation (jdrl.evaluation.protocol_record): reflect-pad and crop back, or the released crops
BORDER_MODES = ("reflect", "released", "released-unet", "released-mprnet")
#: where random training crops start (jdrl.data.augment)
CROP_SAMPLINGS = ("uniform", "released")
#: evaluation protocols of `jdrl eval`: this project's defaults, or the paper's released pipeline
PROTOCOLS = ("jdrl", "paper")
