"""How the ground truth is misaligned: the global zoom + shift, a smooth warp, moving (occluding) ellipses,
and the true flow and occlusion mask that follow (:mod:`jdrl.data.synthetic`, steps 4-7)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from jdrl.data.synthetic.params import SynthParams

FLOW_ITERATIONS = 12  # at most this many fixed-point steps invert the ground truth's sampling map (to 1e-7 px)
_BACKGROUND, _NO_MATCH = -1, -2  # layer labels of the occlusion bookkeeping (moved ellipses are 0, 1, ...)


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
    """``(gt, flow (H, W, 2), occlusion (H, W))`` of the model's steps 4, 6 and 7 (package docstring)."""
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


def apply_recorded_misalignment(aligned: np.ndarray, meta: dict) -> np.ndarray:
    """Re-create the ground truth from the aligned image and the recorded zoom/offset (the global model only:
    without the smooth/local motions and the photometric change)."""
    return similarity_warp(aligned, meta["zoom"], tuple(meta["offset"]), meta["size"])
