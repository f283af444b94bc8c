"""Training: ``jdrl.train(config)`` (the Python face of ``jdrl train``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from jdrl.config import apply_overrides, from_dict, load_config, to_dict, validate
from jdrl.errors import UntrustedCodeError
from jdrl.nets.factory import TRUST_HINT, is_code_name
from jdrl.training.config import TrainConfig

__all__ = ["TrainConfig", "load_train_config", "train"]


def load_train_config(config: TrainConfig | str | os.PathLike | None, overrides: Iterable[str] = (),
                      trust_code: bool = False) -> TrainConfig:
    """A preset name, a YAML path, a ``TrainConfig`` or ``None`` (defaults), with dotted overrides applied.

    A YAML file that names its network as code (``net.name: package.module:Class``) is refused with
    :class:`~jdrl.errors.UntrustedCodeError` unless ``trust_code`` or the overrides name that same network
    (a name the user typed is theirs; a file's is not).
    """

    overrides = list(overrides)
    if isinstance(config, TrainConfig):
        return validate(from_dict(TrainConfig, apply_overrides(to_dict(config), overrides)))
    resolved = load_config(TrainConfig, config, overrides)
    if not trust_code:
        _refuse_code_from_file(resolved.net.name, config, overrides)
    return resolved


def _refuse_code_from_file(name: str, config: str | os.PathLike | None, overrides: list[str]) -> None:
    typed = apply_overrides({}, overrides).get("net")
    if is_code_name(name) and not (isinstance(typed, dict) and typed.get("name") == name):
        raise UntrustedCodeError(f"{config} names the network {name!r} (net.name), which is code to import; jdrl "
                                 f"never imports code named by a file. If you trust this file, {TRUST_HINT}, or "
                                 f"type the name yourself: -o net.name={name}")


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
    trust_code: bool = False,
) -> Path:
    """Train and return the run folder (checkpoints ``last.pt``/``best.pt``, logs, TensorBoard).

    ``resume`` is ``"auto"`` (newest valid checkpoint of ``run_dir``, or a fresh
    start in a folder without a run) or a checkpoint path; without it, a ``run_dir`` that
    holds a run is refused unless ``overwrite``. ``datasets`` optionally replaces the configured
    data with ``(train, val)`` datasets (items as :class:`jdrl.data.datasets.PairedImageDataset`).
    ``trust_code`` lets a config file or ``net.init``'s weight file name its network as code
    (``package.module:Class``); without it such a name is imported only when typed in ``overrides``.
    """
    from jdrl.training.trainer import Trainer

    resolved = load_train_config(config, overrides, trust_code)
    folder = Path(run_dir) if run_dir is not None else default_run_dir(None if isinstance(config, TrainConfig) else config)
    return Trainer(resolved, folder, resume=resume, datasets=datasets, quiet=quiet, overwrite=overwrite,
                   trust_code=trust_code).fit()
