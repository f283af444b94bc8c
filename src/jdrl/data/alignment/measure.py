"""Measuring one pair (:func:`analyse_pair`): steps 1-7 of :mod:`jdrl.data.alignment` (how it is measured:
:class:`MisalignmentConfig`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from jdrl.config import Range, ranged
from jdrl.data.alignment.verdict import PairAlignment, Thresholds, judge

if TYPE_CHECKING:
    import torch

MIN_SIDE = 16  # px: smaller images cannot be measured (a flow, a border, a fit need room)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as the flow estimators' grey images
FIT_PASSES = 3
FIT_FLOOR_PX = 0.5  # analysis px: the reweighting never rejects residuals below this
FIT_MEDIANS = 3.0  # ... nor below this many medians of the residual
CONSISTENT_PX = 0.5  # analysis px: forward + backward flow may differ by this ...
CONSISTENT_SHARE = 0.05  # ... plus this share of the flow's length
MATCH_SCALE = 1 / 32  # the correlation ('match') ignores shading coarser than this fraction of the longer side
#: how closely the global fit recovers the zoom and shift ``jdrl synth`` stores in meta.jsonl, on 192 px pairs of
#: each preset with the default :class:`MisalignmentConfig`: (median over the pairs, every pair) of ``|zoom error|``
#: and of the shift error in px. The presets with a smooth warp and moving regions (dpdd, sdd) get more room: a
#: global model absorbs part of those. Checked by tests/test_alignment.py and benchmarks/alignment.py (RESULTS.md).
FIT_TOLERANCES: dict[str, dict[str, tuple[float, float]]] = {
    "global": {"zoom": (0.001, 0.006), "shift": (0.15, 1.0)},
    "dpdd": {"zoom": (0.0015, 0.008), "shift": (0.2, 1.0)},
    "sdd": {"zoom": (0.0025, 0.008), "shift": (0.35, 1.2)},
}


@dataclass(frozen=True)
class MisalignmentConfig:
    """How the pairs are measured (package docstring)."""

    flow: str = "dis"  # any name of ``jdrl flows``
    flow_weights: str | None = None  # the weight file of a learned estimator
    lowpass: float = ranged(1.0, Range(ge=0, le=64))  # Gaussian sigma in px (at the analysis size) on both images
    max_side: int = ranged(1024, Range(ge=32, le=16384))  # images are shrunk to this longer side for the flow
    model: Literal["similarity", "affine"] = "similarity"
    masks: tuple[str, ...] = ("reference", "parametric")  # calibration masks whose dropped share is reported
    border: float = ranged(0.04, Range(ge=0, lt=0.5))  # fraction of each side left out of the statistics
    worst: int = ranged(6, Range(ge=0, le=1000))  # pairs kept as pictures for the report, worst first
    thresholds: Thresholds = field(default_factory=Thresholds)


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _lowpass(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return image if sigma <= 0 else cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _tensor(image: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]


def _inner(height: int, width: int, border: float) -> np.ndarray:
    keep = np.zeros((height, width), bool)
    by, bx = int(round(height * border)), int(round(width * border))
    keep[by : height - by, bx : width - bx] = True
    return keep


def _in_view(flow: np.ndarray) -> np.ndarray:
    height, width = flow.shape[1:]
    ys, xs = np.mgrid[0:height, 0:width]
    qx, qy = xs + flow[0], ys + flow[1]
    return (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)


def robust_global_fit(flow: torch.Tensor, keep: np.ndarray, model: str = "similarity") -> tuple[torch.Tensor, np.ndarray]:
    """``(params (P,), inliers (H, W))``: the global motion of ``flow (1, 2, H, W)`` over the ``keep`` pixels,
    refitted :data:`FIT_PASSES` times without the pixels whose residual exceeds ``max(FIT_FLOOR_PX,
    FIT_MEDIANS x median)``."""
    import torch

    from jdrl.flow.mask import fit_global_params, global_flow

    inliers = keep
    params = torch.zeros(1)
    for _ in range(FIT_PASSES):
        weights = torch.from_numpy(inliers.astype(np.float64))[None, None]
        params = fit_global_params(flow, weights, model)
        residual = (flow - global_flow(params, flow, model)).norm(dim=1)[0].numpy()
        limit = max(FIT_FLOOR_PX, FIT_MEDIANS * float(np.median(residual[keep])))
        new = keep & (residual <= limit)
        if new.sum() < 16:  # nothing fits: keep the last estimate
            break
        inliers = new
    return params[0], inliers


def consistent_flow(forward: torch.Tensor, backward: torch.Tensor) -> np.ndarray:
    """``(H, W)`` bool: the forward flow's pixels that the backward flow brings back, within
    ``CONSISTENT_PX + CONSISTENT_SHARE x |flow|`` (the forward-backward check: blurred, flat, repetitive or
    occluded regions fail it, and their flow is guesswork)."""
    from jdrl.flow.warp import warp

    error = (forward + warp(backward, forward)).norm(dim=1)[0].numpy()
    return error <= CONSISTENT_PX + CONSISTENT_SHARE * forward.norm(dim=1)[0].numpy()


def similarity_terms(params: torch.Tensor, model: str) -> tuple[float, float, float, float]:
    """``(zoom, rotation in degrees, shift x, shift y)`` (analysis px) of a fitted global flow's parameters.

    The fitted map blurry -> GT is ``q = c + M (p - c) + d``; its inverse ``p = c + M^-1 (q - c) - M^-1 d`` is
    ``jdrl synth``'s ``gt(x) = blurry(zoom R (x - c) + shift)``. For an affine ``M`` the zoom is
    ``sqrt(det M^-1)`` and the rotation that of the closest rotation matrix.
    """
    p = params.double().tolist()
    if model == "similarity":
        tx, ty, s, r = p
        matrix = np.array([[1 + s, -r], [r, 1 + s]])
    else:
        tx, a1, a2, ty, b1, b2 = p
        matrix = np.array([[1 + a1, a2], [b1, 1 + b2]])
    inverse = np.linalg.inv(matrix)
    zoom = math.sqrt(abs(float(np.linalg.det(inverse))))
    rotation = math.degrees(math.atan2(inverse[1, 0] - inverse[0, 1], inverse[0, 0] + inverse[1, 1]))
    shift = -inverse @ np.array([tx, ty])
    return zoom, rotation, float(shift[0]), float(shift[1])


def _grey(image: np.ndarray) -> np.ndarray:
    return image @ np.asarray(LUMA, np.float32)


def _ncc(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> float:
    x, y = a[keep].astype(np.float64), b[keep].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 1e-12 else 0.0


def _band(grey: np.ndarray, height: int, width: int) -> np.ndarray:
    """``grey`` without its coarse shading (minus a Gaussian of :data:`MATCH_SCALE` x the longer side): unrelated
    photographs can share a brightness gradient, never their detail."""
    return grey - _lowpass(grey, MATCH_SCALE * max(height, width))


def _anaglyph(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Red = ``first``'s grey, cyan = ``second``'s: grey where they agree, coloured fringes where they do not."""
    a, b = _grey(first), _grey(second)
    low, high = np.percentile(np.concatenate([a.ravel(), b.ravel()]), (1, 99))
    a, b = ((np.clip((x - low) / max(float(high - low), 1e-6), 0, 1)) for x in (a, b))  # contrast for the eye
    return np.stack([a, b, b], axis=2)


