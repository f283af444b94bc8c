"""Progress bars (tqdm on stderr), switched off with ``quiet``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, quiet: bool = False, unit: str = "it") -> Iterable[T]:
    if quiet:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=False)


def bar(desc: str, quiet: bool = False):
    """A ``functools.partial``-like progress function for APIs that take one."""

    def wrap(iterable: Iterable[T]) -> Iterable[T]:
        return progress(iterable, desc=desc, quiet=quiet)

    return wrap
