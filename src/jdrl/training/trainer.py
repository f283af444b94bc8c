"""The training loop: paper schedule, ablations, fine-tuning, validation, checkpoints, resume, DDP.

One optimizer (Adam) updates the deblurring network and the reblurring module
together, as released. Stages by schedule position ``p`` (epochs or steps):

* ``p < reblur_only``: fine-tuning phase (i), the network is frozen, only ``R`` learns;
* ``p < warmup``: the released warm-up (GT warped onto the *input*, plain Charbonnier);
* otherwise the full JDRL objective.

The learning rate is ``lr * decay_factor ** (p // decay_every)``.
"""

from __future__ import annotations

import contextlib
import csv
import math
import random
import signal
import sys
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

import jdrl
from jdrl.checkpoint import FORMAT, FORMAT_VERSION, atomic_save, find_latest, network_spec, read_checkpoint
from jdrl.config import dump_yaml, to_dict
from jdrl.data.datasets import stack_samples
from jdrl.errors import ConfigError, TrainingError, TrainingInterrupted, WeightsError
from jdrl.losses import JDRLLoss
from jdrl.training import distributed
from jdrl.training.config import TrainConfig
from jdrl.training.data import build_datasets
from jdrl.training.sampling import EpochBatchSampler
from jdrl.weights import load_strict

PART_COLUMNS = ("deblur", "reblur", "deblur_fwd", "deblur_bwd", "mask_fwd", "mask_bwd")


class Objective(nn.Module):
    """Network + loss in one module, so DDP sees every trained parameter in one forward."""

    def __init__(self, net: nn.Module, loss: JDRLLoss):
        super().__init__()
        self.net, self.loss = net, loss

    def forward(self, blur: torch.Tensor, sharp: torch.Tensor, stage: str, frozen: bool, amp: torch.dtype | None):
        with torch.autocast(device_type=blur.device.type, dtype=amp, enabled=amp is not None):
            if frozen:
                with torch.no_grad():
                    restored = self.net(blur)
            else:
                restored = self.net(blur)
        total, parts = self.loss(restored, blur, sharp, stage=stage)
        return total, parts


