"""Training: ``jdrl.train(config)`` (the Python face of ``jdrl train``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from jdrl.training.config import TrainConfig

__all__ = ["TrainConfig", "load_train_config", "train"]


def load_train_config(config: TrainConfig | str | os.PathLike | None, overrides: Iterable[str] = ()) -> TrainConfig:
    """A preset name, a YAML path, a ``TrainConfig`` or ``None`` (defaults), with dotted overrides applied."""
    from jdrl.config import apply_overrides, from_dict, load_config, to_dict, validate

    if isinstance(config, TrainConfig):
        return validate(from_dict(TrainConfig, apply_overrides(to_dict(config), overrides)))
    return load_config(TrainConfig, config, overrides)


def default_run_dir(config_name: str | os.PathLike | None) -> Path:
    stem = Path(str(config_name)).stem if config_name else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(
    config: TrainConfig | str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    run_dir: str | os.PathLike | None = None,
    resume: str | None = None,
    datasets=None,
    quiet: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train and return the run folder (checkpoints ``last.pt``/``best.pt``, logs, TensorBoard).

    ``resume`` is ``"auto"`` (newest valid checkpoint of ``run_dir``, or a fresh
    start in a folder without a run) or a checkpoint path; without it, a ``run_dir`` that
    holds a run is refused unless ``overwrite``. ``datasets`` optionally replaces the configured
    data with ``(train, val)`` datasets (items as :class:`jdrl.data.datasets.PairedImageDataset`).
    """
    from jdrl.training.trainer import Trainer

    resolved = load_train_config(config, overrides)
    folder = Path(run_dir) if run_dir is not None else default_run_dir(None if isinstance(config, TrainConfig) else config)
    return Trainer(resolved, folder, resume=resume, datasets=datasets, quiet=quiet, overwrite=overwrite).fit()
