"""The spatially invariant reblurring module M_r: isotropic per-pixel kernels (functional + module)."""

from jdrl.reblur.kernels import REBLUR_IMPLEMENTATIONS, isotropic_kernels, isotropic_reblur
from jdrl.reblur.module import REBLUR_KERNELS, ReblurModule

__all__ = ["REBLUR_IMPLEMENTATIONS", "REBLUR_KERNELS", "ReblurModule", "isotropic_kernels", "isotropic_reblur"]
