"""Synthetic misaligned defocus pairs with a known true alignment (SPEC section 4).

Model, per pair (every number is drawn from a generator seeded with
``(seed, index)`` and recorded in the pair's metadata):

1. a square window is cut from a sharp source image; its centre is the
   **aligned** truth, in the blurry image's geometry;
2. a smooth random inverse-depth field ``D`` (bicubic upsampling of a 4x4 grid
   plus a planar ramp) and a focus plane ``D_f`` give the thin-lens
   circle-of-confusion radius ``r = r_peak * |D - D_f| / max |D - D_f|``;
3. the **blurry** image is the aligned image under a spatially varying disk
   blur of radius ``r`` (disks at 0.5 px steps, linearly blended per pixel),
   with a small exposure gain and Gaussian noise;
4. the **ground truth** is the window seen through a zoom ``s`` about the
   centre and a shift ``t``, the two misalignments the paper reports:
   ``gt(x) = aligned(s * x + b)`` with ``b = c (1 - s) + t``, ``c`` the centre.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from jdrl.data.augment import dihedral
from jdrl.images import is_image_file, read_image, write_image

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

#: misalignment strengths: (max |shift| in px, max |zoom - 1|)
MISALIGNMENT_LEVELS = {
    "none": (0.0, 0.0),
    "dpdd": (2.0, 0.01),
    "sdd": (6.0, 0.03),
    "severe": (10.0, 0.05),
}

RADIUS_STEP = 0.5  # px between the disk blurs that are blended per pixel


@dataclass(frozen=True)
class SynthParams:
    """Ranges the per-pair parameters are drawn from."""

    size: int = 256  # output side in px
    r_max: float = 6.0  # largest circle-of-confusion radius in px
    shift: float = 5.0  # max |t_x|, |t_y| in px
    zoom: float = 0.03  # max |s - 1|
    exposure: float = 0.05  # max |gain - 1| of the blurry image
    noise: float = 0.01  # max Gaussian sigma on the blurry image
    augment: bool = True  # random flips/rotations of the source window

    def generator_params(self) -> SynthParams:
        """Just the generator's parameters (drops the fields a subclass such as a training config adds)."""
        return SynthParams(**{f.name: getattr(self, f.name) for f in fields(SynthParams)})

    @classmethod
    def with_misalignment(cls, level: str, **overrides) -> SynthParams:
        try:
            shift, zoom = MISALIGNMENT_LEVELS[level]
        except KeyError:
            raise ValueError(f"misalignment must be one of {', '.join(MISALIGNMENT_LEVELS)}") from None
        return cls(shift=shift, zoom=zoom, **overrides)


@dataclass
class SyntheticPair:
    blur: np.ndarray
    sharp: np.ndarray  # the misaligned ground truth
    aligned: np.ndarray  # the truth in the blurry image's geometry
    meta: dict


# ----------------------------------------------------------------------------- sources


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
    paths = sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))
    if not paths:
        raise FileNotFoundError(f"{folder}: no images to synthesize from")
    return [(p.stem, read_image(p)) for p in paths]


# ------------------------------------------------------------------------------ model


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Normalised disk PSF with anti-aliased edges (pixel area covered by the circle)."""
    half = math.ceil(radius - 0.5) if radius > 0.5 else 0
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = np.arange(-half, half + 1, dtype=np.float64)
    sub = (grid[:, None] + offsets[None, :]).reshape(-1)
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= radius**2
    size = 2 * half + 1
    kernel = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    if kernel.sum() == 0:  # radius ~ 0: the identity
        kernel[half, half] = 1.0
    return (kernel / kernel.sum()).astype(np.float32)


def smooth_field(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """A smooth random field in [0, 1] and the numbers that define it."""
    grid = rng.uniform(0.0, 1.0, size=(4, 4))
    ramp = rng.uniform(-1.0, 1.0, size=2)
    field = cv2.resize(grid.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    coords = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    field = field + ramp[0] * coords[None, :] + ramp[1] * coords[:, None]
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    return field, {"depth_grid": grid.round(6).tolist(), "depth_ramp": ramp.round(6).tolist()}


def coc_radius(depth: np.ndarray, focus: float, r_peak: float) -> np.ndarray:
    """Thin lens: the circle of confusion grows linearly with |inverse depth - focus|."""
    distance = np.abs(depth - focus)
    return (r_peak * distance / max(float(distance.max()), 1e-6)).astype(np.float32)


def variable_disk_blur(image: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Per-pixel disk blur: blurs at ``RADIUS_STEP`` px steps, blended linearly per pixel."""
    top = float(radius.max())
    if top <= 0:
        return image.copy()
    levels = np.arange(0.0, top + RADIUS_STEP, RADIUS_STEP)
    position = np.clip(radius / RADIUS_STEP, 0, len(levels) - 1)
    out = np.zeros_like(image)
    for k, level in enumerate(levels):
        weight = np.clip(1.0 - np.abs(position - k), 0.0, 1.0)
        if not weight.any():
            continue
        blurred = image if level == 0 else cv2.filter2D(image, -1, disk_kernel(level), borderType=cv2.BORDER_REFLECT)
        out += weight[:, :, None] * blurred
    return out


def similarity_warp(image: np.ndarray, zoom: float, offset: tuple[float, float], size: int) -> np.ndarray:
    """``out(x) = image(zoom * x + offset)`` for ``x`` in a ``size`` square (bicubic)."""
    matrix = np.array([[zoom, 0.0, offset[0]], [0.0, zoom, offset[1]]], dtype=np.float64)
    warped = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )
    return np.clip(warped, 0.0, 1.0)


