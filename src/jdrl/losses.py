"""The JDRL objective (paper Eqs. (1)-(7)) as a drop-in ``nn.Module``.

    L = L_d(restored, sharp) + alpha * C(R(restored, blurry), blurry)

``L_d`` tolerates misalignment: the ground truth is moved onto the output by a
frozen optical flow, a calibration mask drops pixels whose flow looks wrong,
and the same is done in the other direction (cycle deformation). ``R`` reblurs
the output with isotropic kernels, which cannot move content, so matching the
blurry input forces the output to stay where the input is.

Use it with any network::

    loss_fn = JDRLLoss(JDRLConfig())
    optimizer = torch.optim.Adam([*net.parameters(), *loss_fn.parameters()], lr=2e-5)
    restored = net(blurry)
    loss, parts = loss_fn(restored, blurry, sharp, stage="full")   # "warmup" first

Every ablation of the paper (paper, Experiments; Table 4 for the ablations) is a switch of :class:`JDRLConfig`. Extra terms
(e.g. a network's auxiliary losses) are added by name: register a factory in
:data:`LOSS_TERMS` and list it in ``JDRLConfig.terms`` (``-o loss.terms={name: weight}``),
or call :meth:`JDRLLoss.add_term` in Python. Each term is logged under its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.autograd.profiler import record_function

from jdrl.config import POSITIVE, Range, ranged, validate
from jdrl.flow import resolve_flow
from jdrl.flow.mask import calibration_mask
from jdrl.flow.warp import warp
from jdrl.reblur import ReblurModule
from jdrl.registry import Registry

STAGES = ("warmup", "full")
# The parts the objective itself reports (each a column of log.csv), in log order.
CORE_PARTS = ("deblur", "reblur", "deblur_fwd", "deblur_bwd", "mask_fwd", "mask_bwd")
# Extra loss terms by name: ``factory(**options) -> term(restored, blurry, sharp) -> scalar tensor``.
LOSS_TERMS: Registry = Registry("loss term")
TermFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``mean(sqrt((x - y)^2 + eps^2))``: a smooth L1 (Charbonnier et al. 1994)."""
    diff = x - y
    return torch.sqrt(diff * diff + eps * eps).mean()


@dataclass
class JDRLConfig:
    """Everything that defines the objective. Defaults are the paper's."""

    objective: Literal["jdrl", "pixel", "cobi"] = "jdrl"  # pixel: Charbonnier to the raw GT (ablation #1); cobi: CoBi
    cobi_options: dict = field(default_factory=dict)  # jdrl.cobi.CoBiLoss options (patch_size, vgg_weights, ...)
    alpha: float = ranged(0.5)  # weight of the reblurring loss
    eps: float = ranged(1e-3, POSITIVE)  # Charbonnier epsilon
    flow: str = "auto"  # flow estimator (jdrl.flow registry); auto: DIS on the CPU, RAFT-small on CUDA; paper: pwcnet
    flow_weights: str | None = None
    flow_options: dict = field(default_factory=dict)
    deform: Literal["cycle", "forward", "none"] = "cycle"  # none = ablation #2 (no flow deformation)
    mask: Literal["reference", "paper", "parametric", "none"] = "reference"  # none = ablation #3
    lam: float = ranged(0.35, Range(ge=0, le=1))  # calibration mask tolerance
    mask_options: dict = field(default_factory=dict)
    # none/free/single = ablations #4/#5/#6; single_free = #6 as the released one-branch model (one free kernel)
    reblur: Literal["isotropic", "free", "single", "single_free", "none"] = "isotropic"
    reblur_support: Literal["square", "disk"] = "square"
    reblur_impl: Literal["ring", "direct", "compiled"] = "ring"  # compiled: torch.compile of ring (fused on CUDA)
    reblur_amp: bool = False  # bf16 autocast for R's two small networks on CUDA (the sums stay float32)
    reblur_features: int = ranged(64, Range(ge=1, le=1024))
    warp_padding: Literal["border", "zeros", "reflection"] = "border"
    warp: Literal["exact", "released"] = "exact"  # released: the authors' flow_resample (half-pixel zoom; REPRODUCE.md)
    terms: dict = field(default_factory=dict)  # extra terms by LOSS_TERMS name: weight (or {weight: w, ...options})


