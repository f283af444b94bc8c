"""Finding (blurry, sharp) pairs on disk and checking them before anything runs.

Supported layouts (``layout=`` names, auto-detected in this order):

``csv``        a CSV file with columns ``blur,sharp`` (paths relative to the file)
``dpdd``       ``ROOT/{train,val,test}_c/{source,target}/``  (pick the split)
``synthetic``  ``ROOT/{blur,gt,aligned}/`` as written by ``jdrl synth``
``sdd``        ``ROOT/{blur,gt}/``
``realdof``    ``ROOT/{source,target}/``
``folders``    any two folders, matched by file stem (names guessed, or given)

Every problem found (a file with no partner, an unreadable file, sizes that
differ, an image smaller than the crop) is collected, and reported together in
one :class:`DatasetError` listing every path, so a run never dies mid-way.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from jdrl.errors import DatasetError, ImageReadError, UsageError
from jdrl.files import file_problem, folder_problem, read_text
from jdrl.images import is_image_file, read_image_raw

BLUR_NAMES = ("blur", "blurry", "blurred", "input", "inputs", "source", "lq", "degraded")
SHARP_NAMES = ("gt", "sharp", "target", "groundtruth", "ground_truth", "hq", "clean", "label")
DPDD_SPLITS = ("train", "val", "test")
MIN_SCORED_SIDE = 7  # px: SSIM's 7x7 window; smaller images cannot be scored (checked up front by eval and train)


@dataclass(frozen=True)
class ImagePair:
    name: str
    blur: Path
    sharp: Path
    aligned: Path | None = None  # the true aligned sharp image (synthetic data only)


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class PairSet:
    """The pairs of a dataset, where they came from, and what is wrong with them."""

    root: Path
    layout: str
    pairs: list[ImagePair]
    problems: list[Problem] = field(default_factory=list)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (H, W)

    def __len__(self) -> int:
        return len(self.pairs)


# --------------------------------------------------------------------------- layouts


def _images_by_stem(folder: Path, problems: list[Problem]) -> dict[str, Path]:
    if not folder.is_dir():
        problems.append(Problem(folder, "folder does not exist"))
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not is_image_file(path):
            continue
        if not path.is_file():  # named like an image: a folder, a broken or looping link - never silently skipped
            what = "a folder" if path.is_dir() else "a broken or looping link" if path.is_symlink() else "not a file"
            problems.append(Problem(path, f"named like an image but is {what}"))
            continue
        if path.stem in found:
            problems.append(Problem(path, f"same name as {found[path.stem].name}; which one is meant?"))
            continue
        found[path.stem] = path
    if not found:
        problems.append(Problem(folder, "no image files (.png .jpg .tif .bmp)"))
    return found


def match_folders(blur_dir: Path, sharp_dir: Path, aligned_dir: Path | None = None) -> tuple[list[ImagePair], list[Problem]]:
    """Pair the images of two (or three) folders by file stem."""
    problems: list[Problem] = []
    blur = _images_by_stem(blur_dir, problems)
    sharp = _images_by_stem(sharp_dir, problems)
    aligned = _images_by_stem(aligned_dir, problems) if aligned_dir is not None else {}
    for stem in sorted(blur.keys() - sharp.keys()):
        problems.append(Problem(blur[stem], f"no partner in {sharp_dir}"))
    for stem in sorted(sharp.keys() - blur.keys()):
        problems.append(Problem(sharp[stem], f"no partner in {blur_dir}"))
    pairs = []
    for stem in sorted(blur.keys() & sharp.keys()):
        if aligned_dir is not None and stem not in aligned:
            problems.append(Problem(blur[stem], f"no aligned image in {aligned_dir}"))
            continue
        pairs.append(ImagePair(stem, blur[stem], sharp[stem], aligned.get(stem)))
    return pairs, problems


MAX_CSV_BYTES = 64 * 2**20  # a list of a million pairs; a larger "CSV" is not a pair list
MAX_CSV_FIELD = 4096  # a path longer than PATH_MAX is not a path


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """``(row number, fields)`` of a CSV pair list's data rows; ``DatasetError`` when it is not one."""
    try:
        text = read_text(path, MAX_CSV_BYTES, "CSV list of pairs")
    except ValueError as error:
        raise DatasetError(str(path), [Problem(path, str(error))]) from None
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline="")):
            if any(len(field) > MAX_CSV_FIELD for field in row):
                raise DatasetError(str(path), [Problem(path, f"row {len(rows) + 1}: a field of over {MAX_CSV_FIELD} "
                                                             "characters is not a path")])
            rows.append(row)
    except csv.Error as error:
        raise DatasetError(str(path), [Problem(path, f"not a readable CSV list of pairs ({error})")]) from None
    numbered = [(line, row) for line, row in enumerate(rows, start=1) if row and not row[0].startswith("#")]
    if numbered and _is_header(numbered[0][1]):
        numbered = numbered[1:]
    return numbered


