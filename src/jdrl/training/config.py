"""The typed training config (YAML presets in ``jdrl/presets``; ``jdrl presets`` lists them).

Schedule lengths are counted in ``schedule.unit`` (``epoch`` as the paper, or
``step``): ``total``, ``warmup``, ``reblur_only``, ``decay_every``,
``val_every`` and ``save_every`` all use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jdrl.config import COUNT, PIXELS, STEPS, Range, ranged
from jdrl.data.synthetic import SynthParams
from jdrl.losses import JDRLConfig

#: in-memory synthetic pairs are made when first read, but each costs time: a count a user reaches only on purpose
MAX_SYNTHETIC_PAIRS = 1_000_000


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
    limit: int | None = ranged(None, COUNT)  # use only the first N pairs


@dataclass(frozen=True)
class SyntheticData(SynthParams):
    """In-memory synthetic pairs instead of folders: the generator's parameters (:class:`SynthParams`,
    the same fields and defaults as ``jdrl synth``) plus how many pairs and from which photos."""

    train: int = ranged(64, Range(ge=1, le=MAX_SYNTHETIC_PAIRS))  # number of training pairs
    val: int = ranged(8, Range(ge=0, le=MAX_SYNTHETIC_PAIRS))  # held-out pairs (generated after the training ones)
    seed: int = ranged(0, Range(ge=0, lt=2**32))
    sources: str | None = None  # folder of sharp images; None = scikit-image's photos
    val_sources: str | None = None  # folder of held-out source images
    holdout: int = ranged(0, Range(ge=0, le=10_000))  # else: keep the last N source images for validation only
    aligned_targets: bool = False  # train on the true aligned image (the "oracle" upper bound)


@dataclass
class DataConfig:
    train: DataSource = field(default_factory=DataSource)
    val: DataSource | None = None
    synthetic: SyntheticData | None = None
    crop: int | None = ranged(256, PIXELS)  # random training crop (the released code: 256 from 512 patches)
    augment: bool = False  # 8-fold flips/rotations (defined but unused in the released code)
    crop_sampling: Literal["uniform", "released"] = "uniform"  # released: offsets int(randint(0, side-crop)/2)
    batch_size: int = ranged(1, Range(ge=1, le=4096))
    workers: int = ranged(0, Range(ge=0, le=256))
    skip_bad: bool = False
    val_crop: int | None = ranged(None, PIXELS)  # centre crop of validation images (None: whole images)
    val_limit: int | None = ranged(None, COUNT)


@dataclass
class OptimConfig:
    lr: float = ranged(2e-5, Range(ge=0, le=10))
    betas: tuple[float, float] = ranged((0.9, 0.999), Range(ge=0, lt=1))
    weight_decay: float = ranged(0.0, Range(ge=0, le=10))
    decay_every: int = ranged(60, STEPS)  # halve (x decay_factor) the learning rate every N units
    decay_factor: float = ranged(0.5, Range(gt=0, le=1))
    #: "step": x decay_factor every decay_every units (the released code); "cosine": from lr down to min_lr over
    #: schedule.total units (the NAFNet / Restormer recipes), decay_every/decay_factor unused
    decay: Literal["step", "cosine"] = "step"
    min_lr: float = ranged(0.0, Range(ge=0, le=10))
    reblur_only_lr: float | None = ranged(None, Range(ge=0, le=10))  # lr of the reblur-only phase (default: lr)
    grad_clip: float | None = ranged(None, Range(gt=0, le=1e6))  # max gradient norm (None: no clipping)


@dataclass
class ScheduleConfig:
    unit: Literal["epoch", "step"] = "epoch"
    total: int = ranged(100, STEPS)
    warmup: int = ranged(15, Range(ge=0, le=STEPS.le))  # flow from the blurry input; no mask, cycle or reblurring
    reblur_only: int = ranged(0, Range(ge=0, le=STEPS.le))  # fine-tuning phase (i): network frozen, only R trains
    val_every: int = ranged(1, STEPS)
    save_every: int = ranged(1, STEPS)
    log_every: int = ranged(10, STEPS)  # steps between log lines / TensorBoard points
    best_metric: str = "auto"  # val.csv column to keep best.pt by (auto: aligned > deformed > GT PSNR)


@dataclass
class RunConfig:
    seed: int = ranged(0, Range(ge=0, lt=2**63))
    device: str = "auto"  # auto = CUDA if available (the local rank's GPU under torchrun)
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False  # torch.compile the deblurring network (the first steps compile: minutes on a CPU)
    deterministic: bool = False
    max_bad_steps: int = ranged(20, STEPS)  # consecutive non-finite losses before the run stops
    samples: int = ranged(4, Range(ge=0, le=64))  # validation images shown in TensorBoard
    keep_epoch_checkpoints: bool = False  # also keep one file per save, not only last/best
    val_flow: str | None = None  # flow estimator for the deformed-GT metric (default: the loss's)
    val_tile: int | None = ranged(None, Range(ge=16, le=PIXELS.le))
    # the run's result (exported model, `jdrl train`'s last line): the last checkpoint, or the best one by
    # schedule.best_metric. Selecting on the test set (as the paper's released trainer did) is optimistic.
    select: Literal["last", "best"] = "last"
    # exponential moving average of the network's weights (parameters and buffers), updated after every
    # optimizer step: e.g. 0.999; None = off. Validation and the exported RUN/model/ use the average.
    ema_decay: float | None = ranged(None, Range(gt=0, lt=1))
    # the average's decay ramps up as min(ema_decay, (1 + n) / (10 + n)) after n updates (TensorFlow's
    # num_updates rule), so a short run's average is not dominated by the initial weights; false: ema_decay always
    ema_warmup: bool = True
    # experiment loggers (all get the same scalars and validation images), by name in the registry
    # jdrl.training.runlog.LOGGERS: tensorboard, wandb, mlflow (checked by conflicts(), which lists its names)
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])


@dataclass
class TrainConfig:
    net: NetConfig = field(default_factory=NetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: JDRLConfig = field(default_factory=JDRLConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def conflicts(self) -> list[str]:
        """Settings that would have no effect here (a user who set them meant something): each one named."""
        found = []
        if self.data.synthetic is not None:
            for what, source in (("train", self.data.train), ("val", self.data.val)):
                given = [f"data.{what}.{key}" for key in ("root", "blur_dir", "sharp_dir")
                         if source is not None and getattr(source, key) is not None]
                if given:
                    found.append(f"{', '.join(given)} would be unused: data.synthetic is set (the 'synthetic' preset "
                                 "sets it), so training uses in-memory synthetic pairs; add -o data.synthetic=null to "
                                 "use your folders")
        found += self.loss.conflicts()
        schedule = self.schedule
        if schedule.reblur_only and schedule.warmup:
            found.append(f"schedule.reblur_only={schedule.reblur_only} and schedule.warmup={schedule.warmup} overlap: "
                         "the warm-up stage has no reblurring loss, so R would have nothing to learn from while the "
                         "network is frozen; set one of them to 0 (the finetune preset sets warmup: 0)")
        from jdrl.training.runlog import LOGGERS

        found += [f"run.loggers: unknown logger {name!r}; choose from: {', '.join(LOGGERS.names())}"
                  for name in self.run.loggers if name not in LOGGERS]
        if len(set(self.run.loggers)) != len(self.run.loggers):
            found.append(f"run.loggers: {self.run.loggers} names a logger twice")
        return found
