"""Scoring a network (or the blurry input itself) on a dataset with the paper's protocol (paper, Experiments; Table 4 for the ablations).

For every item of the dataset the output ``Î`` (the network on the blurry input,
clamped to [0, 1], or the input itself when ``net is None``) is compared with

- the ground truth ``I_S``:                 ``psnr, ssim, mae, lpips``;
- the deformed ground truth ``I_S^w = W(I_S, Flow(Î, I_S))`` (bilinear warp,
  border padding), which forgives the pair's misalignment:
  ``psnr_deformed, ssim_deformed, mae_deformed, lpips_deformed``;
- the true aligned sharp image, when the item has one (synthetic data):
  ``psnr_aligned, ssim_aligned, mae_aligned, lpips_aligned`` and
  ``flow_error``, the mean flow magnitude (px) from ``Î`` to it;
- the blurry input: ``flow_error_input``, the mean flow magnitude (px) from
  ``Î`` to the input, the geometric-fidelity measure for real data (docs/ARCHITECTURE.md).

LPIPS columns are left out of a row (never filled with a made-up number) when
no LPIPS metric is available; ``options["lpips"]`` then says why.

What is scored how is one value, a :class:`~jdrl.evaluation.protocol_record.Protocol`
(``Protocol.paper()``: the released pipeline; ``Protocol.jdrl()``: this project's default); what is
only shown (panel pictures, their sizes, callbacks) is a :class:`~jdrl.evaluation.panels.Display`.

The same function serves ``jdrl eval`` and the trainer's validation; it keeps
no state and restores the network's train/eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from jdrl.errors import UsageError
from jdrl.evaluation.metrics import (
    LPIPSMetric,
    load_lpips,
    mae,
    mean_flow_magnitude,
    psnr,
    ssim,
)
from jdrl.evaluation.panels import PANEL_SIDE, Display, PanelCallback
from jdrl.evaluation.protocol_record import (
    BORDER_MODES,
    EightBitReading,
    Protocol,
    crop_released,
    describe_border,
    resolve_border,
)
from jdrl.flow import build_flow
from jdrl.flow.warp import warp
from jdrl.runtime import net_device

__all__ = [
    "BORDER_MODES",
    "METRIC_COLUMNS",
    "EightBitReading",
    "EvalResult",
    "Protocol",
    "crop_released",
    "describe_border",
    "evaluate",
    "resolve_border",
]

#: every metric column, in the order tables and CSV files show them
QUALITY = ("psnr", "ssim", "mae", "lpips")
METRIC_COLUMNS: tuple[str, ...] = (
    *QUALITY,
    *(f"{m}_deformed" for m in QUALITY),
    *(f"{m}_aligned" for m in QUALITY),
    "flow_error",
    "flow_error_input",
)

LPIPS_NOTE = "AlexNet v0.1 (lpips package)"
#: what evaluate scores with when given no protocol: the jdrl protocol, LPIPS only when asked for (lpips=...)
KEYWORD_PROTOCOL = Protocol(lpips=False)


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    ``rows``: one dict per image (``name`` + metric columns); ``means``: the
    mean of each metric column over the images; ``options``: how it was measured
    (flow estimator, border mode, tiling, LPIPS availability, what the caller
    added such as the checkpoint); ``label``: the name of this result in tables
    (``"input"`` for the blurry-input baseline); ``images``: per image name,
    labelled display panels (downscaled uint8 ``(3, h, w)``) when requested.
    """

    rows: list[dict[str, Any]]
    means: dict[str, float]
    options: dict[str, Any]
    label: str = "output"
    images: dict[str, dict[str, torch.Tensor]] | None = None

    @property
    def columns(self) -> list[str]:
        """The metric columns of this result, in :data:`METRIC_COLUMNS` order.

        The GT and deformed-GT columns are always there, the aligned-truth ones
        when measured (synthetic data), LPIPS ones with their group even when
        LPIPS was unavailable (they stay empty), the flow errors when measured.
        """
        present = {key for row in self.rows for key in row}
        columns = list(METRIC_COLUMNS[:8])
        if "psnr_aligned" in present:
            columns += [f"{m}_aligned" for m in QUALITY]
        return columns + [c for c in ("flow_error", "flow_error_input") if c in present]

    def summary(self) -> dict[str, Any]:
        """``{"label", "count", "means", "options"}`` as plain data (for JSON)."""
        return {"label": self.label, "count": len(self.rows), "means": dict(self.means), "options": dict(self.options)}


