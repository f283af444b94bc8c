"""Calibration masks: which pixels' flow to trust (paper Eq. (4); the released rule: docs/REPRODUCE.md).

The rules, chosen by ``mode`` from the registry :data:`MASKS` (``@MASKS.register("name")`` on a
function ``rule(flow, lam, **options) -> mask`` adds one; ``loss.mask`` may then name it):

``reference``   the released code: the flow's Middlebury colour picture turned to
                8-bit grey; keep ``(1-lam) mean <= grey <= (1+lam) mean`` (per sample).
``paper``       Eq. 4 on the flow magnitude: keep ``|m - mean(m)| < lam mean(m)``.
``parametric``  fit a global similarity (or affine) motion to the flow by least
                squares, refit without outliers, keep pixels whose residual is at
                most ``lam`` x the mean fitted motion + ``tolerance`` px. Zoom
                misalignment makes the magnitude vary across the image by design;
                this rule does not punish that.
``none``        keep everything (the "w/o calibration mask" ablation).
"""

from __future__ import annotations

import inspect

import torch

from jdrl.errors import ConfigError
from jdrl.flow.viz import flow_to_color, rgb_to_gray_u8
from jdrl.flow.warp import pixel_grid
from jdrl.registry import Registry
from jdrl.vocabulary import MASK_MODES as MASK_MODES  # the built-in rules' names, torch-free (for the CLI)

#: calibration-mask rules by name: ``rule(flow (B, 2, H, W), lam, **options) -> (B, 1, H, W)`` in {0, 1}
MASKS: Registry = Registry("calibration mask", sort=False)


@MASKS.register("reference")
def mask_reference(flow: torch.Tensor, lam: float = 0.35) -> torch.Tensor:
    grey = rgb_to_gray_u8(flow_to_color(flow)).double()
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    keep = (grey >= (1 - lam) * mean) & (grey <= (1 + lam) * mean)
    return keep.to(flow.dtype)


@MASKS.register("paper")
def mask_paper(flow: torch.Tensor, lam: float = 0.35) -> torch.Tensor:
    magnitude = flow.norm(dim=1, keepdim=True)
    mean = magnitude.mean(dim=(1, 2, 3), keepdim=True)
    keep = (magnitude - mean).abs() < lam * mean
    keep |= mean <= 1e-6  # no motion at all: nothing is abnormal
    return keep.to(flow.dtype)


GLOBAL_MODELS = ("similarity", "affine")


