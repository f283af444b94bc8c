"""Seeded random crops and the 8 flips/rotations, on numpy images (no torch needed)."""

from __future__ import annotations

import numpy as np

from jdrl.vocabulary import CROP_SAMPLINGS


def sample_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])




def random_crop_box(
    rng: np.random.Generator, height: int, width: int, size: int, sampling: str = "uniform"
) -> tuple[int, int]:
    """Top-left corner ``(top, left)`` of a random ``size``-square inside ``height x width``.

    ``sampling`` is one of :data:`CROP_SAMPLINGS`:

    - ``"uniform"``: every position equally likely, offsets in ``[0, side - size]``.
    - ``"released"``: the released dataset's ``Crop_img`` (JDRL release, ``dataset.py`` lines 35-47)::

          crop_w = img.shape[0] - size            # rows, despite the name
          random_w = 0 if crop_w == 0 else int(np.random.randint(0, crop_w) / 2)

      (the same for columns). ``randint``'s upper bound is exclusive, so each offset is
      ``floor(r / 2)`` with ``r`` uniform in ``[0, side - size - 1]``: offsets in
      ``[0, (side - size - 1) // 2]``, only the top-left part of the patch is ever seen
      (512 patch, 256 crop: offsets 0..127, the crop stays inside the top-left 383x383).
      That expression is applied as is to every size; ``rng.integers`` replaces ``np.random.randint``.
    """
    if size > height or size > width:
        raise ValueError(f"crop {size} does not fit in a {width}x{height} image")
    if sampling == "uniform":
        return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    if sampling == "released":
        top = 0 if height == size else int(rng.integers(0, height - size) / 2)
        left = 0 if width == size else int(rng.integers(0, width - size) / 2)
        return top, left
    raise ValueError(f"crop sampling must be one of {CROP_SAMPLINGS}, not {sampling!r}")


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of the square's symmetry group (k in 0..7)."""
    if k >= 4:
        image = image[:, ::-1]
    return np.ascontiguousarray(np.rot90(image, k % 4))


def crop_and_augment(
    images: dict[str, np.ndarray],
    rng: np.random.Generator,
    crop: int | None,
    augment: bool,
    sampling: str = "uniform",
) -> dict[str, np.ndarray]:
    """Apply the same random crop and dihedral transform to every image of a sample.

    ``sampling`` picks the crop position distribution (:data:`CROP_SAMPLINGS`, see :func:`random_crop_box`).
    """
    if sampling not in CROP_SAMPLINGS:
        raise ValueError(f"crop sampling must be one of {CROP_SAMPLINGS}, not {sampling!r}")
    first = next(iter(images.values()))
    if crop is not None:
        top, left = random_crop_box(rng, first.shape[0], first.shape[1], crop, sampling)
        images = {k: v[top : top + crop, left : left + crop] for k, v in images.items()}
    if augment:
        k = int(rng.integers(0, 8))
        images = {key: dihedral(v, k) for key, v in images.items()}
    return images