def true_flow(meta: dict, size: int | None = None) -> np.ndarray:
    """The exact flow ``(2, H, W)`` from the aligned/blurry geometry to the ground truth.

    ``gt(p + flow(p)) == aligned(p)``, the convention of :mod:`jdrl.flow`.
    """
    size = size or meta["size"]
    zoom, (bx, by) = meta["zoom"], meta["offset"]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    return np.stack([(xs - bx) / zoom - xs, (ys - by) / zoom - ys]).astype(np.float32)


def margin_for(params: SynthParams) -> int:
    """Border needed around the output so the zoomed/shifted view stays inside the window."""
    return int(math.ceil(params.zoom * params.size * 0.75 + params.shift * 1.5)) + 4


def usable_sources(
    sources: Sequence[tuple[str, np.ndarray]], params: SynthParams, warn: Callable[[str], None] = print
) -> list[tuple[str, np.ndarray]]:
    """The sources big enough for ``params`` (the window a pair needs); the others are named in one warning.

    Checked before anything is written, so a run never stops half-way on a small photo.
    """
    from jdrl.errors import DatasetError

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


def make_pair(source: np.ndarray, params: SynthParams, seed: int, index: int, source_name: str = "") -> SyntheticPair:
    """Synthesize pair ``index`` from ``source``; deterministic in ``(seed, index)``."""
    rng = np.random.default_rng([seed, index])
    size, margin = params.size, margin_for(params)
    window_side = size + 2 * margin
    height, width = source.shape[:2]
    if min(height, width) < window_side:
        raise ValueError(
            f"source {source_name or ''} is {width}x{height}, smaller than the {window_side}px window "
            f"needed for size {size}; use a smaller size or less misalignment"
        )
    top, left = int(rng.integers(0, height - window_side + 1)), int(rng.integers(0, width - window_side + 1))
    window = source[top : top + window_side, left : left + window_side]
    flip = int(rng.integers(0, 8)) if params.augment else 0
    window = np.ascontiguousarray(dihedral(window, flip), dtype=np.float32)
    aligned = window[margin : margin + size, margin : margin + size].copy()

    zoom = 1.0 + float(rng.uniform(-params.zoom, params.zoom))
    shift = rng.uniform(-params.shift, params.shift, size=2)
    centre = (size - 1) / 2.0
    offset = (centre * (1 - zoom) + float(shift[0]), centre * (1 - zoom) + float(shift[1]))
    sharp = similarity_warp(window, zoom, (offset[0] + margin, offset[1] + margin), size)

    depth, depth_meta = smooth_field(rng, size)
    focus = float(rng.uniform(0.0, 1.0))
    r_peak = float(params.r_max * rng.uniform(0.5, 1.0))
    gain = 1.0 + float(rng.uniform(-params.exposure, params.exposure))
    sigma = float(rng.uniform(0.0, params.noise))
    noise = rng.standard_normal(aligned.shape).astype(np.float32)

    blur = variable_disk_blur(aligned, coc_radius(depth, focus, r_peak))
    if gain != 1.0 or sigma > 0:
        blur = np.clip(blur * gain + sigma * noise, 0.0, 1.0)
    meta = {
        "index": index,
        "seed": seed,
        "source": source_name,
        "window": [top, left, window_side],
        "dihedral": flip,
        "size": size,
        "zoom": zoom,
        "shift": [float(shift[0]), float(shift[1])],
        "offset": [offset[0], offset[1]],
        "focus": focus,
        "r_peak": r_peak,
        "exposure_gain": gain,
        "noise_sigma": sigma,
        **depth_meta,
    }
    return SyntheticPair(blur=blur.astype(np.float32), sharp=sharp, aligned=aligned, meta=meta)


def apply_recorded_misalignment(aligned: np.ndarray, meta: dict) -> np.ndarray:
    """Re-create the ground truth from the aligned image and the recorded zoom/offset."""
    return similarity_warp(aligned, meta["zoom"], tuple(meta["offset"]), meta["size"])


# ------------------------------------------------------------------------------ files


def write_synthetic(
    out_dir: str | os.PathLike,
    n: int,
    params: SynthParams = SynthParams(),
    seed: int = 0,
    sources: Sequence[tuple[str, np.ndarray]] | None = None,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
    warn: Callable[[str], None] = print,
) -> Path:
    """Write ``OUT/{blur,gt,aligned}/NNNNN.png`` and ``OUT/meta.jsonl`` (one line per pair)."""
    out = Path(out_dir)
    sources = usable_sources(sources if sources is not None else default_sources(), params, warn)
    for sub in ("blur", "gt", "aligned"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    with open(out / "meta.jsonl", "w") as meta_file:
        for index in progress(range(n)):
            name, source = sources[index % len(sources)]
            pair = make_pair(source, params, seed, index, name)
            file = f"{index:05d}.png"
            write_image(out / "blur" / file, pair.blur)
            write_image(out / "gt" / file, pair.sharp)
            write_image(out / "aligned" / file, pair.aligned)
            record = {"file": file, **pair.meta, "params": asdict(params)}
            meta_file.write(json.dumps(record) + "\n")
    return out


def read_meta(folder: str | os.PathLike) -> dict[str, dict]:
    """``meta.jsonl`` of a synthetic folder as ``{file stem: record}``."""
    records = {}
    with open(Path(folder) / "meta.jsonl") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                records[Path(record["file"]).stem] = record
    return records


__all__ = [
    "SynthParams",
    "SyntheticPair",
    "make_pair",
    "usable_sources",
    "write_synthetic",
    "read_meta",
    "default_sources",
    "folder_sources",
    "true_flow",
    "apply_recorded_misalignment",
]
