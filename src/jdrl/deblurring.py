"""Deblurring image files: inputs on disk -> results on disk, as a library call.

:func:`deblur_files` is what ``jdrl deblur`` runs. Inputs are files, folders (their
images, not recursive) or glob patterns. Each result is ``out_dir/<input stem>.png`` at
the input's bit depth (8 -> 8, 16 or float -> 16) unless ``bit_depth`` says otherwise.
Everything that can be checked before the first image runs is checked first: missing
paths, two inputs that would write the same file, outputs that would overwrite an
input or (without ``overwrite=True``) any existing file. An image that fails later
(unreadable, too large, out of memory) is listed and the others are still processed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jdrl.errors import DatasetError, VerificationError
from jdrl.files import file_problem, real_path
from jdrl.nets.tiling import tile_hint
from jdrl.progress import bar, progress
from jdrl.runtime import net_device

if TYPE_CHECKING:
    import torch
    from torch import nn

    from jdrl.reblur.module import ReblurModule

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Job:
    """One image to deblur and where its result goes."""

    source: Path
    target: Path


@dataclass(frozen=True)
class Failure:
    """An input that was not deblurred, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class DeblurReport:
    """What :func:`deblur_files` wrote and what it did not (``failures``: refused up front or failed)."""

    written: list[Path] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    blur_maps: list[Path] = field(default_factory=list)  # with ``reblur=``: each 16-bit map (previews beside)

    @property
    def ok(self) -> bool:
        return not self.failures


def expand_inputs(specs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Failure]]:
    """The image files named by ``specs`` (in order, each once) and the specs that named none."""
    from jdrl.images import is_image_file

    found: list[Path] = []
    failures: list[Failure] = []
    for spec in map(str, specs):
        path = Path(spec).expanduser()
        matches: list[Path] = []
        problem = file_problem(path, allow_empty=True)
        if problem is None:
            matches = [path]
        elif problem == "is a folder, not a file":
            matches = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
            if not matches:
                failures.append(Failure(spec, "folder holds no images"))
        elif GLOB_CHARACTERS & set(spec):
            matches = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file() and is_image_file(p))
            if not matches:
                failures.append(Failure(spec, "pattern matches no image files"))
        else:
            failures.append(Failure(spec, "no such file or folder" if problem == "no such file" else problem))
        found.extend(matches)
    return _unique(found), failures


