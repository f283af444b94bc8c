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
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from jdrl.config import Range, ranged
from jdrl.data.augment import dihedral
from jdrl.errors import DatasetError
from jdrl.files import file_problem, folder_problem
from jdrl.images import is_image_file, read_image, write_image

#: colour photographs shipped inside scikit-image (no download needed)
DEFAULT_SOURCE_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
)

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

# each kind of misalignment draws from its own stream, default_rng([seed, index, kind])
_WARP_STREAM, _LOCAL_STREAM, _PHOTO_STREAM = 1, 2, 3
FLOW_ITERATIONS = 12  # at most this many fixed-point steps invert the ground truth's sampling map (to 1e-7 px)
_BACKGROUND, _NO_MATCH = -1, -2  # layer labels of the occlusion bookkeeping (moved ellipses are 0, 1, ...)

RADIUS_STEP = 0.5  # px between the disk blurs that are blended per pixel


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
    # non-rigid misalignment, occlusion and photometric differences (module docstring, 5-8); 0 switches each off
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


@dataclass
class SyntheticPair:
    blur: np.ndarray
    sharp: np.ndarray  # the misaligned ground truth
    aligned: np.ndarray  # the truth in the blurry image's geometry
    meta: dict
    flow: np.ndarray | None = None  # (H, W, 2) float32, aligned -> ground truth: gt(p + flow(p)) ~ aligned(p)
    occlusion: np.ndarray | None = None  # (H, W) bool: aligned pixels with no correct correspondence in gt
    coc: np.ndarray | None = None  # (H, W) float32: the circle-of-confusion radius in px that blurred each pixel


# ----------------------------------------------------------------------------- sources


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        image = left if name.endswith("left") else right
    else:
        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3].astype(np.float32) / 255.0


def default_sources(names: Sequence[str] = DEFAULT_SOURCE_NAMES) -> list[tuple[str, np.ndarray]]:
    """The bundled sample photos of scikit-image as ``(name, float RGB)``."""
    return [(name, _skimage_photo(name)) for name in names]


def folder_sources(folder: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """Every image in ``folder`` (sorted by name) as ``(stem, float RGB)``."""
    problem = folder_problem(folder)
    if problem:
        raise DatasetError(str(folder), [f"{folder}: {problem} (the sharp photos to synthesize from are a folder)"])
    paths = sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))
    if not paths:
        raise DatasetError(str(folder), [f"{folder}: no images to synthesize from"])
    return [(p.stem, read_image(p)) for p in paths]


# ------------------------------------------------------------------------------ model


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Normalised disk PSF with anti-aliased edges (pixel area covered by the circle)."""
    half = math.ceil(radius - 0.5) if radius > 0.5 else 0
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = np.arange(-half, half + 1, dtype=np.float64)
    sub = (grid[:, None] + offsets[None, :]).reshape(-1)
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= radius**2
    size = 2 * half + 1
    kernel = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    if kernel.sum() == 0:  # radius ~ 0: the identity
        kernel[half, half] = 1.0
    return (kernel / kernel.sum()).astype(np.float32)


def smooth_field(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """A smooth random field in [0, 1] and the numbers that define it."""
    grid = rng.uniform(0.0, 1.0, size=(4, 4))
    ramp = rng.uniform(-1.0, 1.0, size=2)
    field = cv2.resize(grid.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    coords = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    field = field + ramp[0] * coords[None, :] + ramp[1] * coords[:, None]
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    return field, {"depth_grid": grid.round(6).tolist(), "depth_ramp": ramp.round(6).tolist()}


def coc_radius(depth: np.ndarray, focus: float, r_peak: float) -> np.ndarray:
    """Thin lens: the circle of confusion grows linearly with |inverse depth - focus|."""
    distance = np.abs(depth - focus)
    return (r_peak * distance / max(float(distance.max()), 1e-6)).astype(np.float32)


def variable_disk_blur(image: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Per-pixel disk blur: blurs at ``RADIUS_STEP`` px steps, blended linearly per pixel."""
    top = float(radius.max())
    if top <= 0:
        return image.copy()
    levels = np.arange(0.0, top + RADIUS_STEP, RADIUS_STEP)
    position = np.clip(radius / RADIUS_STEP, 0, len(levels) - 1)
    out = np.zeros_like(image)
    for k, level in enumerate(levels):
        weight = np.clip(1.0 - np.abs(position - k), 0.0, 1.0)
        if not weight.any():
            continue
        blurred = image if level == 0 else cv2.filter2D(image, -1, disk_kernel(level), borderType=cv2.BORDER_REFLECT)
        out += weight[:, :, None] * blurred
    return out


