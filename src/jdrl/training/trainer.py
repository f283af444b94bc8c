"""The training loop: paper schedule, ablations, fine-tuning, validation, checkpoints, resume, DDP.

One optimizer (Adam) updates the deblurring network and the reblurring module
together, as released. Stages by schedule position ``p`` (epochs or steps):

* ``p < reblur_only``: fine-tuning phase (i), the network is frozen, only ``R`` learns;
* ``p < warmup``: the released warm-up (GT warped onto the *input*, plain Charbonnier);
* otherwise the full JDRL objective.

The learning rate is ``lr * decay_factor ** (p // decay_every)`` or a cosine to ``min_lr``
(:func:`jdrl.training.state.learning_rate`). This module is the loop; what it trains with is
built by :mod:`jdrl.training.build` (network, loss, :mod:`~jdrl.training.objective`,
:mod:`~jdrl.training.ema`, optimizer), validation and the best checkpoint are
:mod:`jdrl.training.validation`, resuming is :mod:`jdrl.training.resume`, what a run writes
besides checkpoints is :mod:`jdrl.training.runlog`, its resumable state :mod:`jdrl.training.state`,
the checkpoint layout :mod:`jdrl.checkpoint`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from jdrl._version import __version__
from jdrl.checkpoint import make_checkpoint, selected_checkpoint, write_checkpoint
from jdrl.config import to_dict, validate
from jdrl.data.datasets import stack_samples
from jdrl.errors import TrainingError, TrainingInterrupted
from jdrl.hub import write_model_folder
from jdrl.progress import bar
from jdrl.runtime import versions
from jdrl.seeds import Stream, stream_seed
from jdrl.training import distributed, validation
from jdrl.training import resume as _resume
from jdrl.training.build import build_parts, read_init
from jdrl.training.config import TrainConfig
from jdrl.training.data import build_datasets
from jdrl.training.ema import WeightEMA, averaged_weights
from jdrl.training.interrupt import StopRequest
from jdrl.training.objective import Objective
from jdrl.training.runlog import NoBar, RunLog
from jdrl.training.sampling import EpochBatchSampler
from jdrl.training.state import (
    Best,
    RunState,
    capture_rng,
    learning_rate,
    restore_rng,
    scheduler_record,
    seed_everything,
)

__all__ = ["MODEL_DIR", "Objective", "Trainer", "WeightEMA"]

MODEL_DIR = "model"  # RUN/model/: the run's result as a shareable folder (jdrl.hub)


class Trainer:
    """Runs one training run in ``run_dir``; :meth:`fit` returns the folder when done.

    ``resume``: ``None`` (a new run: refused in a folder that holds one unless
    ``overwrite``), ``"auto"`` (the newest readable checkpoint of ``run_dir``; a fresh
    start only in a folder without a run) or a checkpoint path (:func:`jdrl.training.resume.resume_path`).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        resume: str | None = None,
        datasets: tuple[Dataset, Dataset | None] | None = None,
        quiet: bool = False,
        overwrite: bool = False,
        trust_code: bool = False,
    ):
        self.config, self.run_dir, self.quiet = validate(config), Path(run_dir), quiet
        self._notes: list[str] = []  # things the user should know, said once the run folder exists
        resume_path = _resume.resume_path(self.run_dir, resume, overwrite, self._notes)
        self.dist = distributed.setup(config.run.device)
        self.device = self.dist.device
        self._configure_determinism()
        # trust_code: may net.init's file name code to import (package.module:Class)? Read before the data: a bad
        # file fails at once
        init = read_init(config, trust_code, self._notes) if config.net.init else None
        self.train_set, self.val_set = datasets if datasets is not None else build_datasets(
            config.data, config.run.seed, progress=None if quiet else bar("checking data")
        )
        validation.check_selection(config, self.val_set)
        parts = build_parts(config, init, self.device, self.dist)
        self.net_spec, self.net, self.loss, self.ema = parts.spec, parts.net, parts.loss, parts.ema
        self.objective, self.optimizer, self.amp, self.scaler = parts.objective, parts.optimizer, parts.amp, parts.scaler
        self._notes += parts.notes
        self.sampler = EpochBatchSampler(len(self.train_set), config.data.batch_size, config.run.seed,
                                         self.dist.rank, self.dist.world)
        self.state = RunState()
        self._stop = StopRequest()  # Ctrl-C / SIGTERM: finish the step, save, stop
        self._bar = NoBar()  # the run's progress bar, made by fit()
        self._val_flow: nn.Module | None = None  # the flow validation measures with (validation.validation_flow)
        if resume_path is not None:
            self._load_state(resume_path)
        self.log = RunLog(self.run_dir, config, self.loss.part_names(), versions(git=True),
                          enabled=self.dist.main, resumed=resume_path is not None)
        for note in self._notes:
            self.log.note(note)
            if self.dist.main and not quiet:
                print(f"note: {note}", file=sys.stderr)

    def _configure_determinism(self) -> None:
        seed_everything(self.config.run.seed)
        if self.config.run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    # ------------------------------------------------------------ schedule

    @property
    def epoch(self) -> int:
        return self.state.progress.epoch

    @property
    def step(self) -> int:
        return self.state.progress.step

    @property
    def stats(self) -> dict:
        return self.state.stats.as_dict()

    @property
    def position(self) -> int:
        return self.state.progress.position(self.config.schedule.unit)

    def stage(self) -> str:
        return "warmup" if self.position < self.config.schedule.warmup else "full"

    def reblur_only(self) -> bool:
        return self.position < self.config.schedule.reblur_only and self.loss.reblur is not None

    def learning_rate(self) -> float:
        return learning_rate(self.config, self.position, self.reblur_only())

    def finished(self) -> bool:
        return self.position >= self.config.schedule.total

    # -------------------------------------------------------------- training

    def fit(self) -> Path:
        self.log.note(f"jdrl {__version__}: training {self.net_spec.name} with objective "
                      f"{self.config.loss.objective} on {self.device} x{self.dist.world}; run folder {self.run_dir}")
        schedule = self.config.schedule
        total_steps = schedule.total * (1 if schedule.unit == "step" else self.sampler.batches_per_epoch)
        self._bar = self.log.progress(total_steps, "train", disable=self.quiet, initial=self.step)
        with self._stop.on_signals():
            try:
                while not self.finished():
                    self._train_epoch()
            except (TrainingError, TrainingInterrupted):
                raise  # these saved already
            except BaseException:
                self._save_after_failure()
                raise
            finally:
                self._bar.close()
                self.log.close()
        distributed.barrier(self.dist)
        distributed.teardown(self.dist)
        self._refuse_a_run_that_never_stepped()
        return self.run_dir

    def _refuse_a_run_that_never_stepped(self) -> None:
        """A run whose every step was skipped (non-finite loss or gradient) trained nothing: not a success."""
        bad = self.state.stats.bad_steps
        if bad and bad >= self.step:
            raise TrainingError(f"every one of the {self.step} step(s) had a non-finite loss or gradient and was "
                                f"skipped: the network did not train (its initial weights are in {self.run_dir}). "
                                "Check loss.* and optim.* (e.g. a very large loss.alpha or optim.lr) and the data")
        if bad and self.dist.main and not self.quiet:
            print(f"note: {bad} of {self.step} steps were skipped for a non-finite loss or gradient (log.csv, "
                  "bad_steps)", file=sys.stderr)

    def selected(self) -> Path:
        """The run's result: ``best.pt`` with ``run.select=best`` (when one was kept), else ``last.pt``."""
        return selected_checkpoint(self.run_dir, self.config.run.select)

    def _save_after_failure(self) -> None:
        """An unexpected error after step 1 (e.g. in validation) keeps the steps done so far in ``last.pt``."""
        if self.step > 0 and self.dist.main:
            with contextlib.suppress(Exception):
                path = self._save("last.pt")
                self.log.note(f"stopped by an error at step {self.step}; state saved in {path}")
                print(f"jdrl train: the state at step {self.step} was saved in {path} (--resume auto continues it)",
                      file=sys.stderr)

    def _train_epoch(self) -> None:
        progress = self.state.progress
        self.sampler.set_epoch(progress.epoch, skip=progress.batch_in_epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(progress.epoch)
        # the loader's own generator: building it draws nothing from the global RNG (exact resume)
        generator = torch.Generator().manual_seed(stream_seed(self.config.run.seed, Stream.LOADER, progress.epoch))
        loader = DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=self.config.data.workers,
                            collate_fn=stack_samples, pin_memory=self.device.type == "cuda", generator=generator)
        for batch in loader:
            self._train_step(batch)
            self._bar.update(1)
            self._bar.set_postfix(epoch=progress.epoch, loss=f"{self.log.last_loss:.4f}", lr=f"{self.learning_rate():.2e}")
            if self.config.schedule.unit == "step":
                self._after_unit()
            if self._should_stop() or self.finished():
                break
        if progress.batch_in_epoch >= self.sampler.batches_per_epoch:
            progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
            if self.config.schedule.unit == "epoch":
                self._after_unit()
        if self._stop.requested:
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
        finite = self._apply_update(total)
        progress, stats = self.state.progress, self.state.stats
        progress.step += 1
        progress.batch_in_epoch += 1
        self.log.record(progress.step, progress.epoch, self.learning_rate(), {k: float(v) for k, v in parts.items()},
                        finite, stats.bad_steps)
        if stats.consecutive_bad >= self.config.run.max_bad_steps:
            path = self._save("last.pt")
            raise TrainingError(
                f"{stats.consecutive_bad} non-finite losses in a row at step {self.step} "
                f"({stats.bad_steps} in all); stopped. The weights before them are in {path}. "
                "Check the data (jdrl data check) or lower optim.lr."
            )

    def _apply_update(self, total: torch.Tensor) -> bool:
        """Step the optimizer unless the loss or a gradient is not finite (then skip and count); True if stepped."""
        stats = self.state.stats
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
            if self.ema is not None and not overflow:
                self.ema.update(self.net)
            stats.consecutive_bad = 0
            stats.scaler_skips += int(overflow)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            stats.bad_steps += 1
            stats.consecutive_bad += 1
        if self.scaler:
            self.scaler.update()
        return finite

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

    # ------------------------------------------------- validation and checkpoints

    def validate(self) -> dict:
        """Score the validation set with the evaluation protocol (main rank); keep the best checkpoint."""
        means: dict = {}
        if self.dist.main and self.val_set is not None:
            if self._val_flow is None:  # built at the first validation, then kept (a PWC-Net/SpyNet file is read once)
                self._val_flow = validation.validation_flow(self.config, self.loss, self.device)
            flow = self._val_flow
            with averaged_weights(self.net, self.ema):  # with run.ema_decay, the averaged network is the one scored
                means, grid = validation.score(self.config, self.val_set, self.net, flow, self.device)
            self.log.validation(self.step, self.epoch, means, grid)
            self._update_best(means)
        distributed.barrier(self.dist)
        return means

    def _update_best(self, means: dict) -> None:
        key = validation.best_key(self.config, means)
        value = validation.measured(key, means)
        if key is None or value is None:
            if key and key not in means:
                self.log.note(f"schedule.best_metric={key} was not measured in this validation (columns: "
                              f"{', '.join(sorted(means))}); best.pt not updated")
            return
        if validation.improves(key, value, self.state.best.value):
            self.state.best = Best(key, value, self.step)
            self._save("best.pt")

    def checkpoint(self) -> dict:
        """Everything needed to resume (and to deploy the network), in the jdrl checkpoint schema."""
        reblur = self.loss.reblur
        return make_checkpoint(
            self.net_spec.name, self.net_spec.options, self.net.state_dict(),
            reblur=None if reblur is None else {
                "options": {"kernel": reblur.kernel, "support": reblur.support, "impl": reblur.impl},
                "state_dict": reblur.state_dict()},
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler else None,
            scheduler=scheduler_record(self.config, self.learning_rate()),
            progress=self.state.progress.as_dict(),
            rng=capture_rng(),
            stats=self.state.stats.as_dict(),
            best=self.state.best.as_dict(),
            config=to_dict(self.config),
            versions=versions(git=True),
            ema=None if self.ema is None else self.ema.state_dict(),
        )

    def _save(self, name: str) -> Path:
        path = self.run_dir / name
        if self.dist.main:
            checkpoint = self.checkpoint()
            write_checkpoint(checkpoint, path)
            if self.config.run.keep_epoch_checkpoints and name == "last.pt":
                write_checkpoint(checkpoint, self.run_dir / f"step_{self.step:08d}.pt")
            if name == ("best.pt" if self.config.run.select == "best" else "last.pt"):
                self._export_model()
        return path

    def _export_model(self) -> None:
        """``RUN/model/`` (config.json + model.safetensors): the network of the checkpoint ``run.select`` picks."""
        state = self.ema.state if self.ema is not None else self.net.state_dict()
        write_model_folder(self.run_dir / MODEL_DIR, self.net_spec.name, self.net_spec.options, state, step=self.step,
                           ema=self.ema is not None, size_multiple=getattr(self.net, "size_multiple", None))

    def _load_state(self, path: Path) -> None:
        data = _resume.read_resumable(path)
        _resume.restore(data, path, net=self.net, reblur=self.loss.reblur, optimizer=self.optimizer,
                        scaler=self.scaler, state=self.state)
        if self.ema is not None and not _resume.restore_ema(data, path, self.ema, self._notes):
            self.ema = WeightEMA(self.net, self.config.run.ema_decay, self.config.run.ema_warmup)
        if self.dist.world == 1:  # per-rank generators differ; a multi-process resume re-seeds them
            restore_rng(data["rng"])
        else:
            torch.manual_seed(self.config.run.seed + self.dist.rank + self.step)

    # ---------------------------------------------------------- interruption

    def _should_stop(self) -> bool:
        self._stop.requested = distributed.any_rank(self.dist, self._stop.requested)
        return self._stop.requested

    def _interrupt(self) -> None:
        path = self._save("last.pt")
        distributed.barrier(self.dist)
        raise TrainingInterrupted(f"interrupted at step {self.step}; state saved in {path} "
                                  f"(continue with: jdrl train ... --run-dir {self.run_dir} --resume auto)")
