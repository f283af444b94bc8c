"""The jdrl checkpoint schema: writing, reading (``weights_only=True``), finding the newest valid one.

A jdrl checkpoint (BasicSR-like: everything needed to resume or to deploy) is a
dict with ``format == "jdrl.checkpoint"`` and

``net``        ``{"name", "options", "state_dict"}`` - enough to rebuild the network
``reblur``     ``{"options", "state_dict"}`` or ``None``
``optimizer``, ``scaler``   their state dicts (``scaler`` may be ``None``)
``scheduler``  the learning rate and its rule (informative: resuming recomputes it)
``progress``   ``{"epoch", "step", "batch_in_epoch"}``: where training stands
``rng``        torch / CUDA / numpy / python generator states
``stats``      counters (skipped non-finite steps, ...); ``best``: the best validation score
``config``     the resolved training config (plain data), ``versions``

:func:`make_checkpoint` is the only place such a dict is assembled. Files are written
to a temporary name in the same folder, flushed to disk and renamed over the target,
so a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from jdrl.atomic import atomic_write
from jdrl.errors import WeightsError
from jdrl.files import file_problem

if TYPE_CHECKING:
    pass

FORMAT = "jdrl.checkpoint"
FORMAT_VERSION = 1
TEMP_PATTERN = ".*.pt.*.tmp"  # what atomic_write leaves behind when killed mid-save


def make_checkpoint(
    net_name: str,
    net_options: Mapping[str, Any],
    net_state: Mapping[str, torch.Tensor],
    *,
    reblur: Mapping[str, Any] | None = None,
    optimizer: Mapping | None = None,
    scaler: Mapping | None = None,
    scheduler: Mapping | None = None,
    progress: Mapping[str, int] | None = None,
    rng: Mapping | None = None,
    stats: Mapping | None = None,
    best: Mapping | None = None,
    config: Mapping | None = None,
    versions: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict:
    """A checkpoint dict in the jdrl schema; only the network is required (a deployable file)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": dict(versions or {}),
        "config": dict(config or {}),
        "net": {"name": net_name, "options": dict(net_options), "state_dict": dict(net_state)},
        "reblur": None if reblur is None else dict(reblur),
        "optimizer": optimizer,
        "scaler": scaler,
        "scheduler": dict(scheduler or {}),
        "progress": {"epoch": 0, "step": 0, "batch_in_epoch": 0, **(progress or {})},
        "rng": rng,
        "stats": dict(stats or {}),
        "best": dict(best or {}),
        **extra,
    }


def write_checkpoint(checkpoint: Mapping, path: str | os.PathLike) -> Path:
    """Write a dict made by :func:`make_checkpoint` atomically (never a half-written file)."""
    if checkpoint.get("format") != FORMAT:
        raise ValueError("write_checkpoint takes dicts made by make_checkpoint")
    return atomic_save(dict(checkpoint), path)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` via a temporary file + ``os.replace``, flushed to disk first."""
    with atomic_write(path, durable=True) as handle:
        torch.save(obj, handle)
    return Path(path)


def load_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of any weight file, with one readable error (pickles are never run)."""
    path = Path(path).expanduser()
    problem = file_problem(path)
    if problem == "no such file":
        raise WeightsError(f"checkpoint {path} not found")
    if problem == "is a folder, not a file":
        raise WeightsError(f"{path} is a folder, not a checkpoint file")
    if problem:
        raise WeightsError(f"checkpoint {path}: {problem}")
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except UnicodeDecodeError:  # pickled by Python 2 (e.g. the authors' PWC-Net file)
            return torch.load(path, map_location=map_location, weights_only=True, encoding="latin1")
    except Exception as error:  # noqa: BLE001 - truncated, not a torch file, a refused pickle, ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise WeightsError(f"{path}: not a readable checkpoint ({type(error).__name__}: {reason[:200]})") from None


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load any checkpoint file as a dict (jdrl or released), with a readable error."""
    data = load_file(path, map_location)
    if not isinstance(data, Mapping):
        raise WeightsError(f"{Path(path).expanduser()}: holds no dict")
    return dict(data)


def is_jdrl_checkpoint(data: Mapping) -> bool:
    return data.get("format") == FORMAT


def find_latest(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint of ``run_dir`` (``*.pt``) with the most training steps that loads; ``None`` if none."""
    return max(scan_run(run_dir)[0], default=(None, None, None))[2]


def scan_run(run_dir: str | os.PathLike) -> tuple[list[tuple[int, float, Path]], list[tuple[Path, str]]]:
    """Every ``*.pt`` of ``run_dir``: the readable jdrl checkpoints as ``(step, mtime, path)``, and the others with why."""
    good, bad = [], []
    for path in sorted(Path(run_dir).glob("*.pt")):
        try:
            data = read_checkpoint(path)
        except WeightsError as error:
            bad.append((path, str(error)))
            continue
        step = data.get("progress", {}).get("step") if isinstance(data.get("progress"), Mapping) else None
        if is_jdrl_checkpoint(data) and isinstance(step, int) and isinstance(data.get("net"), Mapping):
            good.append((step, path.stat().st_mtime, path))
        elif is_jdrl_checkpoint(data):
            bad.append((path, "a jdrl checkpoint without its progress or network (damaged)"))
        else:
            bad.append((path, "not a jdrl training checkpoint"))
    return good, bad


def selected_checkpoint(run_dir: str | os.PathLike, select: str = "last") -> Path:
    """A run's result: ``best.pt`` when ``select == "best"`` and one was kept, else ``last.pt``."""
    best = Path(run_dir) / "best.pt"
    return best if select == "best" and best.is_file() else Path(run_dir) / "last.pt"