class Trainer:
    """Runs one training run in ``run_dir``; :meth:`fit` returns the folder when done."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        resume: str | None = None,
        datasets: tuple[Dataset, Dataset | None] | None = None,
        quiet: bool = False,
    ):
        self.config, self.run_dir, self.quiet = config, Path(run_dir), quiet
        self._notes: list[str] = []  # things the user should know, said once the run folder exists
        self.dist = distributed.setup(config.run.device)
        self.device = self.dist.device
        self._configure_determinism()
        self.train_set, self.val_set = datasets if datasets is not None else build_datasets(
            config.data, config.run.seed, progress=None if quiet else _progress("checking data")
        )
        self._build_model()
        self.sampler = EpochBatchSampler(len(self.train_set), config.data.batch_size, config.run.seed,
                                         self.dist.rank, self.dist.world)
        self.epoch = self.step = self.batch_in_epoch = 0
        self.stats = {"bad_steps": 0, "consecutive_bad": 0, "scaler_skips": 0}
        self.best: dict = {"metric": None, "value": None, "step": None}
        self._stop_requested = False
        self._bar = _NoBar()  # the run's progress bar, made by fit()
        resume_path = self._resume_path(resume)
        if resume_path is not None:
            self._load_state(resume_path)
        self.logger = RunLogger(self.run_dir, config, enabled=self.dist.main, resumed=resume_path is not None)
        for note in self._notes:
            self.logger.note(note)
            if self.dist.main and not quiet:
                print(f"note: {note}", file=sys.stderr)

    # ------------------------------------------------------------------ setup

    def _configure_determinism(self) -> None:
        torch.manual_seed(self.config.run.seed)
        random.seed(self.config.run.seed)
        np.random.seed(self.config.run.seed % 2**32)
        if self.config.run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _build_model(self) -> None:
        from jdrl.nets import build_net

        config = self.config
        torch.manual_seed(config.run.seed)  # identical initial weights on every rank
        init_state = None
        if config.net.init:
            name, options, init_state, _ = network_spec(config.net.init, config.net.name)
            config.net.name, config.net.options = name, {**options, **config.net.options}
        self.net = build_net(config.net.name, **config.net.options)
        multiple = getattr(self.net, "size_multiple", 1)
        if config.data.crop is not None and config.data.crop % multiple:
            raise ConfigError(f"data.crop={config.data.crop} must be a multiple of {multiple} for {config.net.name}")
        if init_state is not None:
            load_strict(self.net, init_state, config.net.init)
        self.loss = JDRLLoss(config.loss)
        if self.device.type == "cuda" and config.loss.objective == "jdrl" and config.loss.flow == "dis":
            self._notes.append("loss.flow=dis runs on the CPU; on a GPU, loss.flow=spynet (loss.flow_weights=PATH) "
                               "makes a JDRL step up to 1.6x faster (docs/RESULTS.md, 'Training step')")
        if config.net.init and self.loss.reblur is not None:
            self._init_reblur(config.net.init)
        self.net.to(self.device)
        self.loss.to(self.device)
        if config.run.channels_last and self.device.type == "cuda":
            self.net.to(memory_format=torch.channels_last)
        self.objective: nn.Module = Objective(self.net, self.loss)
        if self.dist.enabled:
            self.objective = nn.parallel.DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # warm-up leaves R unused, reblur-only leaves the network unused
            )
        params = [{"params": list(self.net.parameters()), "name": "net"}]
        if self.loss.reblur is not None:
            params.append({"params": list(self.loss.reblur.parameters()), "name": "reblur"})
        self.optimizer = torch.optim.Adam(params, lr=config.optim.lr, betas=tuple(config.optim.betas),
                                          weight_decay=config.optim.weight_decay)
        self.amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.run.amp) if self.device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        torch.manual_seed(config.run.seed + self.dist.rank)  # dropout differs per rank

    def _init_reblur(self, path: str) -> None:
        data = read_checkpoint(path)
        if data.get("format") == FORMAT and data.get("reblur"):
            load_strict(self.loss.reblur, data["reblur"]["state_dict"], f"{path} (reblur)")
        elif isinstance(data.get("Reblur_state_dict"), dict):
            if self.loss.reblur.kernel == "isotropic":
                self.loss.reblur.load_released(data["Reblur_state_dict"])
            else:  # the released module has isotropic kernels only
                self._notes.append(f"{path}: its Reblur_state_dict is not loaded: loss.reblur={self.config.loss.reblur} "
                                   "is a different reblurring module; it starts from scratch")

    def _resume_path(self, resume: str | None) -> Path | None:
        if resume is None:
            return None
        if resume == "auto":
            return find_latest(self.run_dir)  # None: a fresh start
        path = Path(resume)
        if not path.is_file():
            raise WeightsError(f"--resume {path}: no such checkpoint")
        return path

    # ------------------------------------------------------------ schedule

    @property
    def position(self) -> int:
        return self.epoch if self.config.schedule.unit == "epoch" else self.step

    def stage(self) -> str:
        return "warmup" if self.position < self.config.schedule.warmup else "full"

    def reblur_only(self) -> bool:
        return self.position < self.config.schedule.reblur_only and self.loss.reblur is not None

    def learning_rate(self) -> float:
        optim = self.config.optim
        if self.reblur_only() and optim.reblur_only_lr is not None:
            return optim.reblur_only_lr
        return optim.lr * optim.decay_factor ** (self.position // max(optim.decay_every, 1))

    def finished(self) -> bool:
        return self.position >= self.config.schedule.total

    # -------------------------------------------------------------- training

    def fit(self) -> Path:
        self.logger.note(f"jdrl {jdrl.__version__}: training {self.config.net.name} with objective "
                         f"{self.config.loss.objective} on {self.device} x{self.dist.world}; run folder {self.run_dir}")
        schedule = self.config.schedule
        total_steps = schedule.total * (1 if schedule.unit == "step" else self.sampler.batches_per_epoch)
        self._bar = self.logger.progress(total_steps, "train", disable=self.quiet, initial=self.step)
        with self._signals():
            try:
                while not self.finished():
                    self._train_epoch()
            finally:
                self._bar.close()
                self.logger.close()
        distributed.barrier(self.dist)
        distributed.teardown(self.dist)
        return self.run_dir

    def _train_epoch(self) -> None:
        self.sampler.set_epoch(self.epoch, skip=self.batch_in_epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        # its own generator: creating the iterator must not draw from the global RNG (exact resume)
        generator = torch.Generator().manual_seed(self.config.run.seed * 7919 + self.epoch)
        loader = DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=self.config.data.workers,
                            collate_fn=stack_samples, pin_memory=self.device.type == "cuda", generator=generator)
        for batch in loader:
            self._train_step(batch)
            self._bar.update(1)
            self._bar.set_postfix(epoch=self.epoch, loss=f"{self.logger.last_loss:.4f}", lr=f"{self.learning_rate():.2e}")
            if self.config.schedule.unit == "step":
                self._after_unit()
            if self._should_stop() or self.finished():
                break
        if self.batch_in_epoch >= self.sampler.batches_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            if self.config.schedule.unit == "epoch":
                self._after_unit()
        if self._stop_requested:
            self._interrupt()

    def _train_step(self, batch: dict) -> None:
        blur = batch["blur"].to(self.device, non_blocking=True)
        sharp = batch["sharp"].to(self.device, non_blocking=True)
        if self.config.run.channels_last and self.device.type == "cuda":
            blur = blur.contiguous(memory_format=torch.channels_last)
        frozen = self.reblur_only()  # the network runs under no_grad: only R receives gradients
        self.net.train(not frozen)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        total, parts = self.objective(blur, sharp, self.stage(), frozen, self.amp)
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(total) if self.scaler else total).backward()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        loss_finite = not distributed.any_rank(self.dist, not bool(torch.isfinite(total)))
        # fp16: gradients that overflow the loss scale are the scaler's business, not bad data: it skips
        # the update and lowers its scale (that happens in the first steps of every fp16 run).
        grads_finite = loss_finite and self._grads_finite()
        overflow = self.scaler is not None and loss_finite and not grads_finite
        finite = grads_finite or overflow
        if finite:
            if self.config.optim.grad_clip and not overflow:
                nn.utils.clip_grad_norm_(self._trained_parameters(), self.config.optim.grad_clip)
            (self.scaler.step if self.scaler else lambda o: o.step())(self.optimizer)
            self.stats["consecutive_bad"] = 0
            self.stats["scaler_skips"] += int(overflow)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.stats["bad_steps"] += 1
            self.stats["consecutive_bad"] += 1
        if self.scaler:
            self.scaler.update()
        self.step += 1
        self.batch_in_epoch += 1
        self.logger.record(self, {k: float(v) for k, v in parts.items()}, finite)
        if self.stats["consecutive_bad"] >= self.config.run.max_bad_steps:
            path = self._save("last.pt")
            raise TrainingError(
                f"{self.stats['consecutive_bad']} non-finite losses in a row at step {self.step} "
                f"({self.stats['bad_steps']} in all); stopped. The weights before them are in {path}. "
                "Check the data (jdrl data check) or lower optim.lr."
            )

    def _trained_parameters(self) -> Iterator[torch.Tensor]:
        return (p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None)

    def _grads_finite(self) -> bool:
        grads = [p.grad for p in self._trained_parameters()]
        return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())

    def _after_unit(self) -> None:
        schedule = self.config.schedule
        done = self.finished()
        if self.val_set is not None and (self.position % schedule.val_every == 0 or done):
            self.validate()
        if self.position % schedule.save_every == 0 or done:
            self._save("last.pt")

    # ------------------------------------------------------------- validation

    def validate(self) -> dict:
        """Score the validation set with the evaluation protocol (main rank); keep the best checkpoint."""
        means: dict = {}
        if self.dist.main:
            from jdrl.evaluation.protocol import evaluate

            flow = self.loss.flow if self.config.run.val_flow is None else _build_val_flow(self.config.run.val_flow)
            if flow is None:
                flow = _build_val_flow(self.config.loss.flow, self.config.loss.flow_weights)
            val_set = self.val_set
            if self.config.data.val_limit:
                val_set = Subset(val_set, range(min(self.config.data.val_limit, len(val_set))))
            samples: list[dict[str, torch.Tensor]] = []

            def keep_sample(name: str, panels: dict[str, torch.Tensor]) -> None:
                if len(samples) < self.config.run.samples:
                    samples.append(panels)

            result = evaluate(val_set, self.net, flow=flow, device=self.device, tile=self.config.run.val_tile,
                              on_image=keep_sample if self.config.run.samples else None, panel_size=SAMPLE_SIDE,
                              mask_mode=self.config.loss.mask)
            means = result.means
            self.logger.validation(self, means, sample_grid(samples))
            self._update_best(means)
        distributed.barrier(self.dist)
        return means

    def _update_best(self, means: dict) -> None:
        key = self.config.schedule.best_metric
        if key == "auto":
            key = next((k for k in ("psnr_aligned", "psnr_deformed", "psnr") if k in means), None)
        value = means.get(key) if key else None
        if value is None or not math.isfinite(value):
            return
        higher_is_better = not key.startswith(("mae", "lpips", "flow_error"))
        best = self.best["value"]
        if best is None or (value > best if higher_is_better else value < best):
            self.best = {"metric": key, "value": value, "step": self.step}
            self._save("best.pt")

    # ------------------------------------------------------------ checkpoints

    def state(self) -> dict:
        reblur = self.loss.reblur
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "versions": _versions(),
            "config": to_dict(self.config),
            "net": {"name": self.config.net.name, "options": dict(self.config.net.options),
                    "state_dict": self.net.state_dict()},
            "reblur": None if reblur is None else {
                "options": {"kernel": reblur.kernel, "support": reblur.support, "impl": reblur.impl},
                "state_dict": reblur.state_dict()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            # the learning rate is a function of the position (Trainer.learning_rate): this records it, and
            # the rule, for people reading the file; resuming recomputes it from "progress" and the config
            "scheduler": {"lr": self.learning_rate(), "unit": self.config.schedule.unit,
                          "decay_every": self.config.optim.decay_every, "decay_factor": self.config.optim.decay_factor,
                          "reblur_only": self.config.schedule.reblur_only},
            "progress": {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch},
            "rng": _rng_state(),
            "stats": dict(self.stats),
            "best": dict(self.best),
        }

    def _save(self, name: str) -> Path:
        path = self.run_dir / name
        if self.dist.main:
            state = self.state()
            atomic_save(state, path)
            if self.config.run.keep_epoch_checkpoints and name == "last.pt":
                atomic_save(state, self.run_dir / f"step_{self.step:08d}.pt")
        return path

    def _load_state(self, path: Path) -> None:
        data = read_checkpoint(path, map_location="cpu")
        if data.get("format") != FORMAT:
            raise WeightsError(f"{path} is not a jdrl training checkpoint (use net.init for released weights)")
        load_strict(self.net, data["net"]["state_dict"], str(path))
        if self.loss.reblur is not None:
            if not data.get("reblur"):
                raise WeightsError(f"{path} has no reblurring module but this config uses one")
            load_strict(self.loss.reblur, data["reblur"]["state_dict"], f"{path} (reblur)")
        self.optimizer.load_state_dict(data["optimizer"])
        if self.scaler is not None and data.get("scaler"):
            self.scaler.load_state_dict(data["scaler"])
        progress = data["progress"]
        self.epoch, self.step, self.batch_in_epoch = progress["epoch"], progress["step"], progress["batch_in_epoch"]
        self.stats.update(data.get("stats", {}))
        self.best.update(data.get("best", {}))
        if self.dist.world == 1:  # per-rank generators differ; a multi-process resume re-seeds them
            _set_rng_state(data["rng"])
        else:
            torch.manual_seed(self.config.run.seed + self.dist.rank + self.step)

    # ---------------------------------------------------------- interruption

    @contextlib.contextmanager
    def _signals(self):
        """Ctrl-C / SIGTERM finish the current step, save, and stop (main thread only)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self._stop_requested:  # second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _should_stop(self) -> bool:
        self._stop_requested = distributed.any_rank(self.dist, self._stop_requested)
        return self._stop_requested

    def _interrupt(self) -> None:
        path = self._save("last.pt")
        distributed.barrier(self.dist)
        raise TrainingInterrupted(f"interrupted at step {self.step}; state saved in {path} "
                                  f"(continue with: jdrl train ... --run-dir {self.run_dir} --resume auto)")


