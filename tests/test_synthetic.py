import json

import numpy as np
import pytest

from jdrl.cli import main
from jdrl.data.datasets import SyntheticPairs
from jdrl.data.pairs import load_pairs
from jdrl.data.synthetic import (
    SynthParams,
    apply_recorded_misalignment,
    disk_kernel,
    make_pair,
    read_meta,
    variable_disk_blur,
)
from jdrl.images import read_image, write_image
from tests.conftest import textured_image


def psnr(a, b):
    return float(-10 * np.log10(np.mean((a.astype(np.float64) - b) ** 2) + 1e-30))


def test_recorded_transform_reproduces_the_ground_truth(rng):
    source = textured_image(rng, 200, 200)
    for index in range(4):
        pair = make_pair(source, SynthParams(size=128, shift=6, zoom=0.04), seed=5, index=index)
        rebuilt = apply_recorded_misalignment(pair.aligned, pair.meta)
        border = 16
        inner = (slice(border, -border), slice(border, -border))
        assert psnr(rebuilt[inner], pair.sharp[inner]) > 40
        assert psnr(pair.aligned[inner], pair.sharp[inner]) < psnr(rebuilt[inner], pair.sharp[inner]) - 10


def test_no_blur_and_no_misalignment_returns_the_input_unchanged(rng):
    source = textured_image(rng, 80, 80)
    params = SynthParams(size=64, r_max=0, shift=0, zoom=0, exposure=0, noise=0)
    pair = make_pair(source, params, seed=0, index=0)
    assert np.array_equal(pair.blur, pair.aligned) and np.array_equal(pair.sharp, pair.aligned)


def test_pairs_are_deterministic_and_independent_of_n():
    params = SynthParams(size=64)
    a = SyntheticPairs(3, params, seed=7).pair(2)
    b = SyntheticPairs(5, params, seed=7).pair(2)
    assert np.array_equal(a.blur, b.blur) and a.meta == b.meta
    c = SyntheticPairs(3, params, seed=8).pair(2)
    assert not np.array_equal(a.blur, c.blur)


def test_disk_kernel_is_normalised_and_symmetric():
    for radius in (0, 0.4, 1.0, 2.5, 6.0):
        kernel = disk_kernel(radius)
        assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(kernel, kernel[::-1]) and np.allclose(kernel, kernel.T)
    assert disk_kernel(0.3).shape == (1, 1)


def test_blur_grows_with_the_radius(rng):
    image = textured_image(rng, 64, 64)
    small = variable_disk_blur(image, np.full((64, 64), 1.0, np.float32))
    large = variable_disk_blur(image, np.full((64, 64), 4.0, np.float32))
    assert np.std(np.diff(large, axis=1)) < np.std(np.diff(small, axis=1)) < np.std(np.diff(image, axis=1))


def test_synth_command_writes_everything(tmp_path, rng, capsys):
    for i in range(2):
        write_image(tmp_path / "src" / f"s{i}.png", textured_image(rng, 120, 140))
    out = tmp_path / "out"
    assert main(["synth", str(tmp_path / "src"), "-n", "3", "-o", str(out), "--size", "64", "--seed", "2", "--quiet"]) == 0
    meta = read_meta(out)
    assert sorted(meta) == ["00000", "00001", "00002"]
    record = meta["00001"]
    for key in ("zoom", "shift", "offset", "r_peak", "focus", "exposure_gain", "noise_sigma", "source", "seed"):
        assert key in record
    assert record["source"] == "s1"
    pairs = load_pairs(out)
    assert pairs.layout == "synthetic" and len(pairs) == 3
    aligned = read_image(out / "aligned" / "00001.png")
    rebuilt = apply_recorded_misalignment(aligned, record)
    gt = read_image(out / "gt" / "00001.png")
    assert psnr(rebuilt[12:-12, 12:-12], gt[12:-12, 12:-12]) > 40
    json.dumps(record)  # plain JSON


def test_synth_default_sources_run_offline(tmp_path):
    assert main(["synth", "-n", "2", "-o", str(tmp_path), "--size", "64", "--quiet"]) == 0
    assert len(list((tmp_path / "blur").iterdir())) == 2


def test_sources_too_small_are_named_up_front_and_left_out(tmp_path, rng, capsys):
    write_image(tmp_path / "src" / "big.png", textured_image(rng, 120, 140))
    write_image(tmp_path / "src" / "tiny.png", textured_image(rng, 40, 50))
    out = tmp_path / "out"
    assert main(["synth", str(tmp_path / "src"), "-n", "2", "-o", str(out), "--size", "64", "--quiet"]) == 0
    assert "tiny: 50x40" in capsys.readouterr().out
    assert {record["source"] for record in read_meta(out).values()} == {"big"}


def test_no_source_big_enough_is_one_clear_error_before_anything_is_written(tmp_path, rng, capsys):
    write_image(tmp_path / "src" / "tiny.png", textured_image(rng, 40, 50))
    out = tmp_path / "out"
    assert main(["synth", str(tmp_path / "src"), "-n", "2", "-o", str(out), "--size", "64", "--quiet"]) != 0
    assert "tiny: 50x40" in capsys.readouterr().err
    assert not (out / "meta.jsonl").exists()


def test_the_same_seed_writes_the_same_files(tmp_path, rng):
    write_image(tmp_path / "src" / "s.png", textured_image(rng, 120, 140))
    for run in ("a", "b"):
        assert main(["synth", str(tmp_path / "src"), "-n", "2", "-o", str(tmp_path / run), "--size", "64",
                     "--seed", "5", "--quiet"]) == 0
    for relative in ("meta.jsonl", "blur/00001.png", "gt/00001.png", "aligned/00001.png"):
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative
