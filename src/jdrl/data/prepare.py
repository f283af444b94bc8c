"""Cut full-size pairs into training patches the way DPDNet did.

Patches of ``patch`` px are taken on a grid with ``overlap`` (60 % -> stride
204 for 512 px); the last row/column of patches is snapped to the image border
so the whole image is covered. Patches whose *sharp* side has the least detail
are dropped (``drop`` = 30 % by default): detail is measured as the variance of
the Laplacian of the grey sharp patch, i.e. the energy of its high frequencies
(flat sky or a defocused background teaches a deblurring network nothing).
The ranking is global over the whole dataset. Patches keep the source bit depth.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from jdrl.data.pairs import PairSet
from jdrl.images import read_image_with_depth, write_image


@dataclass(frozen=True)
class PatchSpec:
    patch: int = 512
    overlap: float = 0.6
    drop: float = 0.3  # fraction of least sharp patches dropped

    @property
    def stride(self) -> int:
        return max(1, int(self.patch * (1.0 - self.overlap)))


def patch_starts(length: int, patch: int, stride: int) -> list[int]:
    """Start offsets along one axis: a regular grid, the last one snapped to the border."""
    if length < patch:
        return []
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def patch_grid(height: int, width: int, spec: PatchSpec) -> list[tuple[int, int]]:
    return [(y, x) for y in patch_starts(height, spec.patch, spec.stride) for x in patch_starts(width, spec.patch, spec.stride)]


def sharpness(patch: np.ndarray) -> float:
    """Variance of the Laplacian of the grey patch (higher = more fine detail)."""
    grey = cv2.cvtColor(patch.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F, ksize=3).var())


@dataclass
class PrepareReport:
    images: int
    candidates: int
    written: int
    dropped: int
    threshold: float


def prepare_patches(
    pair_set: PairSet,
    out_dir: str | os.PathLike,
    spec: PatchSpec = PatchSpec(),
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> PrepareReport:
    """Write ``OUT/blur/NAME_yY_xX.png`` and ``OUT/gt/...`` for the kept patches."""
    out = Path(out_dir)
    scores: list[tuple[float, int, int, int]] = []  # (sharpness, pair index, y, x)
    for index, pair in enumerate(progress(pair_set.pairs)):
        sharp, _ = read_image_with_depth(pair.sharp)
        for y, x in patch_grid(*sharp.shape[:2], spec):
            scores.append((sharpness(sharp[y : y + spec.patch, x : x + spec.patch]), index, y, x))

    n_drop = int(round(len(scores) * spec.drop))
    ranked = sorted(scores, key=lambda s: s[0])
    threshold = ranked[n_drop - 1][0] if n_drop else float("-inf")
    keep: dict[int, list[tuple[int, int]]] = {}
    for _, index, y, x in ranked[n_drop:]:
        keep.setdefault(index, []).append((y, x))

    written = 0
    for sub in ("blur", "gt"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for index in progress(sorted(keep)):
        pair = pair_set.pairs[index]
        blur, blur_depth = read_image_with_depth(pair.blur)
        sharp, sharp_depth = read_image_with_depth(pair.sharp)
        for y, x in sorted(keep[index]):
            name = f"{pair.name}_y{y:04d}_x{x:04d}.png"
            window = (slice(y, y + spec.patch), slice(x, x + spec.patch))
            write_image(out / "blur" / name, blur[window], bit_depth=min(blur_depth, 16))
            write_image(out / "gt" / name, sharp[window], bit_depth=min(sharp_depth, 16))
            written += 1
    return PrepareReport(len(pair_set.pairs), len(scores), written, n_drop, threshold)