class JDRLLoss(nn.Module):
    """``loss, parts = JDRLLoss(config)(restored, blurry, sharp, stage)``.

    ``stage="warmup"`` is the released code's first 15 epochs: the target is the
    ground truth warped onto the *blurry input* (the output is too poor for flow
    yet), plain Charbonnier, no mask, no cycle, no reblurring. ``stage="full"``
    is the whole objective. ``parts`` holds detached scalars for logging.

    ``self.reblur`` is the reblurring ``nn.Module`` (``None`` without one); its
    parameters are this module's parameters, so ``loss_fn.parameters()`` is what
    the optimizer needs besides the network's.
    """

    def __init__(self, config: JDRLConfig | None = None, flow=None, device=None):
        super().__init__()
        self.config = config = validate(config or JDRLConfig())
        self.notes: list[str] = []  # what a user should know (e.g. the GPU flow fell back to DIS)
        needs_flow = config.objective == "jdrl" and config.deform != "none"
        # kept outside the module tree: frozen, never in state_dict or parameters()
        self._flow = None
        if needs_flow:
            self._flow = flow
            if flow is None:
                self._flow, note = resolve_flow(config.flow, config.flow_weights, device, **config.flow_options)
                self.notes += [note] if note else []
        uses_reblur = config.objective == "jdrl" and config.reblur != "none"
        self.reblur = (
            ReblurModule(config.reblur, config.reblur_support, config.reblur_impl, config.reblur_features,
                         amp=config.reblur_amp)
            if uses_reblur
            else None
        )
        self.cobi = None
        if config.objective == "cobi":  # the paper's comparison objective (CoBi, Zhang et al. 2019); no flow, no R
            from jdrl.cobi import CoBiLoss

            self.cobi = CoBiLoss(**config.cobi_options)
        self._terms: dict[str, tuple[float, TermFn]] = {}
        for name, setting in config.terms.items():
            options = dict(setting) if isinstance(setting, dict) else {"weight": setting}
            weight = float(options.pop("weight", 1.0))
            self.add_term(name, LOSS_TERMS.get(name)(**options), weight)

    def add_term(self, name: str, term: TermFn, weight: float = 1.0) -> None:
        """Add ``weight * term(restored, blurry, sharp)`` to the total at every stage; logged as ``name``."""
        if name in CORE_PARTS or name == "total" or name in self._terms:
            raise ValueError(f"loss term {name!r} exists already")
        if isinstance(term, nn.Module):
            self.add_module(f"term_{name}", term)  # its parameters (if any) are trained with the rest
        self._terms[name] = (weight, term)

    def part_names(self) -> tuple[str, ...]:
        """Every name the ``parts`` dict of :meth:`forward` can hold, in log order (``total`` first)."""
        return ("total", *CORE_PARTS, *self._terms)

    @property
    def flow(self):
        return self._flow

    def _char(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return charbonnier(x, y, self.config.eps)

    def _warp(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return warp(image, flow, self.config.warp_padding, self.config.warp)

    def _mask(self, flow: torch.Tensor) -> torch.Tensor:
        return calibration_mask(flow, self.config.mask, self.config.lam, **self.config.mask_options)

    def forward(
        self, restored: torch.Tensor, blurry: torch.Tensor, sharp: torch.Tensor, stage: str = "full"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
        with torch.autocast(device_type=restored.device.type, enabled=False):
            restored, blurry, sharp = restored.float(), blurry.float(), sharp.float()
            if self.config.objective in ("pixel", "cobi"):
                total = self._char(restored, sharp) if self.cobi is None else self.cobi(restored, sharp)
                parts = {"total": total.detach(), "deblur": total.detach()}
            elif stage == "warmup":
                total, parts = self._warmup(restored, blurry, sharp)
            else:
                total, parts = self._full(restored, blurry, sharp)
            return self._add_terms(total, parts, restored, blurry, sharp)

    def _add_terms(self, total, parts, restored, blurry, sharp):
        for name, (weight, term) in self._terms.items():
            value = term(restored, blurry, sharp)
            total = total + weight * value
            parts[name] = value.detach()
        if self._terms:
            parts["total"] = total.detach()
        return total, parts

    def _warmup(self, restored, blurry, sharp):
        if self._flow is None:
            target = sharp
        else:
            with record_function("jdrl.flow"):
                flow = self._flow(blurry, sharp)
            with record_function("jdrl.warp"):
                target = self._warp(sharp, flow)
        total = self._char(restored, target)
        return total, {"total": total.detach(), "deblur": total.detach()}

    def _full(self, restored, blurry, sharp):
        parts: dict[str, torch.Tensor] = {}
        deblur = self._deblur_term(restored, sharp, parts)
        total = deblur
        parts["deblur"] = deblur.detach()
        if self.reblur is not None and self.config.alpha:
            with record_function("jdrl.reblur"):
                reblurred = self.reblur(restored, blurry)
            reblur = self._char(reblurred, blurry)
            total = total + self.config.alpha * reblur
            parts["reblur"] = reblur.detach()
        parts["total"] = total.detach()
        return total, parts

    def _deblur_term(self, restored, sharp, parts):
        if self._flow is None:  # ablation #2: no deformation
            return self._char(restored, sharp)
        output = restored.detach()
        cycle = self.config.deform == "cycle"
        with record_function("jdrl.flow"):
            if cycle:  # both directions in one batched call: one launch of a learned estimator for both
                flow_fwd, flow_bwd = self._flow(torch.cat([output, sharp]), torch.cat([sharp, output])).chunk(2)
            else:
                flow_fwd = self._flow(output, sharp)  # sharp moved onto the output
        with record_function("jdrl.warp"):
            sharp_w = self._warp(sharp, flow_fwd)
        with record_function("jdrl.mask"):
            mask_fwd = self._mask(flow_fwd)
        term = self._char(mask_fwd * restored, mask_fwd * sharp_w)
        parts["deblur_fwd"], parts["mask_fwd"] = term.detach(), mask_fwd.mean()
        if cycle:
            with record_function("jdrl.warp"):
                restored_w = self._warp(restored, flow_bwd)  # the output moved onto sharp (differentiable in it)
            with record_function("jdrl.mask"):
                mask_bwd = self._mask(flow_bwd)
            backward = self._char(mask_bwd * sharp, mask_bwd * restored_w)
            parts["deblur_bwd"], parts["mask_bwd"] = backward.detach(), mask_bwd.mean()
            term = term + backward
        return term

    def reblurred(self, restored: torch.Tensor, blurry: torch.Tensor) -> torch.Tensor | None:
        """The reblurred output (for pictures), or ``None`` without a reblurring module."""
        return None if self.reblur is None else self.reblur(restored, blurry)