def similarity_warp(image: np.ndarray, zoom: float, offset: tuple[float, float], size: int) -> np.ndarray:
    """``out(x) = image(zoom * x + offset)`` for ``x`` in a ``size`` square (bicubic)."""
    matrix = np.array([[zoom, 0.0, offset[0]], [0.0, zoom, offset[1]]], dtype=np.float64)
    warped = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )
    return np.clip(warped, 0.0, 1.0)


def true_flow(meta: dict, size: int | None = None) -> np.ndarray:
    """The flow ``(2, H, W)`` of the global zoom + shift (breathing included) from the aligned/blurry geometry to
    the ground truth.

    ``gt(p + flow(p)) == aligned(p)``, the convention of :mod:`jdrl.flow`. Exact when the smooth and local motions
    are off; otherwise it is their global part only, and the full flow is ``SyntheticPair.flow``
    (``flow/NNNNN.npy`` on disk).
    """
    size = size or meta["size"]
    zoom, (bx, by) = meta["zoom"], meta["offset"]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    return np.stack([(xs - bx) / zoom - xs, (ys - by) / zoom - ys]).astype(np.float32)


def margin_for(params: SynthParams) -> int:
    """Border needed around the output so the zoomed/shifted/warped view stays inside the window."""
    extra = 0.0  # 0 when the kinds added after the global model are off: the old windows, the old pairs
    if params.breathing:
        extra += (1 + params.zoom) * abs(params.breathing) / 2 * params.size * 0.75
    if params.warp_amplitude:
        extra += params.warp_amplitude
    if params.local_regions and params.local_shift:
        extra += params.local_shift * 1.5
    return int(math.ceil(params.zoom * params.size * 0.75 + params.shift * 1.5 + extra)) + 4


# ------------------------------------------------------------------- non-rigid misalignment


def warp_field(rng: np.random.Generator, size: int, scale: float, amplitude: float) -> tuple[np.ndarray, dict]:
    """A smooth random displacement ``(size, size, 2)`` whose largest vector is ``amplitude * U(0.5, 1)`` px."""
    cells = max(2, math.ceil(size / scale) + 1)
    grid = rng.uniform(-1.0, 1.0, size=(cells, cells, 2))
    peak = float(amplitude * rng.uniform(0.5, 1.0))
    field = cv2.resize(grid.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    field *= peak / max(float(np.sqrt((field**2).sum(axis=2)).max()), 1e-9)
    return field, {"warp_peak": peak, "warp_grid": grid.round(6).tolist()}


def draw_regions(rng: np.random.Generator, params: SynthParams) -> list[dict]:
    """``local_regions`` ellipses in the aligned geometry, each with its own shift and a fill offset."""
    low, high = sorted(params.local_size)
    size, regions = params.size, []
    for _ in range(params.local_regions):
        centre = rng.uniform(0.0, size, size=2)
        axes = rng.uniform(low, high, size=2) * size / 2
        angle = float(rng.uniform(0.0, math.pi))
        shift = rng.uniform(-params.local_shift, params.local_shift, size=2)
        direction = float(rng.uniform(0.0, 2 * math.pi))
        reach = 2 * float(axes.max()) + params.local_shift  # where the revealed background is copied from
        regions.append({
            "centre": [float(centre[0]), float(centre[1])],
            "axes": [float(axes[0]), float(axes[1])],
            "angle": angle,
            "shift": [float(shift[0]), float(shift[1])],
            "fill_offset": [reach * math.cos(direction), reach * math.sin(direction)],
        })
    return regions


def ellipse_coverage(region: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fraction of the pixel at ``(x, y)`` inside the ellipse: 1 inside, 0 outside, a 1 px ramp at the edge."""
    (cx, cy), (a, b), angle = region["centre"], region["axes"], region["angle"]
    dx, dy = x - cx, y - cy
    u = math.cos(angle) * dx + math.sin(angle) * dy
    w = -math.sin(angle) * dx + math.cos(angle) * dy
    level = np.sqrt((u / a) ** 2 + (w / b) ** 2)
    slope = np.sqrt((u / a**2) ** 2 + (w / b**2) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.where(level > 0, (level - 1.0) * level / np.maximum(slope, 1e-12), -np.inf)
    return np.clip(0.5 - distance, 0.0, 1.0)


def _bilinear(channels: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Each ``(H, W)`` channel at real positions, bilinear, clamped at the border (exact, unlike cv2's 1/32 px)."""
    height, width = channels[0].shape
    x, y = np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)
    x0, y0 = np.minimum(np.floor(x), width - 2), np.minimum(np.floor(y), height - 2)
    fx, fy = x - x0, y - y0
    corner = y0.astype(np.intp) * width + x0.astype(np.intp)
    weights = ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)
    out = []
    for channel in channels:
        flat = channel.ravel()
        out.append(sum(w * flat.take(corner + step) for w, step in zip(weights, (0, 1, width, width + 1))))
    return out


