"""Photometric differences of the ground-truth shot: gain, white balance, tone curve, vignetting (step 8)."""

from __future__ import annotations

import numpy as np

from jdrl.data.synthetic.params import SynthParams


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
