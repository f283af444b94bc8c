"""How misaligned are a dataset's pairs, and which objective do they need? (``jdrl data check --misalignment``)

Per pair (:func:`analyse_pair`):

1. both images are shrunk to at most ``max_side`` px (area averaging) and **low-passed equally** by a Gaussian
   of ``lowpass`` px: the blurry side is blurred, the sharp side is not, and an optical flow matches texture the
   two do not share; the same filter on both leaves the blurry image almost as it was and takes from the sharp
   one the detail the blurry one lacks (docs/RESULTS.md, "Misalignment report": the flow error against the true
   flow of ``jdrl synth`` pairs for each ``lowpass``, which chose the default);
2. the flow blurry -> GT (any estimator of ``jdrl flows``; DIS by default), ``gt(p + flow(p)) ~ blurry(p)``,
   and the flow back: the pixels the backward flow does not bring home (within ``CONSISTENT_PX +
   CONSISTENT_SHARE x |flow|``) are left out of the statistics below: there the images are too blurred, flat or
   repetitive for any flow, or the content is occluded (``reliable_share``: the share that passes);
3. a global **similarity** (or affine) motion fitted to it by reweighted least squares
   (:func:`jdrl.flow.mask.fit_global_params`, the fit of the ``parametric`` calibration mask): three passes, each
   keeping the pixels whose residual is at most ``max(0.5 px, 3 x the median residual)``. Its parameters are
   reported in ``jdrl synth``'s convention, ``gt(x) = blurry(c + zoom R(rotation) (x - c) + shift)`` with ``c``
   the image centre (``zoom < 1``: the GT shows the scene larger), ``shift`` in px of the full image;
4. the **non-rigid residual**: ``|flow - global|`` (median and 95th percentile), and the share of pixels the
   reweighting left out (``outlier_share``: motion no global model explains, occlusions, flow failures);
5. the share of pixels each **calibration mask** (``masks``) would drop on that flow (the warm-up's flow; in
   training the mask is computed on the flow from the network's output, which starts there);
6. the **photometric offset** after alignment (GT warped onto the blurry image by the flow): the GT/blurry ratio
   of the mean luminance (``exposure``) and of each channel's mean (``gain_r/g/b``); a blur keeps local means, so
   the ratio is not biased by the defocus;
7. ``match``: the normalised cross-correlation of the two low-passed grey images after the *global* alignment
   (a flow can make unrelated images look alike, a similarity cannot);
8. a **verdict** by :class:`Thresholds`: ``drop`` (the images do not show the same view), ``aligned`` (a pixel
   loss sees the right target) or ``misaligned`` (JDRL needed).

Border pixels (``border``, a fraction of each side) and pixels whose flow leaves the frame are left out of every
statistic. :func:`misalignment_report` runs it over a dataset and makes a recommendation with its reason.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jdrl.config import FRACTION, Range, ranged

if TYPE_CHECKING:
    import torch

    from jdrl.data.pairs import ImagePair, PairSet

MIN_SIDE = 16  # px: smaller images cannot be measured (a flow, a border, a fit need room)
VERDICTS = ("aligned", "misaligned", "drop")  # in the order of how bad they are
OBJECTIVES = ("pixel", "jdrl")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as the flow estimators' grey images
FIT_PASSES = 3
FIT_FLOOR_PX = 0.5  # analysis px: the reweighting never rejects residuals below this
FIT_MEDIANS = 3.0  # ... nor below this many medians of the residual
CONSISTENT_PX = 0.5  # analysis px: forward + backward flow may differ by this ...
CONSISTENT_SHARE = 0.05  # ... plus this share of the flow's length
MIN_RELIABLE = 0.25  # a note when fewer pixels pass the forward-backward check
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
class Thresholds:
    """What the verdicts mean (every number in px of the full-size image, or a fraction)."""

    aligned_px: float = ranged(1.0, Range(ge=0, le=1000))  # 'aligned': the global motion moves no pixel more ...
    residual_px: float = ranged(0.75, Range(ge=0, le=1000))  # ... and the median non-rigid residual is at most this
    min_match: float = ranged(0.3, Range(ge=-1, le=1))  # 'drop' below this global-alignment correlation
    max_outliers: float = ranged(0.5, FRACTION)  # ... or when more than this share of pixels fits no global model
    pixel_share: float = ranged(0.1, FRACTION)  # pixel loss is fine while at most this share of pairs is misaligned
    exposure: float = ranged(0.05, Range(ge=0, le=10))  # a note when |exposure - 1| exceeds this
    colour: float = ranged(0.03, Range(ge=0, le=10))  # ... or a channel's gain differs from the exposure by more


@dataclass(frozen=True)
class MisalignmentConfig:
    """How the pairs are measured (module docstring)."""

    flow: str = "dis"  # any name of ``jdrl flows``
    flow_weights: str | None = None  # the weight file of a learned estimator
    lowpass: float = ranged(1.0, Range(ge=0, le=64))  # Gaussian sigma in px (at the analysis size) on both images
    max_side: int = ranged(1024, Range(ge=32, le=16384))  # images are shrunk to this longer side for the flow
    model: Literal["similarity", "affine"] = "similarity"
    masks: tuple[str, ...] = ("reference", "parametric")  # calibration masks whose dropped share is reported
    border: float = ranged(0.04, Range(ge=0, lt=0.5))  # fraction of each side left out of the statistics
    worst: int = ranged(6, Range(ge=0, le=1000))  # pairs kept as pictures for the report, worst first
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass
class PairAlignment:
    """One pair's measurements (module docstring); ``panels``: pictures for the report (only the worst pairs)."""

    name: str
    blur: str
    sharp: str
    width: int
    height: int
    zoom: float
    rotation_deg: float
    shift_x: float
    shift_y: float
    global_max_px: float  # the largest displacement of the global motion anywhere in the frame
    residual_median_px: float
    residual_p95_px: float
    displacement_p95_px: float  # 95th percentile of |flow|: the misalignment, global and non-rigid together
    outlier_share: float  # of the reliable pixels: those the reweighted global fit left out
    reliable_share: float  # of the measured pixels: those whose flow passes the forward-backward check
    mask_drop: dict[str, float]
    exposure: float
    gain_r: float
    gain_g: float
    gain_b: float
    match: float
    verdict: str = "aligned"
    reasons: list[str] = field(default_factory=list)
    panels: dict[str, Any] | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        """The table row: every number, the mask drops as ``drop_<mode>``, the reasons joined by ``; ``."""
        data = {k: v for k, v in asdict(self).items() if k not in ("mask_drop", "reasons", "panels")}
        data.update({f"drop_{mode}": value for mode, value in self.mask_drop.items()})
        data["reasons"] = "; ".join(self.reasons)
        return data

    @property
    def severity(self) -> tuple[int, float]:
        """Sort key, worst last: the verdict, then the displacement."""
        return VERDICTS.index(self.verdict), self.displacement_p95_px


