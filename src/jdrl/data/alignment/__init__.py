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

The package: :mod:`~jdrl.data.alignment.measure` (steps 1-7, one pair), :mod:`~jdrl.data.alignment.verdict` (step 8
and the recommendation) and :mod:`~jdrl.data.alignment.report` (a dataset); the names below are importable from
``jdrl.data.alignment`` itself.
"""

from __future__ import annotations

from jdrl.data.alignment.measure import (
    FIT_TOLERANCES,
    MIN_SIDE,
    MisalignmentConfig,
    analyse_pair,
    robust_global_fit,
    similarity_terms,
)
from jdrl.data.alignment.report import MisalignmentReport, misalignment_report
from jdrl.data.alignment.verdict import VERDICTS, PairAlignment, Recommendation, Thresholds, judge, recommend

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
    "VERDICTS",
]
