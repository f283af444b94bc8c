import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import jdrl
from jdrl.checkpoint import find_latest, make_checkpoint, read_checkpoint, write_checkpoint
from jdrl.cli import main
from jdrl.config import preset_names
from jdrl.data.synthetic import SynthParams
from jdrl.data.datasets import SyntheticPairs
from jdrl.errors import TrainingError, TrainingInterrupted
from jdrl.images import write_image
from jdrl.nets import net_names
from jdrl.training import load_train_config, train
from tests.conftest import cli_overrides, textured_image

TINY = [
    "net.options={width: 0.0625, dropout: 0.0}",
    "loss.reblur_features=8",
    "data.batch_size=2",
    "data.crop=32",
    "schedule.unit=step",
    "schedule.log_every=1",
    "schedule.val_every=1000",
    "schedule.save_every=1000",
    "optim.lr=0.001",
    "optim.decay_every=1000",
    "run.deterministic=true",
]


@pytest.fixture(scope="module")
def sources():
    rng = np.random.default_rng(7)
    return [(f"s{i}", textured_image(rng, 80, 80)) for i in range(3)]


def tiny_data(sources, n=4, crop=32, augment=True, seed=0):
    params = SynthParams(size=48, r_max=2.0, shift=2.0, zoom=0.02, exposure=0.0, noise=0.0)
    return SyntheticPairs(n, params, seed, sources, crop=crop, augment=augment)


def log_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def state_tensors(checkpoint: dict) -> dict:
    tensors = dict(checkpoint["net"]["state_dict"])
    if checkpoint.get("reblur"):
        tensors.update({f"reblur.{k}": v for k, v in checkpoint["reblur"]["state_dict"].items()})
    return tensors


def test_every_preset_loads():
    names = preset_names()
    assert {"sdd_unet", "dpdd_unet", "dpdd_mprnet", "finetune", "pixel", "synthetic"} <= set(names)
    assert {f"ablation_{i}" for i in range(1, 7)} <= set(names)
    for name in names:
        config = load_train_config(name)
        assert config.net.name in net_names()
    assert load_train_config("ablation_2").loss.deform == "none"
    assert load_train_config("ablation_6").loss.reblur == "single"
    assert load_train_config("dpdd_mprnet").net.name == "mprnet"
    paper = load_train_config("sdd_unet")
    assert (paper.optim.lr, paper.schedule.warmup, paper.schedule.total, paper.optim.decay_every) == (2e-5, 15, 100, 60)


