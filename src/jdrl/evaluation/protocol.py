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

The same function serves ``jdrl eval`` and the trainer's validation; it keeps
no state and restores the network's train/eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.errors import ConfigError
from jdrl.evaluation.metrics import (
    LPIPSMetric,
    load_lpips,
    mae,
    mean_flow_magnitude,
    psnr,
    ssim,
)
from jdrl.runtime import net_device
from jdrl.vocabulary import BORDER_MODES

__all__ = [
    "BORDER_MODES",
    "METRIC_COLUMNS",
    "EvalResult",
    "crop_released",
    "evaluate",
    "resolve_border",
]

#: every metric column, in the order tables and CSV files show them
QUALITY = ("psnr", "ssim", "mae", "lpips")
PANEL_SIDE = 384  # px, the longer side of each picture in reports and strips
METRIC_COLUMNS: tuple[str, ...] = (
    *QUALITY,
    *(f"{m}_deformed" for m in QUALITY),
    *(f"{m}_aligned" for m in QUALITY),
    "flow_error",
    "flow_error_input",
)

#: border handling: reflect-pad and crop back, or the released code's crops

#: released crops: (anchor, multiple) - the UNet code crops the top-left corner, MPRNet's the centre
RELEASED_CROPS = {"released-unet": ("top-left", 16), "released-mprnet": ("centre", 8)}

LPIPS_NOTE = "AlexNet v0.1 (lpips package)"
PanelCallback = Callable[[str, dict[str, torch.Tensor]], None]


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


# ----------------------------------------------------------------------------- border handling