# ----------------------------------------------------------------------------- per-image scoring


def _quality(output: torch.Tensor, reference: torch.Tensor, lpips: LPIPSMetric | None, suffix: str) -> dict[str, float]:
    """PSNR/SSIM/MAE (and LPIPS when available) of one ``(1, 3, H, W)`` pair, keys ending in ``suffix``."""
    values = {"psnr": psnr(output, reference), "ssim": ssim(output, reference), "mae": mae(output, reference)}
    if lpips is not None:
        values["lpips"] = lpips(output, reference)
    return {f"{name}{suffix}": float(value[0]) for name, value in values.items()}


def _score_item(
    item: Mapping[str, Any],
    net: nn.Module | None,
    flow: nn.Module,
    lpips: LPIPSMetric | None,
    protocol: Protocol,
    device: torch.device,
    run: dict[str, Any],
    display: Display,
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """The metric row of one dataset item and, if wanted, its display panels."""
    from jdrl.inference import deblur_tensor

    def prepare(key: str) -> torch.Tensor | None:
        image = item.get(key)
        if image is None:
            return None
        image = image if image.dim() == 4 else image.unsqueeze(0)
        return crop_released(image, protocol.border).to(device=device, dtype=torch.float32)

    blur, gt, aligned = prepare("blur"), prepare("sharp"), prepare("aligned")
    if net is None:
        output = blur.clamp(0, 1)
    else:
        output = deblur_tensor(net, blur, **run).float().clamp(0, 1)

    name = item.get("name", "")
    name = name[0] if isinstance(name, (list, tuple)) else name  # a DataLoader batch of one
    row: dict[str, Any] = {"name": str(name)}
    row.update(_quality(output, gt, lpips, ""))
    flow_gt = flow(output, gt)
    deformed = warp(gt, flow_gt, padding_mode="border", convention=protocol.warp)
    row.update(_quality(output, deformed, lpips, "_deformed"))
    if aligned is not None:
        row.update(_quality(output, aligned, lpips, "_aligned"))
        row["flow_error"] = float(mean_flow_magnitude(flow(output, aligned), protocol.flow_border)[0])
    # The input baseline is its own reference: its distance to itself is exactly 0.
    to_input = 0.0 if net is None else float(mean_flow_magnitude(flow(output, blur), protocol.flow_border)[0])
    row["flow_error_input"] = to_input
    return row, display.panels(blur, output, gt, deformed, flow_gt, aligned)


# ----------------------------------------------------------------------------- the protocol


def _column_means(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of every metric column over the rows that have it (``inf`` stays ``inf``)."""
    means = {}
    for column in METRIC_COLUMNS:
        values = [float(row[column]) for row in rows if row.get(column) is not None]
        if values:
            finite = all(math.isfinite(v) for v in values)
            means[column] = (math.fsum(values) if finite else sum(values)) / len(values)
    return means


def _resolve_flow(flow: nn.Module | str | None, protocol: Protocol, device: torch.device) -> tuple[nn.Module, str]:
    """A flow estimator and its name: ``flow`` itself when it is a module, else the protocol's (with its weights)."""

    if flow is None or isinstance(flow, str):
        return build_flow(protocol.flow, protocol.flow_weights, device=device), protocol.flow
    return flow, getattr(flow, "name", None) or type(flow).__name__


def _resolve_lpips(lpips: LPIPSMetric | str | None, device: torch.device) -> tuple[LPIPSMetric | None, str]:
    """The LPIPS metric (or ``None``) and a line for the report saying what was used or why not."""
    if isinstance(lpips, str):
        if lpips != "auto":
            raise ValueError(f"lpips must be an LPIPS metric, None or 'auto', not {lpips!r}")
        metric, reason = load_lpips(device)
        return metric, reason or LPIPS_NOTE
    if lpips is None:
        return None, "LPIPS not requested"
    return lpips.to(device), LPIPS_NOTE


def _scoring(protocol: Protocol | None, flow: nn.Module | str | None, border: str | None, warp: str | None,
             flow_border: int | None) -> Protocol:
    """``protocol`` (default :data:`KEYWORD_PROTOCOL`) with the keyword arguments that were given put in.

    A flow named by string replaces the protocol's estimator and its weights; an explicit ``border`` replaces
    the protocol's border and its ``baseline_border`` (``"released"`` without a network is then an error).
    """
    changes: dict[str, Any] = {}
    if isinstance(flow, str):
        changes.update(flow=flow, flow_weights=None)
    if border is not None:
        changes.update(border=border, baseline_border=None)
    if warp is not None:
        changes["warp"] = warp
    if flow_border is not None:
        changes["flow_border"] = flow_border
    base = KEYWORD_PROTOCOL if protocol is None else protocol
    if not isinstance(base, Protocol):
        raise UsageError(f"protocol must be a jdrl.evaluation.Protocol (e.g. Protocol.paper()), not {base!r}")
    return base.replace(**changes) if changes else base


def _display(display: Display | None, **keywords: Any) -> Display:
    """``display``, or one made of the display keyword arguments (not both)."""
    if display is None:
        return Display(**keywords)
    given = [name for name, value in keywords.items() if value != getattr(Display, name, None)]
    if given:
        raise UsageError(f"give display=Display(...) or the display arguments ({', '.join(given)}), not both")
    if not isinstance(display, Display):
        raise UsageError(f"display must be a jdrl.evaluation.Display, not {display!r}")
    return display


@torch.no_grad()
def evaluate(
    dataset: Iterable[Mapping[str, Any]],
    net: nn.Module | None = None,
    *,
    protocol: Protocol | None = None,
    flow: nn.Module | str | None = None,
    lpips: LPIPSMetric | str | None = None,
    border: str | None = None,
    warp: str | None = None,
    flow_border: int | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    amp: str | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    display: Display | None = None,
    keep_images: bool = False,
    thumbnail_size: int = PANEL_SIDE,
    on_image: PanelCallback | None = None,
    panel_size: int | None = None,
    mask_mode: str = "reference",
    label: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Score ``net`` (or, with ``net=None``, the blurry input) on every item of ``dataset``.

    How it is scored is ``protocol`` (``Protocol.paper()``, ``Protocol.jdrl()``, ...). The scoring keywords
    ``flow``, ``lpips``, ``border``, ``warp`` and ``flow_border`` *override* the protocol's fields where they
    are given (not ``None``); without a protocol they are the whole choice, as before protocols existed, on
    top of :data:`KEYWORD_PROTOCOL` (the jdrl protocol without LPIPS: DIS, exact warp, reflect, full depth).

    Args:
        dataset: items as :class:`~jdrl.data.datasets.PairedImageDataset` gives them:
            ``blur``, ``sharp``, optional ``aligned`` (``(3, H, W)`` tensors) and ``name``.
        net: the deblurring network; put in eval mode for the run and restored after.
            It is moved to ``device`` when one is given.
        protocol: a :class:`~jdrl.evaluation.protocol_record.Protocol`; its ``eight_bit`` reading is
            applied to each item here.
        flow: estimator for the deformed GT and flow errors: a ``jdrl.flow`` module (used as is),
            or a registry name (replaces the protocol's estimator, built without weights).
        lpips: an :class:`~jdrl.evaluation.metrics.LPIPSMetric`, ``"auto"`` (load it offline if the
            weights are cached) or ``None``: the protocol's choice (``"auto"`` when ``protocol.lpips``,
            else no LPIPS columns).
        border: ``"reflect"`` (pad to the net's multiple, crop back), ``"released"``
            (the released code's crop for ``net``: UNet top-left to a multiple of 16,
            MPRNet centre to a multiple of 8) or one of those crops by name
            (``"released-unet"``, ``"released-mprnet"``, needed for the input baseline).
        warp: how the GT is warped onto the output for the deformed-GT columns: ``"exact"``
            or ``"released"`` (the authors' ``flow_resample``, which every deformed-GT
            number of the paper used; docs/REPRODUCE.md).
        flow_border: px per side left out of the flow-error means.
        tile, overlap, amp: how the output is computed, passed to :func:`jdrl.inference.deblur_tensor`
            (``overlap=None``: the network's tile hint, as in ``jdrl deblur``); no part of a protocol.
        device: where to compute; default the network's device (CPU without one).
        progress: wraps the iteration (e.g. ``jdrl.progress.bar("eval")``).
        display: what is shown, never scored: a :class:`~jdrl.evaluation.panels.Display`, or its fields
            as the keywords ``keep_images``, ``thumbnail_size``, ``on_image``, ``panel_size``, ``mask_mode``
            (one way or the other, not both; panels: ``{"input", "output", "GT", "deformed GT",
            "calibration mask", "flow output->GT"[, "aligned truth"]}``).
        label: the result's name in tables (default ``"input"`` or ``"output"``).
        info: extra entries for ``options`` (checkpoint, dataset, ...); with a ``protocol``, options also
            record its ``protocol`` name, ``reading`` and ``flow_weights`` unless ``info`` does.
    """
    scoring = _scoring(protocol, flow, border, warp, flow_border)
    show = _display(display, keep_images=keep_images, thumbnail_size=thumbnail_size, on_image=on_image,
                    panel_size=panel_size, mask_mode=mask_mode)
    if lpips is None and scoring.lpips:
        lpips = "auto"
    device = torch.device(device) if device is not None else (net_device(net) if net is not None else torch.device("cpu"))
    scoring = scoring.for_net(net)
    flow_module, flow_name = _resolve_flow(flow, scoring, device)
    lpips_metric, lpips_note = _resolve_lpips(lpips, device)
    was_training = net.training if net is not None else False
    if net is not None:
        net.to(device).eval()
    rows: list[dict[str, Any]] = []
    images: dict[str, dict[str, torch.Tensor]] | None = {} if show.keep_images else None
    run = {"tile": tile, "overlap": overlap, "amp": amp}
    try:
        for item in progress(dataset) if progress is not None else dataset:
            row, panels = _score_item(scoring.read(item), net, flow_module, lpips_metric, scoring, device, run, show)
            rows.append(row)
            show.deliver(row["name"], panels, images)
    finally:
        if net is not None:
            net.train(was_training)
    options = {
        "baseline": "input" if net is None else None,
        "flow": flow_name,
        "border": scoring.border,
        "border_detail": describe_border(scoring.border),
        "warp_padding": "border",
        "warp": scoring.warp,
        "tile": tile,
        "overlap": overlap,
        "amp": amp,
        "device": str(device),
        "lpips": lpips_note,
        "lpips_available": lpips_metric is not None,
        "flow_border": scoring.flow_border,
        "mask_mode": show.mask_mode,
        **dict(info or {}),
    }
    if protocol is not None:
        for key, value in (("protocol", scoring.name), ("reading", scoring.reading),
                           ("flow_weights", scoring.flow_weights)):
            options.setdefault(key, value)
    return EvalResult(rows, _column_means(rows), options, label or ("input" if net is None else "output"), images)
