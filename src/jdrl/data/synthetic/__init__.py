"""Synthetic misaligned defocus pairs with a known true alignment (docs/ARCHITECTURE.md, synthetic data).

Model, per pair (every number is drawn from a generator seeded with
``(seed, index)`` and recorded in the pair's metadata):

1. a square window is cut from a sharp source image; its centre is the
   **aligned** truth, in the blurry image's geometry;
2. a smooth random inverse-depth field ``D`` (bicubic upsampling of a 4x4 grid
   plus a planar ramp) and a focus plane ``D_f`` give the thin-lens
   circle-of-confusion radius ``r = r_peak * |D - D_f| / max |D - D_f|``;
3. the **blurry** image is the aligned image under a spatially varying disk
   blur of radius ``r`` (disks at 0.5 px steps, linearly blended per pixel),
   with a small exposure gain and Gaussian noise;
4. the **ground truth** is the window seen through a zoom ``s`` about the
   centre and a shift ``t``, the two misalignments the paper reports:
   ``gt(x) = aligned(s * x + b)`` with ``b = c (1 - s) + t``, ``c`` the centre.

Real pairs are also misaligned non-rigidly, with occlusions and colour
differences. Each of these kinds is a :class:`SynthParams` field that is 0 (off)
by default, so the model above is unchanged unless one is switched on; each kind
draws from its own random stream, seeded with ``(seed, index, kind)``, so
switching one off never changes another's draws:

5. **focus breathing** (``breathing``): the magnification depends on where the
   blurry shot is focused, ``s = s_random * (1 + breathing * (D_f - 0.5))``
   (``D_f`` in [0, 1] the focus plane drawn for the blur, 0.5 the reference);
6. **smooth non-rigid residual motion** (``warp_amplitude``, ``warp_scale``): a
   displacement ``d(x)`` added to the ground truth's sampling position,
   ``gt(x) = aligned(s * x + b + d(x))``; ``d`` is a grid of random vectors every
   ~``warp_scale`` px, bicubically upsampled, scaled so that its largest vector
   is ``warp_amplitude * U(0.5, 1)`` px;
7. **local motion and occlusion** (``local_regions``, ``local_shift``,
   ``local_size``): ellipses ``E_i`` of the aligned image (diameters a fraction
   ``local_size`` of the side) moved on their own by ``v_i`` (each coordinate up
   to ``local_shift`` px) and pasted, in order, over the background of the
   ground truth: ``gt(x) = aligned(A(x) - v_i)`` where ``A(x) - v_i`` lies in
   ``E_i`` (``A`` the map of 4-6); where an ellipse left its old place the
   ground truth shows other content of the window (a "disoccluded" background).
   Edges are anti-aliased over one pixel;
8. **photometric differences** of the ground-truth shot (``gt_exposure``,
   ``white_balance``, ``gamma``, ``vignetting``), applied last, in the ground
   truth's geometry: ``gt = clip(g * w_c * V(x) * gt, 0, 1) ** gamma`` with
   ``V(x) = 1 - v * (|x - c| / |corner - c|)^2`` (:func:`apply_photometric`,
   :func:`undo_photometric`). The **aligned** image keeps the blurry shot's
   photometry: it is what a perfect deblurrer should output.

Every pair also has its true **flow** ``(H, W, 2)`` from the aligned/blurry
geometry to the ground truth, the convention of :mod:`jdrl.flow`:
``warp(gt, flow)(p) = gt(p + flow(p)) ~ aligned(p)`` (photometry undone), and
its **occlusion** mask ``(H, W)``: the aligned pixels whose scene point is hidden
in the ground truth by a moved ellipse, or whose bilinear neighbourhood there
touches another layer or an anti-aliased edge (so no correct correspondence
exists). The flow is defined everywhere (the motion of the scene point, also
where it is hidden). Pixels whose ``p + flow(p)`` leaves the frame are not in the
mask: :func:`out_of_view` gives them, :func:`valid_mask` both.

The package, one module per step: :mod:`~jdrl.data.synthetic.params` (:class:`SynthParams`, the presets),
:mod:`~jdrl.data.synthetic.sources` (the sharp photos), :mod:`~jdrl.data.synthetic.optics` (2-3, the blur),
:mod:`~jdrl.data.synthetic.misalignment` (4-7, with the true flow and occlusion),
:mod:`~jdrl.data.synthetic.photometry` (8), :mod:`~jdrl.data.synthetic.pair` (one pair, :func:`make_pair`) and
:mod:`~jdrl.data.synthetic.folder` (folders on disk, :func:`write_synthetic`). The names below are importable
from ``jdrl.data.synthetic`` itself.
"""

from __future__ import annotations

from jdrl.data.synthetic.folder import (
    read_coc,
    read_flow,
    read_meta,
    read_occlusion,
    write_array,
    write_flow,
    write_synthetic,
)
from jdrl.data.synthetic.misalignment import (
    apply_recorded_misalignment,
    ellipse_coverage,
    out_of_view,
    true_flow,
    valid_mask,
)
from jdrl.data.synthetic.optics import disk_kernel, variable_disk_blur
from jdrl.data.synthetic.pair import SyntheticPair, make_pair
from jdrl.data.synthetic.params import MISALIGNMENT_LEVELS, MISALIGNMENT_PRESETS, SynthParams
from jdrl.data.synthetic.photometry import apply_photometric, undo_photometric
from jdrl.data.synthetic.sources import DEFAULT_SOURCE_NAMES, default_sources, folder_sources, usable_sources

__all__ = [
    "SynthParams",
    "SyntheticPair",
    "MISALIGNMENT_LEVELS",
    "MISALIGNMENT_PRESETS",
    "make_pair",
    "usable_sources",
    "write_synthetic",
    "read_meta",
    "default_sources",
    "folder_sources",
    "true_flow",
    "apply_recorded_misalignment",
    "apply_photometric",
    "undo_photometric",
    "out_of_view",
    "valid_mask",
    "write_flow",
    "read_flow",
    "read_occlusion",
    "read_coc",
    "write_array",
    "DEFAULT_SOURCE_NAMES",
    "disk_kernel",
    "variable_disk_blur",
    "ellipse_coverage",
]