def _global_design(flow: torch.Tensor, model: str) -> torch.Tensor:
    """``(B, 2N, P)``: the rows of u (first N) and v (last N) of a global ``model`` at every pixel, in coordinates
    centred on the image (for conditioning)."""
    batch, _, height, width = flow.shape
    grid = pixel_grid(height, width, flow.device, torch.float64)
    x = (grid[:, 0] - (width - 1) / 2).flatten(1).expand(batch, -1)  # centred for conditioning
    y = (grid[:, 1] - (height - 1) / 2).flatten(1).expand(batch, -1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    if model == "similarity":  # u = tx + s x - r y ;  v = ty + r x + s y
        rows_u = torch.stack([one, zero, x, -y], dim=-1)
        rows_v = torch.stack([zero, one, y, x], dim=-1)
    elif model == "affine":  # u = a0 + a1 x + a2 y ; v = b0 + b1 x + b2 y
        rows_u = torch.stack([one, x, y, zero, zero, zero], dim=-1)
        rows_v = torch.stack([zero, zero, zero, one, x, y], dim=-1)
    else:
        raise ValueError(f"global motion model must be 'similarity' or 'affine', not {model!r}")
    return torch.cat([rows_u, rows_v], dim=1)


def fit_global_params(flow: torch.Tensor, weights: torch.Tensor | None = None, model: str = "similarity") -> torch.Tensor:
    """Weighted least-squares parameters ``(B, P)`` (float64) of a global flow, in centred pixel coordinates.

    ``similarity``: ``(tx, ty, s, r)`` with ``u = tx + s x - r y``, ``v = ty + r x + s y``; ``affine``:
    ``(a0, a1, a2, b0, b1, b2)`` with ``u = a0 + a1 x + a2 y``, ``v = b0 + b1 x + b2 y`` (``x, y`` measured from
    the image centre ``((W-1)/2, (H-1)/2)``).
    """
    design = _global_design(flow, model)  # (B, 2N, P)
    u, v = flow[:, 0].flatten(1).double(), flow[:, 1].flatten(1).double()
    w = torch.ones_like(u) if weights is None else weights.flatten(1).double()
    target = torch.cat([u, v], dim=1).unsqueeze(-1)
    sqrt_w = torch.cat([w, w], dim=1).sqrt().unsqueeze(-1)
    normal = (design * sqrt_w).transpose(1, 2) @ (design * sqrt_w)
    rhs = (design * sqrt_w).transpose(1, 2) @ (target * sqrt_w)
    eye = torch.eye(normal.shape[-1], dtype=normal.dtype, device=normal.device)
    return torch.linalg.solve(normal + 1e-9 * eye, rhs).squeeze(-1)


def global_flow(params: torch.Tensor, like: torch.Tensor, model: str = "similarity") -> torch.Tensor:
    """The flow ``(B, 2, H, W)`` of :func:`fit_global_params`' ``params`` on the grid of ``like``, in its dtype."""
    batch, _, height, width = like.shape
    fitted = (_global_design(like, model) @ params.unsqueeze(-1)).squeeze(-1)
    n = height * width
    return torch.stack([fitted[:, :n], fitted[:, n:]], dim=1).view(batch, 2, height, width).to(like.dtype)


def fit_global_motion(flow: torch.Tensor, weights: torch.Tensor | None = None, model: str = "similarity") -> torch.Tensor:
    """Weighted least-squares fit of a global ``similarity`` (4 dof) or ``affine`` (6 dof) flow."""
    return global_flow(fit_global_params(flow, weights, model), flow, model)


@MASKS.register("parametric")
def mask_parametric(
    flow: torch.Tensor, lam: float = 0.35, tolerance: float = 1.0, model: str = "similarity", iterations: int = 2
) -> torch.Tensor:
    weights = None
    for _ in range(iterations):
        fitted = fit_global_motion(flow, weights, model)
        residual = (flow - fitted).norm(dim=1, keepdim=True)
        limit = lam * fitted.norm(dim=1, keepdim=True).mean(dim=(1, 2, 3), keepdim=True) + tolerance
        keep = residual <= limit
        weights = keep.to(flow.dtype)
    return keep.to(flow.dtype)


@MASKS.register("none")
def mask_none(flow: torch.Tensor, lam: float = 0.35) -> torch.Tensor:
    """Keep every pixel (the "w/o calibration mask" ablation)."""
    return torch.ones_like(flow[:, :1])


def mask_option_names(mode: str) -> list[str]:
    """The options the rule :data:`MASKS` names ``mode`` takes (its keyword parameters after ``flow, lam``)."""
    parameters = list(inspect.signature(MASKS.get(mode)).parameters.values())[2:]
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def calibration_mask(flow: torch.Tensor, mode: str = "reference", lam: float = 0.35, **options) -> torch.Tensor:
    """``(B, 2, H, W)`` flow -> ``(B, 1, H, W)`` mask in {0, 1} (no gradient), by the rule :data:`MASKS` names ``mode``.

    ``options`` go to the rule (``parametric``: ``tolerance``, ``model``, ``iterations``); an unknown mode is an
    :class:`~jdrl.errors.UnknownNameError` (a ``ValueError``) listing the rules, an option the rule does not take a
    :class:`~jdrl.errors.ConfigError`.
    """
    rule = MASKS.get(mode)
    if options:
        try:
            inspect.signature(rule).bind(flow, lam, **options)
        except TypeError as error:
            raise ConfigError(f"calibration mask {mode!r}: {error} (options given: {', '.join(options)})") from None
    with torch.no_grad():
        return rule(flow, lam, **options)
