"""Making one pair: the window, the blurry shot, the misaligned ground truth and their metadata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jdrl.data.augment import dihedral
from jdrl.data.synthetic.misalignment import (
    draw_regions,
    margin_for,
    nonrigid_misalignment,
    out_of_view,
    similarity_warp,
    true_flow,
    warp_field,
)
from jdrl.data.synthetic.optics import coc_radius, smooth_field, variable_disk_blur
from jdrl.data.synthetic.params import SynthParams
from jdrl.data.synthetic.photometry import apply_photometric, draw_photometric

# each kind of misalignment draws from its own stream, default_rng([seed, index, kind])
_WARP_STREAM, _LOCAL_STREAM, _PHOTO_STREAM = 1, 2, 3


@dataclass
class SyntheticPair:
    blur: np.ndarray
    sharp: np.ndarray  # the misaligned ground truth
    aligned: np.ndarray  # the truth in the blurry image's geometry
    meta: dict
    flow: np.ndarray | None = None  # (H, W, 2) float32, aligned -> ground truth: gt(p + flow(p)) ~ aligned(p)
    occlusion: np.ndarray | None = None  # (H, W) bool: aligned pixels with no correct correspondence in gt
    coc: np.ndarray | None = None  # (H, W) float32: the circle-of-confusion radius in px that blurred each pixel


def make_pair(source: np.ndarray, params: SynthParams, seed: int, index: int, source_name: str = "") -> SyntheticPair:
    """Synthesize pair ``index`` from ``source``; deterministic in ``(seed, index)``."""
    rng = np.random.default_rng([seed, index])
    size, margin = params.size, margin_for(params)
    window_side = size + 2 * margin
    height, width = source.shape[:2]
    if min(height, width) < window_side:
        raise ValueError(
            f"source {source_name or ''} is {width}x{height}, smaller than the {window_side}px window "
            f"needed for size {size}; use a smaller size or less misalignment"
        )
    top, left = int(rng.integers(0, height - window_side + 1)), int(rng.integers(0, width - window_side + 1))
    window = source[top : top + window_side, left : left + window_side]
    flip = int(rng.integers(0, 8)) if params.augment else 0
    window = np.ascontiguousarray(dihedral(window, flip), dtype=np.float32)
    aligned = window[margin : margin + size, margin : margin + size].copy()

    random_zoom = 1.0 + float(rng.uniform(-params.zoom, params.zoom))
    shift = rng.uniform(-params.shift, params.shift, size=2)

    depth, depth_meta = smooth_field(rng, size)
    focus = float(rng.uniform(0.0, 1.0))
    r_peak = float(params.r_max * rng.uniform(0.5, 1.0))
    gain = 1.0 + float(rng.uniform(-params.exposure, params.exposure))
    sigma = float(rng.uniform(0.0, params.noise))
    noise = rng.standard_normal(aligned.shape).astype(np.float32)

    coc = coc_radius(depth, focus, r_peak)
    blur = variable_disk_blur(aligned, coc)
    if gain != 1.0 or sigma > 0:
        blur = np.clip(blur * gain + sigma * noise, 0.0, 1.0)

    breathing_zoom = 1.0 + params.breathing * (focus - 0.5)  # exactly 1 when breathing is off
    zoom = random_zoom * breathing_zoom
    centre = (size - 1) / 2.0
    offset = (centre * (1 - zoom) + float(shift[0]), centre * (1 - zoom) + float(shift[1]))
    field, warp_meta = None, {"warp_peak": 0.0, "warp_grid": []}
    if params.warp_amplitude:
        field, warp_meta = warp_field(np.random.default_rng([seed, index, _WARP_STREAM]), size, params.warp_scale,
                                      params.warp_amplitude)
    regions = []
    if params.local_regions and params.local_shift:
        regions = draw_regions(np.random.default_rng([seed, index, _LOCAL_STREAM]), params)
    if field is None and not regions:  # the global model, as it always was
        sharp = similarity_warp(window, zoom, (offset[0] + margin, offset[1] + margin), size)
        flow = None
        occlusion = np.zeros((size, size), bool)
    else:
        sharp, flow, occlusion = nonrigid_misalignment(window, margin, size, zoom, offset, field, regions)
    photometric = draw_photometric(np.random.default_rng([seed, index, _PHOTO_STREAM]), params)
    if params.gt_exposure or params.white_balance or params.gamma or params.vignetting:
        sharp = apply_photometric(sharp, photometric)

    meta = {
        "index": index,
        "seed": seed,
        "source": source_name,
        "window": [top, left, window_side],
        "dihedral": flip,
        "size": size,
        "zoom": zoom,  # the global zoom: random_zoom * breathing_zoom
        "shift": [float(shift[0]), float(shift[1])],
        "offset": [offset[0], offset[1]],
        "focus": focus,
        "r_peak": r_peak,
        "exposure_gain": gain,
        "noise_sigma": sigma,
        **depth_meta,
        "random_zoom": random_zoom,
        "breathing_zoom": breathing_zoom,
        **warp_meta,
        "regions": regions,
        "photometric": photometric,
    }
    if flow is None:
        flow = np.ascontiguousarray(true_flow(meta, size).transpose(1, 2, 0))
    meta["occluded_fraction"] = float(occlusion.mean())
    meta["out_of_view_fraction"] = float(out_of_view(flow).mean())
    return SyntheticPair(blur=blur.astype(np.float32), sharp=sharp, aligned=aligned, meta=meta, flow=flow,
                         occlusion=occlusion, coc=coc)
