"""jdrl: Joint Deblurring and Reblurring Learning for defocus deblurring with misaligned pairs.

The public API is imported lazily, so ``import jdrl`` costs nothing until a name is used::

    from jdrl import JDRLLoss, create_net, build_flow, calibration_mask, isotropic_reblur
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jdrl._version import __version__ as __version__
from jdrl.registry import lazy_exports  # the one place (a literal: no metadata lookup)

if TYPE_CHECKING:  # the lazy exports below, visible to type checkers and IDEs ("X as X": re-exported)
    from jdrl.data.datasets import PairedImageDataset as PairedImageDataset
    from jdrl.data.datasets import SyntheticPairs as SyntheticPairs
    from jdrl.data.pairs import load_pairs as load_pairs
    from jdrl.data.synthetic import SynthParams as SynthParams
    from jdrl.deblurring import deblur_files as deblur_files
    from jdrl.evaluation import evaluate as evaluate
    from jdrl.flow import build_flow as build_flow
    from jdrl.flow.mask import calibration_mask as calibration_mask
    from jdrl.flow.warp import warp as warp
    from jdrl.images import read_image as read_image
    from jdrl.images import write_image as write_image
    from jdrl.inference import deblur_image as deblur_image
    from jdrl.losses import JDRLConfig as JDRLConfig
    from jdrl.losses import JDRLLoss as JDRLLoss
    from jdrl.losses import charbonnier as charbonnier
    from jdrl.nets import create_net as create_net
    from jdrl.reblur import ReblurModule as ReblurModule
    from jdrl.reblur import isotropic_reblur as isotropic_reblur
    from jdrl.training import train as train
    from jdrl.training.config import TrainConfig as TrainConfig

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, eager=["__version__"])