def _unique(paths: list[Path]) -> list[Path]:
    """``paths`` without repeats of the same file (named twice, or via a folder and a pattern)."""
    seen: set[Path] = set()
    unique = []
    for path in paths:
        key = real_path(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def plan_jobs(sources: Sequence[Path], out_dir: Path, overwrite: bool = False) -> tuple[list[Job], list[Failure]]:
    """Pair each input with ``out_dir/<stem>.png``; refuse outputs that would overwrite an input or an existing file.

    Two inputs with the same stem would write the same file: that is an error for
    the whole run (raised before any work), as silently keeping one would lose work.
    """
    by_stem: dict[str, list[Path]] = {}
    for source in sources:
        by_stem.setdefault(source.stem, []).append(source)
    clashes = [f"{', '.join(map(str, paths))} would all be written to {out_dir / (stem + '.png')}"
               for stem, paths in by_stem.items() if len(paths) > 1]
    if clashes:
        raise DatasetError("the inputs (same file name stem)", clashes,
                           hint="rename them, or deblur them in separate runs into different folders")
    inputs = {real_path(source) for source in sources}
    jobs, refused = [], []
    for source in sources:
        target = out_dir / f"{source.stem}.png"
        if real_path(target) in inputs:
            refused.append(Failure(str(source), f"refused: its output {target} is the input itself; choose another --out"))
        elif target.exists() and not overwrite:
            refused.append(Failure(str(source), f"refused: {target} exists (--overwrite replaces it)"))
        else:
            jobs.append(Job(source, target))
    return jobs, refused


BLUR_MAP_DIR, BLUR_PREVIEW_DIR = "blur_map", "blur_map_preview"  # under out_dir, one file per input stem


def blur_map_targets(job: Job) -> tuple[Path, Path]:
    """Where a job's blur map goes: ``OUT/blur_map/<stem>.png`` (16-bit) and ``OUT/blur_map_preview/<stem>.png``."""
    out_dir, name = job.target.parent, job.target.name
    return out_dir / BLUR_MAP_DIR / name, out_dir / BLUR_PREVIEW_DIR / name


def refuse_blur_map_clashes(jobs: list[Job], sources: Sequence[Path], overwrite: bool) -> tuple[list[Job], list[Failure]]:
    """The jobs whose blur-map files would overwrite an input, or (without ``overwrite``) an existing file, are
    refused, as their deblurred output would be."""
    inputs = {real_path(source) for source in sources}  # as plan_jobs: a symlink loop is named, not raised on
    kept, refused = [], []
    for job in jobs:
        targets = blur_map_targets(job)
        onto_input = [t for t in targets if real_path(t) in inputs]
        existing = [t for t in targets if t.exists()]
        if onto_input:
            refused.append(Failure(str(job.source), f"refused: its blur map {onto_input[0]} is an input; choose another "
                                                    "--out"))
        elif existing and not overwrite:
            refused.append(Failure(str(job.source), f"refused: {existing[0]} exists (--overwrite replaces it)"))
        else:
            kept.append(job)
    return kept, refused


def output_bit_depth(input_depth: int, forced: int | None) -> int:
    """``forced`` if given, else 8 for 8-bit inputs and 16 for 16-bit and float ones."""
    if forced is not None:
        return forced
    return 8 if input_depth == 8 else 16


def _reason(error: BaseException, path: Path) -> str:
    """The error message without a leading ``path: `` (the report names the path already)."""
    text = str(error)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def deblur_file(net: nn.Module, job: Job, *, tile: int | str | None = "auto", overlap: int | None = None,
                amp: str | None = None, bit_depth: int | None = None, quiet: bool = True,
                reblur: ReblurModule | None = None, blur_map_method: str = "wpn") -> Path:
    """Read, deblur and write one image (raising on an unreadable input or an unwritable output); with ``reblur``
    also its blur map (:func:`blur_map_targets`, :mod:`jdrl.reblur.blur_map`)."""
    from jdrl.images import read_image_with_depth, write_image
    from jdrl.inference import deblur_image, plan_tiles

    image, depth = read_image_with_depth(job.source)
    plan = plan_tiles(net, tile, overlap, image.shape[0], image.shape[1])  # resolved here; passed down as numbers
    result = deblur_image(net, image, tile=plan.side, overlap=plan.overlap, amp=amp,
                          progress=bar(f"tiles of {job.source.name}", quiet or plan.side is None))
    if reblur is not None:
        from jdrl.reblur.blur_map import blur_map_image, write_blur_map

        write_blur_map(*blur_map_targets(job), blur_map_image(reblur, result, image, blur_map_method), blur_map_method)
    del image
    bad = int((~np.isfinite(result)).any(axis=-1).sum())
    if bad:  # written as 8/16-bit it would be black pixels, without a word
        raise VerificationError(f"the network's output has {bad} of {result.shape[0] * result.shape[1]} pixels that "
                                "are NaN or infinite (nothing written); the weights may be damaged, or try --amp none")
    return write_image(job.target, result, output_bit_depth(depth, bit_depth))


def deblur_files(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    net: nn.Module,
    *,
    tile: int | str | None = "auto",
    overlap: int | None = None,
    amp: str | None = None,
    bit_depth: int | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    reblur: ReblurModule | None = None,
    blur_map_method: str = "wpn",
) -> DeblurReport:
    """Deblur every image named by ``inputs`` into ``out_dir`` with ``net`` (on its own device).

    ``tile``: ``"auto"`` (the network's tile hint, :func:`jdrl.nets.tiling.tile_hint`:
    whole up to its pixel limit, else its tile side; without a hint 2 MP and 512 px on
    the CPU / 1024 on CUDA), a side in pixels, or ``None`` (whole). ``overlap`` defaults
    to the hint's (256 px without one; at most half the tile). Returns the files written and every input that was not deblurred, with
    the reason; raises :class:`~jdrl.errors.DatasetError` before any work when two
    inputs would write the same file. ``reblur`` (a trained reblurring module,
    :func:`jdrl.reblur.blur_map.load_reblur`) also writes each input's blur map
    (``OUT/blur_map/<stem>.png``, 16-bit, radius = value / 4096 px, and ``OUT/blur_map_preview/<stem>.png``)
    by ``blur_map_method`` (``wpn`` or ``kernel``, :mod:`jdrl.reblur.blur_map`), on the network's device.
    """
    import torch

    from jdrl.inference import resolve_overlap

    out_dir = Path(out_dir).expanduser()
    device = net_device(net)
    overlap = resolve_overlap(tile, overlap, device.type, tile_hint(net))
    sources, failures = expand_inputs(inputs)
    jobs, refused = plan_jobs(sources, out_dir, overwrite)
    if reblur is not None:
        from jdrl.reblur.blur_map import check_method

        check_method(reblur, blur_map_method)
        reblur.to(device).eval()
        jobs, refused_maps = refuse_blur_map_clashes(jobs, sources, overwrite)
        refused += refused_maps
    report = DeblurReport(failures=failures + refused)
    for job in progress(jobs, desc="deblur", quiet=quiet, unit="img"):
        try:
            report.written.append(deblur_file(net, job, tile=tile, overlap=overlap, amp=amp, bit_depth=bit_depth,
                                              quiet=quiet, reblur=reblur, blur_map_method=blur_map_method))
            if reblur is not None:
                report.blur_maps.append(blur_map_targets(job)[0])
        except torch.OutOfMemoryError:
            _free_cache(device)
            report.failures.append(Failure(str(job.source), "out of memory; try --tile 512 (or smaller)"))
        except MemoryError:
            report.failures.append(Failure(str(job.source), "out of memory (the image is too large for this machine)"))
        except (OSError, VerificationError) as error:  # ImageReadError, unwritable folder, full disk, NaN output
            report.failures.append(Failure(str(job.source), _reason(error, job.source)))
    return report


def _free_cache(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
