"""The generator's parameters (:class:`SynthParams`) and its named misalignments (:data:`MISALIGNMENT_PRESETS`).

The model they parametrise: :mod:`jdrl.data.synthetic` (its docstring numbers the steps).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from jdrl.config import Range, ranged

#: misalignment strengths: (max |shift| in px, max |zoom - 1|)
MISALIGNMENT_LEVELS = {
    "none": (0.0, 0.0),
    "dpdd": (2.0, 0.01),
    "sdd": (6.0, 0.03),
    "severe": (10.0, 0.05),
}
# ``MISALIGNMENT_LEVELS`` are the global-only (zoom + shift) levels of earlier versions, kept for callers that
# unpack ``(shift, zoom)``; the presets below are what ``--misalignment`` and ``with_misalignment`` mean now.

_OFF = {
    "shift": 0.0, "zoom": 0.0, "breathing": 0.0, "warp_amplitude": 0.0, "local_regions": 0, "local_shift": 0.0,
    "gt_exposure": 0.0, "white_balance": 0.0, "gamma": 0.0, "vignetting": 0.0,
}

#: named misalignments: the :class:`SynthParams` fields each one sets (any field not named keeps its default).
#: Strengths are our choices, not measurements: ``dpdd`` a tripod pair with an aperture change (no refocus, so
#: no breathing; a little wind), ``sdd`` a refocused pair (breathing) with some scene motion, ``hard`` well
#: beyond both. ``global`` (= the old ``sdd`` level) and ``severe`` (the old level) are zoom + shift only.
MISALIGNMENT_PRESETS: dict[str, dict] = {
    "none": dict(_OFF),
    "global": {**_OFF, "shift": 6.0, "zoom": 0.03},
    "dpdd": {**_OFF, "shift": 2.0, "zoom": 0.01, "warp_amplitude": 0.5, "warp_scale": 96.0,
             "local_regions": 1, "local_shift": 2.0, "local_size": (0.1, 0.25),
             "gt_exposure": 0.02, "white_balance": 0.01, "gamma": 0.02, "vignetting": 0.1},
    "sdd": {**_OFF, "shift": 6.0, "zoom": 0.02, "breathing": 0.04, "warp_amplitude": 1.5, "warp_scale": 64.0,
            "local_regions": 2, "local_shift": 4.0, "local_size": (0.1, 0.3),
            "gt_exposure": 0.05, "white_balance": 0.03, "gamma": 0.05, "vignetting": 0.15},
    "hard": {**_OFF, "shift": 10.0, "zoom": 0.04, "breathing": 0.08, "warp_amplitude": 4.0, "warp_scale": 48.0,
             "local_regions": 4, "local_shift": 10.0, "local_size": (0.1, 0.35),
             "gt_exposure": 0.15, "white_balance": 0.08, "gamma": 0.15, "vignetting": 0.3},
    "severe": {**_OFF, "shift": 10.0, "zoom": 0.05},
}


@dataclass(frozen=True)
class SynthParams:
    """Ranges the per-pair parameters are drawn from."""

    size: int = ranged(256, Range(ge=16, le=8192))  # output side in px
    r_max: float = ranged(6.0, Range(ge=0, le=64))  # largest circle-of-confusion radius in px
    shift: float = ranged(5.0, Range(ge=0, le=256))  # max |t_x|, |t_y| in px
    zoom: float = ranged(0.03, Range(ge=0, le=0.5))  # max |s - 1|
    exposure: float = ranged(0.05, Range(ge=0, le=0.9))  # max |gain - 1| of the blurry image
    noise: float = ranged(0.01, Range(ge=0, le=1))  # max Gaussian sigma on the blurry image
    augment: bool = True  # random flips/rotations of the source window
    # non-rigid misalignment, occlusion and photometric differences (jdrl.data.synthetic, 5-8); 0 switches each off
    breathing: float = ranged(0.0, Range(ge=-1, le=1))  # zoom per unit of focus plane D_f: x(1 + breathing(D_f - .5))
    warp_amplitude: float = ranged(0.0, Range(ge=0, le=64))  # largest smooth residual displacement in px
    warp_scale: float = ranged(64.0, Range(ge=16, le=8192))  # its correlation length: random vectors every ~N px
    local_regions: int = ranged(0, Range(ge=0, le=64))  # ellipses moving on their own (occluding)
    local_shift: float = ranged(0.0, Range(ge=0, le=256))  # max |v_x|, |v_y| of each ellipse in px
    local_size: tuple[float, float] = ranged((0.1, 0.3), Range(gt=0, le=1))  # ellipse diameters, fraction of size
    gt_exposure: float = ranged(0.0, Range(ge=0, le=0.9))  # max |gain - 1| of the ground truth
    white_balance: float = ranged(0.0, Range(ge=0, le=0.9))  # max |gain_c - 1| per colour channel of the ground truth
    gamma: float = ranged(0.0, Range(ge=0, le=0.9))  # max |gamma - 1| of the ground truth's tone curve x ** gamma
    vignetting: float = ranged(0.0, Range(ge=0, le=0.9))  # max darkening of the ground truth's corners

    def generator_params(self) -> SynthParams:
        """Just the generator's parameters (drops the fields a subclass such as a training config adds)."""
        return SynthParams(**{f.name: getattr(self, f.name) for f in fields(SynthParams)})

    @classmethod
    def with_misalignment(cls, level: str, **overrides) -> SynthParams:
        """The preset ``level`` of :data:`MISALIGNMENT_PRESETS`; ``overrides`` win over the preset's fields."""
        try:
            preset = MISALIGNMENT_PRESETS[level]
        except KeyError:
            raise ValueError(f"misalignment must be one of {', '.join(MISALIGNMENT_PRESETS)}") from None
        return cls(**{**preset, **overrides})
