"""Torch datasets of (blurry, sharp) pairs with seeded random crops and 8-fold augmentation.

Randomness never comes from global or per-worker generator state: sample ``i``
of epoch ``e`` is cropped and flipped by a generator seeded with
``(seed, e, i)``. The same seed therefore gives the same batches with any
number of DataLoader workers, and a resumed run sees the data it would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from jdrl.data.augment import crop_and_augment, dihedral, random_crop_box, sample_generator  # noqa: F401 (re-exported)
from jdrl.data.pairs import ImagePair
from jdrl.data.synthetic import SynthParams, SyntheticPair, default_sources, make_pair, usable_sources
from jdrl.images import image_to_tensor, read_image

IMAGE_KEYS = ("blur", "sharp", "aligned")


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


class SyntheticPairs(EpochSeeded):
    """In-memory synthetic pairs, generated on first access and cached.

    Items are dicts of ``(3, H, W)`` tensors ``blur``, ``sharp``, ``aligned``
    plus ``name``; ``crop``/``augment`` then act as on disk data; :meth:`pair`
    gives the arrays and the metadata.
    """

    def __init__(
        self,
        n: int,
        params: SynthParams = SynthParams(),
        seed: int = 0,
        sources: Sequence[tuple[str, np.ndarray]] | None = None,
        first_index: int = 0,
        crop: int | None = None,
        augment: bool = False,
        warn: Callable[[str], None] = print,
    ):
        self.n = n
        self.params = params
        self.seed = seed
        self.sources = usable_sources(sources if sources is not None else default_sources(), params, warn)
        self.first_index = first_index
        self.crop = crop
        self.augment = augment
        self._cache: dict[int, SyntheticPair] = {}

    def __len__(self) -> int:
        return self.n

    def pair(self, index: int) -> SyntheticPair:
        if not 0 <= index < self.n:
            raise IndexError(index)
        if index not in self._cache:
            global_index = self.first_index + index
            name, source = self.sources[global_index % len(self.sources)]
            self._cache[index] = make_pair(source, self.params, self.seed, global_index, name)
        return self._cache[index]

    def __getitem__(self, index: int) -> dict:
        pair = self.pair(index)
        images = {"blur": pair.blur, "sharp": pair.sharp, "aligned": pair.aligned}
        images = crop_and_augment(images, self.generator(index), self.crop, self.augment)
        sample: dict = {k: image_to_tensor(v) for k, v in images.items()}
        sample["name"] = f"{self.first_index + index:05d}"
        return sample


def stack_samples(samples: Sequence[dict]) -> dict:
    """Collate dict samples: tensors stacked, everything else kept as lists."""
    batch: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
