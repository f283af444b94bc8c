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
from jdrl.errors import ConfigError, UsageError
from jdrl.files import real_path
from jdrl.images import read_image_with_depth, write_image


@dataclass(frozen=True)
class PatchSpec:
    patch: int = 512
    overlap: float = 0.6
    drop: float = 0.3  # fraction of least sharp patches dropped

    def __post_init__(self) -> None:
        import math

        problems = []
        if isinstance(self.patch, bool) or not isinstance(self.patch, int) or self.patch < 8:
            problems.append(f"patch: {self.patch!r} must be a whole number >= 8")
        for name in ("overlap", "drop"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value < 1:
                problems.append(f"{name}: {value!r} must be >= 0 and < 1")
        if problems:
            raise ConfigError("; ".join(problems))

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


def check_output(pair_set: PairSet, out_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse an output folder that is, or lies inside, the dataset read (or holds it), and - without
    ``overwrite`` - one whose ``blur/`` or ``gt/`` already holds files (patches would mix with them)."""
    out = real_path(Path(out_dir).expanduser())
    root = real_path(Path(pair_set.root).expanduser())
    inputs = {root if root.is_dir() else root.parent}
    inputs |= {real_path(p).parent for pair in pair_set.pairs for p in (pair.blur, pair.sharp)}
    for folder in sorted(inputs):
        if out == folder or out.is_relative_to(folder) or folder.is_relative_to(out):
            raise UsageError(f"-o {out_dir}: the output must lie outside the dataset it reads ({folder}); "
                             "patches written there would become part of it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out_dir} is a file, not a folder")
    existing = [p for sub in ("blur", "gt") if (out / sub).is_dir() for p in (out / sub).iterdir()]
    if existing and not overwrite:
        raise UsageError(f"-o {out_dir} already holds {len(existing)} file(s) in blur/ or gt/ (e.g. {existing[0].name}); "
                         "choose an empty folder, or pass --overwrite to write into it")


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
    overwrite: bool = False,
) -> PrepareReport:
    """Write ``OUT/blur/NAME_yY_xX.png`` and ``OUT/gt/...`` for the kept patches.

    Refused (before anything is read): ``OUT`` inside the dataset or holding it, and - unless
    ``overwrite`` - an ``OUT`` whose ``blur/`` or ``gt/`` already holds files (see :func:`check_output`).
    """
    check_output(pair_set, out_dir, overwrite)
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
