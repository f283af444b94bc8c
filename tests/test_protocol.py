"""The paper's protocol as options: --protocol paper, released warp in scoring and training, 8-bit reading,
checkpoint selection by a named metric (across a resume), and the CoBi objective in the trainer."""

from __future__ import annotations

import csv

import pytest
import torch

from jdrl.checkpoint import read_checkpoint
from jdrl.cli import main
from jdrl.errors import ConfigError
from jdrl.evaluation.protocol import EightBitReading, evaluate
from jdrl.training import load_train_config, train

TINY = ["net.options={width: 0.0625, dropout: 0.0}", "schedule.unit=step", "data.crop=32", "data.batch_size=2",
        "schedule.log_every=1", "loss.reblur_features=4", "run.deterministic=true"]
SYNTH = "data.synthetic={train: 4, val: 2, size: 48, exposure: 0.0, noise: 0.0}"


def test_protocol_paper_without_pwcnet_weights_is_one_clear_error(capsys):
    assert main(["eval", "synthetic", "--baseline", "input", "--protocol", "paper", "--synthetic-n", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--flow-weights" in err and "PWC-Net" in err and "Traceback" not in err


def test_protocol_paper_with_another_flow_uses_the_released_warp_and_eight_bit_reading(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "synthetic", "--baseline", "input", "--protocol", "paper", "--flow", "dis",
                 "--synthetic-n", "2", "--synthetic-size", "48", "--out", str(out), "--quiet"]) == 0
    import json

    text = json.dumps(json.loads((out / "summary.json").read_text()))
    assert '"warp": "released"' in text and "8-bit" in text and '"protocol": "paper"' in text


def test_released_warp_changes_the_deformed_gt_score_and_is_recorded(rng):
    from jdrl.data.datasets import SyntheticPairs
    from jdrl.data.synthetic import SynthParams

    pairs = SyntheticPairs(2, SynthParams(size=48, exposure=0.0, noise=0.0), seed=3)
    exact = evaluate(pairs, None, flow="dis", warp="exact")
    released = evaluate(pairs, None, flow="dis", warp="released")
    assert released.options["warp"] == "released" and exact.options["warp"] == "exact"
    assert exact.means["psnr"] == released.means["psnr"]  # only the deformed GT differs
    assert exact.means["psnr_deformed"] != released.means["psnr_deformed"]
    with pytest.raises(ConfigError, match="warp must be one of"):
        evaluate(pairs, None, flow="dis", warp="bent")


def test_eight_bit_reading_is_opencvs_top_byte():
    item = {"blur": torch.tensor([[[0.0, 255 / 65535, 256 / 65535, 1.0]]]), "sharp": torch.zeros(1, 1, 4)}
    (read,) = EightBitReading([item])
    assert torch.allclose(read["blur"], torch.tensor([[[0.0, 0.0, 1 / 255, 1.0]]]))
    eight_bit = torch.tensor([[[0.0, 7 / 255, 200 / 255, 1.0]]])
    assert torch.allclose(EightBitReading([{"blur": eight_bit}])[0]["blur"], eight_bit)


def test_run_select_best_keeps_the_best_by_the_named_metric_across_a_resume(tmp_path):
    overrides = [*TINY, SYNTH, "schedule.val_every=1", "schedule.save_every=1", "schedule.warmup=0",
                 "schedule.best_metric=mae_aligned", "run.select=best", "loss.objective=pixel", "optim.lr=0.002"]
    run = tmp_path / "run"
    train("synthetic", [*overrides, "schedule.total=2"], run_dir=run, quiet=True)
    train("synthetic", [*overrides, "schedule.total=4"], run_dir=run, resume="auto", quiet=True)
    with open(run / "val.csv", newline="") as handle:
        rows = [(int(r["step"]), float(r["mae_aligned"])) for r in csv.DictReader(handle)]
    assert [step for step, _ in rows] == [1, 2, 3, 4]
    best_step, best_value = min(rows, key=lambda row: row[1])  # lower MAE is better
    best = read_checkpoint(run / "best.pt")
    assert best["best"]["metric"] == "mae_aligned" and best["best"]["step"] == best_step
    assert best["best"]["value"] == pytest.approx(best_value, rel=1e-6, abs=1e-9)
    assert best["progress"]["step"] == best_step


def test_best_metric_must_be_a_validation_column_and_select_best_needs_validation(tmp_path):
    with pytest.raises(ConfigError, match="not a validation column"):
        train("synthetic", [*TINY, SYNTH, "schedule.total=1", "schedule.best_metric=psnr_typo"],
              run_dir=tmp_path / "a", quiet=True)
    with pytest.raises(ConfigError, match="needs a validation set"):
        train("synthetic", [*TINY, "data.synthetic={train: 4, val: 0, size: 48}", "schedule.total=1",
                            "run.select=best"], run_dir=tmp_path / "b", quiet=True)


def test_cobi_objective_trains_a_few_steps(tmp_path):
    run = train("synthetic", [*TINY, SYNTH, "schedule.total=3", "loss.objective=cobi",
                              "loss.cobi_options={patch_size: 3, max_points: 64}"], run_dir=tmp_path / "cobi", quiet=True)
    with open(run / "log.csv", newline="") as handle:
        losses = [float(r["loss"]) for r in csv.DictReader(handle)]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(v)) and v >= 0 for v in losses)


@pytest.mark.parametrize("preset", ["paper_sdd_unet", "paper_dpdd_unet", "paper_dpdd_mprnet", "cobi",
                                    "ablation_2_forward", "ablation_6_released"])
def test_the_paper_presets_say_what_they_are(preset):
    config = load_train_config(preset)
    if preset.startswith("paper_"):
        assert (config.loss.flow, config.loss.warp, config.data.crop_sampling) == ("pwcnet", "released", "released")
        assert (config.run.select, config.schedule.best_metric) == ("best", "psnr_deformed")
    elif preset == "cobi":
        assert config.loss.objective == "cobi"
    elif preset == "ablation_2_forward":
        assert config.loss.deform == "forward"
    else:
        assert config.loss.reblur == "single_free"


def test_released_one_branch_ablation_returns_the_blurred_image():
    from jdrl.reblur import ReblurModule

    torch.manual_seed(0)
    module = ReblurModule("single_free", impl="direct", features=4)
    sharp = torch.zeros(1, 3, 24, 24)
    sharp[..., 12, 12] = 1.0
    out = module(sharp, sharp)
    assert out[..., 12, 12].max().item() < 0.5  # spread out: the blurred image, not the input returned
    assert (out[..., 5:20, 5:20] > 0).float().mean().item() > 0.9  # over the whole 15x15 neighbourhood
