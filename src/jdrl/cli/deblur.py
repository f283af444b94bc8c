"""``jdrl deblur``: deblur photos of any size with a trained checkpoint.

Inputs are files, folders (their images, not recursive) or glob patterns (expanded
here too, for shells that do not). Each result is ``OUT_DIR/<input stem>.png`` at the
input's bit depth (8 -> 8, 16 or float -> 16) unless ``--bit-depth`` says otherwise.
Everything that can be checked before the first image runs is checked first
(duplicate stems, outputs that would overwrite an input, missing paths); an
unreadable image is reported at the end and the others are still processed.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HELP = "deblur images of any size with a trained checkpoint (tiled, 8/16-bit PNG out)"
GLOB_CHARACTERS = frozenset("*?[")
DEFAULT_OVERLAP = 256  # the paper's UNet sees +-112 px: 2 * 112 + the 32 px cross-fade gives whole-image output


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


def tile_argument(text: str) -> int | str:
    """``--tile``: a positive number of pixels or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or 'auto', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"tile must be positive, got {value}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (not recursive) or glob patterns")
    parser.add_argument("-o", "--out", required=True, help="output folder (gets <input stem>.png)")
    parser.add_argument("--checkpoint", required=True, help="a jdrl checkpoint or an authors' released file")
    parser.add_argument("--net", help="network name, to check the checkpoint or pick one in a released file")
    parser.add_argument(
        "--tile",
        type=tile_argument,
        default="auto",
        help="run in overlapping tiles of this side (bounded memory); 'auto' (default): whole up to 2 MP, "
        "else 512 on the CPU / 1024 on CUDA",
    )
    parser.add_argument(
        "--overlap",
        type=non_negative,
        help=f"pixels shared by neighbouring tiles; {DEFAULT_OVERLAP} reproduces the whole-image output of the "
        f"paper's UNet, smaller is faster but can leave faint seams (default: {DEFAULT_OVERLAP}, at most half the tile)",
    )
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), help="output bit depth (default: that of each input)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--amp", choices=("bf16", "fp16"), help="mixed precision on CUDA (ignored on the CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def expand_inputs(specs: list[str]) -> tuple[list[Path], list[Failure]]:
    """The image files named by ``specs`` (in order, each once) and the specs that named none."""
    from jdrl.images import is_image_file

    found: list[Path] = []
    failures: list[Failure] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_file():
            matches = [path]
        elif path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
            if not matches:
                failures.append(Failure(spec, "folder holds no images"))
        elif GLOB_CHARACTERS & set(spec):
            matches = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file() and is_image_file(p))
            if not matches:
                failures.append(Failure(spec, "pattern matches no image files"))
        else:
            failures.append(Failure(spec, "no such file or folder"))
            matches = []
        found.extend(matches)
    return _unique(found), failures


def _unique(paths: list[Path]) -> list[Path]:
    """``paths`` without repeats of the same file (named twice, or via a folder and a pattern)."""
    seen: set[Path] = set()
    unique = []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def plan_jobs(sources: list[Path], out_dir: Path) -> tuple[list[Job], list[Failure]]:
    """Pair each input with ``out_dir/<stem>.png``; refuse outputs that would overwrite an input.

    Two inputs with the same stem would write the same file: that is an error for
    the whole run (raised before any work), as silently keeping one would lose work.
    """
    from jdrl.errors import DatasetError

    by_stem: dict[str, list[Path]] = {}
    for source in sources:
        by_stem.setdefault(source.stem, []).append(source)
    clashes = [f"{', '.join(map(str, paths))} would all be written to {out_dir / (stem + '.png')}"
               for stem, paths in by_stem.items() if len(paths) > 1]
    if clashes:
        raise DatasetError("the inputs (same file name stem)", clashes,
                           hint="rename them, or deblur them in separate runs into different folders")
    inputs = {source.resolve() for source in sources}
    jobs, refused = [], []
    for source in sources:
        target = out_dir / f"{source.stem}.png"
        if target.resolve() in inputs:
            refused.append(Failure(str(source), f"refused: its output {target} is the input itself; choose another --out"))
        else:
            jobs.append(Job(source, target))
    return jobs, refused