def _unwrap(net: nn.Module) -> nn.Module:
    """The module inside DataParallel/DDP (``.module``) or ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(net, "module", None) or getattr(net, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return net
        net = inner


class EightBitReading:
    """A dataset's images as the released evaluation read them: OpenCV's 8-bit ``imread`` (a 16-bit PNG's top byte).

    ``v8 = floor(v16 / 256)``; 8-bit sources come back unchanged (``floor(v * 257 / 256) = v``).
    """

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        for key in ("blur", "sharp", "aligned"):
            if isinstance(item.get(key), torch.Tensor):
                item[key] = torch.floor(torch.round(item[key].double() * 65535) / 256).float() / 255
        return item


def resolve_border(border: str, net: nn.Module | None) -> str:
    """``border`` with ``"released"`` replaced by the crop rule of ``net``'s released code.

    ``released-unet`` crops the top-left corner to a multiple of 16, ``released-mprnet``
    the centre to a multiple of 8. With no network (the input baseline) name one of them.
    """
    if border not in BORDER_MODES:
        raise ConfigError(f"border must be one of {', '.join(BORDER_MODES)}, not {border!r}")
    if border != "released":
        return border
    if net is not None:
        from jdrl.nets.mprnet import MPRNet
        from jdrl.nets.unet import UNet

        inner = _unwrap(net)
        if isinstance(inner, UNet):
            return "released-unet"
        if isinstance(inner, MPRNet):
            return "released-mprnet"
        raise ConfigError(f"border='released' knows the crops of unet and mprnet, not {type(inner).__name__}; "
                         "name one: released-unet or released-mprnet")
    raise ConfigError("border='released' without a network: name the crop, released-unet or released-mprnet")


def describe_border(border: str) -> str:
    """One line saying what a (resolved) border mode does, for reports."""
    if border == "reflect":
        return "reflect-pad to the network's size multiple, crop the output back (whole image scored)"
    anchor, multiple = RELEASED_CROPS[border]
    return f"released code's crop: {anchor} {'corner ' if anchor == 'top-left' else ''}cropped to a multiple of {multiple}"


def crop_released(image: torch.Tensor, border: str) -> torch.Tensor:
    """Crop ``(..., H, W)`` as the released test code did (``border`` = ``released-unet``/``released-mprnet``).

    ``reflect`` returns the image unchanged (the padding happens in inference).
    """
    if border == "reflect":
        return image
    anchor, multiple = RELEASED_CROPS[border]
    height, width = image.shape[-2:]
    new_h, new_w = height // multiple * multiple, width // multiple * multiple
    if new_h == 0 or new_w == 0:
        raise ConfigError(f"a {width}x{height} image is smaller than the {multiple}-px multiple of {border}")
    top, left = (0, 0) if anchor == "top-left" else ((height - new_h) // 2, (width - new_w) // 2)
    return image[..., top : top + new_h, left : left + new_w]


# ----------------------------------------------------------------------------- per-image scoring


def _quality(output: torch.Tensor, reference: torch.Tensor, lpips: LPIPSMetric | None, suffix: str) -> dict[str, float]:
    """PSNR/SSIM/MAE (and LPIPS when available) of one ``(1, 3, H, W)`` pair, keys ending in ``suffix``."""
    values = {"psnr": psnr(output, reference), "ssim": ssim(output, reference), "mae": mae(output, reference)}
    if lpips is not None:
        values["lpips"] = lpips(output, reference)
    return {f"{name}{suffix}": float(value[0]) for name, value in values.items()}


def _shrink(image: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """``(3, H, W)`` downscaled (antialiased) so its longer side is at most ``max_side``; as is for ``None``."""
    height, width = image.shape[-2:]
    if max_side is None or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def _panels(blur, output, gt, deformed, flow, aligned, max_side: int | None = None,
            mask_mode: str = "reference") -> dict[str, torch.Tensor]:
    """Labelled display images ``(3, H, W)`` float in [0, 1] on the CPU, for reports.

    With ``max_side`` they are downscaled on the compute device first, so a 4K
    image costs a few MB of host memory instead of hundreds.
    """
    from jdrl.flow.mask import calibration_mask
    from jdrl.flow.viz import flow_to_color

    mask = calibration_mask(flow, mask_mode)[0].expand(3, -1, -1)
    panels = {
        "input": blur[0],
        "output": output[0],
        "GT": gt[0],
        "deformed GT": deformed[0],
        "calibration mask": mask,
        "flow output->GT": flow_to_color(flow)[0].float() / 255.0,
    }
    if aligned is not None:
        panels["aligned truth"] = aligned[0]
    return {name: _shrink(image.detach().float(), max_side).clamp(0, 1).cpu() for name, image in panels.items()}


def thumbnail(image: torch.Tensor, max_side: int = PANEL_SIDE) -> torch.Tensor:
    """``(3, H, W)`` float in [0, 1] -> uint8 ``(3, h, w)`` with ``max(h, w) <= max_side`` (antialiased)."""
    return (_shrink(image, max_side).clamp(0, 1) * 255).round().to(torch.uint8)


def _score_item(
    item: Mapping[str, Any],
    net: nn.Module | None,
    flow: nn.Module,
    lpips: LPIPSMetric | None,
    border: str,
    device: torch.device,
    tile: int | None,
    amp: str | None,
    flow_border: int,
    want_panels: bool,
    panel_size: int | None = None,
    mask_mode: str = "reference",
    warp_convention: str = "exact",
    overlap: int | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """The metric row of one dataset item and, if wanted, its display panels."""
    from jdrl.flow.warp import warp
    from jdrl.inference import deblur_tensor

    def prepare(key: str) -> torch.Tensor | None:
        image = item.get(key)
        if image is None:
            return None
        image = image if image.dim() == 4 else image.unsqueeze(0)
        return crop_released(image, border).to(device=device, dtype=torch.float32)

    blur, gt, aligned = prepare("blur"), prepare("sharp"), prepare("aligned")
    if net is None:
        output = blur.clamp(0, 1)
    else:
        output = deblur_tensor(net, blur, tile=tile, overlap=overlap, amp=amp).float().clamp(0, 1)

    name = item.get("name", "")
    name = name[0] if isinstance(name, (list, tuple)) else name  # a DataLoader batch of one
    row: dict[str, Any] = {"name": str(name)}
    row.update(_quality(output, gt, lpips, ""))
    flow_gt = flow(output, gt)
    deformed = warp(gt, flow_gt, padding_mode="border", convention=warp_convention)
    row.update(_quality(output, deformed, lpips, "_deformed"))
    if aligned is not None:
        row.update(_quality(output, aligned, lpips, "_aligned"))
        row["flow_error"] = float(mean_flow_magnitude(flow(output, aligned), flow_border)[0])
    # The input baseline is its own reference: its distance to itself is exactly 0.
    row["flow_error_input"] = 0.0 if net is None else float(mean_flow_magnitude(flow(output, blur), flow_border)[0])
    panels = _panels(blur, output, gt, deformed, flow_gt, aligned, panel_size, mask_mode) if want_panels else None
    return row, panels


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


def _resolve_flow(flow: nn.Module | str | None, device: torch.device) -> tuple[nn.Module, str]:
    """A flow estimator and its name (``"dis"`` when none is given)."""
    from jdrl.flow import build_flow

    if flow is None or isinstance(flow, str):
        name = flow or "dis"
        return build_flow(name, device=device), name
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


@torch.no_grad()
def evaluate(
    dataset: Iterable[Mapping[str, Any]],
    net: nn.Module | None = None,
    *,
    flow: nn.Module | str | None = None,
    lpips: LPIPSMetric | str | None = None,
    border: str = "reflect",
    tile: int | None = None,
    overlap: int | None = None,
    amp: str | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    keep_images: bool = False,
    thumbnail_size: int = PANEL_SIDE,
    on_image: PanelCallback | None = None,
    panel_size: int | None = None,
    flow_border: int = 0,
    mask_mode: str = "reference",
    warp: str = "exact",
    label: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Score ``net`` (or, with ``net=None``, the blurry input) on every item of ``dataset``.

    Args:
        dataset: items as :class:`~jdrl.data.datasets.PairedImageDataset` gives them:
            ``blur``, ``sharp``, optional ``aligned`` (``(3, H, W)`` tensors) and ``name``.
        net: the deblurring network; put in eval mode for the run and restored after.
            It is moved to ``device`` when one is given.
        flow: estimator for the deformed GT and flow errors: a ``jdrl.flow`` module,
            a registry name, or ``None`` for ``"dis"``.
        lpips: an :class:`~jdrl.evaluation.metrics.LPIPSMetric`, ``"auto"`` (load it
            offline if the weights are cached) or ``None`` (no LPIPS columns).
        border: ``"reflect"`` (pad to the net's multiple, crop back), ``"released"``
            (the released code's crop for ``net``: UNet top-left to a multiple of 16,
            MPRNet centre to a multiple of 8) or one of those crops by name
            (``"released-unet"``, ``"released-mprnet"``, needed for the input baseline).
        tile, overlap, amp: passed to :func:`jdrl.inference.deblur_tensor` (``overlap=None``: the network's
            tile hint, as in ``jdrl deblur``).
        device: where to compute; default the network's device (CPU without one).
        progress: wraps the iteration (e.g. ``jdrl.progress.bar("eval")``).
        keep_images: keep downscaled display panels (``thumbnail_size`` px) per image
            in ``result.images``, for small sets; large sets should stream them
            through ``on_image`` instead (memory stays bounded).
        on_image: called as ``on_image(name, panels)`` with CPU panels
            (``{"input", "output", "GT", "deformed GT", "calibration mask",
            "flow output->GT"[, "aligned truth"]}`` -> ``(3, H, W)`` in [0, 1]);
            full size, or downscaled to ``panel_size`` px on the longer side (reports).
        flow_border: px per side left out of the flow-error means.
        mask_mode: the calibration-mask rule drawn in the panels (``jdrl.flow.mask``).
        warp: how the GT is warped onto the output for the deformed-GT columns: ``"exact"``
            (default) or ``"released"`` (the authors' ``flow_resample``, which every deformed-GT
            number of the paper used; docs/REPRODUCE.md).
        label: the result's name in tables (default ``"input"`` or ``"output"``).
        info: extra entries for ``options`` (checkpoint, dataset, ...).
    """
    from jdrl.flow.warp import WARP_CONVENTIONS

    if warp not in WARP_CONVENTIONS:
        raise ConfigError(f"warp must be one of {', '.join(WARP_CONVENTIONS)}, not {warp!r}")
    device = torch.device(device) if device is not None else (net_device(net) if net is not None else torch.device("cpu"))
    border = resolve_border(border, net)
    flow_module, flow_name = _resolve_flow(flow, device)
    lpips_metric, lpips_note = _resolve_lpips(lpips, device)
    was_training = net.training if net is not None else False
    if net is not None:
        net.to(device).eval()
    rows: list[dict[str, Any]] = []
    images: dict[str, dict[str, torch.Tensor]] | None = {} if keep_images else None
    want_panels = keep_images or on_image is not None
    # Downscale on the device as early as the consumers allow (the callback may want full size).
    panel_size = panel_size if on_image is not None else thumbnail_size
    try:
        for item in progress(dataset) if progress is not None else dataset:
            row, panels = _score_item(item, net, flow_module, lpips_metric, border, device, tile, amp,
                                      flow_border, want_panels, panel_size, mask_mode, warp, overlap)
            rows.append(row)
            if on_image is not None:
                on_image(row["name"], panels)
            if images is not None:
                images[row["name"]] = {key: thumbnail(value, thumbnail_size) for key, value in panels.items()}
    finally:
        if net is not None:
            net.train(was_training)
    options = {
        "baseline": "input" if net is None else None,
        "flow": flow_name,
        "border": border,
        "border_detail": describe_border(border),
        "warp_padding": "border",
        "warp": warp,
        "tile": tile,
        "overlap": overlap,
        "amp": amp,
        "device": str(device),
        "lpips": lpips_note,
        "lpips_available": lpips_metric is not None,
        "flow_border": flow_border,
        "mask_mode": mask_mode,
        **dict(info or {}),
    }
    return EvalResult(rows, _column_means(rows), options, label or ("input" if net is None else "output"), images)
