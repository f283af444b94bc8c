"""Torch datasets of (blurry, sharp) pairs with seeded random crops and 8-fold augmentation.

Randomness never comes from global or per-worker generator state: sample ``i``
of epoch ``e`` is cropped and flipped by a generator seeded with
``(seed, e, i)``. The same seed therefore gives the same batches with any
number of DataLoader workers, and a resumed run sees the data it would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from jdrl.data.pairs import ImagePair
from jdrl.images import image_to_tensor, read_image

IMAGE_KEYS = ("blur", "sharp", "aligned")


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


class EpochSeeded(Dataset):
    """Base for datasets whose randomness is a function of ``(seed, epoch, index)``."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch (like ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def generator(self, index: int) -> np.random.Generator:
        return sample_generator(self.seed, self.epoch, index)


class PairedImageDataset(EpochSeeded):
    """Pairs read from disk; each item is a dict of ``(3, H, W)`` float tensors + ``name``.

    Keys: ``blur``, ``sharp`` and, for synthetic data, ``aligned`` (the true
    aligned sharp image). ``crop=None`` returns whole images.
    """

    def __init__(self, pairs: Sequence[ImagePair], crop: int | None = 256, augment: bool = False, seed: int = 0):
        self.pairs = list(pairs)
        self.crop = crop
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        images = {"blur": read_image(pair.blur), "sharp": read_image(pair.sharp)}
        if pair.aligned is not None:
            images["aligned"] = read_image(pair.aligned)
        images = crop_and_augment(images, self.generator(index), self.crop, self.augment)
        sample: dict = {key: image_to_tensor(value) for key, value in images.items()}
        sample["name"] = pair.name
        return sample


class InMemoryPairs(EpochSeeded):
    """Pairs already in memory (arrays ``(H, W, 3)`` in [0, 1]); same crops and flips as on disk."""

    def __init__(self, samples: Sequence[dict], crop: int | None = None, augment: bool = False, seed: int = 0):
        self.samples = list(samples)
        self.crop = crop
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        record = self.samples[index]
        images = {k: record[k] for k in IMAGE_KEYS if k in record}
        images = crop_and_augment(images, self.generator(index), self.crop, self.augment)
        sample: dict = {k: image_to_tensor(v) for k, v in images.items()}
        sample["name"] = record.get("name", f"{index:05d}")
        return sample


def stack_samples(samples: Sequence[dict]) -> dict:
    """Collate dict samples: tensors stacked, everything else kept as lists."""
    batch: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
