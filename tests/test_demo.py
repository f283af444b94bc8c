import json
import math

import pytest

from jdrl.cli import main

TINY_NAF = {"width": 4, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1], "middle_blk_num": 1, "tlc": False}


def tiny_settings(**more):
    from jdrl.data.synthetic import SynthParams

    return {**dict(steps=3, width=0.0625, net_options=dict(TINY_NAF), init=None, crop=32, batch=2, train_pairs=4, eval_pairs=2, warmup=1, reblur_features=4,
                   val_every=2, synth=SynthParams.with_misalignment("sdd", size=64, r_max=2.0, exposure=0.02,
                                                                    noise=0.005)), **more}


def test_a_seconds_long_demo_writes_a_complete_report(tmp_path, monkeypatch, capsys):
    from jdrl import demo

    original = demo.DemoSettings
    monkeypatch.setattr(demo, "DemoSettings", lambda **kw: original(**{**kw, **tiny_settings()}))
    assert main(["demo", "--out", str(tmp_path), "--oracle", "--quiet"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["input", "pixel", "jdrl", "oracle"]
    for row in results.values():
        assert set(row) == {"psnr", "ssim", "mae", "flow_error"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in row.values())
    for name in ("results.md", "index.html", "settings.json", "curves_pixel.png", "curves_jdrl.png", "curves_oracle.png",
                 "validation.png"):
        assert (tmp_path / name).is_file(), name
    strips = sorted((tmp_path / "strips").iterdir())
    assert len(strips) == 2
    html = (tmp_path / "index.html").read_text()
    assert all(f"strips/{p.name}" in html for p in strips) and "<table>" in html
    # the held-out set is scored during training: every run has its validation curve (steps 2 and 3)
    for run in ("pixel", "jdrl", "oracle"):
        lines = (tmp_path / "runs" / run / "val.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in lines[1:]] == ["2", "3"]
    crops = sorted((tmp_path / "crops").iterdir())
    assert len(crops) == 2 and all(f"crops/{p.name}" in html for p in crops)
    assert "validation.png" in html
    out = capsys.readouterr().out
    assert "| jdrl |" in out and "| oracle |" in out


def test_a_seconds_long_demo_fine_tunes_the_bundled_model_and_scores_its_start(tmp_path, monkeypatch):
    from jdrl import demo
    from jdrl.demo import DEMO_NAFNET

    original = demo.DemoSettings
    start = dict(net_options=dict(DEMO_NAFNET), init=demo.START, steps=2, val_every=0, warmup=0, reblur_only=1)
    monkeypatch.setattr(demo, "DemoSettings", lambda **kw: original(**{**tiny_settings(), **kw, **start}))
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["input", "start", "pixel", "jdrl"]
    # the bundled model deblurs these small, lightly blurred pairs before any fine-tuning
    assert results["start"]["psnr"] > results["input"]["psnr"]
    summary = (tmp_path / "results.md").read_text()
    assert f"every model starts from {demo.START}" in summary
    rows = [line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["model", "input", "start", "pixel", "jdrl"]  # every row once
    config = (tmp_path / "runs" / "jdrl" / "config.yaml").read_text()
    assert f"init: {demo.START}" in config


def test_the_start_of_the_demo_is_one_choice(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--from-scratch", "--init", "jdrl:synth-nafnet16"]) != 0
    assert "--from-scratch" in capsys.readouterr().err


def test_the_demo_trains_the_network_it_is_given(tmp_path, monkeypatch):
    from jdrl import demo

    original = demo.DemoSettings
    monkeypatch.setattr(demo, "DemoSettings", lambda **kw: original(**{**tiny_settings(val_every=0), **kw}))
    assert main(["demo", "--out", str(tmp_path), "--quiet", "--net", "unet", "--width", "0.0625"]) == 0
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["net"] == "unet" and settings["net_options"] == {}
    config = (tmp_path / "runs" / "jdrl" / "config.yaml").read_text()
    assert "name: unet" in config and "width: 0.0625" in config
    assert not (tmp_path / "runs" / "jdrl" / "val.csv").exists() and not (tmp_path / "validation.png").exists()


def test_the_demo_fine_tunes_the_bundled_narrow_nafnet_with_a_cosine_decay():
    from jdrl.demo import DEMO_NAFNET, JDRL, DemoSettings, variant_config

    config = variant_config(DemoSettings(), JDRL)
    assert config.net.name == "nafnet_w32" and dict(config.net.options) == DEMO_NAFNET
    assert (config.optim.lr, config.optim.decay, config.schedule.total) == (5e-4, "cosine", 400)
    assert config.net.init == "jdrl:synth-nafnet16" and (config.schedule.warmup, config.schedule.reblur_only) == (0, 50)


def test_variant_config_passes_the_network_and_its_options():
    from jdrl.demo import JDRL, DemoSettings, variant_config

    unet = variant_config(DemoSettings(net="unet", net_options={}, width=0.5), JDRL).net
    assert unet.name == "unet" and unet.options["width"] == 0.5 and unet.options["residual"] is True
    naf = variant_config(DemoSettings(net="nafnet_w32", net_options=TINY_NAF), JDRL).net
    assert naf.name == "nafnet_w32" and dict(naf.options) == TINY_NAF


def test_the_mask_scores_count_dropped_and_occluded_pixels():
    from jdrl.data.datasets import SyntheticPairs
    from jdrl.data.synthetic import SynthParams
    from jdrl.demo import mask_scores

    params = SynthParams.with_misalignment("hard", size=64, r_max=2.0)
    pairs = SyntheticPairs(2, params, 0)
    found = mask_scores(None, pairs, "reference")
    assert 0 < found["occluded"] < 1 and 0 <= found["dropped"] <= 1
    if found["dropped"]:
        assert 0 <= found["precision"] <= 1
    else:
        assert math.isnan(found["precision"])
    assert 0 <= found["recall"] <= 1 and 0 <= found["recall_view"] <= 1
    none = mask_scores(None, pairs, "none")
    assert none["dropped"] == 0 and none["recall"] == 0 and math.isnan(none["precision"])


@pytest.mark.parametrize("side", [8, 16])
def test_the_detail_box_finds_the_textured_square(side):
    import torch

    from jdrl.demo import detail_box

    image = torch.zeros(3, 64, 64)
    image[:, 40:56, 8:24] = torch.rand(3, 16, 16)
    top, left = detail_box(image, side)
    assert 40 - side <= top <= 56 and 8 - side <= left <= 24


def test_aligned_targets_have_no_motion_and_no_occlusion():
    from jdrl.data.datasets import SyntheticPairs
    from jdrl.data.synthetic import SynthParams
    from jdrl.training.data import AlignedTargets

    pairs = SyntheticPairs(1, SynthParams.with_misalignment("hard", size=64, r_max=2.0), 0, crop=32, augment=True)
    assert pairs[0]["occlusion"].any() or pairs[0]["flow"].abs().max() > 0
    sample = AlignedTargets(pairs)[0]
    assert (sample["sharp"] == sample["aligned"]).all()
    assert not sample["flow"].any() and not sample["occlusion"].any()


def test_the_mask_kept_fraction_is_not_a_loss_and_runs_share_a_validation_plot(tmp_path):
    from jdrl.evaluation.plot import _is_loss, _is_mask, plot_validation

    assert _is_mask("mask_fwd") and not _is_loss("mask_bwd") and _is_loss("deblur_fwd")
    for name, offset in (("a", 0.0), ("b", 1.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "val.csv").write_text(
            "step,epoch,psnr_aligned,flow_error\n" + "".join(f"{s},0,{25 + offset + s / 100},0.3\n" for s in (10, 20)))
    path = plot_validation({"a": tmp_path / "a", "b": tmp_path / "b", "none": tmp_path / "missing"},
                           tmp_path / "val.png", baseline={"psnr_aligned": 25.0})
    assert path.is_file() and path.stat().st_size > 1000


def test_a_variant_with_weight_averaging_is_scored_by_its_average(tmp_path):
    import torch

    from jdrl.checkpoint import read_checkpoint
    from jdrl.demo import DemoSettings, Variant, make_datasets, train_variant

    settings = DemoSettings(**tiny_settings(val_every=0, warmup=0))
    train_set, _ = make_datasets(settings)
    net = train_variant(settings, Variant("ema", "pixel", ("run.ema_decay=0.5",)), train_set, tmp_path, quiet=True)
    checkpoint = read_checkpoint(tmp_path / "last.pt")
    averaged, trained = checkpoint["ema"]["state_dict"], checkpoint["net"]["state_dict"]
    state = net.state_dict()
    assert all(torch.equal(state[key], averaged[key].float()) for key in state)
    assert any(not torch.equal(state[key], trained[key]) for key in state)
