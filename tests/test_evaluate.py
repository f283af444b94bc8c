"""The evaluation protocol (paper, Experiments; Table 4 for the ablations): deformed GT, aligned-truth columns, border modes, LPIPS gaps, `jdrl eval`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from jdrl.checkpoint import make_checkpoint, write_checkpoint
from jdrl.cli import main
from jdrl.data.synthetic import SynthParams
from jdrl.data.datasets import SyntheticPairs
from jdrl.evaluation import EvalResult, evaluate
from jdrl.evaluation.protocol import METRIC_COLUMNS, crop_released, resolve_border
from jdrl.evaluation.metrics import psnr
from jdrl.evaluation.report import read_metrics_csv
from jdrl.images import image_to_tensor, write_image
from jdrl.nets import create_net
from tests.conftest import textured_image


def item(blur: np.ndarray, sharp: np.ndarray, name: str = "a", aligned: np.ndarray | None = None) -> dict:
    sample = {"blur": image_to_tensor(blur), "sharp": image_to_tensor(sharp), "name": name}
    if aligned is not None:
        sample["aligned"] = image_to_tensor(aligned)
    return sample


def tiny_synthetic(rng: np.random.Generator, n: int = 2, size: int = 48) -> SyntheticPairs:
    """Synthetic pairs from one textured source (no scikit-image photos to load)."""
    return SyntheticPairs(n, SynthParams(size=size), seed=3, sources=[("texture", textured_image(rng, 160, 160))])


def tiny_unet() -> torch.nn.Module:
    return create_net("unet", width=0.0625)


class FakeLPIPS:
    """Stands in for the AlexNet LPIPS metric (whose weights are not available offline)."""

    def to(self, device):
        return self

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().mean(dim=(1, 2, 3)).double()


# ----------------------------------------------------------------------------- the deformed GT


def test_deformed_gt_forgives_a_two_pixel_shift(rng):
    """GT shifted by 2 px as the "output": far from the GT, > 40 dB from the GT warped onto it."""
    n = 96
    base = textured_image(rng, n + 2, n + 2)
    # Constant right/bottom strips: the content shifted in at the border is what border padding predicts.
    base[:, n - 4 :] = base[:, n - 5 : n - 4]
    base[n - 4 :, :] = base[n - 5 : n - 4, :]
    gt, shifted = base[:n, :n], base[2:, 2:]
    result = evaluate([item(shifted, gt)])  # net=None: the "blurry input" is scored as the output
    row = result.rows[0]
    assert row["psnr_deformed"] > 40.0
    assert row["psnr"] < 25.0
    assert row["ssim_deformed"] > 0.99 > 0.5 > row["ssim"]
    assert row["mae_deformed"] < row["mae"] / 100


def test_deformed_gt_of_an_aligned_pair_is_the_gt(rng):
    image = textured_image(rng, 64, 64)
    row = evaluate([item(image, image)]).rows[0]
    assert math.isinf(row["psnr"]) and row["psnr_deformed"] > 60


# ----------------------------------------------------------------------------- columns and options


def test_input_baseline_on_synthetic_has_aligned_columns_and_flow_error(rng):
    result = evaluate(tiny_synthetic(rng), None)
    assert isinstance(result, EvalResult) and result.label == "input"
    assert [row["name"] for row in result.rows] == ["00000", "00001"]
    for row in result.rows:
        for column in ("psnr", "ssim", "mae", "psnr_deformed", "psnr_aligned", "ssim_aligned", "mae_aligned"):
            assert math.isfinite(row[column])
        assert 0 <= row["flow_error"] < 2.0  # the blur is made from the aligned truth: no motion
        assert row["flow_error_input"] == 0.0
        assert not any(key.startswith("lpips") for key in row)  # no made-up LPIPS values
    assert result.columns == list(METRIC_COLUMNS)
    assert result.options["baseline"] == "input"
    assert result.options["border"] == "reflect" and result.options["flow"] == "dis"
    assert result.options["lpips_available"] is False
    assert set(result.means) == {c for c in METRIC_COLUMNS if not c.startswith("lpips")}
    assert result.means["psnr"] == pytest.approx(np.mean([r["psnr"] for r in result.rows]), rel=1e-12)


def test_real_data_has_no_aligned_columns(rng):
    image = textured_image(rng, 32, 32)
    result = evaluate([item(image, image)])
    assert "psnr_aligned" not in result.columns and "flow_error" not in result.columns
    assert result.columns[:8] == list(METRIC_COLUMNS[:8])


def test_network_run_restores_train_mode_and_measures_geometry(rng):
    net = tiny_unet().train()
    dataset = [item(textured_image(rng, 40, 56), textured_image(rng, 40, 56), name="odd-size")]
    result = evaluate(dataset, net, info={"checkpoint": "x.pt"}, label="unet")
    assert net.training  # put back as it was
    row = result.rows[0]
    assert row["name"] == "odd-size" and math.isfinite(row["psnr"]) and row["flow_error_input"] >= 0
    assert result.label == "unet" and result.options["checkpoint"] == "x.pt" and result.options["baseline"] is None


def test_tiled_inference_is_passed_through_and_recorded(rng):
    image = textured_image(rng, 80, 100)
    result = evaluate([item(image, image)], tiny_unet(), tile=64)
    assert result.options["tile"] == 64 and math.isfinite(result.rows[0]["psnr"])


def test_lpips_columns_filled_when_a_metric_is_given(rng):
    image = textured_image(rng, 32, 32)
    result = evaluate([item(image * 0.9, image, aligned=image)], lpips=FakeLPIPS())
    row = result.rows[0]
    assert row["lpips"] == pytest.approx(float(np.mean(np.abs(image * 0.9 - image))), rel=1e-5)
    assert {"lpips_deformed", "lpips_aligned"} <= set(row)
    assert result.options["lpips_available"] is True


def test_lpips_auto_without_weights_records_the_reason(rng, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    image = textured_image(rng, 32, 32)
    result = evaluate([item(image, image)], lpips="auto")
    assert "lpips" not in result.rows[0]
    assert result.options["lpips_available"] is False
    assert "LPIPS unavailable" in result.options["lpips"] and str(tmp_path) in result.options["lpips"]


# ----------------------------------------------------------------------------- border modes


def test_released_crops_as_documented():
    image = torch.arange(37 * 45, dtype=torch.float32).view(1, 1, 37, 45).expand(1, 3, 37, 45)
    unet = crop_released(image, "released-unet")
    assert unet.shape[-2:] == (32, 32) and torch.equal(unet, image[..., :32, :32])  # top-left, x16
    mpr = crop_released(image, "released-mprnet")
    assert mpr.shape[-2:] == (32, 40) and torch.equal(mpr, image[..., 2:34, 2:42])  # centre, x8
    assert crop_released(image, "reflect") is image
    assert resolve_border("released", tiny_unet()) == "released-unet"
    assert resolve_border("released", create_net("mprnet", width=0.05)) == "released-mprnet"
    with pytest.raises(ValueError, match="released-unet or released-mprnet"):
        resolve_border("released", None)
    with pytest.raises(ValueError, match="border must be one of"):
        resolve_border("zero", None)


def test_released_border_runs_the_net_on_the_crop(rng):
    net = tiny_unet()
    seen = []
    net.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape[-2:])))
    blur, sharp = textured_image(rng, 37, 45), textured_image(rng, 37, 45)
    released = evaluate([item(blur, sharp)], net, border="released")
    assert seen == [(32, 32)] and released.options["border"] == "released-unet"
    seen.clear()
    reflect = evaluate([item(blur, sharp)], net)
    assert seen == [(48, 48)] and reflect.options["border"] == "reflect"  # padded whole image
    # The input baseline with a named crop scores exactly the cropped pair.
    baseline = evaluate([item(blur, sharp)], None, border="released-unet")
    expected = psnr(image_to_tensor(blur)[None, :, :32, :32], image_to_tensor(sharp)[None, :, :32, :32])
    assert baseline.rows[0]["psnr"] == pytest.approx(float(expected), rel=1e-12)


# ----------------------------------------------------------------------------- images for reports


def test_keep_images_and_on_image_give_labelled_panels(rng):
    dataset = tiny_synthetic(rng, n=1, size=64)
    streamed = {}
    result = evaluate(dataset, tiny_unet(), keep_images=True, thumbnail_size=40,
                      on_image=lambda name, panels: streamed.update({name: panels}))
    panels = streamed["00000"]
    assert list(panels) == ["input", "output", "GT", "deformed GT", "calibration mask", "flow output->GT",
                            "aligned truth"]
    assert all(p.shape == (3, 64, 64) and p.device.type == "cpu" for p in panels.values())
    kept = result.images["00000"]
    assert list(kept) == list(panels)
    assert all(p.dtype == torch.uint8 and max(p.shape[-2:]) <= 40 for p in kept.values())
    assert evaluate(dataset, None).images is None
    small = {}
    evaluate(dataset, None, on_image=lambda name, panels: small.update(panels), panel_size=32)
    assert all(p.shape == (3, 32, 32) for p in small.values())


# ----------------------------------------------------------------------------- jdrl eval


def unet_checkpoint(path: Path) -> Path:
    write_checkpoint(make_checkpoint("unet", {"width": 0.0625}, tiny_unet().state_dict(), progress={"step": 7}), path)
    return path


def test_cli_eval_synthetic_baseline_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no AlexNet weights, surely
    out = tmp_path / "out"
    code = main(["eval", "synthetic", "--baseline", "input", "--out", str(out), "--synthetic-n", "2",
                 "--synthetic-size", "64", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| input | 2 |" in printed
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["result"] for r in rows] == ["input", "input"]
    assert all(r["psnr_aligned"] is not None and r["flow_error"] is not None for r in rows)
    assert all(r["lpips"] is None for r in rows)  # empty cells, not numbers
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"][0]["options"]["data"] == "synthetic"
    assert summary["results"][0]["means"]["lpips"] is None
    assert "LPIPS unavailable" in summary["results"][0]["options"]["lpips"]  # the reason, recorded


def test_cli_eval_checkpoint_and_baseline_with_report(tmp_path, capsys):
    checkpoint = unet_checkpoint(tmp_path / "run" / "last.pt")
    out, report = tmp_path / "out", tmp_path / "report"
    code = main(["eval", "synthetic", "--checkpoint", str(checkpoint), "--baseline", "input", "--out", str(out),
                 "--report", str(report), "--synthetic-n", "2", "--synthetic-size", "64", "--device", "cpu", "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    labels = [r["label"] for r in summary["results"]]
    assert labels == ["unet (last.pt)", "input"]
    assert summary["results"][0]["options"]["checkpoint"]["step"] == 7
    assert summary["results"][0]["options"]["border"] == summary["results"][1]["options"]["border"] == "reflect"
    markdown = (out / "summary.md").read_text()
    assert "| unet (last.pt) | 2 |" in markdown and "| input | 2 |" in markdown
    assert len(list((report / "strips").glob("*.png"))) == 2 and (report / "index.html").is_file()
    assert "unet (last.pt)" in capsys.readouterr().out


def test_cli_eval_default_out_is_next_to_the_checkpoint(tmp_path):
    checkpoint = unet_checkpoint(tmp_path / "run" / "last.pt")
    data = tmp_path / "pairs"
    for name in ("a", "b", "c"):
        image = textured_image(np.random.default_rng(len(name)), 32, 48)
        write_image(data / "blur" / f"{name}.png", image)
        write_image(data / "gt" / f"{name}.png", image)
    code = main(["eval", str(data), "--checkpoint", str(checkpoint), "--border", "released", "--limit", "2", "--quiet"])
    assert code == 0
    rows = read_metrics_csv(tmp_path / "run" / "eval-pairs" / "metrics.csv")
    assert [r["name"] for r in rows] == ["a", "b"]
    summary = json.loads((tmp_path / "run" / "eval-pairs" / "summary.json").read_text())
    assert summary["results"][0]["options"]["border"] == "released-unet"
    assert summary["results"][0]["options"]["layout"] == "sdd"


def test_cli_eval_reports_every_bad_file_and_missing_choice(tmp_path, capsys):
    data = tmp_path / "bad"
    write_image(data / "blur" / "a.png", np.zeros((16, 16, 3)))
    write_image(data / "blur" / "b.png", np.zeros((16, 16, 3)))
    write_image(data / "gt" / "a.png", np.zeros((16, 24, 3)))
    (data / "gt" / "c.png").write_bytes(b"not a png")
    assert main(["eval", str(data), "--baseline", "input", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "b.png" in error and "c.png" in error and "size mismatch" in error
    write_image(data / "blur" / "d.png", np.zeros((16, 16, 3)))
    write_image(data / "gt" / "d.png", np.zeros((16, 16, 3)))
    assert main(["eval", str(data), "--baseline", "input", "--out", str(tmp_path / "o"), "--skip-bad", "--quiet"]) == 0
    assert "left out 1 pair(s)" in capsys.readouterr().out
    assert (tmp_path / "o" / "metrics.csv").read_text().count("\nd,") == 1
    assert main(["eval", "synthetic", "--out", str(tmp_path / "o")]) == 2
    assert "--baseline input" in capsys.readouterr().err
    assert main(["eval", "synthetic", "--baseline", "input", "--border", "released"]) == 2
    assert "released-unet or released-mprnet" in capsys.readouterr().err


def test_cli_border_choices_match_the_protocol():
    from jdrl.cli.evaluate import BORDER_CHOICES
    from jdrl.evaluation.protocol import BORDER_MODES

    assert BORDER_CHOICES == BORDER_MODES


def test_cli_mask_choices_match_the_mask_modes():
    from jdrl.cli.evaluate import MASK_CHOICES
    from jdrl.flow.mask import MASK_MODES

    assert MASK_CHOICES == MASK_MODES