@dataclass
class Recommendation:
    objective: str  # "pixel" or "jdrl" (for the pairs that are kept)
    drop: list[str]  # names of the pairs to leave out
    reason: str
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = {"pixel": "pixel loss is fine", "jdrl": "JDRL"}[self.objective] + f" ({self.reason})"
        if self.drop:
            text += f"; drop {len(self.drop)} pair(s): {', '.join(self.drop)}"
        return text


@dataclass
class MisalignmentReport:
    """Every pair's measurements, the recommendation, how it was measured and the dataset's file problems."""

    root: str
    layout: str
    config: MisalignmentConfig
    pairs: list[PairAlignment]
    recommendation: Recommendation
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Counts per verdict and the median of each measurement (JSON-ready)."""
        counts = {v: sum(p.verdict == v for p in self.pairs) for v in VERDICTS}
        rows = [p.row() for p in self.pairs]
        numeric = [k for k, v in (rows[0].items() if rows else ()) if isinstance(v, float)]
        medians = {k: float(np.median([r[k] for r in rows])) for k in numeric}
        return {"pairs": len(self.pairs), "verdicts": counts, "medians": medians}

    def worst(self, count: int | None = None) -> list[PairAlignment]:
        ranked = sorted(self.pairs, key=lambda p: p.severity, reverse=True)
        return ranked if count is None else ranked[:count]

    def write(self, out_dir: str | os.PathLike, overwrite: bool = False) -> dict[str, Path]:
        """``misalignment.csv``, ``misalignment.json``, ``histograms.png``, ``pairs/*.png`` and ``index.html``."""
        from jdrl.evaluation.misalignment import write_misalignment_report

        return write_misalignment_report(self, out_dir, overwrite=overwrite)


# --------------------------------------------------------------------------------------------- one pair


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
    """Measure one pair of float RGB images ``(H, W, 3)`` of one size (module docstring); ``panels`` keeps the
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


def judge(pair: PairAlignment, thresholds: Thresholds) -> PairAlignment:
    """Set ``pair.verdict`` and ``pair.reasons`` from its measurements (:class:`Thresholds`)."""
    t, reasons = thresholds, []
    if pair.match < t.min_match:
        reasons.append(f"the images do not show the same view (correlation after global alignment "
                       f"{pair.match:.2f} < {t.min_match:g})")
    if pair.outlier_share > t.max_outliers:
        reasons.append(f"{pair.outlier_share:.0%} of the pixels fit no global motion (> {t.max_outliers:.0%})")
    if reasons:
        verdict = "drop"
    elif pair.global_max_px > t.aligned_px or pair.residual_median_px > t.residual_px:
        verdict = "misaligned"
        if pair.global_max_px > t.aligned_px:
            reasons.append(f"global motion up to {pair.global_max_px:.2f} px (zoom {pair.zoom:.4f}, shift "
                           f"{pair.shift_x:+.2f}, {pair.shift_y:+.2f} px, rotation {pair.rotation_deg:+.3f} deg)")
        if pair.residual_median_px > t.residual_px:
            reasons.append(f"non-rigid residual {pair.residual_median_px:.2f} px (median)")
    else:
        verdict = "aligned"
    if pair.reliable_share < MIN_RELIABLE:
        reasons.append(f"the flow is consistent on only {pair.reliable_share:.0%} of the pixels (blurred, flat, "
                       "repetitive or occluded regions): the measurements rest on those")
    gains = {"r": pair.gain_r, "g": pair.gain_g, "b": pair.gain_b}
    if abs(pair.exposure - 1) > t.exposure:
        reasons.append(f"exposure differs: GT/blurry {pair.exposure:.3f}")
    off = {c: g / max(pair.exposure, 1e-6) for c, g in gains.items() if abs(g / max(pair.exposure, 1e-6) - 1) > t.colour}
    if off:
        reasons.append("colour differs: " + ", ".join(f"{c} x{v:.3f}" for c, v in off.items()))
    pair.verdict, pair.reasons = verdict, reasons
    return pair


# ------------------------------------------------------------------------------------------- a dataset


def recommend(pairs: Sequence[PairAlignment], thresholds: Thresholds = Thresholds()) -> Recommendation:
    """Pixel loss or JDRL for the kept pairs, which pairs to drop, and why."""
    drop = [p.name for p in pairs if p.verdict == "drop"]
    kept = [p for p in pairs if p.verdict != "drop"]
    misaligned = [p for p in kept if p.verdict == "misaligned"]
    share = len(misaligned) / len(kept) if kept else 0.0
    median = float(np.median([p.displacement_p95_px for p in kept])) if kept else 0.0
    if not kept:
        objective, reason = "jdrl", "no pair shows the same view as its GT"
    elif share <= thresholds.pixel_share:
        objective = "pixel"
        reason = (f"{len(misaligned)} of {len(kept)} kept pair(s) misaligned (at most {thresholds.pixel_share:.0%} "
                  f"allowed); median p95 displacement {median:.2f} px")
    else:
        objective = "jdrl"
        reason = (f"{len(misaligned)} of {len(kept)} kept pair(s) misaligned (global motion > "
                  f"{thresholds.aligned_px:g} px or non-rigid residual > {thresholds.residual_px:g} px); median p95 "
                  f"displacement {median:.2f} px")
    notes = []
    photometric = [p.name for p in kept if any(r.startswith(("exposure", "colour")) for r in p.reasons)]
    if photometric:
        notes.append(f"{len(photometric)} pair(s) differ in exposure or colour: both objectives learn the GT's "
                     "photometry; normalise the GT if that is not wanted")
    return Recommendation(objective, drop, reason, notes)


def _pairs_of(pairs: PairSet | Sequence[ImagePair] | str | os.PathLike) -> tuple[str, str, list[ImagePair], list[str]]:
    from jdrl.data.pairs import PairSet, load_pairs

    if isinstance(pairs, (str, os.PathLike)):
        pairs = load_pairs(pairs)
    if isinstance(pairs, PairSet):
        return str(pairs.root), pairs.layout, list(pairs.pairs), [str(p) for p in pairs.problems]
    return "", "pairs", list(pairs), []


def misalignment_report(
    pairs: PairSet | Sequence[ImagePair] | str | os.PathLike,
    config: MisalignmentConfig | None = None,
    *,
    flow: str | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    estimator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> MisalignmentReport:
    """Measure every pair (a dataset folder, a :class:`~jdrl.data.pairs.PairSet` or a list of
    :class:`~jdrl.data.pairs.ImagePair`) and recommend an objective (module docstring).

    ``flow`` overrides ``config.flow``; ``estimator`` (a flow estimator already built, e.g. by
    :func:`jdrl.flow.build_flow` to refuse a bad name or weight file before any image is read) replaces both, and
    ``config.flow`` only names it in the report. A folder is checked first (every problem raised together,
    :func:`jdrl.data.pairs.load_pairs`); an image that cannot be read later, or a pair whose two images differ in
    size, raises :class:`~jdrl.errors.DatasetError` naming every such pair after the others are measured.
    """
    from dataclasses import replace

    from jdrl.config import validate
    from jdrl.errors import DatasetError, UsageError
    from jdrl.flow import build_flow
    from jdrl.images import read_image
    from jdrl.vocabulary import MASK_MODES

    config = config or MisalignmentConfig()
    config = validate(replace(config, flow=flow) if flow else config)
    unknown = [m for m in config.masks if m not in MASK_MODES]
    if unknown:
        raise UsageError(f"calibration mask {', '.join(map(repr, unknown))} unknown; choose from {', '.join(MASK_MODES)}")
    root, layout, items, problems = _pairs_of(pairs)
    if not items:
        raise DatasetError(root or "the pairs", problems or ["no pairs to measure"])
    if estimator is None:
        estimator = build_flow(config.flow, config.flow_weights, device)
    start = time.perf_counter()
    results: list[PairAlignment] = []
    failures: list[str] = []
    worst: list[tuple[tuple[int, float], int, PairAlignment]] = []  # a heap of the worst pairs, with their panels
    for index, pair in enumerate(progress(items) if progress else items):
        try:
            blur, sharp = read_image(pair.blur), read_image(pair.sharp)
        except OSError as error:
            failures.append(str(error))
            continue
        if min(blur.shape[:2]) < MIN_SIDE:
            failures.append(f"{pair.blur}: {blur.shape[1]}x{blur.shape[0]} is smaller than the {MIN_SIDE}px the "
                            "misalignment report needs")
            continue
        if blur.shape != sharp.shape:
            failures.append(f"{pair.blur}: size mismatch within the pair ({blur.shape[1]}x{blur.shape[0]} vs "
                            f"{sharp.shape[1]}x{sharp.shape[0]})")
            continue
        result = analyse_pair(blur, sharp, estimator, config, pair.name, (str(pair.blur), str(pair.sharp)),
                              panels=config.worst > 0)
        results.append(result)
        if result.panels is not None:
            heapq.heappush(worst, (result.severity, -index, result))
            if len(worst) > config.worst:
                heapq.heappop(worst)[2].panels = None  # the least bad of the kept ones gives its pictures up
    if failures:
        raise DatasetError(root or "the pairs", failures, hint="fix or remove these files ('jdrl data check' lists "
                           "every problem)")
    return MisalignmentReport(root, layout, config, results, recommend(results, config.thresholds), problems,
                              time.perf_counter() - start)


__all__ = [
    "MisalignmentConfig",
    "MisalignmentReport",
    "PairAlignment",
    "Recommendation",
    "FIT_TOLERANCES",
    "MIN_SIDE",
    "Thresholds",
    "analyse_pair",
    "judge",
    "misalignment_report",
    "recommend",
    "robust_global_fit",
    "similarity_terms",
]