def analyse_pair(
    blur: np.ndarray,
    sharp: np.ndarray,
    estimator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: MisalignmentConfig = MisalignmentConfig(),
    name: str = "",
    paths: tuple[str, str] = ("", ""),
    panels: bool = False,
) -> PairAlignment:
    """Measure one pair of float RGB images ``(H, W, 3)`` of one size (package docstring); ``panels`` keeps the
    report's pictures (at the analysis size)."""

    from jdrl.flow.mask import calibration_mask, global_flow
    from jdrl.flow.viz import flow_to_color
    from jdrl.flow.warp import warp

    height, width = blur.shape[:2]
    small_blur, small_sharp = _shrink(blur, config.max_side), _shrink(sharp, config.max_side)
    h, w = small_blur.shape[:2]
    fx, fy = w / width, h / height  # analysis px per full-size px
    low_blur, low_sharp = _lowpass(small_blur, config.lowpass), _lowpass(small_sharp, config.lowpass)
    flow_t = estimator(_tensor(low_blur), _tensor(low_sharp)).detach().float().cpu()
    backward_t = estimator(_tensor(low_sharp), _tensor(low_blur)).detach().float().cpu()
    flow = flow_t[0].numpy()
    measured = _inner(h, w, config.border) & _in_view(flow)
    if measured.sum() < 16:
        measured = _inner(h, w, config.border)
    consistent = consistent_flow(flow_t, backward_t)
    keep = measured & consistent if (measured & consistent).sum() >= 16 else measured

    params, inliers = robust_global_fit(flow_t, keep, config.model)
    fitted_t = global_flow(params[None], flow_t, config.model)
    fitted = fitted_t[0].numpy()
    zoom, rotation, shift_x, shift_y = similarity_terms(params, config.model)
    full = np.array([1 / fx, 1 / fy], np.float64).reshape(2, 1, 1)  # analysis px -> full-size px, per axis
    residual = np.sqrt((((flow - fitted) * full) ** 2).sum(axis=0))[keep]
    displacement = np.sqrt(((flow * full) ** 2).sum(axis=0))[keep]
    global_max = float(np.sqrt(((fitted * full) ** 2).sum(axis=0)).max())

    drops = {mode: 1.0 - float(calibration_mask(flow_t, mode).mean()) for mode in config.masks}
    warped = warp(_tensor(low_sharp), flow_t)[0].numpy().transpose(1, 2, 0)
    means_sharp, means_blur = warped[keep].mean(axis=0), low_blur[keep].mean(axis=0)
    gains = means_sharp / np.maximum(means_blur, 1e-6)
    exposure = float(np.dot(LUMA, means_sharp) / max(float(np.dot(LUMA, means_blur)), 1e-6))
    globally = warp(_tensor(low_sharp), fitted_t)[0].numpy().transpose(1, 2, 0)
    match = _ncc(_band(_grey(low_blur), h, w), _band(_grey(globally), h, w), measured)

    result = PairAlignment(
        name=name, blur=paths[0], sharp=paths[1], width=width, height=height,
        zoom=zoom, rotation_deg=rotation, shift_x=shift_x / fx, shift_y=shift_y / fy, global_max_px=global_max,
        residual_median_px=float(np.median(residual)), residual_p95_px=float(np.percentile(residual, 95)),
        displacement_p95_px=float(np.percentile(displacement, 95)),
        outlier_share=1.0 - float(inliers.sum()) / float(keep.sum()),
        reliable_share=float((measured & consistent).sum()) / float(measured.sum()), mask_drop=drops, exposure=exposure,
        gain_r=float(gains[0]), gain_g=float(gains[1]), gain_b=float(gains[2]), match=match,
    )
    judge(result, config.thresholds)
    if panels:
        mask = calibration_mask(flow_t, config.masks[0] if config.masks else "reference")[0, 0].numpy()
        sharp_warped = warp(_tensor(small_sharp), flow_t)[0].numpy().transpose(1, 2, 0)
        result.panels = {
            "blurry": small_blur, "GT": small_sharp,
            "blurry (red) / GT (cyan)": _anaglyph(small_blur, small_sharp),
            "blurry / GT warped by the flow": _anaglyph(small_blur, sharp_warped),
            "flow blurry->GT": flow_to_color(flow_t)[0].numpy().transpose(1, 2, 0).astype(np.float32) / 255.0,
            f"mask {config.masks[0] if config.masks else 'reference'} (white: kept)": np.repeat(mask[..., None], 3, 2),
            "non-rigid residual": flow_to_color(flow_t - fitted_t)[0].numpy().transpose(1, 2, 0).astype(np.float32)
            / 255.0,
        }
    return result
