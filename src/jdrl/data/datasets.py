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

from jdrl.data.augment import (  # noqa: F401 (re-exported)
    crop_and_augment,
    dihedral,
    random_crop_box,
    sample_generator,
)
from jdrl.data.pairs import ImagePair
from jdrl.data.synthetic import (
    SyntheticPair,
    SynthParams,
    default_sources,
    make_pair,
    usable_sources,
)
from jdrl.images import image_to_tensor, read_image

IMAGE_KEYS = ("blur", "sharp", "aligned")


class EpochSeeded(Dataset):
    """Base for datasets whose randomness is a function of ``(seed, epoch, index)``."""

    seed: int = 0
    epoch: int = 0
    crop_sampling: str = "uniform"  # where random crops may start: jdrl.data.augment.CROP_SAMPLINGS

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

    def __init__(self, pairs: Sequence[ImagePair], crop: int | None = 256, augment: bool = False, seed: int = 0,
                 crop_sampling: str = "uniform"):
        self.pairs = list(pairs)
        self.crop = crop
        self.augment = augment
        self.seed = seed
        self.crop_sampling = crop_sampling

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        images = {"blur": read_image(pair.blur), "sharp": read_image(pair.sharp)}
        if pair.aligned is not None:
            images["aligned"] = read_image(pair.aligned)
        images = crop_and_augment(images, self.generator(index), self.crop, self.augment, self.crop_sampling)
        sample: dict = {key: image_to_tensor(value) for key, value in images.items()}
        sample["name"] = pair.name
        return sample


class SyntheticPairs(EpochSeeded):
    """In-memory synthetic pairs, generated on first access and cached.

    Items are dicts of ``(3, H, W)`` tensors ``blur``, ``sharp``, ``aligned``
    plus ``name``; ``crop``/``augment`` then act as on disk data; :meth:`pair`
    gives the arrays and the metadata. Items also hold the true ``flow``
    ``(2, H, W)`` (aligned/blurry geometry -> ``sharp``, ``jdrl.flow.warp.warp(sharp, flow) ~ aligned``)
    and the ``occlusion`` mask ``(1, H, W)`` (1: no correct correspondence), cropped and
    flipped/rotated with the images: the flow's vectors are turned with them.
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
        if pair.flow is not None:
            images["flow"] = pair.flow
            images["occlusion"] = pair.occlusion.astype(np.float32)[:, :, None]
            if self.augment:  # where each output pixel was: tells how the flip/rotation turns the vectors
                ys, xs = np.mgrid[0 : pair.flow.shape[0], 0 : pair.flow.shape[1]].astype(np.float32)
                images["_coords"] = np.stack([xs, ys], axis=2)
        images = crop_and_augment(images, self.generator(index), self.crop, self.augment, self.crop_sampling)
        if "_coords" in images:
            images["flow"] = _turn_flow(images["flow"], images.pop("_coords"))
        sample: dict = {k: image_to_tensor(v) for k, v in images.items()}
        sample["name"] = f"{self.first_index + index:05d}"
        return sample


def _turn_flow(flow: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """The flow ``(H, W, 2)`` of a flipped/rotated sample, ``coords`` its pixels' old positions (x, y).

    Old position ``p = J p' + c`` with ``J`` a signed permutation; the target ``p + f`` moves the same way,
    so the new vector is ``J^T f``.
    """
    height, width = flow.shape[:2]
    if height < 2 or width < 2:  # one pixel: the transform cannot be read off; its vector is kept as is
        return flow
    along_x = coords[0, 1] - coords[0, 0]  # J's first column
    along_y = coords[1, 0] - coords[0, 0]  # J's second column
    turned = np.empty_like(flow)
    turned[..., 0] = along_x[0] * flow[..., 0] + along_x[1] * flow[..., 1]
    turned[..., 1] = along_y[0] * flow[..., 0] + along_y[1] * flow[..., 1]
    return turned


def stack_samples(samples: Sequence[dict]) -> dict:
    """Collate dict samples: tensors stacked, everything else kept as lists."""
    batch: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