# ------------------------------------------------------------------ helpers


SAMPLE_SIDE = 256  # px, longer side of each validation image shown in TensorBoard
# left to right in each row of TensorBoard's "val/samples" (the aligned truth on synthetic data only)
SAMPLE_PANELS = ("input", "output", "GT", "aligned truth", "deformed GT", "calibration mask", "flow output->GT")


def sample_grid(samples: list[dict[str, torch.Tensor]]) -> torch.Tensor | None:
    """One row per validation image: its panels (those of ``SAMPLE_PANELS`` it has) side by side, zero-padded."""
    if not samples:
        return None
    rows = [torch.cat([panels[name] for name in SAMPLE_PANELS if name in panels], dim=-1) for panels in samples]
    height, width = max(r.shape[-2] for r in rows), max(r.shape[-1] for r in rows)
    return torch.stack([nn.functional.pad(r, (0, width - r.shape[-1], 0, height - r.shape[-2])) for r in rows])


def _build_val_flow(name: str, weights: str | None = None):
    from jdrl.flow import build_flow

    return build_flow(name, weights)


def _rng_state() -> dict:
    name, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached]  # loadable with weights_only
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _versions() -> dict:
    versions = {"jdrl": jdrl.__version__, "torch": str(torch.__version__)}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            versions["git"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return versions


def _progress(desc: str):
    from jdrl.progress import bar

    return bar(desc)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kwargs) -> None: ...
    def close(self) -> None: ...


