"""The blurry shot's optics: a smooth inverse-depth field, the thin-lens circle of confusion, disk blurs."""

from __future__ import annotations

import math

import cv2
import numpy as np

RADIUS_STEP = 0.5  # px between the disk blurs that are blended per pixel


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