def choose_device(name: str | None):
    """``torch.device`` for ``--device`` (CUDA when available if not given), with a readable error."""
    import torch

    from jdrl.errors import ConfigError

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"--device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return device


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


def deblur_file(net, job: Job, args: argparse.Namespace, device) -> None:
    """Read, deblur and write one image (raising on an unreadable input or an unwritable output)."""
    from jdrl.images import read_image_with_depth, write_image
    from jdrl.inference import deblur_image, resolve_tile
    from jdrl.progress import bar

    image, depth = read_image_with_depth(job.source)
    tile = resolve_tile(args.tile, image.shape[0], image.shape[1], device)
    result = deblur_image(net, image, tile=tile, overlap=args.overlap, amp=args.amp,
                          progress=bar(f"tiles of {job.source.name}", args.quiet or tile is None))
    del image
    write_image(job.target, result, output_bit_depth(depth, args.bit_depth))


def run_jobs(net, jobs: list[Job], args: argparse.Namespace, device) -> list[Failure]:
    """Deblur every job, collecting (not raising) per-image failures."""
    import torch

    from jdrl.progress import progress

    failures = []
    for job in progress(jobs, desc="deblur", quiet=args.quiet, unit="img"):
        try:
            deblur_file(net, job, args, device)
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            failures.append(Failure(str(job.source), "out of memory; try --tile 512 (or smaller)"))
        except OSError as error:  # ImageReadError, unwritable output folder, full disk
            failures.append(Failure(str(job.source), _reason(error, job.source)))
    return failures


def report_failures(failures: list[Failure]) -> None:
    print(f"jdrl deblur: {len(failures)} input(s) not deblurred:", file=sys.stderr)
    for failure in failures:
        print(f"  {failure}", file=sys.stderr)


def load_net(args: argparse.Namespace, device):
    """The checkpoint's network in eval mode on ``device`` (channels-last on CUDA)."""
    import torch

    from jdrl.checkpoint import load_network

    net, _ = load_network(args.checkpoint, net=args.net)
    net.to(device)
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    return net


def resolve_overlap(tile: int | str | None, overlap: int | None, device_type: str = "cpu") -> int:
    """``--overlap``, or its default (256 px, at most half the tile); refuses one not below the tile.

    With ``--tile auto`` the tile that large images get on ``device_type`` is the limit,
    so the check happens before any image runs rather than in the middle of a run.
    """
    from jdrl.errors import ConfigError
    from jdrl.inference import AUTO_TILE_SIDE

    largest = AUTO_TILE_SIDE.get(device_type, AUTO_TILE_SIDE["cpu"]) if tile == "auto" else tile
    if overlap is None:
        return min(DEFAULT_OVERLAP, largest // 2) if isinstance(largest, int) else DEFAULT_OVERLAP
    if isinstance(largest, int) and overlap >= largest:
        raise ConfigError(f"--overlap {overlap} must be smaller than the tile ({largest} px)")
    return overlap


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    device = choose_device(args.device)
    args.overlap = resolve_overlap(args.tile, args.overlap, device.type)
    out_dir = Path(args.out).expanduser()
    sources, failures = expand_inputs(args.inputs)
    jobs, refused = plan_jobs(sources, out_dir)
    failures += refused
    for failure in failures:
        print(f"jdrl deblur: skipping {failure}", file=sys.stderr)
    job_failures = run_jobs(load_net(args, device), jobs, args, device) if jobs else []
    failures += job_failures
    done = len(jobs) - len(job_failures)
    seconds = time.perf_counter() - start
    print(f"deblurred {done} of {done + len(failures)} input(s) into {out_dir} in {seconds:.1f} s on {device}")
    if failures:
        report_failures(failures)
        return 1
    return 0
