"""Non-rigid misalignment, occlusion and photometric differences of the synthetic pairs (jdrl.data.synthetic)."""

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from jdrl.cli import main
from jdrl.data.augment import dihedral
from jdrl.data.datasets import SyntheticPairs, _turn_flow
from jdrl.data.synthetic import (
    MISALIGNMENT_LEVELS,
    MISALIGNMENT_PRESETS,
    SynthParams,
    ellipse_coverage,
    make_pair,
    read_flow,
    read_meta,
    read_occlusion,
    true_flow,
    undo_photometric,
    valid_mask,
)
from jdrl.flow.warp import warp
from jdrl.images import read_image, write_image
from tests.conftest import textured_image

PHOTOMETRY_OFF = {"gt_exposure": 0.0, "white_balance": 0.0, "gamma": 0.0, "vignetting": 0.0}
KINDS = {  # each kind alone, at the hard preset's strength, on top of no misalignment at all
    "breathing": {"breathing": 0.08},
    "warp": {"warp_amplitude": 4.0, "warp_scale": 48.0},
    "local": {"local_regions": 4, "local_shift": 10.0},
    "photometric": {"gt_exposure": 0.15, "white_balance": 0.08, "gamma": 0.15, "vignetting": 0.3},
}
KIND_OFF = {
    "breathing": {"breathing": 0.0},
    "warp": {"warp_amplitude": 0.0},
    "local": {"local_regions": 0},
    "photometric": PHOTOMETRY_OFF,
}


def psnr(a, b):
    return float(-10 * np.log10(np.mean((a.astype(np.float64) - b) ** 2) + 1e-30))