MODES = {
    "pixel": ["loss.objective=pixel"],
    "jdrl": [],
    **{f"ablation_{i}": [] for i in range(1, 7)},
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_each_mode_trains_and_reduces_the_loss(mode, sources, tmp_path):
    preset = mode if mode.startswith("ablation") else "sdd_unet"
    overrides = TINY + MODES[mode] + ["schedule.total=10", "schedule.warmup=0", "run.deterministic=false"]
    data = tiny_data(sources, n=2, crop=None, augment=False)  # one fixed batch: the loss must go down
    run = train(preset, overrides, run_dir=tmp_path, datasets=(data, None), quiet=True)
    losses = [float(r["loss"]) for r in log_rows(run)]
    assert len(losses) == 10 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    checkpoint = read_checkpoint(run / "last.pt")
    assert checkpoint["progress"]["step"] == 10
    has_reblur = mode not in ("pixel", "ablation_1", "ablation_4")
    assert (checkpoint["reblur"] is not None) == has_reblur


def test_finetune_trains_only_the_reblur_module_first(sources, tmp_path):
    data = tiny_data(sources, n=2, crop=None, augment=False)
    base = train("pixel", TINY + ["schedule.total=2"], run_dir=tmp_path / "base", datasets=(data, None), quiet=True)
    before = read_checkpoint(base / "last.pt")["net"]["state_dict"]
    overrides = TINY + ["schedule.total=4", "schedule.reblur_only=4", "optim.reblur_only_lr=0.001"]
    run = train("finetune", overrides + [f"net.init={base / 'last.pt'}"], run_dir=tmp_path / "ft",
                datasets=(data, None), quiet=True)
    after = read_checkpoint(run / "last.pt")
    assert all(torch.equal(before[k], v) for k, v in after["net"]["state_dict"].items())  # frozen
    losses = [float(r["reblur"]) for r in log_rows(run)]
    assert losses[-1] < losses[0]
    run2 = train("finetune", TINY + ["schedule.total=3", "schedule.reblur_only=1", f"net.init={base / 'last.pt'}"],
                 run_dir=tmp_path / "ft2", datasets=(data, None), quiet=True)
    changed = read_checkpoint(run2 / "last.pt")["net"]["state_dict"]
    assert any(not torch.equal(before[k], v) for k, v in changed.items())  # phase (ii) trains the network


def test_resume_is_exact(sources, tmp_path):
    # the lr halves at steps 3 and 6: the resumed run (from step 4) must follow the same schedule
    overrides = TINY + ["schedule.warmup=2", "net.options.dropout=0.4", "optim.decay_every=3"]
    data = lambda: tiny_data(sources, n=5)  # noqa: E731 - 3 batches per epoch: step 4 is mid-epoch
    straight = train("sdd_unet", overrides + ["schedule.total=8"], run_dir=tmp_path / "a", datasets=(data(), None), quiet=True)
    train("sdd_unet", overrides + ["schedule.total=4"], run_dir=tmp_path / "b", datasets=(data(), None), quiet=True)
    resumed = train("sdd_unet", overrides + ["schedule.total=8"], run_dir=tmp_path / "b", resume="auto",
                    datasets=(data(), None), quiet=True)
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(resumed / "last.pt")
    assert b["progress"] == a["progress"]
    tensors_a, tensors_b = state_tensors(a), state_tensors(b)
    assert tensors_a.keys() == tensors_b.keys()
    assert max((tensors_a[k] - tensors_b[k]).abs().max().item() for k in tensors_a) <= 1e-6
    assert [r["step"] for r in log_rows(resumed)] == [str(s) for s in range(1, 9)]
    assert b["scheduler"]["lr"] == a["scheduler"]["lr"] == pytest.approx(0.001 / 4)


def test_a_save_interrupted_half_way_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    write_checkpoint(make_checkpoint("unet", {}, {}, progress={"step": 1}, x=torch.ones(3)), tmp_path / "last.pt")

    def broken_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(make_checkpoint("unet", {}, {}, x=torch.zeros(3)), tmp_path / "last.pt")
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(tmp_path / "last.pt")["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    (tmp_path / "newer.pt").write_bytes(b"garbage")  # a corrupt newer file is skipped by --resume auto
    assert find_latest(tmp_path) == tmp_path / "last.pt"


class NaNAt(torch.utils.data.Dataset):
    """Wraps a dataset; the blurry image of the listed indices is NaN (in every epoch)."""

    def __init__(self, dataset, bad):
        self.dataset, self.bad = dataset, set(bad)

    def set_epoch(self, epoch):
        self.dataset.set_epoch(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        sample = dict(self.dataset[index])
        if index in self.bad:
            sample["blur"] = torch.full_like(sample["blur"], float("nan"))
        return sample


def test_a_nan_batch_is_skipped_and_counted(sources, tmp_path):
    data = NaNAt(tiny_data(sources, n=4, crop=None, augment=False), bad=[0])
    overrides = TINY + ["data.batch_size=1", "schedule.total=4", "schedule.warmup=0"]
    run = train("sdd_unet", overrides, run_dir=tmp_path, datasets=(data, None), quiet=True)
    checkpoint = read_checkpoint(run / "last.pt")
    assert checkpoint["stats"]["bad_steps"] == 1
    assert all(torch.isfinite(v).all() for v in state_tensors(checkpoint).values())
    assert log_rows(run)[-1]["skipped"] == "1"


def test_many_nan_steps_in_a_row_stop_the_run(sources, tmp_path):
    data = NaNAt(tiny_data(sources, n=4, crop=None, augment=False), bad=range(4))
    overrides = TINY + ["data.batch_size=1", "schedule.total=10", "run.max_bad_steps=3"]
    with pytest.raises(TrainingError, match="3 non-finite losses in a row"):
        train("sdd_unet", overrides, run_dir=tmp_path, datasets=(data, None), quiet=True)
    assert (tmp_path / "last.pt").is_file()


class InterruptAt(torch.utils.data.Dataset):
    def __init__(self, dataset, index, signum=signal.SIGINT):
        self.dataset, self.index, self.signum, self.fired = dataset, index, signum, False

    def set_epoch(self, epoch):
        self.dataset.set_epoch(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if index == self.index and not self.fired:
            self.fired = True
            os.kill(os.getpid(), self.signum)  # as if Ctrl-C were pressed (or kill sent) while loading this batch
        return self.dataset[index]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_and_the_run_resumes(signum, sources, tmp_path):
    overrides = TINY + ["data.batch_size=1", "schedule.total=6"]
    data = InterruptAt(tiny_data(sources, n=4), index=1, signum=signum)
    with pytest.raises(TrainingInterrupted, match="resume auto"):
        train("sdd_unet", overrides, run_dir=tmp_path, datasets=(data, None), quiet=True)
    step = read_checkpoint(tmp_path / "last.pt")["progress"]["step"]
    assert 1 <= step < 6
    train("sdd_unet", overrides, run_dir=tmp_path, resume="auto", datasets=(tiny_data(sources, n=4), None), quiet=True)
    assert read_checkpoint(tmp_path / "last.pt")["progress"]["step"] == 6


def test_validation_keeps_the_best_checkpoint_and_logs(sources, tmp_path):
    params = SynthParams(size=48, r_max=2.0, shift=2.0, zoom=0.02, exposure=0.0, noise=0.0)
    val = SyntheticPairs(2, params, 9, sources)
    overrides = TINY + ["schedule.total=4", "schedule.val_every=2", "schedule.warmup=0"]
    run = train("sdd_unet", overrides, run_dir=tmp_path, datasets=(tiny_data(sources), val), quiet=True)
    with open(run / "val.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["2", "4"]
    assert {"psnr", "ssim", "psnr_deformed", "psnr_aligned", "flow_error"} <= set(rows[0])
    best = read_checkpoint(run / "best.pt")
    assert best["best"]["metric"] == "psnr_aligned"
    assert (run / "config.yaml").is_file() and (run / "version.txt").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert {"loss/total", "lr", "val/psnr", "val/psnr_aligned"} <= set(events.Tags()["scalars"])
    (image,) = events.Images("val/samples")[-1:]
    # two samples (TensorBoard lays them side by side) of seven 48 px panels each:
    # input, output, GT, aligned truth, deformed GT, calibration mask, flow
    assert (image.width, image.height) == (2 * 7 * 48, 48)


def test_fp16_scale_overflow_is_not_counted_as_a_bad_step(sources, tmp_path, monkeypatch):
    from jdrl.training.trainer import Trainer

    class Scaler:  # stands in for torch.amp.GradScaler (fp16 runs on CUDA only)
        def __init__(self):
            self.steps = 0

        def scale(self, loss):
            return loss

        def unscale_(self, optimizer):
            pass

        def step(self, optimizer):  # a real scaler skips the update when the gradients overflowed
            self.steps += 1

        def update(self):
            pass

        def state_dict(self):
            return {}

    trainer = Trainer(load_train_config("pixel", TINY + ["schedule.total=3"]), tmp_path,
                      datasets=(tiny_data(sources, n=6), None), quiet=True)
    trainer.scaler = Scaler()
    monkeypatch.setattr(trainer, "_grads_finite", lambda: False)  # every step overflows the loss scale
    trainer.fit()
    assert trainer.stats["bad_steps"] == 0 and trainer.stats["scaler_skips"] == 3 and trainer.scaler.steps == 3


def test_bad_files_stop_training_before_the_first_step(tmp_path, capsys):
    data = tmp_path / "data"
    write_image(data / "blur" / "a.png", np.zeros((40, 40, 3)))
    write_image(data / "gt" / "a.png", np.zeros((40, 40, 3)))
    write_image(data / "blur" / "lonely.png", np.zeros((40, 40, 3)))
    (data / "gt" / "broken.png").write_bytes(b"garbage")
    write_image(data / "blur" / "broken.png", np.zeros((40, 40, 3)))
    write_image(data / "blur" / "small.png", np.zeros((16, 16, 3)))
    write_image(data / "gt" / "small.png", np.zeros((16, 16, 3)))
    code = main(["train", "sdd_unet", "-o", f"data.train.root={data}", "-o", "data.crop=32",
                 "--run-dir", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    for name in ("lonely.png", "broken.png", "small.png"):
        assert name in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_released_unet_checkpoint_initialises_training_with_bgr(sources, tmp_path):
    from jdrl.nets import create_net

    net = create_net("unet", width=0.0625)
    released = {"epoch": 3, "global_step": 30, "G_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
                "G_opt": {}}
    torch.save(released, tmp_path / "released.pth")
    # the width is not in the authors' file: our options say how to build the net, the file fills it
    run = train("pixel", TINY + ["schedule.total=1", f"net.init={tmp_path / 'released.pth'}"],
                run_dir=tmp_path / "run", datasets=(tiny_data(sources, n=2), None), quiet=True)
    checkpoint = read_checkpoint(run / "last.pt")
    assert checkpoint["net"]["options"]["channel_order"] == "bgr"
    loaded = jdrl.create_net(checkpoint=run / "last.pt")
    info = loaded.jdrl_spec.as_dict()
    assert info["options"]["channel_order"] == "bgr" and loaded.channel_order == "bgr"


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(3):
        write_image(tmp_path / "src" / f"s{i}.png", textured_image(rng, 64, 64))
    run = tmp_path / "run"
    overrides = TINY + ["schedule.total=4", "schedule.save_every=2", "schedule.val_every=2",
                        "data.synthetic={train: 8, val: 2, size: 32, "
                        f"r_max: 2.0, shift: 2.0, zoom: 0.02, sources: {tmp_path / 'src'}}}"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "jdrl", "train", "synthetic", "--run-dir", str(run), "--quiet"]
    command += cli_overrides(overrides)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = log_rows(run)
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]  # one writer, no duplicated lines
    assert (run / "train.log").read_text().count("training unet") == 1
    assert "x2" in (run / "train.log").read_text()
    assert read_checkpoint(run / "last.pt")["progress"]["step"] == 4
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "last.pt"]
    with open(run / "val.csv", newline="") as handle:
        assert [r["step"] for r in csv.DictReader(handle)] == ["2", "4"]  # rank 0 validates, once per point
    assert len(list((run / "tensorboard").glob("events.*"))) == 1


def test_cli_init_from_a_released_file_loads_its_reblur_module_and_resume_auto_continues(tmp_path):
    from jdrl.nets import create_net
    from jdrl.reblur.module import ReblurModule

    rng = np.random.default_rng(5)
    for i in range(2):
        write_image(tmp_path / "src" / f"s{i}.png", textured_image(rng, 64, 64))
    torch.manual_seed(1)
    net, reblur = create_net("unet", width=0.0625), ReblurModule(features=8)
    released = {"epoch": 3, "global_step": 30, "G_opt": {},
                "G_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
                "Reblur_state_dict": {f"module.{k}": v for k, v in reblur.state_dict().items()}}
    torch.save(released, tmp_path / "released.pth")
    run = tmp_path / "run"
    data = f"data.synthetic={{train: 2, val: 0, size: 32, r_max: 2.0, shift: 2.0, sources: {tmp_path / 'src'}}}"
    # lr 0: the weights in the checkpoint are exactly the ones loaded
    args = ["train", "sdd_unet", "--init", str(tmp_path / "released.pth"), "--run-dir", str(run), "--quiet"]
    args += cli_overrides(TINY + [data, "optim.lr=0", "schedule.warmup=0"])
    assert main(args + ["-o", "schedule.total=1"]) == 0
    first = read_checkpoint(run / "last.pt")
    assert all(torch.equal(v, reblur.state_dict()[k]) for k, v in first["reblur"]["state_dict"].items())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in first["net"]["state_dict"].items())
    assert first["net"]["options"]["channel_order"] == "bgr"
    assert main(args + ["-o", "schedule.total=3", "--resume", "auto"]) == 0
    assert read_checkpoint(run / "last.pt")["progress"]["step"] == 3
    assert [r["step"] for r in log_rows(run)] == ["1", "2", "3"]


def test_a_released_reblur_module_that_does_not_fit_the_variant_is_left_out_with_a_note(sources, tmp_path, capsys):
    from jdrl.nets import create_net
    from jdrl.reblur.module import ReblurModule

    released = {"G_state_dict": create_net("unet", width=0.0625).state_dict(),
                "Reblur_state_dict": ReblurModule(features=8).state_dict()}
    torch.save(released, tmp_path / "released.pth")
    run = train("ablation_5", TINY + ["schedule.total=1", f"net.init={tmp_path / 'released.pth'}"],
                run_dir=tmp_path / "run", datasets=(tiny_data(sources, n=2), None))
    assert "Reblur_state_dict is not loaded: loss.reblur=free" in (run / "train.log").read_text()
    assert "note: " in capsys.readouterr().err
