"""The run folder's logs: resolved config, versions, ``log.csv``, ``val.csv``, ``train.log``, experiment loggers.

Experiment loggers (``run.loggers``; the registry :data:`LOGGERS`: ``tensorboard`` by default, ``wandb``, ``mlflow``)
all receive the same scalars (``loss/<part>``, ``lr``, ``skipped_steps``, ``val/<metric>``) and the same
validation images (``val/samples``) through one small interface, :class:`Logger`. Written by the main rank only. The loggers receive plain values (step, epoch, learning
rate, loss parts): nothing here knows the trainer. ``log.csv``'s loss columns are the
objective's own part names (:meth:`jdrl.losses.JDRLLoss.part_names`), so a new loss term
appears in the CSV, TensorBoard and the progress bar without a hand-kept list.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import torch

from jdrl.config import dump_yaml, to_dict
from jdrl.errors import ConfigError, MissingDependencyError
from jdrl.files import WRITE_ERRORS
from jdrl.registry import Registry
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
        self._handle = open(path, "a" if exists else "w", newline="", encoding="utf-8", errors=WRITE_ERRORS)
        self._writer = csv.DictWriter(self._handle, fieldnames=list(columns), extrasaction="ignore")
        if not exists:
            self._writer.writeheader()

    def write(self, row: dict) -> None:
        self._writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


# ------------------------------------------------------------------------------------- experiment loggers


class Logger:
    """One experiment-tracking backend. ``images`` get ``(N, 3, H, W)`` floats in [0, 1]."""

    requires: str | None = None  # the module it imports (None: a core dependency)
    extra: str | None = None  # the pip extra that installs it

    def __init__(self, run_dir: Path, config: dict, resumed: bool): ...
    def scalar(self, name: str, value: float, step: int) -> None: ...
    def images(self, name: str, tensor: torch.Tensor, step: int) -> None: ...
    def close(self) -> None: ...


#: experiment loggers by name (``run.loggers``), in the order of registration: ``cls(run_dir, config, resumed)``
LOGGERS: Registry = Registry("logger", sort=False)


def register_logger(name: str):
    """Class decorator: ``run.loggers`` may name ``name`` (``@LOGGERS.register(name)``)."""
    return LOGGERS.register(name)


def check_loggers(names: Iterable[str]) -> list[type[Logger]]:
    """The logger classes of ``run.loggers`` (each once), their packages imported: fails before any work is done."""
    chosen: list[type[Logger]] = []
    for name in dict.fromkeys(names):
        if name not in LOGGERS:
            raise ConfigError(f"run.loggers: unknown logger {name!r}; choose from: {', '.join(LOGGERS.names())}")
        cls = LOGGERS.get(name)
        if cls.requires:
            try:
                importlib.import_module(cls.requires)
            except ImportError:
                raise MissingDependencyError(f"run.loggers includes {name}, which needs the {cls.requires} package: "
                                             f"pip install 'jdrl[{cls.extra}]'", name=cls.requires) from None
        chosen.append(cls)
    return chosen


def _uint8_hwc(image: torch.Tensor):
    """A ``(3, H, W)`` float image in [0, 1] as a ``(H, W, 3)`` uint8 numpy array."""
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@register_logger("tensorboard")
class TensorBoardLogger(Logger):
    """``RUN/tensorboard`` (the writer is made at the first point, so a run that logs nothing leaves no file)."""

    def __init__(self, run_dir: Path, config: dict, resumed: bool):
        self.folder, self._writer = run_dir / "tensorboard", None

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder))
        return self._writer

    def scalar(self, name: str, value: float, step: int) -> None:
        self.writer.add_scalar(name, value, step)

    def images(self, name: str, tensor: torch.Tensor, step: int) -> None:
        self.writer.add_images(name, tensor.clamp(0, 1), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


@register_logger("wandb")
class WandbLogger(Logger):
    """Weights & Biases: project ``$WANDB_PROJECT`` (default ``jdrl``), files under ``RUN/wandb``; ``WANDB_MODE=offline``
    works without an account. A resumed run continues the same W&B run (its id is kept in ``RUN/wandb/jdrl_run_id``)."""

    requires, extra = "wandb", "wandb"

    def __init__(self, run_dir: Path, config: dict, resumed: bool):
        import wandb

        self._wandb = wandb
        id_file = run_dir / "wandb" / "jdrl_run_id"
        id_file.parent.mkdir(parents=True, exist_ok=True)
        run_id = id_file.read_text().strip() if resumed and id_file.is_file() else uuid.uuid4().hex[:12]
        self._run = wandb.init(project=os.environ.get("WANDB_PROJECT", "jdrl"), name=run_dir.name, dir=str(run_dir),
                               config=config, id=run_id, resume="allow", mode=os.environ.get("WANDB_MODE") or None)
        id_file.write_text(run_id + "\n")

    def scalar(self, name: str, value: float, step: int) -> None:
        self._run.log({name: value}, step=step)

    def images(self, name: str, tensor: torch.Tensor, step: int) -> None:
        self._run.log({name: [self._wandb.Image(_uint8_hwc(image)) for image in tensor]}, step=step)

    def close(self) -> None:
        self._run.finish()


@register_logger("mlflow")
class MlflowLogger(Logger):
    """MLflow: ``$MLFLOW_TRACKING_URI``, by default a file store in ``RUN/mlruns`` (``mlflow ui --backend-store-uri
    RUN/mlruns``); experiment ``$MLFLOW_EXPERIMENT_NAME`` (default ``jdrl``); the resolved config as ``config.json``.
    A resumed run continues the same MLflow run (its id is kept in ``RUN/mlflow_run_id``)."""

    requires, extra = "mlflow", "mlflow"

    def __init__(self, run_dir: Path, config: dict, resumed: bool):
        import mlflow

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / "mlruns").resolve().as_uri()
        self._client = client = mlflow.MlflowClient(tracking_uri=uri)
        id_file = run_dir / "mlflow_run_id"
        if resumed and id_file.is_file():
            self._run_id = id_file.read_text().strip()
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "jdrl")
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
        self._run_id = client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        id_file.write_text(self._run_id + "\n")
        client.log_dict(self._run_id, config, "config.json")

    def scalar(self, name: str, value: float, step: int) -> None:
        self._client.log_metric(self._run_id, name, float(value), step=step)

    def images(self, name: str, tensor: torch.Tensor, step: int) -> None:  # the rows one under the other
        self._client.log_image(self._run_id, _uint8_hwc(torch.cat(list(tensor), dim=-2)), key=name, step=step)

    def close(self) -> None:
        self._client.set_terminated(self._run_id)


# ------------------------------------------------------------------------------------------------ the run log


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
        self._loggers: list[Logger] = []
        self._val_csv: CsvLog | None = None  # columns known at the first validation
        self._resumed = resumed
        if not enabled:
            return
        logger_types = check_loggers(config.run.loggers)  # before anything is written
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, run_dir / "config.yaml")
        (run_dir / "version.txt").write_text("\n".join(f"{k}: {v}" for k, v in versions.items()) + "\n")
        self._text = open(run_dir / "train.log", "a", encoding="utf-8", errors=WRITE_ERRORS)
        parts = [p for p in loss_parts if p != "total"]
        self._train_csv = CsvLog(run_dir / "log.csv", ("step", "epoch", "lr", "loss", *parts, "skipped", "seconds"),
                                 append=resumed)
        plain_config = to_dict(config)
        self._loggers = [cls(run_dir, plain_config, resumed) for cls in logger_types]

    def note(self, message: str) -> None:
        if self.enabled:
            self._text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self._text.flush()

    def progress(self, total: int, desc: str, disable: bool, initial: int = 0):
        if not self.enabled or disable:
            return NoBar()
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False)

    def _scalar(self, name: str, value: float, step: int) -> None:
        for logger in self._loggers:
            logger.scalar(name, value, step)

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
            self._scalar(f"loss/{key}", value, step)
        self._scalar("lr", lr, step)
        self._scalar("skipped_steps", skipped, step)
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
                self._scalar(f"val/{key}", value, step)
        if images is not None:
            for logger in self._loggers:
                logger.images("val/samples", images.clamp(0, 1), step)
        summary = ", ".join(f"{k} {v:.4g}" for k, v in sorted(means.items()) if v is not None)
        self.note(f"step {step} epoch {epoch}: validation {summary}")

    def close(self) -> None:
        if self.enabled:
            self._text.close()
            self._train_csv.close()
            if self._val_csv:
                self._val_csv.close()
            for logger in self._loggers:
                logger.close()
