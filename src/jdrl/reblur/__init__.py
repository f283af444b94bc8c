"""The spatially invariant reblurring module M_r: isotropic per-pixel kernels (functional + module)."""

from jdrl.reblur.kernels import isotropic_kernels, isotropic_reblur
from jdrl.reblur.module import ReblurModule

__all__ = ["ReblurModule", "isotropic_kernels", "isotropic_reblur"]
