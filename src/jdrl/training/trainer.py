"""The training loop: paper schedule, ablations, fine-tuning, validation, checkpoints, resume, DDP.

One optimizer (Adam) updates the deblurring network and the reblurring module
together, as released. Stages by schedule position ``p`` (epochs or steps):

* ``p < reblur_only``: fine-tuning phase (i), the network is frozen, only ``R`` learns;
* ``p < warmup``: the released warm-up (GT warped onto the *input*, plain Charbonnier);
* otherwise the full JDRL objective.

The learning rate is ``lr * decay_factor ** (p // decay_every)`` or a cosine to ``min_lr``
(:func:`jdrl.training.state.learning_rate`). What a run writes
besides checkpoints is :mod:`jdrl.training.runlog`; what it needs to resume is
:mod:`jdrl.training.state`; the checkpoint layout is :mod:`jdrl.checkpoint`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.utils.data import DataLoader, Dataset, Subset

import jdrl
from jdrl.checkpoint import (
    TEMP_PATTERN,
    is_jdrl_checkpoint,
    make_checkpoint,
    read_checkpoint,
    scan_run,
    selected_checkpoint,
    write_checkpoint,
)
from jdrl.config import to_dict, validate
from jdrl.data.datasets import stack_samples
from jdrl.errors import ConfigError, TrainingError, TrainingInterrupted, WeightsError
from jdrl.files import file_problem
from jdrl.losses import JDRLLoss
from jdrl.nets import has_training_outputs, split_training_outputs
from jdrl.nets.factory import NetSpec, build_registered, describe, read_weights
from jdrl.runtime import amp_dtype, versions
from jdrl.seeds import Stream, stream_seed
from jdrl.training import distributed
from jdrl.training.config import TrainConfig
from jdrl.training.data import build_datasets
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
from jdrl.weights import load_strict

# Files that say a folder holds a training run (never overwritten without asking).
RUN_FILES = ("last.pt", "best.pt", "log.csv", "val.csv", "train.log", "config.yaml")
class Objective(nn.Module):
    """Network + loss in one module, so DDP sees every trained parameter in one forward.

    The loss sees the network's ``forward`` output; only when a loss term needs auxiliary outputs
    (``loss.needs_outputs``, e.g. ``stage_deblur``) is ``net.training_outputs`` called instead
    (:mod:`jdrl.nets`: one pass, the same restored image plus the auxiliary outputs).
    """

    def __init__(self, net: nn.Module, loss: JDRLLoss, compile_net: bool = False, net_name: str | None = None):
        super().__init__()
        self.net, self.loss = net, loss
        self.net_name = net_name or describe(net).name
        self._aux = loss.needs_outputs
        if self._aux and not has_training_outputs(net):
            raise ConfigError(
                f"loss.terms {list(loss.output_terms)} need the network's auxiliary outputs, and network "
                f"{self.net_name!r} has none (no training_outputs(x) method, README 'Any network of yours'; "
                "mprnet offers its earlier stages)")
        run: Callable[[torch.Tensor], Any] = net.training_outputs if self._aux else net  # type: ignore[assignment]
        # run.compile: the network's forward compiled (torch.compile); its parameters stay self.net's
        self._forward = torch.compile(run) if compile_net else run

    def forward(self, blur: torch.Tensor, sharp: torch.Tensor, stage: str, frozen: bool, amp: torch.dtype | None):
        with torch.autocast(device_type=blur.device.type, dtype=amp, enabled=amp is not None):
            with record_function("jdrl.network"):
                if frozen:
                    with torch.no_grad():
                        result = self._forward(blur)
                else:
                    result = self._forward(blur)
        if not self._aux:
            return self.loss(result, blur, sharp, stage=stage)
        restored, outputs = split_training_outputs(result, self.net_name)
        try:
            return self.loss(restored, blur, sharp, stage=stage, outputs=outputs)
        except ConfigError as error:  # a term refusing these outputs: say which network gave them
            raise ConfigError(f"network {self.net_name!r}: {error}") from None


class Trainer:
    """Runs one training run in ``run_dir``; :meth:`fit` returns the folder when done.

    ``resume``: ``None`` (a new run: refused in a folder that holds one unless
    ``overwrite``), ``"auto"`` (the newest readable checkpoint of ``run_dir``; a fresh
    start only in a folder without a run) or a checkpoint path.
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
        self.trust_code = trust_code  # may net.init's file name code to import (package.module:Class)?
        self._notes: list[str] = []  # things the user should know, said once the run folder exists
        resume_path = self._resume_path(resume, overwrite)
        self.dist = distributed.setup(config.run.device)
        self.device = self.dist.device
        self._configure_determinism()
        self._init = self._read_init() if config.net.init else None  # before the data: a bad file fails at once
        self.train_set, self.val_set = datasets if datasets is not None else build_datasets(
            config.data, config.run.seed, progress=None if quiet else _progress("checking data")
        )
        self._check_selection()
        self._build_model()
        self.sampler = EpochBatchSampler(len(self.train_set), config.data.batch_size, config.run.seed,
                                         self.dist.rank, self.dist.world)
        self.state = RunState()
        self._stop_requested = False
        self._bar = NoBar()  # the run's progress bar, made by fit()
        if resume_path is not None:
            self._load_state(resume_path)
        self.log = RunLog(self.run_dir, config, self.loss.part_names(), versions(git=True),
                          enabled=self.dist.main, resumed=resume_path is not None)
        for note in self._notes:
            self.log.note(note)
            if self.dist.main and not quiet:
                print(f"note: {note}", file=sys.stderr)

    # ------------------------------------------------------------------ setup

    def _configure_determinism(self) -> None:
        seed_everything(self.config.run.seed)
        if self.config.run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _build_model(self) -> None:
        config = self.config
        torch.manual_seed(config.run.seed)  # identical initial weights on every rank
        init = self._init
        self.net_spec = init.spec if init is not None else NetSpec(config.net.name, dict(config.net.options))
        self.net = build_registered(self.net_spec.name, self.net_spec.options,
                                    where=config.net.init if init is not None else "net.options")
        multiple = getattr(self.net, "size_multiple", 1)
        if config.data.crop is not None and config.data.crop % multiple:
            raise ConfigError(f"data.crop={config.data.crop} must be a multiple of {multiple} for {self.net_spec.name}")
        if init is not None:
            load_strict(self.net, init.state_dict, config.net.init)
        self.loss = JDRLLoss(config.loss, device=self.device)
        self._notes += self.loss.notes
        if self.device.type == "cuda" and config.loss.objective == "jdrl" and config.loss.flow == "dis":
            self._notes.append("loss.flow=dis runs on the CPU; on a GPU, loss.flow=auto (RAFT-small) or spynet "
                               "(loss.flow_weights=PATH) is faster (docs/RESULTS.md, 'Training step')")
        if init is not None and self.loss.reblur is not None:
            self._init_reblur(init.checkpoint, config.net.init)
        self.net.to(self.device)
        self.loss.to(self.device)
        if config.run.channels_last and self.device.type == "cuda":
            self.net.to(memory_format=torch.channels_last)
        self.ema = WeightEMA(self.net, config.run.ema_decay, config.run.ema_warmup) if config.run.ema_decay else None
        self.objective: nn.Module = Objective(self.net, self.loss, compile_net=config.run.compile,
                                              net_name=self.net_spec.name)
        if self.dist.enabled:
            self.objective = nn.parallel.DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # warm-up leaves R unused, reblur-only leaves the network unused
            )
        params = [{"params": list(self.net.parameters()), "name": "net"}]
        if list(self.loss.parameters()):
            params.append({"params": list(self.loss.parameters()), "name": "reblur"})
        self.optimizer = torch.optim.Adam(params, lr=config.optim.lr, betas=tuple(config.optim.betas),
                                          weight_decay=config.optim.weight_decay)
        self.amp = amp_dtype(config.run.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        torch.manual_seed(config.run.seed + self.dist.rank)  # dropout differs per rank

    def _read_init(self):
        """``net.init``'s weights. The file's architecture wins over ``net.name`` (a preset's default) when it tells."""
        from jdrl.hub import is_model_source

        config = self.config.net
        # net.name reached the trainer typed by the user or trusted (jdrl.training.load_train_config refuses a code
        # name from a config file without trust_code), so the file may name that same network
        trust = {"trust_code": self.trust_code, "trusted_name": config.name, "options": config.options}
        if is_model_source(config.init):  # a model folder, .safetensors file or hf: id: read_weights reads it
            return read_weights(config.init, None, **trust)
        data = read_checkpoint(config.init)  # read once; both attempts below use it
        try:
            init = read_weights(data, None, source=config.init, **trust)
        except WeightsError:  # the file cannot tell: net.name picks the network (and names the keys that differ)
            return read_weights(data, config.name, source=config.init, **trust)
        if init.spec.name != config.name:
            self._notes.append(f"net.init {config.init} holds a {init.spec.name} network: training that "
                               f"(net.name={config.name} is not used)")
        return init

    def _init_reblur(self, checkpoint: dict, path: str) -> None:
        if is_jdrl_checkpoint(checkpoint) and checkpoint.get("reblur"):
            load_strict(self.loss.reblur, checkpoint["reblur"]["state_dict"], f"{path} (reblur)")
        elif isinstance(checkpoint.get("Reblur_state_dict"), dict):
            if self.loss.reblur.kernel == "isotropic":
                self.loss.reblur.load_released(checkpoint["Reblur_state_dict"])
            else:  # the released module has isotropic kernels only
                self._notes.append(f"{path}: its Reblur_state_dict is not loaded: loss.reblur={self.config.loss.reblur} "
                                   "is a different reblurring module; it starts from scratch")

    def _resume_path(self, resume: str | None, overwrite: bool) -> Path | None:
        """The checkpoint to continue, or ``None`` for a fresh start (checked before any work is done)."""
        holds_run = [name for name in RUN_FILES if (self.run_dir / name).exists()]
        if resume is None:
            if holds_run and not overwrite:
                raise ConfigError(
                    f"{self.run_dir} holds a training run ({', '.join(holds_run)}); continue it with --resume auto, "
                    "choose a fresh --run-dir, or pass --overwrite to replace it")
            return None
        self._remove_stale_temporaries()
        if resume != "auto":
            path = Path(resume)
            problem = file_problem(path)
            if problem:
                raise WeightsError(f"--resume {path}: {'no such checkpoint' if problem == 'no such file' else problem}")
            return path
        good, bad = scan_run(self.run_dir)
        for path, reason in bad:
            self._notes.append(f"--resume auto: skipped {path.name} ({reason})")
        if good:
            step, _, path = max(good)
            self._notes.append(f"--resume auto: continuing from {path.name} (step {step})")
            return path
        if holds_run:
            found = ", ".join(p.name for p, _ in bad) or "none"
            raise WeightsError(f"--resume auto: {self.run_dir} holds a run but no readable checkpoint (found: {found}); "
                               "nothing was changed. Use a fresh --run-dir, or --overwrite to start over there")
        return None  # an empty or new folder: a fresh start

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of interrupted saves (``.last.pt.*.tmp``): never valid, removed before resuming."""
        for stale in self.run_dir.glob(TEMP_PATTERN):
            stale.unlink(missing_ok=True)

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
        self.log.note(f"jdrl {jdrl.__version__}: training {self.net_spec.name} with objective "
                      f"{self.config.loss.objective} on {self.device} x{self.dist.world}; run folder {self.run_dir}")
        schedule = self.config.schedule
        total_steps = schedule.total * (1 if schedule.unit == "step" else self.sampler.batches_per_epoch)
        self._bar = self.log.progress(total_steps, "train", disable=self.quiet, initial=self.step)
        with self._signals():
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

    # ------------------------------------------------------------- validation

    def validate(self) -> dict:
        """Score the validation set with the evaluation protocol (main rank); keep the best checkpoint."""
        means: dict = {}
        if self.dist.main:
            from jdrl.evaluation.protocol import evaluate

            flow = self.loss.flow if self.config.run.val_flow is None else _build_val_flow(
                self.config.run.val_flow, None, self.device)
            if flow is None:
                flow = _build_val_flow(self.config.loss.flow, self.config.loss.flow_weights, self.device)
            val_set = self.val_set
            if self.config.data.val_limit:
                val_set = Subset(val_set, range(min(self.config.data.val_limit, len(val_set))))
            samples: list[dict[str, torch.Tensor]] = []

            def keep_sample(name: str, panels: dict[str, torch.Tensor]) -> None:
                if len(samples) < self.config.run.samples:
                    samples.append(panels)

            with self._averaged_weights():  # with run.ema_decay, the averaged network is the one scored
                result = evaluate(val_set, self.net, flow=flow, device=self.device, tile=self.config.run.val_tile,
                                  on_image=keep_sample if self.config.run.samples else None, panel_size=SAMPLE_SIDE,
                                  mask_mode=self.config.loss.mask)
            means = result.means
            self.log.validation(self.step, self.epoch, means, sample_grid(samples))
            self._update_best(means)
        distributed.barrier(self.dist)
        return means

    def _check_selection(self) -> None:
        """``schedule.best_metric`` names a validation column, and ``run.select=best`` has a validation set."""
        from jdrl.evaluation.protocol import METRIC_COLUMNS

        key = self.config.schedule.best_metric
        if key != "auto" and key not in METRIC_COLUMNS:
            raise ConfigError(f"schedule.best_metric={key!r} is not a validation column; "
                              f"choose auto or one of: {', '.join(METRIC_COLUMNS)}")
        if self.config.run.select == "best" and self.val_set is None:
            raise ConfigError("run.select=best needs a validation set (data.val or data.synthetic.val)")

    def _update_best(self, means: dict) -> None:
        key = self.config.schedule.best_metric
        if key == "auto":
            key = next((k for k in ("psnr_aligned", "psnr_deformed", "psnr") if k in means), None)
        value = means.get(key) if key else None
        if value is None or not math.isfinite(value):
            if key and key not in means:
                self.log.note(f"schedule.best_metric={key} was not measured in this validation (columns: "
                              f"{', '.join(sorted(means))}); best.pt not updated")
            return
        higher_is_better = not key.startswith(("mae", "lpips", "flow_error"))
        best = self.state.best.value
        if best is None or (value > best if higher_is_better else value < best):
            self.state.best = Best(key, value, self.step)
            self._save("best.pt")

    # ------------------------------------------------------------ checkpoints

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
        from jdrl.hub import write_model_folder

        state = self.ema.state if self.ema is not None else self.net.state_dict()
        write_model_folder(self.run_dir / MODEL_DIR, self.net_spec.name, self.net_spec.options, state, step=self.step,
                           ema=self.ema is not None, size_multiple=getattr(self.net, "size_multiple", None))

    @contextlib.contextmanager
    def _averaged_weights(self):
        """The EMA weights in the network for the duration (validation); the trained ones restored exactly after."""
        if self.ema is None:
            yield
            return
        trained = {key: value.detach().clone() for key, value in self.net.state_dict().items()}
        self.net.load_state_dict(self.ema.state)
        try:
            yield
        finally:
            self.net.load_state_dict(trained)

    def _load_state(self, path: Path) -> None:
        data = read_checkpoint(path, map_location="cpu")
        if not is_jdrl_checkpoint(data):
            raise WeightsError(f"{path} is not a jdrl training checkpoint (use net.init for released weights)")
        if not data.get("optimizer") or not data.get("progress"):
            raise WeightsError(f"{path} holds a network but no training state (optimizer, progress) to resume; "
                               "start from its weights with --init instead")
        load_strict(self.net, data["net"]["state_dict"], str(path))
        if self.loss.reblur is not None:
            if not data.get("reblur"):
                raise WeightsError(f"{path} has no reblurring module but this config uses one")
            load_strict(self.loss.reblur, data["reblur"]["state_dict"], f"{path} (reblur)")
        self.optimizer.load_state_dict(data["optimizer"])
        if self.scaler is not None and data.get("scaler"):
            self.scaler.load_state_dict(data["scaler"])
        self.state.load(data)
        if self.ema is not None:
            if data.get("ema"):
                self.ema.load(data["ema"], f"{path} (ema)")
            else:
                self.ema = WeightEMA(self.net, self.config.run.ema_decay, self.config.run.ema_warmup)
                self._notes.append(f"{path} keeps no weight average: run.ema_decay starts it from the loaded weights")
        if self.dist.world == 1:  # per-rank generators differ; a multi-process resume re-seeds them
            restore_rng(data["rng"])
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


MODEL_DIR = "model"  # RUN/model/: the run's result as a shareable folder (jdrl.hub)


class WeightEMA:
    """Exponential moving average of a network's state (parameters and buffers): after each optimizer step,
    ``average = d * average + (1 - d) * current`` for floating-point entries; others are copied.

    ``d`` is ``decay``, or with ``warmup`` ``min(decay, (1 + n) / (10 + n))`` at the n-th update: with 0.999
    the initial weights would otherwise still hold 0.999 ** 500 = 61 % of the average after 500 steps."""

    def __init__(self, net: nn.Module, decay: float, warmup: bool = True):
        self.decay, self.warmup, self.updates = float(decay), bool(warmup), 0
        self.state = {key: value.detach().clone() for key, value in net.state_dict().items()}

    def current_decay(self) -> float:
        """The decay of the next update."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates + 1) / (10.0 + self.updates + 1))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        decay = self.current_decay()
        self.updates += 1
        for key, value in net.state_dict().items():
            average = self.state[key]
            if average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "state_dict": self.state}

    @torch.no_grad()
    def load(self, data: dict, source: str) -> None:
        stored = data.get("state_dict") or {}
        wrong = sorted(set(stored) ^ set(self.state)) + [key for key in sorted(set(stored) & set(self.state))
                                                          if stored[key].shape != self.state[key].shape]
        if wrong:
            raise WeightsError(f"{source} does not fit the network (keys: {', '.join(wrong[:8])})")
        for key, value in stored.items():
            self.state[key].copy_(value)
        self.updates = int(data.get("updates", 0))


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


def _build_val_flow(name: str, weights: str | None = None, device=None):
    from jdrl.flow import resolve_flow

    return resolve_flow(name, weights, device)[0]




def _progress(desc: str):
    from jdrl.progress import bar

    return bar(desc)
