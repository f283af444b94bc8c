"""The run folder's logs: resolved config, versions, ``log.csv``, ``val.csv``, ``train.log``, TensorBoard.

Written by the main rank only. The loggers receive plain values (step, epoch, learning
rate, loss parts): nothing here knows the trainer. ``log.csv``'s loss columns are the
objective's own part names (:meth:`jdrl.losses.JDRLLoss.part_names`), so a new loss term
appears in the CSV, TensorBoard and the progress bar without a hand-kept list.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import torch

from jdrl.config import dump_yaml
from jdrl.training.config import TrainConfig


class NoBar:
    """Stands in for a tqdm bar when progress is off."""

    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kwargs) -> None: ...
    def close(self) -> None: ...


class CsvLog:
    """Append-only CSV with a fixed header (extra keys ignored, missing ones left empty)."""

    def __init__(self, path: Path, columns: Iterable[str], append: bool):
        columns = tuple(columns)
        exists = append and path.is_file() and path.stat().st_size > 0
        if exists:
            with open(path, newline="") as handle:
                columns = tuple(next(csv.reader(handle)))
        self._handle = open(path, "a" if exists else "w", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=list(columns), extrasaction="ignore")
        if not exists:
            self._writer.writeheader()

    def write(self, row: dict) -> None:
        self._writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class RunLog:
    """Everything a run writes besides checkpoints (a no-op on other ranks than the main one)."""

    def __init__(self, run_dir: Path, config: TrainConfig, loss_parts: Iterable[str], versions: dict[str, str],
                 enabled: bool, resumed: bool):
        self.enabled, self.run_dir = enabled, run_dir
        self.log_every = config.schedule.log_every
        self.last_loss = float("nan")
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0
        self._started = time.perf_counter()
        self._writer = None
        self._val_csv: CsvLog | None = None  # columns known at the first validation
        self._resumed = resumed
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, run_dir / "config.yaml")
        (run_dir / "version.txt").write_text("\n".join(f"{k}: {v}" for k, v in versions.items()) + "\n")
        self._text = open(run_dir / "train.log", "a")
        parts = [p for p in loss_parts if p != "total"]
        self._train_csv = CsvLog(run_dir / "log.csv", ("step", "epoch", "lr", "loss", *parts, "skipped", "seconds"),
                                 append=resumed)

    def note(self, message: str) -> None:
        if self.enabled:
            self._text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self._text.flush()

    def progress(self, total: int, desc: str, disable: bool, initial: int = 0):
        if not self.enabled or disable:
            return NoBar()
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False)

    @property
    def writer(self):
        if self._writer is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    def record(self, step: int, epoch: int, lr: float, parts: dict[str, float], finite: bool, skipped: int) -> None:
        """One training step's loss parts; every ``log_every`` steps their means go to the CSV and TensorBoard."""
        if finite:
            self.last_loss = parts["total"]
            for key, value in parts.items():
                self._sums[key] += value
            self._count += 1
        if not self.enabled or step % self.log_every:
            return
        means = {k: v / max(self._count, 1) for k, v in self._sums.items()}
        row = {"step": step, "epoch": epoch, "lr": lr, "loss": means.get("total"), **means, "skipped": skipped,
               "seconds": round(time.perf_counter() - self._started, 2)}
        row.pop("total", None)
        self._train_csv.write(row)
        for key, value in means.items():
            self.writer.add_scalar(f"loss/{key}", value, step)
        self.writer.add_scalar("lr", lr, step)
        self.writer.add_scalar("skipped_steps", skipped, step)
        self._sums.clear()
        self._count = 0

    def validation(self, step: int, epoch: int, means: dict, images: torch.Tensor | None) -> None:
        if not self.enabled:
            return
        if self._val_csv is None:
            self._val_csv = CsvLog(self.run_dir / "val.csv", ("step", "epoch", *sorted(means)), append=self._resumed)
        self._val_csv.write({"step": step, "epoch": epoch, **means})
        for key, value in means.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(f"val/{key}", value, step)
        if images is not None:
            self.writer.add_images("val/samples", images.clamp(0, 1), step)
        summary = ", ".join(f"{k} {v:.4g}" for k, v in sorted(means.items()) if v is not None)
        self.note(f"step {step} epoch {epoch}: validation {summary}")

    def close(self) -> None:
        if self.enabled:
            self._text.close()
            self._train_csv.close()
            if self._val_csv:
                self._val_csv.close()
            if self._writer is not None:
                self._writer.close()