def _is_header(row: list[str]) -> bool:
    """``blur,sharp`` or any pair of the folder names the folder layout accepts (``input,gt``, ...)."""
    names = [c.strip().lower() for c in row[:2]]
    return len(names) == 2 and names[0] in BLUR_NAMES and names[1] in SHARP_NAMES


def _csv_pairs(path: Path) -> tuple[list[ImagePair], list[Problem]]:
    problems: list[Problem] = []
    pairs: list[ImagePair] = []
    names: Counter[str] = Counter()
    listed: dict[tuple[Path, Path], int] = {}
    rows = _csv_rows(path)
    if not rows:
        problems.append(Problem(path, "lists no pairs (expected rows blur,sharp of paths relative to the file)"))
    for line, row in rows:
        if len(row) < 2:
            problems.append(Problem(path, f"row {line}: expected two columns blur,sharp"))
            continue
        blur, sharp = (path.parent / row[0].strip(), path.parent / row[1].strip())
        if (blur, sharp) in listed:
            problems.append(Problem(path, f"row {line} repeats the pair of row {listed[blur, sharp]} "
                                          f"({row[0].strip()}, {row[1].strip()}); it would count twice"))
            continue
        listed[blur, sharp] = line
        bad = [(p, file_problem(p)) for p in (blur, sharp)]
        bad = [(p, "listed but missing" if why == "no such file" else why) for p, why in bad if why]
        problems += [Problem(p, f"{why} (listed in {path.name} row {line})") for p, why in bad]
        if not bad:
            names[blur.stem] += 1
            name = blur.stem if names[blur.stem] == 1 else f"{blur.stem}_{names[blur.stem]}"
            pairs.append(ImagePair(name, blur, sharp))
    return pairs, problems


def _named_subfolders(root: Path) -> tuple[Path | None, Path | None]:
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    blur = next((subdirs[n] for n in BLUR_NAMES if n in subdirs), None)
    sharp = next((subdirs[n] for n in SHARP_NAMES if n in subdirs), None)
    return blur, sharp


def detect_layout(root: str | os.PathLike) -> str:
    """Name the layout of ``root`` (see the module docstring), or raise ``DatasetError``."""
    root = Path(root)
    if root.suffix.lower() == ".csv" and file_problem(root) != "no such file":
        return "csv"  # whatever it is, the CSV reader names what is wrong with it
    problem = folder_problem(root)
    if problem == "no such folder":
        raise DatasetError(str(root), [Problem(root, "no such folder or CSV file")])
    if problem == "is not a folder":
        what = file_problem(root) or "is a file"
        raise DatasetError(str(root), [Problem(root, f"{what.removesuffix(', not a file')}: a dataset is a folder "
                                                     "(or a .csv list of pairs)")])
    if problem:
        raise DatasetError(str(root), [Problem(root, problem)])
    if any((root / f"{split}_c" / "source").is_dir() for split in DPDD_SPLITS):
        return "dpdd"
    if all((root / d).is_dir() for d in ("blur", "gt", "aligned")):
        return "synthetic"
    if (root / "blur").is_dir() and (root / "gt").is_dir():
        return "sdd"
    if (root / "source").is_dir() and (root / "target").is_dir():
        return "realdof"
    if all(_named_subfolders(root)):
        return "folders"
    raise DatasetError(
        str(root),
        [Problem(root, "layout not recognised")],
        hint="expected blur/+gt/ (SDD), {train,val,test}_c/{source,target}/ (DPDD), "
        "source/+target/ (RealDOF), two folders such as input/+sharp/, or a CSV of pairs",
    )


