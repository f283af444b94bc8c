"""Seeds derived from the run's seed: one rule, named streams, so no two generators share a sequence."""

from __future__ import annotations

import enum


class Stream(enum.IntEnum):
    """Independent random streams of a run (the value is a large prime multiplier of the run's seed)."""

    BATCH_ORDER = 1_000_003  # which samples go in which batch, per epoch
    LOADER = 7919  # the DataLoader's own generator, per epoch


def stream_seed(seed: int, stream: Stream, index: int) -> int:
    """The seed of ``stream``'s ``index``-th use (an epoch) in a run seeded with ``seed``."""
    return seed * int(stream) + index