def _inverse_map(tx, ty, zoom: float, offset: tuple[float, float], field: np.ndarray | None):
    """``q`` with ``zoom * q + offset + d(q) = t``: the ground-truth point that sees aligned point ``t``."""
    qx, qy = (tx - offset[0]) / zoom, (ty - offset[1]) / zoom
    if field is not None:  # a contraction: |grad d| / zoom << 1 for a smooth d
        channels = (np.ascontiguousarray(field[..., 0]), np.ascontiguousarray(field[..., 1]))
        for _ in range(FLOW_ITERATIONS):
            dx, dy = _bilinear(channels, qx, qy)
            nx, ny = (tx - offset[0] - dx) / zoom, (ty - offset[1] - dy) / zoom
            step = max(float(np.abs(nx - qx).max()), float(np.abs(ny - qy).max()))
            qx, qy = nx, ny
            if step < 1e-7:
                break
    return qx, qy


def nonrigid_misalignment(
    window: np.ndarray, margin: int, size: int, zoom: float, offset: tuple[float, float],
    field: np.ndarray | None, regions: Sequence[dict],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gt, flow (H, W, 2), occlusion (H, W))`` of the model's steps 4, 6 and 7 (module docstring)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    ax, ay = zoom * xs + offset[0], zoom * ys + offset[1]  # where ground-truth pixel x samples the aligned image
    if field is not None:
        ax, ay = ax + field[..., 0], ay + field[..., 1]

    def sample(dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        return cv2.remap(window, (ax + margin + dx).astype(np.float32), (ay + margin + dy).astype(np.float32),
                         cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)

    gt = sample()
    seen = np.full((size, size), _BACKGROUND, np.int16)  # which layer each ground-truth pixel shows
    for region in regions:  # the ellipses leave their old place: other content of the window shows there
        left = ellipse_coverage(region, ax, ay)
        if left.any():
            gt += left[..., None] * (sample(*region["fill_offset"]) - gt)
            seen[left > 0] = _NO_MATCH
    for label, region in enumerate(regions):  # and are pasted at their new place, in order
        vx, vy = region["shift"]
        cover = ellipse_coverage(region, ax - vx, ay - vy)
        if cover.any():
            gt += cover[..., None] * (sample(-vx, -vy) - gt)
            seen[cover >= 1] = label
            seen[(cover > 0) & (cover < 1)] = _NO_MATCH
    gt = np.clip(gt, 0.0, 1.0)

    layer = np.full((size, size), _BACKGROUND, np.int16)  # which layer each aligned pixel belongs to
    tx, ty = xs.copy(), ys.copy()
    for label, region in enumerate(regions):
        layer[ellipse_coverage(region, xs, ys) >= 0.5] = label
    for label, region in enumerate(regions):
        mine = layer == label
        tx[mine] += region["shift"][0]
        ty[mine] += region["shift"][1]
    qx, qy = _inverse_map(tx, ty, zoom, offset, field)
    flow = np.stack([qx - xs, qy - ys], axis=2).astype(np.float32)

    occlusion = np.zeros((size, size), bool)
    if regions:  # hidden: any pixel of the bilinear footprint at p + flow(p) shows another layer or an edge
        x0 = np.clip(np.floor(qx), 0, size - 1).astype(np.intp)
        y0 = np.clip(np.floor(qy), 0, size - 1).astype(np.intp)
        x1, y1 = np.minimum(x0 + 1, size - 1), np.minimum(y0 + 1, size - 1)
        for yy, xx in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
            occlusion |= seen[yy, xx] != layer
    return gt.astype(np.float32), flow, occlusion


def out_of_view(flow: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose ``p + flow(p)`` (flow ``(H, W, 2)``) leaves the ground truth's frame."""
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    qx, qy = xs + flow[..., 0], ys + flow[..., 1]
    return (qx < 0) | (qx > width - 1) | (qy < 0) | (qy > height - 1)


def valid_mask(flow: np.ndarray, occlusion: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels with a correct correspondence inside the ground truth's frame."""
    return ~np.asarray(occlusion, bool) & ~out_of_view(flow)


# ---------------------------------------------------------------------------- photometry


def draw_photometric(rng: np.random.Generator, params: SynthParams) -> dict:
    """The ground-truth shot's gain, white balance, tone curve and vignetting (each 1/0 when its field is 0)."""
    u = rng.uniform(-1.0, 1.0, size=5)
    strength = float(rng.uniform(0.5, 1.0))
    return {
        "gain": 1.0 + params.gt_exposure * float(u[0]),
        "white_balance": [1.0 + params.white_balance * float(c) for c in u[1:4]],
        "gamma": 1.0 + params.gamma * float(u[4]),
        "vignetting": params.vignetting * strength,
    }


def _photometric_factor(shape: tuple[int, ...], photometric: dict) -> np.ndarray:
    height, width = shape[:2]
    factor = photometric["gain"] * np.asarray(photometric["white_balance"], np.float64)[None, None, :]
    if photometric["vignetting"]:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
        radius2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / max(cx**2 + cy**2, 1e-9)
        factor = factor * (1.0 - photometric["vignetting"] * radius2)[..., None]
    return factor


def apply_photometric(image: np.ndarray, photometric: dict) -> np.ndarray:
    """``clip(gain * wb_c * V(x) * image, 0, 1) ** gamma`` (``photometric``: ``meta["photometric"]``)."""
    out = np.clip(image * _photometric_factor(image.shape, photometric), 0.0, 1.0)
    if photometric["gamma"] != 1.0:
        out = out ** photometric["gamma"]
    return out.astype(np.float32)


def undo_photometric(image: np.ndarray, photometric: dict) -> np.ndarray:
    """The inverse of :func:`apply_photometric` (exact where nothing was clipped)."""
    out = image.astype(np.float64)
    if photometric["gamma"] != 1.0:
        out = out ** (1.0 / photometric["gamma"])
    return (out / np.maximum(_photometric_factor(image.shape, photometric), 1e-9)).astype(np.float32)


def usable_sources(
    sources: Sequence[tuple[str, np.ndarray]], params: SynthParams, warn: Callable[[str], None] = print
) -> list[tuple[str, np.ndarray]]:
    """The sources big enough for ``params`` (the window a pair needs); the others are named in one warning.

    Checked before anything is written, so a run never stops half-way on a small photo.
    """
    from jdrl.errors import DatasetError

    side = params.size + 2 * margin_for(params)
    fit = [(name, image) for name, image in sources if min(image.shape[:2]) >= side]
    small = [f"{name}: {image.shape[1]}x{image.shape[0]}" for name, image in sources if min(image.shape[:2]) < side]
    if not fit:
        raise DatasetError("the source images", [f"{entry} is smaller than {side}x{side}" for entry in small],
                           hint=f"every pair needs a {side}px window (size {params.size} plus the misalignment "
                                "margin): use a smaller --size or less misalignment")
    if small:
        warn(f"warning: {len(small)} source image(s) smaller than the {side}px window a pair needs are not used: "
             + ", ".join(small))
    return fit


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


def apply_recorded_misalignment(aligned: np.ndarray, meta: dict) -> np.ndarray:
    """Re-create the ground truth from the aligned image and the recorded zoom/offset (the global model only:
    without the smooth/local motions and the photometric change)."""
    return similarity_warp(aligned, meta["zoom"], tuple(meta["offset"]), meta["size"])


# ------------------------------------------------------------------------------ files


def write_synthetic(
    out_dir: str | os.PathLike,
    n: int,
    params: SynthParams = SynthParams(),
    seed: int = 0,
    sources: Sequence[tuple[str, np.ndarray]] | None = None,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
    warn: Callable[[str], None] = print,
    overwrite: bool = False,
) -> Path:
    """Write ``OUT/{blur,gt,aligned}/NNNNN.png``, ``OUT/flow/NNNNN.npy``, ``OUT/occlusion/NNNNN.png``,
    ``OUT/coc/NNNNN.npy`` and ``OUT/meta.jsonl`` (one line per pair).

    ``flow/NNNNN.npy``: the true flow as float32 ``(H, W, 2)`` (x, y) in px, aligned/blurry geometry -> gt
    (``jdrl.flow.warp.warp(gt, flow) ~ aligned``; ``np.load``). ``occlusion/NNNNN.png``: 8-bit gray, 255 where
    no correct correspondence exists, 0 elsewhere. ``coc/NNNNN.npy``: the true circle-of-confusion radius in px
    of each blurry pixel, float32 ``(H, W)`` (:func:`read_coc`). The same seed writes byte-identical files.
    """
    from jdrl.atomic import atomic_write
    from jdrl.config import validate
    from jdrl.errors import ConfigError, UsageError

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n: {n!r} pairs; give at least 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: {seed!r} must be a whole number >= 0")
    validate(params)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder")
    subs = ("blur", "gt", "aligned", "flow", "occlusion", "coc")
    existing = [p for sub in subs if (out / sub).is_dir() for p in sorted((out / sub).iterdir())]
    existing += [out / "meta.jsonl"] if (out / "meta.jsonl").exists() else []
    if existing and not overwrite:
        raise UsageError(f"{out} already holds a data set ({len(existing)} file(s), e.g. {existing[0]}); choose a "
                         "new folder, or pass --overwrite to replace it")
    sources = usable_sources(sources if sources is not None else default_sources(), params, warn)
    for sub in subs:
        (out / sub).mkdir(parents=True, exist_ok=True)
    meta_file = io.StringIO()  # meta.jsonl is written whole at the end (atomically): never a half list
    for index in progress(range(n)):
        name, source = sources[index % len(sources)]
        pair = make_pair(source, params, seed, index, name)
        file = f"{index:05d}.png"
        write_image(out / "blur" / file, pair.blur)
        write_image(out / "gt" / file, pair.sharp)
        write_image(out / "aligned" / file, pair.aligned)
        write_flow(out / "flow" / f"{index:05d}.npy", pair.flow)
        write_image(out / "occlusion" / file, pair.occlusion.astype(np.float32))
        write_array(out / "coc" / f"{index:05d}.npy", pair.coc)
        record = {"file": file, **pair.meta, "params": asdict(params)}
        meta_file.write(json.dumps(record) + "\n")
    with atomic_write(out / "meta.jsonl") as handle:
        handle.write(meta_file.getvalue().encode("utf-8"))
    return out


def write_flow(path: str | os.PathLike, flow: np.ndarray) -> Path:
    """Save a flow ``(H, W, 2)`` as a float32 ``.npy`` (atomically)."""
    return write_array(path, flow)


def write_array(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save an array as a float32 ``.npy`` (atomically)."""
    from jdrl.atomic import atomic_write

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def read_coc(path: str | os.PathLike) -> np.ndarray:
    """A circle-of-confusion map written by :func:`write_synthetic`: float32 ``(H, W)``, px."""
    problem = file_problem(path)  # a FIFO or a device would block np.load; a loop or a folder is named
    if problem:
        raise ValueError(f"{path}: {problem}")
    coc = np.load(path, allow_pickle=False)
    if coc.ndim != 2:
        raise ValueError(f"{path}: not an (H, W) radius map but {coc.shape}")
    return coc.astype(np.float32, copy=False)


def read_flow(path: str | os.PathLike) -> np.ndarray:
    """A flow written by :func:`write_flow`: float32 ``(H, W, 2)``."""
    flow = np.load(path, allow_pickle=False)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{path}: not a (H, W, 2) flow but {flow.shape}")
    return flow.astype(np.float32, copy=False)


def read_occlusion(path: str | os.PathLike) -> np.ndarray:
    """An occlusion mask written by :func:`write_synthetic`: bool ``(H, W)``."""
    from jdrl.images import read_image_raw

    raw = read_image_raw(path)
    return (raw if raw.ndim == 2 else raw[..., 0]) > 127


def read_meta(folder: str | os.PathLike) -> dict[str, dict]:
    """``meta.jsonl`` of a synthetic folder as ``{file stem: record}``."""
    records = {}
    with open(Path(folder) / "meta.jsonl") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                records[Path(record["file"]).stem] = record
    return records


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
]
