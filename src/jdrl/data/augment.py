"""Seeded random crops and the 8 flips/rotations, on numpy images (no torch needed)."""

from __future__ import annotations

import numpy as np


def sample_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


def random_crop_box(rng: np.random.Generator, height: int, width: int, size: int) -> tuple[int, int]:
    """Top-left corner of a uniformly random ``size``-square inside ``height x width``."""
    if size > height or size > width:
        raise ValueError(f"crop {size} does not fit in a {width}x{height} image")
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of the square's symmetry group (k in 0..7)."""
    if k >= 4:
        image = image[:, ::-1]
    return np.ascontiguousarray(np.rot90(image, k % 4))


def crop_and_augment(
    images: dict[str, np.ndarray], rng: np.random.Generator, crop: int | None, augment: bool
) -> dict[str, np.ndarray]:
    """Apply the same random crop and dihedral transform to every image of a sample."""
    first = next(iter(images.values()))
    if crop is not None:
        top, left = random_crop_box(rng, first.shape[0], first.shape[1], crop)
        images = {k: v[top : top + crop, left : left + crop] for k, v in images.items()}
    if augment:
        k = int(rng.integers(0, 8))
        images = {key: dihedral(v, k) for key, v in images.items()}
    return images
