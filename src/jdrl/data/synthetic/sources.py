"""Where the sharp photos come from: scikit-image's bundled samples, a folder, and which are big enough."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jdrl.data.synthetic.misalignment import margin_for
from jdrl.data.synthetic.params import SynthParams
from jdrl.errors import DatasetError
from jdrl.files import folder_problem
from jdrl.images import is_image_file, read_image

#: colour photographs shipped inside scikit-image (no download needed)
DEFAULT_SOURCE_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
)


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        image = left if name.endswith("left") else right
    else:
        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3].astype(np.float32) / 255.0


def default_sources(names: Sequence[str] = DEFAULT_SOURCE_NAMES) -> list[tuple[str, np.ndarray]]:
    """The bundled sample photos of scikit-image as ``(name, float RGB)``."""
    return [(name, _skimage_photo(name)) for name in names]


def folder_sources(folder: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """Every image in ``folder`` (sorted by name) as ``(stem, float RGB)``."""
    problem = folder_problem(folder)
    if problem:
        raise DatasetError(str(folder), [f"{folder}: {problem} (the sharp photos to synthesize from are a folder)"])
    paths = sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))
    if not paths:
        raise DatasetError(str(folder), [f"{folder}: no images to synthesize from"])
    return [(p.stem, read_image(p)) for p in paths]


def usable_sources(
    sources: Sequence[tuple[str, np.ndarray]], params: SynthParams, warn: Callable[[str], None] = print
) -> list[tuple[str, np.ndarray]]:
    """The sources big enough for ``params`` (the window a pair needs); the others are named in one warning.

    Checked before anything is written, so a run never stops half-way on a small photo.
    """
    side = params.size + 2 * margin_for(params)
    fit = [(name, image) for name, image in sources if min(image.shape[:2]) >= side]
    small = [f"{name}: {image.shape[1]}x{image.shape[0]}" for name, image in sources if min(image.shape[:2]) < side]
    if not fit:
        raise DatasetError("the source images", [f"{entry} is smaller than {side}x{side}" for entry in small],
                           hint=f"every pair needs a {side}px window (size {params.size} plus the misalignment "
                                "margin): use a smaller --size or less misalignment")
    if small:
        warn(f"warning: {len(small)} source image(s) smaller than the {side}px window a pair needs are not used: "
             + ", ".join(small))
    return fit
