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

Every ablation of the paper (paper, Experiments; Table 4 for the ablations) is a switch of :class:`JDRLConfig`;
the switches that choose an implementation read it by name from a registry (``objective``:
:data:`~jdrl.losses.objectives.OBJECTIVES`, ``mask``: :data:`jdrl.flow.mask.MASKS`, ``reblur``:
:data:`jdrl.reblur.REBLUR_KERNELS`, ``reblur_impl``: :data:`jdrl.reblur.REBLUR_IMPLEMENTATIONS`, ``flow``:
:data:`jdrl.flow.FLOWS`), so a registered name is a valid value. Extra terms
(e.g. a network's auxiliary losses) are added by name: register a factory in
:data:`~jdrl.losses.terms.LOSS_TERMS` and list it in ``JDRLConfig.terms`` (``-o loss.terms={name: weight}``),
or call :meth:`JDRLLoss.add_term` in Python. Each term is logged under its name.

A term whose ``needs_outputs`` attribute is true also sees the network's auxiliary outputs
(:func:`jdrl.nets.training_outputs`: MPRNet's earlier stages, IFAN's filters): it is called
``term(restored, blurry, sharp, outputs=..., stage=..., objective=...)`` with ``objective``
this loss (so it can reuse :meth:`JDRLLoss.deblur_loss`), and ``forward`` then needs
``outputs=``. The built-in ``stage_deblur`` is MPRNet's multi-stage supervision under JDRL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.autograd.profiler import record_function

from jdrl.config import Range, named, ranged, validate
from jdrl.errors import ConfigError
from jdrl.flow import resolve_flow
from jdrl.flow.mask import MASKS, calibration_mask, mask_option_names
from jdrl.flow.warp import warp
from jdrl.losses.charbonnier import charbonnier_loss
from jdrl.losses.objectives import OBJECTIVES, Objective
from jdrl.losses.terms import LOSS_TERMS, TermFn, needs_outputs
from jdrl.reblur import REBLUR_IMPLEMENTATIONS, REBLUR_KERNELS, ReblurModule

STAGES = ("warmup", "full")
# The parts the objective itself reports (each a column of log.csv), in log order.
CORE_PARTS = ("deblur", "reblur", "deblur_fwd", "deblur_bwd", "mask_fwd", "mask_bwd")
NO_REBLUR = "none"  # loss.reblur: no reblurring term (ablation #4)


@dataclass
class JDRLConfig:
    """Everything that defines the objective. Defaults are the paper's."""

    objective: str = named("jdrl", OBJECTIVES)  # pixel: Charbonnier to the raw GT (ablation #1); cobi: CoBi
    cobi_options: dict = field(default_factory=dict)  # jdrl.cobi.CoBiLoss options (patch_size, vgg_weights, ...)
    alpha: float = ranged(0.5, Range(ge=0, le=1000))  # weight of the reblurring loss
    eps: float = ranged(1e-3, Range(gt=0, le=1))  # Charbonnier epsilon (images are in [0, 1])
    flow: str = "auto"  # flow estimator (jdrl.flow registry); auto: DIS on the CPU, RAFT-small on CUDA; paper: pwcnet
    flow_weights: str | None = None
    flow_options: dict = field(default_factory=dict)
    deform: Literal["cycle", "forward", "none"] = "cycle"  # none = ablation #2 (no flow deformation)
    mask: str = named("reference", MASKS)  # none = ablation #3
    lam: float = ranged(0.35, Range(ge=0, le=1))  # calibration mask tolerance
    mask_options: dict = field(default_factory=dict)
    # none/free/single = ablations #4/#5/#6; single_free = #6 as the released one-branch model (one free kernel)
    reblur: str = named("isotropic", REBLUR_KERNELS, also=(NO_REBLUR,))
    reblur_support: Literal["square", "disk"] = "square"
    reblur_impl: str = named("ring", REBLUR_IMPLEMENTATIONS)  # compiled: torch.compile of ring (fused on CUDA)
    reblur_amp: bool = False  # bf16 autocast for R's two small networks on CUDA (the sums stay float32)
    reblur_features: int = ranged(64, Range(ge=1, le=1024))
    warp_padding: Literal["border", "zeros", "reflection"] = "border"
    warp: Literal["exact", "released"] = "exact"  # released: the authors' flow_resample (half-pixel zoom; REPRODUCE.md)
    terms: dict = field(default_factory=dict)  # extra terms by LOSS_TERMS name: weight (or {weight: w, ...options})

    def conflicts(self) -> list[str]:
        """Options set for a part this objective does not use (they would be ignored without a word)."""
        found = []
        if self.cobi_options and self.objective != "cobi":
            found.append(f"loss.cobi_options are for loss.objective=cobi, not {self.objective}")
        if self.mask_options and self.mask in MASKS:
            takes = mask_option_names(self.mask)
            with_options = [name for name in MASKS if mask_option_names(name)]
            if not takes:
                found.append(f"loss.mask_options are for a mask with options ({', '.join(with_options)}), "
                             f"not {self.mask}")
            elif set(self.mask_options) - set(takes):
                found.append(f"loss.mask_options: loss.mask={self.mask} takes {', '.join(takes)}, not "
                             f"{', '.join(sorted(map(str, set(self.mask_options) - set(takes))))}")
        if self.flow == "auto" and (self.flow_options or self.flow_weights):
            found.append("loss.flow=auto is DIS on the CPU (no weights, no options) and RAFT-small on CUDA: name the "
                         "estimator that loss.flow_weights / loss.flow_options are for (e.g. loss.flow=raft_small)")
        elif self.flow == "dis" and self.flow_weights:
            found.append("loss.flow=dis takes no weights (loss.flow_weights is set)")
        return found


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
        # the deblurring criterion, by name; its ``deforms`` / ``reblurs`` say which of the parts below it uses
        self.criterion: Objective = OBJECTIVES.get(config.objective)(config)
        needs_flow = self.criterion.deforms and config.deform != "none"
        # kept outside the module tree: frozen, never in state_dict or parameters()
        self._flow = None
        if needs_flow:
            self._flow = flow
            if flow is None:
                self._flow, note = resolve_flow(config.flow, config.flow_weights, device, **config.flow_options)
                self.notes += [note] if note else []
        uses_reblur = self.criterion.reblurs and config.reblur != NO_REBLUR
        self.reblur = (
            ReblurModule(config.reblur, config.reblur_support, config.reblur_impl, config.reblur_features,
                         amp=config.reblur_amp)
            if uses_reblur
            else None
        )
        self._terms: dict[str, tuple[float, TermFn]] = {}
        self._warmup_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # within one forward
        for name, setting in config.terms.items():
            options = dict(setting) if isinstance(setting, dict) else {"weight": setting}
            weight = float(options.pop("weight", 1.0))
            self.add_term(name, LOSS_TERMS.get(name)(**options), weight)

    def add_term(self, name: str, term: TermFn, weight: float = 1.0) -> None:
        """Add ``weight * term(restored, blurry, sharp)`` to the total at every stage; logged as ``name``.

        A term with ``needs_outputs = True`` is called with ``outputs=`` (the network's auxiliary
        outputs), ``stage=`` and ``objective=`` (this loss) as keywords too.
        """
        if name in CORE_PARTS or name == "total" or name in self._terms:
            raise ValueError(f"loss term {name!r} exists already")
        if isinstance(term, nn.Module):
            self.add_module(f"term_{name}", term)  # its parameters (if any) are trained with the rest
        self._terms[name] = (weight, term)

    def part_names(self) -> tuple[str, ...]:
        """Every name the ``parts`` dict of :meth:`forward` can hold, in log order (``total`` first)."""
        return ("total", *CORE_PARTS, *self._terms)

    @property
    def output_terms(self) -> tuple[str, ...]:
        """The terms that need the network's auxiliary outputs (then :meth:`forward` needs ``outputs=``)."""
        return tuple(name for name, (_, term) in self._terms.items() if needs_outputs(term))

    @property
    def needs_outputs(self) -> bool:
        return bool(self.output_terms)

    @property
    def flow(self):
        return self._flow

    @property
    def cobi(self) -> nn.Module | None:
        """The CoBi loss of ``loss.objective=cobi`` (:class:`jdrl.cobi.CoBiLoss`), else ``None``."""
        return getattr(self.criterion, "cobi", None)

    def _char(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return charbonnier_loss(x, y, self.config.eps)

    def _warp(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return warp(image, flow, self.config.warp_padding, self.config.warp)

    def _mask(self, flow: torch.Tensor) -> torch.Tensor:
        return calibration_mask(flow, self.config.mask, self.config.lam, **self.config.mask_options)

    def forward(
        self,
        restored: torch.Tensor,
        blurry: torch.Tensor,
        sharp: torch.Tensor,
        stage: str = "full",
        outputs: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``outputs``: the network's auxiliary outputs (:func:`jdrl.nets.training_outputs`), needed only
        when a term has ``needs_outputs``; ``restored`` is always what the network's ``forward`` returns."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
        with torch.autocast(device_type=restored.device.type, enabled=False):
            restored, blurry, sharp = restored.float(), blurry.float(), sharp.float()
            if outputs is not None:
                outputs = {name: value.float() if value.is_floating_point() else value
                           for name, value in outputs.items()}
            try:
                total, parts = self.criterion.total(self, restored, blurry, sharp, stage)
                return self._add_terms(total, parts, restored, blurry, sharp, stage, outputs)
            finally:
                self._warmup_cache = None

    def deblur_loss(self, output: torch.Tensor, blurry: torch.Tensor, sharp: torch.Tensor,
                    stage: str = "full") -> torch.Tensor:
        """The objective's deblurring term (the part logged as ``deblur``) for any image of the restored scene.

        ``jdrl``: at ``full``, the GT warped onto ``output`` by its own flow, calibration mask, both
        directions with ``deform=cycle``; at ``warmup``, Charbonnier to the GT warped onto the input.
        ``pixel``: Charbonnier to the raw GT; ``cobi``: CoBi to the raw GT. Used for the restored
        image and, by ``stage_deblur``, for each auxiliary image.
        """
        return self.criterion.deblur_loss(self, output, blurry, sharp, stage)

    def _add_terms(self, total, parts, restored, blurry, sharp, stage, outputs):
        for name, (weight, term) in self._terms.items():
            if needs_outputs(term):
                if outputs is None:
                    raise ConfigError(
                        f"loss term {name!r} needs the network's auxiliary outputs: call the loss with "
                        "outputs=..., from (restored, outputs) = jdrl.nets.training_outputs(net, blurry)")
                value = term(restored, blurry, sharp, outputs=outputs, stage=stage, objective=self)
            else:
                value = term(restored, blurry, sharp)
            total = total + weight * value
            parts[name] = value.detach()
        if self._terms:
            parts["total"] = total.detach()
        return total, parts

    def _warmup_target(self, blurry: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        """The warm-up target, the GT warped onto the input (computed once per :meth:`forward`)."""
        if self._flow is None:
            return sharp
        cached = self._warmup_cache
        if cached is not None and cached[0] is blurry and cached[1] is sharp:
            return cached[2]
        with record_function("jdrl.flow"):
            flow = self._flow(blurry, sharp)
        with record_function("jdrl.warp"):
            target = self._warp(sharp, flow)
        self._warmup_cache = (blurry, sharp, target)
        return target

    def _full(self, restored, blurry, sharp):
        parts: dict[str, torch.Tensor] = {}
        deblur = self._deblur_term(restored, sharp, parts)  # deblur_loss, keeping the direction parts
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
