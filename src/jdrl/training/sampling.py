"""Which samples each rank sees in each epoch: a function of ``(seed, epoch)`` only.

That makes a resumed run (which skips the batches already done in its epoch)
see exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from jdrl.seeds import Stream, stream_seed


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches of this rank's share of the epoch, optionally skipping the first ``skip`` batches."""

    def __init__(self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1, shuffle: bool = True):
        if size < world:
            raise ValueError(f"{size} training samples cannot be shared by {world} processes")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(stream_seed(self.seed, Stream.BATCH_ORDER, self.epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        usable = (self.size // self.world) * self.world  # same count on every rank
        return order[self.rank : usable : self.world]

    def __iter__(self) -> Iterator[list[int]]:
        indices = self._indices()
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        return iter(batches[self.skip :])

    def __len__(self) -> int:
        return self.batches_per_epoch - self.skip

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil((self.size // self.world) / self.batch_size)
