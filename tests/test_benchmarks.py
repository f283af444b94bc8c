"""The benchmark scripts run end to end at a tiny scale (their figures come from full-size runs)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY_DEMO = {"train_pairs": 2, "eval_pairs": 1, "size": 64, "crop": 32, "batch": 2, "width": 0.0625,
             "warmup": 1, "reblur_features": 4}


def run(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                            cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_curves_gives_a_curve_per_run(tmp_path):
    out = run("curves.py", "--configs", f"tiny={json.dumps(TINY_DEMO)}", "--groups", "main", "masks",
              "--steps", "2", "--val-every", "1", "--parallel", "2", "--out", str(tmp_path), cwd=tmp_path)
    rows = json.loads((tmp_path / "curves.json").read_text())
    assert [r["variant"] for r in rows] == ["oracle", "pixel", "jdrl", "mask paper", "mask parametric"]
    assert all([p["step"] for p in r["curve"]] == [1, 2] for r in rows)
    assert "| tiny" in out and (tmp_path / "curves.md").is_file()


@pytest.mark.slow
def test_misalignment_benchmark_writes_its_tables(tmp_path):
    args = ["--groups", "main", "--seeds", "2", "--steps", "1", "--train-pairs", "2", "--eval-pairs", "1",
            "--size", "64", "--crop", "32", "--batch", "2", "--width", "0.0625", "--warmup", "1",
            "--reblur-features", "4", "--out", str(tmp_path)]
    out = run("misalignment.py", *args, cwd=tmp_path)
    tables = json.loads((tmp_path / "results.json").read_text())
    rows = tables["main"]["rows"]
    assert list(rows) == ["input", "oracle", "pixel", "jdrl"]
    for row in rows.values():
        assert row["seeds"] == [0, 1] and len(row["psnr"]["seeds"]) == 2
        assert set(row["psnr"]) == {"mean", "sd", "seeds"}
        assert {"mask_precision", "mask_recall", "flow_error", "ssim", "mae"} <= set(row)
    assert len(tables["main"]["runs"]) == 8
    assert "| jdrl |" in out and "± " in out and "Δ PSNR vs jdrl" in out


def test_misalignment_kinds_switch_on_one_kind_at_a_time():
    sys.path.insert(0, str(BENCHMARKS))
    from misalignment import KINDS, kind_params

    from jdrl.data.synthetic import MISALIGNMENT_PRESETS, SynthParams

    base = SynthParams(size=64, r_max=4.0)
    local = kind_params("sdd", "local", base)
    assert local.local_regions == MISALIGNMENT_PRESETS["sdd"]["local_regions"] and local.local_regions > 0
    assert local.shift == local.zoom == local.breathing == local.warp_amplitude == local.gt_exposure == 0
    assert local.size == 64 and local.r_max == 4.0
    combined = kind_params("sdd", "combined", base)
    assert all(getattr(combined, k) == v for k, v in MISALIGNMENT_PRESETS["sdd"].items())
    assert set(KINDS) == {"breathing", "warp", "local", "photometric", "combined"}


def test_a_difference_counts_only_beyond_its_spread():
    sys.path.insert(0, str(BENCHMARKS))
    from misalignment import paired_difference

    jdrl = [{"seed": 0, "psnr": 27.0}, {"seed": 1, "psnr": 28.0}]
    clear = [{"seed": 0, "psnr": 26.0}, {"seed": 1, "psnr": 27.1}]
    noisy = [{"seed": 0, "psnr": 27.5}, {"seed": 1, "psnr": 27.6}]
    assert paired_difference(clear, jdrl, "psnr")[2] is True
    assert paired_difference(noisy, jdrl, "psnr")[2] is False
    assert paired_difference(clear[:1], jdrl, "psnr")[2] is False  # one seed never differs


@pytest.mark.slow
def test_reblur_and_train_step_benchmarks_print_their_tables(tmp_path):
    reblur = run("reblur.py", "--sizes", "32", "--repeats", "1", "--devices", "cpu", "--sums", "shift", "conv",
                 cwd=tmp_path)
    assert reblur.count("| cpu | 32 |") == 2
    step = run("train_step.py", "--width", "0.0625", "--crop", "32", "--steps", "1", cwd=tmp_path)
    assert "| jdrl (full objective) |" in step
    deblur = run("deblur.py", "--size", "96x64", "--tile", "64", "--overlap", "16", "--whole", "32",
                 "--net-width", "0.0625", "--repeats", "1", cwd=tmp_path)
    assert "| jdrl deblur, tiled | 96x64 |" in deblur and "| deblur_image, whole | 32x32 |" in deblur


def test_the_alignment_benchmark_ranks_presets_against_the_order_put_in():
    sys.path.insert(0, str(BENCHMARKS))
    from alignment import ranking

    (right,) = ranking({"none": 0.4, "global": 6.0, "dpdd": 1.8, "sdd": 5.9, "hard": 12.0})
    assert "none (0.40 px) < dpdd (1.80 px) < sdd (5.90 px) < global (6.00 px)" in right and "**not**" not in right
    (wrong,) = ranking({"none": 0.4, "dpdd": 7.0, "sdd": 5.9, "hard": 12.0})
    assert "**not** the order put in" in wrong


@pytest.mark.slow
def test_the_alignment_benchmark_writes_presets_lowpass_and_real_tables(tmp_path):
    from jdrl.data.synthetic import SynthParams, write_synthetic

    real = write_synthetic(tmp_path / "real", 2, SynthParams.with_misalignment("dpdd", size=64), seed=0,
                           warn=lambda _: None)
    out = run("alignment.py", "--pairs", "1", "--seeds", "3", "--size", "64", "--real", str(real),
              "--json", str(tmp_path / "a.json"), "--append", str(tmp_path / "a.md"), cwd=tmp_path)
    data = json.loads((tmp_path / "a.json").read_text())
    assert set(data["presets"]) == {"none", "global", "dpdd", "sdd", "hard"} and len(data["lowpass"]) == 5
    assert len(data["real"]["pairs"]) == 2 and not {"blur", "sharp"} & set(data["real"]["pairs"][0])
    assert "Ranked by the median p95 displacement" in out and "Recommendation:" in out
    assert "| none | 1 |" in (tmp_path / "a.md").read_text()


@pytest.mark.slow
def test_the_blur_map_benchmark_scores_every_map(tmp_path):
    out = run("blur_map.py", "--steps", "1", "--pairs", "1", "--control-steps", "1", "--border", "4",
              "--json", str(tmp_path / "b.json"), "--quiet", cwd=tmp_path)
    rows = json.loads((tmp_path / "b.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))["rows"]
    assert len(rows) == 9 and all(len(r["per_pair"]) == 1 for r in rows.values())
    assert "| no network: -local gradient energy | (not px) |" in out


@pytest.mark.slow
def test_the_pretraining_recipe_runs_scores_and_exports_a_loadable_model(tmp_path):
    from jdrl.nets import create_net

    tiny = json.dumps({"width": 4, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1], "middle_blk_num": 1, "tlc": False})
    args = ["--steps", "2", "--val-every", "1", "--pairs", "4", "--size", "64", "--crop", "32", "--batch", "2",
            "--net-options", tiny, "--score-r-max", "4", "--threads", "1", "--out", str(tmp_path / "out"),
            "--export", str(tmp_path / "model")]
    out = run("pretrain.py", *args, cwd=tmp_path)
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert settings["train_photos"] and not set(settings["train_photos"]) & set(settings["held_out_photos"])
    assert settings["targets"] == "aligned truth" and set(settings["scores"]) == {"4.0"}
    assert "| PSNR (dB) |" in out and (tmp_path / "out" / "curve.md").is_file()
    net = create_net(checkpoint=tmp_path / "model")
    assert net.jdrl_spec.name == "nafnet_w32" and net.jdrl_spec.options["width"] == 4
    again = subprocess.run([sys.executable, str(BENCHMARKS / "pretrain.py"), *args], capture_output=True, text=True,
                           cwd=tmp_path, timeout=600)
    assert again.returncode != 0 and "exists" in again.stderr  # nothing is overwritten unless asked
