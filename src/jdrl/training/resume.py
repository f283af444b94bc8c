"""Finding and reading what a run continues from (``--resume``): checked before any work is done."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from jdrl.checkpoint import TEMP_PATTERN, is_jdrl_checkpoint, read_checkpoint, scan_run
from jdrl.errors import ConfigError, WeightsError
from jdrl.files import file_problem
from jdrl.training.ema import WeightEMA
from jdrl.training.state import RunState
from jdrl.weights import load_strict

# Files that say a folder holds a training run (never overwritten without asking).
RUN_FILES = ("last.pt", "best.pt", "log.csv", "val.csv", "train.log", "config.yaml")


def resume_path(run_dir: Path, resume: str | None, overwrite: bool, notes: list[str]) -> Path | None:
    """The checkpoint to continue, or ``None`` for a fresh start; what the user should know goes to ``notes``.

    ``resume``: ``None`` (a new run: refused in a folder that holds one unless ``overwrite``), ``"auto"``
    (the newest readable checkpoint of ``run_dir``; a fresh start only in a folder without a run) or a path.
    """
    holds_run = [name for name in RUN_FILES if (run_dir / name).exists()]
    if resume is None:
        if holds_run and not overwrite:
            raise ConfigError(
                f"{run_dir} holds a training run ({', '.join(holds_run)}); continue it with --resume auto, "
                "choose a fresh --run-dir, or pass --overwrite to replace it")
        return None
    remove_stale_temporaries(run_dir)
    if resume != "auto":
        path = Path(resume)
        problem = file_problem(path)
        if problem:
            raise WeightsError(f"--resume {path}: {'no such checkpoint' if problem == 'no such file' else problem}")
        return path
    good, bad = scan_run(run_dir)
    for path, reason in bad:
        notes.append(f"--resume auto: skipped {path.name} ({reason})")
    if good:
        step, _, path = max(good)
        notes.append(f"--resume auto: continuing from {path.name} (step {step})")
        return path
    if holds_run:
        found = ", ".join(p.name for p, _ in bad) or "none"
        raise WeightsError(f"--resume auto: {run_dir} holds a run but no readable checkpoint (found: {found}); "
                           "nothing was changed. Use a fresh --run-dir, or --overwrite to start over there")
    return None  # an empty or new folder: a fresh start


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files of interrupted saves (``.last.pt.*.tmp``): never valid, removed before resuming."""
    for stale in run_dir.glob(TEMP_PATTERN):
        stale.unlink(missing_ok=True)


def read_resumable(path: Path) -> dict:
    """A jdrl training checkpoint that holds a training state, read on the CPU."""
    data = read_checkpoint(path, map_location="cpu")
    if not is_jdrl_checkpoint(data):
        raise WeightsError(f"{path} is not a jdrl training checkpoint (use net.init for released weights)")
    if not data.get("optimizer") or not data.get("progress"):
        raise WeightsError(f"{path} holds a network but no training state (optimizer, progress) to resume; "
                           "start from its weights with --init instead")
    return data


def restore(data: dict, path: Path, *, net: nn.Module, reblur: nn.Module | None, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler | None, state: RunState) -> None:
    """Weights, optimizer, loss scale and run state of ``data`` (strict: a checkpoint that does not fit fails)."""
    load_strict(net, data["net"]["state_dict"], str(path))
    if reblur is not None:
        if not data.get("reblur"):
            raise WeightsError(f"{path} has no reblurring module but this config uses one")
        load_strict(reblur, data["reblur"]["state_dict"], f"{path} (reblur)")
    optimizer.load_state_dict(data["optimizer"])
    if scaler is not None and data.get("scaler"):
        scaler.load_state_dict(data["scaler"])
    state.load(data)


def restore_ema(data: dict, path: Path, ema: WeightEMA, notes: list[str]) -> bool:
    """The checkpoint's weight average into ``ema``; False (and a note) when it keeps none."""
    if data.get("ema"):
        ema.load(data["ema"], f"{path} (ema)")
        return True
    notes.append(f"{path} keeps no weight average: run.ema_decay starts it from the loaded weights")
    return False
