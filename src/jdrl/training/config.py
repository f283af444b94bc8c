"""The typed training config (YAML presets in ``jdrl/presets``; ``jdrl presets`` lists them).

Schedule lengths are counted in ``schedule.unit`` (``epoch`` as the paper, or
``step``): ``total``, ``warmup``, ``reblur_only``, ``decay_every``,
``val_every`` and ``save_every`` all use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jdrl.data.synthetic import SynthParams
from jdrl.losses import JDRLConfig


@dataclass
class NetConfig:
    name: str = "unet"
    options: dict = field(default_factory=dict)  # constructor options, e.g. {width: 0.25}
    init: str | None = None  # start from a checkpoint: ours or the authors' (their Reblur_state_dict too)


@dataclass
class DataSource:
    """A dataset on disk (see ``jdrl data check``)."""

    root: str | None = None
    layout: str = "auto"
    split: str = "train"  # DPDD only
    blur_dir: str | None = None
    sharp_dir: str | None = None
    limit: int | None = None  # use only the first N pairs


@dataclass(frozen=True)
class SyntheticData(SynthParams):
    """In-memory synthetic pairs instead of folders: the generator's parameters (:class:`SynthParams`,
    the same fields and defaults as ``jdrl synth``) plus how many pairs and from which photos."""

    train: int = 64  # number of training pairs
    val: int = 8  # held-out pairs (generated after the training ones)
    seed: int = 0
    sources: str | None = None  # folder of sharp images; None = scikit-image's photos
    val_sources: str | None = None  # folder of held-out source images
    holdout: int = 0  # else: keep the last N source images for validation only
    aligned_targets: bool = False  # train on the true aligned image (the "oracle" upper bound)


@dataclass
class DataConfig:
    train: DataSource = field(default_factory=DataSource)
    val: DataSource | None = None
    synthetic: SyntheticData | None = None
    crop: int | None = 256  # random training crop (the released code: 256 from 512 patches)
    augment: bool = False  # 8-fold flips/rotations (defined but unused in the released code)
    batch_size: int = 1
    workers: int = 0
    skip_bad: bool = False
    val_crop: int | None = None  # centre crop of validation images (None: whole images)
    val_limit: int | None = None


@dataclass
class OptimConfig:
    lr: float = 2e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    decay_every: int = 60  # halve (x decay_factor) the learning rate every N units
    decay_factor: float = 0.5
    reblur_only_lr: float | None = None  # lr of the reblur-only phase (default: lr)
    grad_clip: float | None = None


@dataclass
class ScheduleConfig:
    unit: Literal["epoch", "step"] = "epoch"
    total: int = 100
    warmup: int = 15  # flow from the blurry input; no mask, cycle or reblurring
    reblur_only: int = 0  # fine-tuning phase (i): network frozen, only R trains
    val_every: int = 1
    save_every: int = 1
    log_every: int = 10  # steps between log lines / TensorBoard points
    best_metric: str = "auto"  # validation column to keep the best checkpoint by (auto: aligned > deformed > GT PSNR)


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"  # auto = CUDA if available (the local rank's GPU under torchrun)
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    deterministic: bool = False
    max_bad_steps: int = 20  # consecutive non-finite losses before the run stops
    samples: int = 4  # validation images shown in TensorBoard
    keep_epoch_checkpoints: bool = False  # also keep one file per save, not only last/best
    val_flow: str | None = None  # flow estimator for the deformed-GT metric (default: the loss's)
    val_tile: int | None = None


@dataclass
class TrainConfig:
    net: NetConfig = field(default_factory=NetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: JDRLConfig = field(default_factory=JDRLConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
