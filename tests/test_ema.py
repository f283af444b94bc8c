"""EMA of the weights (run.ema_decay): kept in checkpoints, resumed bit-exactly, validated, exported."""

import math
from types import SimpleNamespace

import pytest
import torch

from jdrl.checkpoint import read_checkpoint
from jdrl.cli import main
from jdrl.evaluation import protocol
from jdrl.hub import read_safetensors
from jdrl.nets import create_net
from jdrl.training import train

TINY = [
    "net.options={width: 0.0625, dropout: 0.0}",
    "data.batch_size=2",
    "data.crop=32",
    "data.synthetic={train: 4, val: 1, size: 48}",
    "schedule.unit=step",
    "schedule.warmup=0",
    "schedule.log_every=1",
    "schedule.val_every=1000",
    "schedule.save_every=1000",
    "optim.lr=0.001",
    "optim.decay_every=1000",
    "run.deterministic=true",
    "run.samples=0",
    "run.ema_decay=0.8",
]


@pytest.fixture
def fake_evaluate(monkeypatch):
    """Records the network's weights at each validation (no flow, no metrics: fast, draws no random numbers)."""
    seen = []

    def evaluate(val_set, net, **kwargs):
        seen.append({key: value.detach().clone() for key, value in net.state_dict().items()})
        return SimpleNamespace(means={"psnr": float(len(seen))})

    monkeypatch.setattr(protocol, "evaluate", evaluate)
    return seen


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_gives_bit_identical_averages(tmp_path, fake_evaluate):
    straight = train("pixel", TINY + ["schedule.total=6"], run_dir=tmp_path / "a", quiet=True)
    train("pixel", TINY + ["schedule.total=3"], run_dir=tmp_path / "b", quiet=True)
    resumed = train("pixel", TINY + ["schedule.total=6"], run_dir=tmp_path / "b", resume="auto", quiet=True)
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(resumed / "last.pt")
    assert a["ema"]["updates"] == b["ema"]["updates"] == 6 and a["ema"]["decay"] == 0.8
    assert equal(a["ema"]["state_dict"], b["ema"]["state_dict"])
    assert equal(a["net"]["state_dict"], b["net"]["state_dict"])
    assert not equal(a["ema"]["state_dict"], a["net"]["state_dict"])  # the average is not the trained weights
    # the exported folder holds the average
    tensors, _ = read_safetensors(straight / "model" / "model.safetensors")
    assert equal(tensors, a["ema"]["state_dict"])
    assert create_net(checkpoint=straight / "model").jdrl_spec.step == 6


def test_validation_scores_the_averaged_weights_and_restores_the_trained_ones(tmp_path, fake_evaluate):
    twice = train("pixel", TINY + ["schedule.total=4", "schedule.val_every=2"], run_dir=tmp_path / "a", quiet=True)
    assert len(fake_evaluate) == 2
    at_end = read_checkpoint(twice / "last.pt")
    assert equal(fake_evaluate[-1], at_end["ema"]["state_dict"])
    assert not equal(fake_evaluate[-1], at_end["net"]["state_dict"])
    fake_evaluate.clear()  # the same run validated only at its end: the swap at step 2 changed nothing
    once = train("pixel", TINY + ["schedule.total=4"], run_dir=tmp_path / "b", quiet=True)
    assert len(fake_evaluate) == 1
    assert equal(read_checkpoint(once / "last.pt")["net"]["state_dict"], at_end["net"]["state_dict"])


def test_export_uses_the_average_unless_told_otherwise(tmp_path, fake_evaluate, capsys):
    run = train("pixel", TINY + ["schedule.total=2"], run_dir=tmp_path / "run", quiet=True)
    checkpoint = read_checkpoint(run / "last.pt")
    assert main(["export", str(run / "last.pt"), "--format", "safetensors", "-o", str(tmp_path / "ema")]) == 0
    assert "(EMA weights)" in capsys.readouterr().out
    assert main(["export", str(run / "last.pt"), "--format", "safetensors", "-o", str(tmp_path / "raw"),
                 "--no-ema"]) == 0
    assert equal(read_safetensors(tmp_path / "ema" / "model.safetensors")[0], checkpoint["ema"]["state_dict"])
    assert equal(read_safetensors(tmp_path / "raw" / "model.safetensors")[0], checkpoint["net"]["state_dict"])


def test_resuming_a_checkpoint_without_an_average_starts_one(tmp_path, fake_evaluate):
    plain = [item for item in TINY if not item.startswith("run.ema_decay")]
    train("pixel", plain + ["schedule.total=2"], run_dir=tmp_path, quiet=True)
    assert read_checkpoint(tmp_path / "last.pt")["ema"] is None
    train("pixel", TINY + ["schedule.total=3"], run_dir=tmp_path, resume="auto", quiet=True)
    assert read_checkpoint(tmp_path / "last.pt")["ema"]["updates"] == 1
    assert "keeps no weight average" in (tmp_path / "train.log").read_text()


def test_the_decay_ramps_up_so_a_short_run_is_not_its_initial_weights():
    from jdrl.training.trainer import WeightEMA

    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ramped, plain = WeightEMA(net, 0.999), WeightEMA(net, 0.999, warmup=False)
    assert ramped.current_decay() == pytest.approx(2 / 11)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for _ in range(500):
        ramped.update(net)
        plain.update(net)
    initial_share = math.prod((1 + k) / (10 + k) for k in range(1, 501))  # of the zero start, after the ramp
    assert ramped.state["weight"].item() == pytest.approx(1 - initial_share)
    assert ramped.state["weight"].item() > 0.999
    assert plain.state["weight"].item() == pytest.approx(1 - 0.999 ** 500, rel=1e-4)  # 0.39: mostly the start
    assert ramped.current_decay() == pytest.approx(502 / 511)
