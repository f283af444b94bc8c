"""Synthetic folders on disk: ``OUT/{blur,gt,aligned,occlusion}/``, ``OUT/{flow,coc}/*.npy`` and ``meta.jsonl``."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from jdrl.atomic import atomic_write
from jdrl.config import validate
from jdrl.data.synthetic.pair import make_pair
from jdrl.data.synthetic.params import SynthParams
from jdrl.data.synthetic.sources import default_sources, usable_sources
from jdrl.errors import ConfigError, UsageError
from jdrl.files import file_problem
from jdrl.images import read_image_raw, write_image


def write_synthetic(
    out_dir: str | os.PathLike,
    n: int,
    params: SynthParams = SynthParams(),
    seed: int = 0,
    sources: Sequence[tuple[str, np.ndarray]] | None = None,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
    warn: Callable[[str], None] = print,
    overwrite: bool = False,
) -> Path:
    """Write ``OUT/{blur,gt,aligned}/NNNNN.png``, ``OUT/flow/NNNNN.npy``, ``OUT/occlusion/NNNNN.png``,
    ``OUT/coc/NNNNN.npy`` and ``OUT/meta.jsonl`` (one line per pair).

    ``flow/NNNNN.npy``: the true flow as float32 ``(H, W, 2)`` (x, y) in px, aligned/blurry geometry -> gt
    (``jdrl.flow.warp.warp(gt, flow) ~ aligned``; ``np.load``). ``occlusion/NNNNN.png``: 8-bit gray, 255 where
    no correct correspondence exists, 0 elsewhere. ``coc/NNNNN.npy``: the true circle-of-confusion radius in px
    of each blurry pixel, float32 ``(H, W)`` (:func:`read_coc`). The same seed writes byte-identical files.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n: {n!r} pairs; give at least 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: {seed!r} must be a whole number >= 0")
    validate(params)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder")
    subs = ("blur", "gt", "aligned", "flow", "occlusion", "coc")
    existing = [p for sub in subs if (out / sub).is_dir() for p in sorted((out / sub).iterdir())]
    existing += [out / "meta.jsonl"] if (out / "meta.jsonl").exists() else []
    if existing and not overwrite:
        raise UsageError(f"{out} already holds a data set ({len(existing)} file(s), e.g. {existing[0]}); choose a "
                         "new folder, or pass --overwrite to replace it")
    sources = usable_sources(sources if sources is not None else default_sources(), params, warn)
    for sub in subs:
        (out / sub).mkdir(parents=True, exist_ok=True)
    meta_file = io.StringIO()  # meta.jsonl is written whole at the end (atomically): never a half list
    for index in progress(range(n)):
        name, source = sources[index % len(sources)]
        pair = make_pair(source, params, seed, index, name)
        file = f"{index:05d}.png"
        write_image(out / "blur" / file, pair.blur)
        write_image(out / "gt" / file, pair.sharp)
        write_image(out / "aligned" / file, pair.aligned)
        write_flow(out / "flow" / f"{index:05d}.npy", pair.flow)
        write_image(out / "occlusion" / file, pair.occlusion.astype(np.float32))
        write_array(out / "coc" / f"{index:05d}.npy", pair.coc)
        record = {"file": file, **pair.meta, "params": asdict(params)}
        meta_file.write(json.dumps(record) + "\n")
    with atomic_write(out / "meta.jsonl") as handle:
        handle.write(meta_file.getvalue().encode("utf-8"))
    return out


def write_flow(path: str | os.PathLike, flow: np.ndarray) -> Path:
    """Save a flow ``(H, W, 2)`` as a float32 ``.npy`` (atomically)."""
    return write_array(path, flow)


def write_array(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save an array as a float32 ``.npy`` (atomically)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def read_coc(path: str | os.PathLike) -> np.ndarray:
    """A circle-of-confusion map written by :func:`write_synthetic`: float32 ``(H, W)``, px."""
    problem = file_problem(path)  # a FIFO or a device would block np.load; a loop or a folder is named
    if problem:
        raise ValueError(f"{path}: {problem}")
    coc = np.load(path, allow_pickle=False)
    if coc.ndim != 2:
        raise ValueError(f"{path}: not an (H, W) radius map but {coc.shape}")
    return coc.astype(np.float32, copy=False)


def read_flow(path: str | os.PathLike) -> np.ndarray:
    """A flow written by :func:`write_flow`: float32 ``(H, W, 2)``."""
    flow = np.load(path, allow_pickle=False)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{path}: not a (H, W, 2) flow but {flow.shape}")
    return flow.astype(np.float32, copy=False)


def read_occlusion(path: str | os.PathLike) -> np.ndarray:
    """An occlusion mask written by :func:`write_synthetic`: bool ``(H, W)``."""
    raw = read_image_raw(path)
    return (raw if raw.ndim == 2 else raw[..., 0]) > 127


def read_meta(folder: str | os.PathLike) -> dict[str, dict]:
    """``meta.jsonl`` of a synthetic folder as ``{file stem: record}``."""
    records = {}
    with open(Path(folder) / "meta.jsonl") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                records[Path(record["file"]).stem] = record
    return records
