"""What a run must keep to resume exactly: progress, generator states, the learning-rate rule, counters.

The learning rate is a function of the schedule position (:func:`learning_rate`), so
resuming recomputes it from ``progress`` and the config; the checkpoint records it for
people reading the file.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from jdrl.training.config import TrainConfig


@dataclass
class Progress:
    """Where training stands."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0

    def position(self, unit: str) -> int:
        return self.epoch if unit == "epoch" else self.step

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch}


@dataclass
class Stats:
    """Counters kept across resumes."""

    bad_steps: int = 0  # non-finite losses or gradients: the step was skipped
    consecutive_bad: int = 0
    scaler_skips: int = 0  # fp16 loss-scale overflows (the scaler's business, not bad data)

    def as_dict(self) -> dict:
        return {"bad_steps": self.bad_steps, "consecutive_bad": self.consecutive_bad, "scaler_skips": self.scaler_skips}


@dataclass
class Best:
    """The best validation score so far, by ``metric``."""

    metric: str | None = None
    value: float | None = None
    step: int | None = None

    def as_dict(self) -> dict:
        return {"metric": self.metric, "value": self.value, "step": self.step}


@dataclass
class RunState:
    progress: Progress = field(default_factory=Progress)
    stats: Stats = field(default_factory=Stats)
    best: Best = field(default_factory=Best)

    def load(self, checkpoint: dict) -> None:
        self.progress = Progress(**checkpoint["progress"])
        self.stats = Stats(**{k: v for k, v in checkpoint.get("stats", {}).items() if k in Stats.__dataclass_fields__})
        self.best = Best(**{k: v for k, v in checkpoint.get("best", {}).items() if k in Best.__dataclass_fields__})


def learning_rate(config: TrainConfig, position: int, reblur_only: bool) -> float:
    """The learning rate at ``position`` (in schedule units); the reblur-only phase may have its own.

    ``step``: ``lr * decay_factor ** (position // decay_every)``. ``cosine``:
    ``min_lr + (lr - min_lr) * (1 + cos(pi * position / total)) / 2``, ``min_lr`` from ``total`` on.
    """
    optim = config.optim
    if reblur_only and optim.reblur_only_lr is not None:
        return optim.reblur_only_lr
    if optim.decay == "cosine":
        fraction = min(position / max(config.schedule.total, 1), 1.0)
        return optim.min_lr + (optim.lr - optim.min_lr) * (1.0 + math.cos(math.pi * fraction)) / 2.0
    return optim.lr * optim.decay_factor ** (position // max(optim.decay_every, 1))


def scheduler_record(config: TrainConfig, lr: float) -> dict:
    """The learning rate now and the rule that gives it (for people reading a checkpoint)."""
    return {"lr": lr, "unit": config.schedule.unit, "decay": config.optim.decay,
            "decay_every": config.optim.decay_every, "decay_factor": config.optim.decay_factor,
            "min_lr": config.optim.min_lr, "total": config.schedule.total, "reblur_only": config.schedule.reblur_only}


def capture_rng() -> dict:
    """torch / CUDA / numpy / python generator states, loadable with ``weights_only=True``."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached]
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
