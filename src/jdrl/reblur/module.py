"""The reblurring network R (paper Eqs. (6)-(7), supplement Table 7): KPN + WPN branches and the kernel variants of the ablations.

Parameter names follow the released ``Reblur_Model`` (``kpn.*`` for the kernel
branch, ``kernel_map_gene.*`` for the weight branch) so the authors' weights
load with a plain strict ``load_state_dict``.

Variants (``kernel=``, the registry :data:`REBLUR_KERNELS`; ``loss.reblur`` names one, or ``none``):

``isotropic``  the paper: 7 isotropic kernels 3x3 ... 15x15 + identity, blended by WPN
``free``       ablation #5: 7 free (non-isotropic) softmax kernels, blended by WPN
``single``     ablation #6: one 15x15 isotropic kernel, no WPN
``single_free`` ablation #6 as the released one-branch model: one free 15x15 kernel, ``softmax(|logits|)``,
               no WPN (the released model then returned the *un*-blurred image, a bug; this returns the blurred one)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.autograd.profiler import record_function

from jdrl.reblur.kernels import (
    REBLUR_IMPLEMENTATIONS,
    SEED_LENGTHS,
    SUPPORTS,
    apply_kernels,
    free_kernels,
    reblur_function,
    split_seeds,
)
from jdrl.registry import Registry
from jdrl.weights import load_strict, strip_prefix

KERNEL_SIZES = tuple(2 * n - 1 for n in SEED_LENGTHS)  # 3, 5, ..., 15

#: the kernel variants of R by name: ``reblur(module, restored, kpn, weights) -> reblurred``, registered with
#: ``channels`` (the KPN's output channels) and ``blend`` (whether a WPN blends the kernel sizes and the identity;
#: ``weights`` is then its softmax, else ``None``)
REBLUR_KERNELS: Registry = Registry("reblur kernel", sort=False)


class ResidualBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3 + skip, no normalisation."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class Branch(nn.Module):
    """conv3x3(6 -> F) -> 3 residual blocks -> conv3x3(F -> out): the shape of both KPN and WPN."""

    def __init__(self, out_channels: int, features: int = 64, in_channels: int = 6):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, features, 3, padding=1)
        self.block1 = ResidualBlock(features)
        self.block2 = ResidualBlock(features)
        self.block3 = ResidualBlock(features)
        self.out = nn.Conv2d(features, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.block3(self.block2(self.block1(self.conv_first(x)))))


class ReblurModule(nn.Module):
    """``R(restored, blurry)``: reblur the network's output so it can be compared with the input.

    Args:
        kernel: ``isotropic`` (paper), ``free`` (ablation #5), ``single`` or ``single_free`` (ablation #6, the
            paper's wording and the released model's).
        support: ``square`` (released: corners keep logit 0) or ``disk`` (corners excluded).
        impl: ``ring`` (fast, default), ``direct`` (explicit kernels, the oracle) or ``compiled``
            (``torch.compile`` of the ring sums: one fused kernel set per shape on CUDA; the first call compiles).
        features: width of both branches (64 in the paper).
        amp: run the two small networks (KPN, WPN) in bf16 autocast on CUDA; the kernel sums stay float32.
    """

    def __init__(self, kernel: str = "isotropic", support: str = "square", impl: str = "ring", features: int = 64,
                 amp: bool = False):
        super().__init__()
        if support not in SUPPORTS:
            raise ValueError(f"reblur support must be one of {SUPPORTS}, not {support!r}")
        REBLUR_IMPLEMENTATIONS.get(impl)  # an unknown one fails here, not at the first forward
        self._variant = REBLUR_KERNELS.get(kernel)
        variant = REBLUR_KERNELS.info(kernel)
        self.kernel, self.support, self.impl, self.amp = kernel, support, impl, amp
        self.kpn = Branch(variant["channels"], features)
        if variant["blend"]:
            self.kernel_map_gene = Branch(len(SEED_LENGTHS) + 1, features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal weights and zero biases for every conv, as released."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, restored: torch.Tensor, blurry: torch.Tensor) -> torch.Tensor:
        with record_function("jdrl.reblur_net"), self._autocast(restored):
            features = torch.cat([restored, blurry], dim=1)
            kpn = self.kpn(features)
            logits = self.kernel_map_gene(features) if hasattr(self, "kernel_map_gene") else None
        kpn = kpn.to(restored.dtype)  # back from bf16 when autocast ran
        with record_function("jdrl.reblur_sums"):
            return self._reblur(restored, kpn, None if logits is None else logits.to(restored.dtype))

    def _autocast(self, image: torch.Tensor):
        """bf16 for the two small networks on CUDA when asked (``amp``); the kernel sums stay float32."""
        enabled = self.amp and image.is_cuda
        return torch.autocast(device_type=image.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _reblur(self, restored: torch.Tensor, kpn: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
        weights = None if logits is None else torch.softmax(logits, dim=1)
        return self._variant(self, restored, kpn, weights)

    def _isotropic(self, image: torch.Tensor, seeds: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return reblur_function(self.impl)(image, seeds, weights, self.support)

    def _free(self, image: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        output = weights[:, :1] * image
        parts = torch.split(logits, [k * k for k in KERNEL_SIZES], dim=1)
        for index, part in enumerate(parts):
            output = output + weights[:, index + 1 : index + 2] * apply_kernels(image, free_kernels(part))
        return output

    def load_released(self, state_dict: Mapping[str, torch.Tensor]) -> ReblurModule:
        """Load the authors' ``Reblur_state_dict`` (with or without DataParallel's ``module.`` prefix)."""
        if self.kernel != "isotropic":
            raise ValueError("released reblurring weights exist for the isotropic kernel variant only")
        load_strict(self, strip_prefix(state_dict), "released Reblur_state_dict")
        return self


@REBLUR_KERNELS.register("isotropic", channels=sum(SEED_LENGTHS), blend=True)
def _isotropic_kernels(module: ReblurModule, restored: torch.Tensor, kpn: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """The paper: 7 isotropic kernels 3x3 ... 15x15 + identity, blended by WPN."""
    return module._isotropic(restored, split_seeds(kpn), weights)


@REBLUR_KERNELS.register("free", channels=sum(k * k for k in KERNEL_SIZES), blend=True)
def _free_kernels(module: ReblurModule, restored: torch.Tensor, kpn: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    """Ablation #5: 7 free (non-isotropic) softmax kernels, blended by WPN."""
    return module._free(restored, kpn, weights)


@REBLUR_KERNELS.register("single", channels=SEED_LENGTHS[-1], blend=False)
def _single_kernel(module: ReblurModule, restored: torch.Tensor, kpn: torch.Tensor, weights: None) -> torch.Tensor:
    """Ablation #6: one 15x15 isotropic kernel, no WPN."""
    only = torch.zeros_like(kpn[:, :2])
    only[:, 1] = 1.0
    return module._isotropic(restored, [kpn], only)


@REBLUR_KERNELS.register("single_free", channels=KERNEL_SIZES[-1] ** 2, blend=False)
def _single_free_kernel(module: ReblurModule, restored: torch.Tensor, kpn: torch.Tensor,
                        weights: None) -> torch.Tensor:
    """Ablation #6 as the released one-branch model: one free 15x15 kernel, ``softmax(|logits|)``, no WPN."""
    return apply_kernels(restored, free_kernels(kpn.abs()))