def warped(gt: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``jdrl.flow.warp.warp(gt, flow)`` on (H, W, C) / (H, W, 2) arrays."""
    image = torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1)))[None]
    field = torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1)))[None]
    return warp(image, field)[0].numpy().transpose(1, 2, 0)


def assert_flow_reproduces_aligned(gt, flow, occlusion, aligned):
    """Outside the occlusions (and the pixels whose target leaves the frame): bilinear-resampling error only."""
    valid = valid_mask(flow, occlusion)
    assert valid.mean() > 0.5
    rebuilt = warped(gt, flow)
    error = np.abs(rebuilt - aligned)[valid]
    assert error.mean() < 0.01, error.mean()
    assert psnr(rebuilt[valid], aligned[valid]) > 35


@pytest.fixture(scope="module")
def source():
    return textured_image(np.random.default_rng(99), 220, 220)


@pytest.mark.parametrize("kind", [*KINDS, "all"])
def test_warping_the_ground_truth_by_the_true_flow_gives_the_aligned_image(source, kind):
    """Each kind alone and all together (with a global zoom + shift); the photometric change is undone
    with the recorded parameters (``undo_photometric``) before warping."""
    if kind == "all":
        params = SynthParams.with_misalignment("hard", size=96)
    else:
        params = SynthParams.with_misalignment("none", size=96, **KINDS[kind])
    largest_motion, lowest_psnr = 0.0, np.inf
    for index in range(3):
        pair = make_pair(source, params, seed=11, index=index)
        gt = undo_photometric(pair.sharp, pair.meta["photometric"])
        assert_flow_reproduces_aligned(gt, pair.flow, pair.occlusion, pair.aligned)
        assert pair.flow.shape == (96, 96, 2) and pair.flow.dtype == np.float32
        assert pair.occlusion.shape == (96, 96) and pair.occlusion.dtype == bool
        if kind == "photometric":  # geometry untouched, colours changed
            assert np.abs(pair.flow).max() == 0 and not pair.occlusion.any()
            assert np.abs(pair.sharp - pair.aligned).mean() > 0.01
        largest_motion = max(largest_motion, float(np.abs(pair.flow).max()))
        lowest_psnr = min(lowest_psnr, psnr(pair.sharp, pair.aligned))
    if kind != "photometric":  # the kind really moves things
        assert largest_motion > 0.5 and lowest_psnr < 30


def test_the_global_part_of_the_flow_is_true_flow(source):
    params = SynthParams.with_misalignment("sdd", size=64, warp_amplitude=0.0, local_regions=0)
    pair = make_pair(source, params, seed=2, index=1)
    assert pair.meta["breathing_zoom"] != 1.0
    assert pair.meta["zoom"] == pytest.approx(pair.meta["random_zoom"] * pair.meta["breathing_zoom"])
    assert np.allclose(pair.flow, true_flow(pair.meta).transpose(1, 2, 0), atol=1e-5)


def test_occlusions_are_where_the_regions_moved(source):
    params = SynthParams.with_misalignment("none", size=96, local_regions=1, local_shift=8.0, local_size=(0.3, 0.4))
    occluded_somewhere = 0
    for index in range(4):
        pair = make_pair(source, params, seed=4, index=index)
        (region,) = pair.meta["regions"]
        ys, xs = np.mgrid[0:96, 0:96].astype(np.float64)
        vx, vy = region["shift"]
        old = ellipse_coverage(region, xs, ys)  # the ellipse in the aligned geometry
        new = ellipse_coverage(region, xs - vx, ys - vy)  # where it is in the ground truth
        near = cv2.dilate(((old > 0) | (new > 0)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert not (pair.occlusion & ~near).any()  # nothing occluded away from the moved ellipse
        hidden = (new == 1) & (old == 0)  # background the moved ellipse covers in the ground truth
        hidden = cv2.erode(hidden.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # away from its edges
        assert pair.occlusion[hidden].all()
        assert not pair.occlusion[cv2.erode((old == 1).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0].any() \
            or max(abs(vx), abs(vy)) > 3  # the ellipse's own inside maps onto itself (unless it moved a lot)
        occluded_somewhere += int(pair.occlusion.any())
        assert pair.meta["occluded_fraction"] == pytest.approx(pair.occlusion.mean())
    assert occluded_somewhere == 4


def test_no_occlusion_without_local_motion(source):
    params = SynthParams.with_misalignment("hard", size=64, local_regions=0)
    for index in range(3):
        pair = make_pair(source, params, seed=1, index=index)
        assert not pair.occlusion.any() and pair.meta["regions"] == []
    # a count without a shift (or a shift without a count) is off too
    assert make_pair(source, replace(params, local_regions=3, local_shift=0.0), seed=1, index=0).meta["regions"] == []


def test_all_new_kinds_off_is_the_global_model(source):
    params = SynthParams(size=64, shift=4.0, zoom=0.03)
    pair = make_pair(source, params, seed=3, index=2)
    assert not pair.occlusion.any() and pair.meta["regions"] == [] and pair.meta["warp_peak"] == 0
    assert pair.meta["breathing_zoom"] == 1.0 and pair.meta["zoom"] == pair.meta["random_zoom"]
    assert pair.meta["photometric"]["gain"] == 1.0 and pair.meta["photometric"]["white_balance"] == [1.0] * 3
    assert np.array_equal(pair.flow, true_flow(pair.meta).transpose(1, 2, 0))
    # the settings of a kind that is off change nothing
    inert = make_pair(source, replace(params, warp_scale=20.0, local_size=(0.5, 0.6)), seed=3, index=2)
    for key in ("blur", "sharp", "aligned", "flow", "occlusion"):
        assert np.array_equal(getattr(pair, key), getattr(inert, key)), key


@pytest.mark.parametrize("kind", list(KIND_OFF))
def test_switching_one_kind_off_leaves_the_others_draws(source, kind):
    full = SynthParams.with_misalignment("sdd", size=64)
    pair = make_pair(source, full, seed=6, index=3)
    off = make_pair(source, replace(full, **KIND_OFF[kind]), seed=6, index=3)
    meta, meta_off = pair.meta, off.meta
    assert (meta_off["breathing_zoom"] == 1.0) == (kind == "breathing")
    assert (meta_off["warp_peak"] == 0.0) == (kind == "warp")
    assert (meta_off["regions"] == []) == (kind == "local")
    identity = {"gain": 1.0, "white_balance": [1.0, 1.0, 1.0], "gamma": 1.0, "vignetting": 0.0}
    assert (meta_off["photometric"] == identity) == (kind == "photometric")
    for key in ("random_zoom", "shift", "focus", "r_peak", "depth_grid"):
        assert meta_off[key] == meta[key], key
    if kind != "breathing":
        assert meta_off["zoom"] == meta["zoom"]
    if kind != "warp":
        assert meta_off["warp_grid"] == meta["warp_grid"] and meta_off["warp_peak"] == meta["warp_peak"]
    if kind != "local":
        assert meta_off["regions"] == meta["regions"]
    if kind != "photometric":
        assert meta_off["photometric"] == meta["photometric"]
    else:  # the geometry is untouched: same window, same flow, only the colours of the ground truth differ
        assert np.array_equal(pair.flow, off.flow) and np.array_equal(pair.aligned, off.aligned)
        assert np.allclose(undo_photometric(pair.sharp, meta["photometric"]), off.sharp, atol=2e-3)


def test_the_none_preset_is_no_misalignment(source):
    pair = make_pair(source, SynthParams.with_misalignment("none", size=64), seed=0, index=0)
    assert np.array_equal(pair.sharp, pair.aligned)
    assert not pair.flow.any() and not pair.occlusion.any()


def test_presets_exist_differ_and_the_old_levels_stay():
    assert {"none", "global", "dpdd", "sdd", "hard", "severe"} <= set(MISALIGNMENT_PRESETS)
    params = {name: SynthParams.with_misalignment(name) for name in MISALIGNMENT_PRESETS}
    assert len(set(params.values())) == len(params)
    assert MISALIGNMENT_LEVELS == {"none": (0.0, 0.0), "dpdd": (2.0, 0.01), "sdd": (6.0, 0.03), "severe": (10.0, 0.05)}
    assert (params["global"].shift, params["global"].zoom) == MISALIGNMENT_LEVELS["sdd"]
    assert (params["severe"].shift, params["severe"].zoom) == MISALIGNMENT_LEVELS["severe"]
    for name in ("global", "severe"):
        assert params[name].warp_amplitude == params[name].local_regions == params[name].gamma == 0
    for field in ("shift", "warp_amplitude", "local_regions", "local_shift", "gt_exposure", "vignetting"):
        assert getattr(params["dpdd"], field) <= getattr(params["sdd"], field) <= getattr(params["hard"], field)
    assert SynthParams.with_misalignment("sdd", shift=1.0, size=64).shift == 1.0
    with pytest.raises(ValueError):
        SynthParams.with_misalignment("wobbly")


def test_presets_give_different_pairs(source):
    flows = [make_pair(source, SynthParams.with_misalignment(name, size=64), seed=0, index=0).flow
             for name in ("dpdd", "sdd", "hard")]
    assert not np.allclose(flows[0], flows[1]) and not np.allclose(flows[1], flows[2])


def test_same_seed_same_arrays_and_the_meta_records_every_draw(source):
    params = SynthParams.with_misalignment("hard", size=64)
    a, b = (make_pair(source, params, seed=8, index=5) for _ in range(2))
    for key in ("blur", "sharp", "aligned", "flow", "occlusion"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    assert a.meta == b.meta
    c = make_pair(source, params, seed=9, index=5)
    assert not np.array_equal(a.flow, c.flow)
    record = json.loads(json.dumps(a.meta))
    for key in ("random_zoom", "breathing_zoom", "zoom", "warp_peak", "warp_grid", "regions", "photometric",
                "occluded_fraction", "out_of_view_fraction"):
        assert key in record
    assert len(record["regions"]) == 4
    assert set(record["regions"][0]) == {"centre", "axes", "angle", "shift", "fill_offset"}


def test_synth_command_writes_flow_and_occlusion(tmp_path, rng):
    write_image(tmp_path / "src" / "s.png", textured_image(rng, 150, 160))
    args = ["synth", str(tmp_path / "src"), "-n", "2", "--size", "64", "--misalignment", "sdd", "--quiet"]
    for run in ("a", "b"):
        assert main([*args, "-o", str(tmp_path / run), "--seed", "5"]) == 0
    out = tmp_path / "a"
    for sub in ("blur", "gt", "aligned", "occlusion"):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["00000.png", "00001.png"], sub
    assert sorted(p.name for p in (out / "flow").iterdir()) == ["00000.npy", "00001.npy"]
    for path in sorted(out.rglob("*")):  # the same seed writes byte-identical files
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "b" / path.relative_to(out)).read_bytes(), path
    flow = read_flow(out / "flow" / "00001.npy")
    assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
    occlusion = read_occlusion(out / "occlusion" / "00001.png")
    assert occlusion.shape == (64, 64) and occlusion.dtype == bool
    record = read_meta(out)["00001"]
    assert record["params"]["breathing"] == MISALIGNMENT_PRESETS["sdd"]["breathing"]
    assert record["params"]["local_regions"] == MISALIGNMENT_PRESETS["sdd"]["local_regions"]
    assert record["occluded_fraction"] == pytest.approx(occlusion.mean())


def test_synth_command_options_override_the_preset_and_files_warp_back(tmp_path, rng):
    """From the files themselves, photometric change switched off: warp(gt, flow) ~ aligned."""
    write_image(tmp_path / "src" / "s.png", textured_image(rng, 150, 160))
    out = tmp_path / "out"
    assert main(["synth", str(tmp_path / "src"), "-n", "2", "-o", str(out), "--size", "64", "--misalignment", "hard",
                 "--gt-exposure", "0", "--white-balance", "0", "--gamma", "0", "--vignetting", "0",
                 "--local-regions", "2", "--local-size", "0.2", "0.3", "--quiet"]) == 0
    record = read_meta(out)["00000"]
    assert record["params"]["local_regions"] == 2 and record["params"]["local_size"] == [0.2, 0.3]
    assert record["params"]["warp_amplitude"] == MISALIGNMENT_PRESETS["hard"]["warp_amplitude"]
    assert record["params"]["gamma"] == 0 and len(record["regions"]) == 2
    for stem in ("00000", "00001"):
        assert_flow_reproduces_aligned(read_image(out / "gt" / f"{stem}.png"), read_flow(out / "flow" / f"{stem}.npy"),
                                       read_occlusion(out / "occlusion" / f"{stem}.png"),
                                       read_image(out / "aligned" / f"{stem}.png"))


def test_synth_command_refuses_values_out_of_range(tmp_path, capsys):
    assert main(["synth", "-n", "1", "-o", str(tmp_path / "out"), "--size", "64", "--gamma", "2", "--quiet"]) != 0
    assert "gamma" in capsys.readouterr().err
    assert not (tmp_path / "out" / "meta.jsonl").exists()


def test_flips_and_rotations_turn_the_flow(source):
    pair = make_pair(source, SynthParams.with_misalignment("sdd", size=64, **PHOTOMETRY_OFF), seed=3, index=0)
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32)
    coords = np.stack([xs, ys], axis=2)
    for k in range(8):
        flow = _turn_flow(dihedral(pair.flow, k), dihedral(coords, k))
        assert_flow_reproduces_aligned(dihedral(pair.sharp, k), flow, dihedral(pair.occlusion, k),
                                       dihedral(pair.aligned, k))


def test_dataset_items_carry_flow_and_occlusion(source):
    params = SynthParams.with_misalignment("sdd", size=64, **PHOTOMETRY_OFF)
    plain = SyntheticPairs(2, params, seed=1, sources=[("t", source)])
    item = plain[0]
    assert set(item) == {"blur", "sharp", "aligned", "flow", "occlusion", "name"}
    assert item["flow"].shape == (2, 64, 64) and item["occlusion"].shape == (1, 64, 64)
    assert torch.equal(item["flow"], torch.from_numpy(plain.pair(0).flow).permute(2, 0, 1))
    augmented = SyntheticPairs(2, params, seed=1, sources=[("t", source)], crop=48, augment=True)
    for epoch in range(6):
        augmented.set_epoch(epoch)
        for index in range(2):
            item = augmented[index]
            assert item["flow"].shape == (2, 48, 48) and item["occlusion"].shape == (1, 48, 48)
            as_array = {k: item[k].numpy().transpose(1, 2, 0) for k in ("sharp", "aligned", "flow", "occlusion")}
            assert_flow_reproduces_aligned(as_array["sharp"], as_array["flow"], as_array["occlusion"][..., 0] > 0.5,
                                           as_array["aligned"])
