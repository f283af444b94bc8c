"""What the measurements mean: the verdict of one pair (:func:`judge`, by :class:`Thresholds`) and the objective
recommended for a dataset (:func:`recommend`); step 8 of :mod:`jdrl.data.alignment`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from jdrl.config import FRACTION, Range, ranged

VERDICTS = ("aligned", "misaligned", "drop")  # in the order of how bad they are
OBJECTIVES = ("pixel", "jdrl")
MIN_RELIABLE = 0.25  # a note when fewer pixels pass the forward-backward check


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


@dataclass
class PairAlignment:
    """One pair's measurements (package docstring); ``panels``: pictures for the report (only the worst pairs)."""

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
