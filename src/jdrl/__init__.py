"""jdrl: Joint Deblurring and Reblurring Learning for defocus deblurring with misaligned pairs.

The public API is imported lazily, so ``import jdrl`` costs nothing until a name is used::

    from jdrl import JDRLLoss, create_net, build_flow, calibration_mask, isotropic_reblur
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # data
    "read_image": "jdrl.images",
    "write_image": "jdrl.images",
    "load_pairs": "jdrl.data.pairs",
    "PairedImageDataset": "jdrl.data.datasets",
    "SyntheticPairs": "jdrl.data.datasets",
    "SynthParams": "jdrl.data.synthetic",
    # objective
    "build_flow": "jdrl.flow",
    "warp": "jdrl.flow.warp",
    "calibration_mask": "jdrl.flow.mask",
    "isotropic_reblur": "jdrl.reblur",
    "ReblurModule": "jdrl.reblur",
    "JDRLLoss": "jdrl.losses",
    "JDRLConfig": "jdrl.losses",
    "charbonnier": "jdrl.losses",
    # networks, training, evaluation, inference
    "create_net": "jdrl.nets",
    "deblur_files": "jdrl.deblurring",
    "train": "jdrl.training",
    "TrainConfig": "jdrl.training.config",
    "evaluate": "jdrl.evaluation",
    "deblur_image": "jdrl.inference",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jdrl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