def discover_pairs(
    root: str | os.PathLike,
    layout: str = "auto",
    split: str = "train",
    blur_dir: str | os.PathLike | None = None,
    sharp_dir: str | os.PathLike | None = None,
) -> PairSet:
    """List the pairs of a dataset (no image is decoded here; see :func:`validate`)."""
    root = Path(root)
    if blur_dir is not None or sharp_dir is not None:
        if blur_dir is None or sharp_dir is None:
            raise UsageError("give both --blur-dir and --sharp-dir (data.*.blur_dir and sharp_dir), or neither")
        layout = "folders"
    elif layout == "auto":
        layout = detect_layout(root)
    if layout == "csv":
        pairs, problems = _csv_pairs(root)
    elif layout == "dpdd":
        if split not in DPDD_SPLITS:
            raise UsageError(f"DPDD split must be one of {DPDD_SPLITS}, not {split!r}")
        base = root / f"{split}_c"
        pairs, problems = match_folders(base / "source", base / "target")
    elif layout == "synthetic":
        pairs, problems = match_folders(root / "blur", root / "gt", root / "aligned")
    elif layout == "sdd":
        pairs, problems = match_folders(root / "blur", root / "gt")
    elif layout == "realdof":
        pairs, problems = match_folders(root / "source", root / "target")
    elif layout == "folders":
        if blur_dir is None:
            guessed_blur, guessed_sharp = _named_subfolders(root)
            if guessed_blur is None or guessed_sharp is None:
                raise DatasetError(str(root), [Problem(root, "cannot tell which subfolder is blurry and which sharp")])
            blur_dir, sharp_dir = guessed_blur, guessed_sharp
        pairs, problems = match_folders(_under(root, blur_dir), _under(root, sharp_dir))
    else:
        raise UsageError(f"unknown layout {layout!r}; choose auto, csv, dpdd, synthetic, sdd, realdof or folders")
    return PairSet(root=root, layout=layout, pairs=pairs, problems=problems)


def _under(root: Path, folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    return folder if folder.is_absolute() or folder.exists() else root / folder


# ------------------------------------------------------------------------ validation


def _probe(path: Path) -> tuple[int, int] | str:
    try:
        raw = read_image_raw(path)
    except ImageReadError as error:
        return str(error).removeprefix(f"{path}: ")
    return raw.shape[0], raw.shape[1]


def validate(
    pair_set: PairSet,
    min_size: int | None = None,
    workers: int | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    min_what: str = "crop",
) -> PairSet:
    """Decode every image once and record what is wrong, without raising.

    Returns a new :class:`PairSet` whose ``pairs`` are the good ones, whose
    ``problems`` are the discovery problems plus every bad file, and whose
    ``sizes`` maps each good pair to its ``(H, W)``.
    """
    files = sorted({p for pair in pair_set.pairs for p in (pair.blur, pair.sharp, pair.aligned) if p is not None})
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(_probe, files)
        results = list(progress(results) if progress else results)
    probed = dict(zip(files, results))

    problems = list(pair_set.problems)
    good, sizes = [], {}
    for pair in pair_set.pairs:
        members = [p for p in (pair.blur, pair.sharp, pair.aligned) if p is not None]
        unreadable = [p for p in members if isinstance(probed[p], str)]
        problems += [Problem(p, probed[p]) for p in unreadable]
        if unreadable:
            continue
        shapes = {probed[p] for p in members}
        if len(shapes) > 1:
            detail = ", ".join(f"{p.name} is {probed[p][1]}x{probed[p][0]}" for p in members)
            problems.append(Problem(pair.blur, f"size mismatch within the pair ({detail})"))
            continue
        height, width = probed[pair.blur]
        if min_size is not None and min(height, width) < min_size:
            problems.append(Problem(pair.blur, f"{width}x{height} is smaller than the {min_size}px {min_what}"))
            continue
        good.append(pair)
        sizes[pair.name] = (height, width)
    return PairSet(pair_set.root, pair_set.layout, good, problems, sizes)


def load_pairs(
    root: str | os.PathLike,
    layout: str = "auto",
    split: str = "train",
    blur_dir: str | os.PathLike | None = None,
    sharp_dir: str | os.PathLike | None = None,
    min_size: int | None = None,
    skip_bad: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
    warn: Callable[[str], None] = print,
    min_what: str = "crop",
) -> PairSet:
    """Discover and validate; raise one :class:`DatasetError` listing every problem.

    With ``skip_bad`` the bad pairs are dropped instead and ``warn`` is told how many.
    """
    discovered = discover_pairs(root, layout, split, blur_dir, sharp_dir)
    checked = validate(discovered, min_size, progress=progress, min_what=min_what)
    if checked.problems and not skip_bad:
        raise DatasetError(str(root), checked.problems, hint="fix these files, or pass --skip-bad to leave them out")
    if checked.problems:
        dropped = len(discovered.pairs) - len(checked.pairs)
        warn(f"warning: {root}: left out {dropped} pair(s) with a bad file and {len(checked.problems) - dropped} "
             f"unmatched file(s) or other problem(s) ({len(checked.problems)} in all, listed by 'jdrl data check'); "
             f"{len(checked.pairs)} pair(s) left")
    if not checked.pairs:
        raise DatasetError(str(root), checked.problems or [Problem(Path(root), "no usable pairs")])
    return checked