class RunLogger:
    """The run folder: resolved config, versions, CSV logs, a text log and TensorBoard (main rank only)."""

    def __init__(self, run_dir: Path, config: TrainConfig, enabled: bool, resumed: bool):
        self.enabled, self.run_dir, self.config = enabled, run_dir, config
        self.last_loss = float("nan")
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0
        self._started = time.perf_counter()
        self._writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, run_dir / "config.yaml")
        (run_dir / "version.txt").write_text("\n".join(f"{k}: {v}" for k, v in _versions().items()) + "\n")
        self._text = open(run_dir / "train.log", "a")
        self._train_csv = CsvLog(run_dir / "log.csv", ("step", "epoch", "lr", "loss", *PART_COLUMNS, "skipped", "seconds"),
                                 append=resumed)
        self._val_csv = None  # columns known at the first validation
        self._resumed = resumed

    def note(self, message: str) -> None:
        if self.enabled:
            self._text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self._text.flush()

    def progress(self, total: int, desc: str, disable: bool, initial: int = 0):
        if not self.enabled or disable:
            return _NoBar()
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False)

    @property
    def writer(self):
        if self._writer is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    def record(self, trainer: Trainer, parts: dict[str, float], finite: bool) -> None:
        if finite:
            self.last_loss = parts["total"]
            for key, value in parts.items():
                self._sums[key] += value
            self._count += 1
        if not self.enabled or trainer.step % trainer.config.schedule.log_every:
            return
        means = {k: v / max(self._count, 1) for k, v in self._sums.items()}
        lr = trainer.learning_rate()
        row = {"step": trainer.step, "epoch": trainer.epoch, "lr": lr, "loss": means.get("total"),
               **{k: means.get(k) for k in PART_COLUMNS}, "skipped": trainer.stats["bad_steps"],
               "seconds": round(time.perf_counter() - self._started, 2)}
        self._train_csv.write(row)
        for key, value in means.items():
            self.writer.add_scalar(f"loss/{key}", value, trainer.step)
        self.writer.add_scalar("lr", lr, trainer.step)
        self.writer.add_scalar("skipped_steps", trainer.stats["bad_steps"], trainer.step)
        self._sums.clear()
        self._count = 0

    def validation(self, trainer: Trainer, means: dict, images: torch.Tensor | None) -> None:
        if not self.enabled:
            return
        if self._val_csv is None:
            self._val_csv = CsvLog(self.run_dir / "val.csv", ("step", "epoch", *sorted(means)), append=self._resumed)
        self._val_csv.write({"step": trainer.step, "epoch": trainer.epoch, **means})
        for key, value in means.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(f"val/{key}", value, trainer.step)
        if images is not None:
            self.writer.add_images("val/samples", images.clamp(0, 1), trainer.step)
        summary = ", ".join(f"{k} {v:.4g}" for k, v in sorted(means.items()) if v is not None)
        self.note(f"step {trainer.step} epoch {trainer.epoch}: validation {summary}")

    def close(self) -> None:
        if self.enabled:
            self._text.close()
            self._train_csv.close()
            if self._val_csv:
                self._val_csv.close()
            if self._writer is not None:
                self._writer.close()


class CsvLog:
    """Append-only CSV with a fixed header (extra keys ignored, missing ones left empty)."""

    def __init__(self, path: Path, columns: tuple[str, ...], append: bool):
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
