"""The misalignment report (jdrl.data.alignment, jdrl data check --misalignment) against synthetic truth."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from jdrl.cli import main
from jdrl.data.alignment import (
    FIT_TOLERANCES,
    MisalignmentConfig,
    PairAlignment,
    Thresholds,
    judge,
    misalignment_report,
    recommend,
    robust_global_fit,
    similarity_terms,
)
from jdrl.data.synthetic import SynthParams, read_meta, write_synthetic

PRESETS = ("none", "dpdd", "sdd", "hard")  # in the order of how misaligned they are
FIT_PAIRS = 6  # 192 px pairs of each preset of FIT_TOLERANCES
FAST = MisalignmentConfig(worst=0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Four pairs of each preset (128 px) and of the fit presets (192 px), as ``jdrl synth`` writes them."""
    root = tmp_path_factory.mktemp("synth")
    sets = {}
    for preset in PRESETS:
        sets[preset] = write_synthetic(root / preset, 4, SynthParams.with_misalignment(preset, size=128), seed=0,
                                       warn=lambda _: None)
    for preset in FIT_TOLERANCES:
        sets[f"fit-{preset}"] = write_synthetic(root / f"fit-{preset}", FIT_PAIRS,
                                                SynthParams.with_misalignment(preset, size=192), seed=3,
                                                warn=lambda _: None)
    return sets


@pytest.fixture(scope="module")
def reports(synthetic):
    return {name: misalignment_report(folder, FAST) for name, folder in synthetic.items()}


def test_the_four_presets_are_ranked_and_told_apart(reports):
    medians = [float(np.median([p.displacement_p95_px for p in reports[preset].pairs])) for preset in PRESETS]
    assert medians == sorted(medians) and len(set(medians)) == 4, medians
    residuals = [float(np.median([p.residual_median_px for p in reports[preset].pairs])) for preset in PRESETS]
    assert residuals == sorted(residuals), residuals
    assert {p.verdict for p in reports["none"].pairs} == {"aligned"}
    assert reports["none"].recommendation.objective == "pixel"
    for preset in ("sdd", "hard"):
        assert {p.verdict for p in reports[preset].pairs} == {"misaligned"}, preset
        assert reports[preset].recommendation.objective == "jdrl"
    assert not any(r.recommendation.drop for r in reports.values())


@pytest.mark.parametrize("preset", sorted(FIT_TOLERANCES))
def test_the_global_fit_recovers_the_stored_zoom_and_shift(reports, synthetic, preset):
    meta = read_meta(synthetic[f"fit-{preset}"])
    pairs = reports[f"fit-{preset}"].pairs
    assert len(pairs) == FIT_PAIRS
    zoom_errors = [abs(p.zoom - meta[p.name]["zoom"]) for p in pairs]
    shift_errors = [math.hypot(p.shift_x - meta[p.name]["shift"][0], p.shift_y - meta[p.name]["shift"][1])
                    for p in pairs]
    (zoom_median, zoom_max), (shift_median, shift_max) = FIT_TOLERANCES[preset]["zoom"], FIT_TOLERANCES[preset]["shift"]
    assert float(np.median(zoom_errors)) <= zoom_median and max(zoom_errors) <= zoom_max, zoom_errors
    assert float(np.median(shift_errors)) <= shift_median and max(shift_errors) <= shift_max, shift_errors
    assert all(abs(p.rotation_deg) < 0.5 for p in pairs)  # the presets do not rotate


@pytest.mark.parametrize("model", ["similarity", "affine"])
def test_similarity_terms_invert_an_exact_global_flow(model):
    """gt(x) = blurry(c + zoom R(theta) (x - c) + shift): the flow blurry -> GT of that map, read back exactly."""
    height, width, zoom, theta, shift = 60, 80, 0.97, math.radians(1.5), np.array([3.0, -2.0])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    forward = np.linalg.inv(zoom * rotation)  # blurry point p -> GT point q = c + A^-1 (p - c - shift)
    p = np.stack([xs - centre[0] - shift[0], ys - centre[1] - shift[1]])
    q = np.einsum("ij,jhw->ihw", forward, p) + centre[:, None, None]
    flow = torch.from_numpy(q - np.stack([xs, ys]))[None].float()
    params, inliers = robust_global_fit(flow, np.ones((height, width), bool), model)
    got = similarity_terms(params, model)
    assert got[0] == pytest.approx(zoom, abs=1e-5)
    assert got[1] == pytest.approx(math.degrees(theta), abs=1e-3)
    assert got[2:] == pytest.approx(tuple(shift), abs=1e-3)
    assert inliers.all()


def _folders_with_one_unrelated_pair(synthetic, tmp_path):
    """blur/ + sharp/ of the dpdd pairs, but pair 00002's sharp image comes from another photo."""
    source = synthetic["dpdd"]
    root = tmp_path / "mine"
    (root / "blur").mkdir(parents=True)
    (root / "sharp").mkdir()
    for index in range(4):
        shutil.copy(source / "blur" / f"{index:05d}.png", root / "blur" / f"{index:05d}.png")
        shutil.copy(source / "gt" / f"{index:05d}.png", root / "sharp" / f"{index:05d}.png")
    shutil.copy(synthetic["sdd"] / "gt" / "00003.png", root / "sharp" / "00002.png")
    return root


def test_a_pair_of_unrelated_images_is_flagged_to_drop(synthetic, tmp_path):
    report = misalignment_report(_folders_with_one_unrelated_pair(synthetic, tmp_path), FAST)
    verdicts = {p.name: p.verdict for p in report.pairs}
    assert verdicts["00002"] == "drop" and list(verdicts.values()).count("drop") == 1, verdicts
    assert report.recommendation.drop == ["00002"]
    assert "same view" in "; ".join(report.pairs[2].reasons)
    assert "drop 1 pair(s): 00002" in str(report.recommendation)


def test_the_command_writes_the_report_refuses_to_overwrite_it_and_exits_1_on_a_pair_to_drop(synthetic, tmp_path,
                                                                                              capsys):
    data = _folders_with_one_unrelated_pair(synthetic, tmp_path)
    out = tmp_path / "report"
    argv = ["data", "check", str(data), "--misalignment", "-o", str(out), "--quiet", "--worst", "2"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "recommendation:" in printed and "00002" in printed and "drop" in printed
    for name in ("misalignment.csv", "misalignment.json", "histograms.png", "index.html"):
        assert (out / name).is_file(), name
    pictured = sorted(p.name for p in (out / "pairs").iterdir())
    assert len(pictured) == 2 and "00002.png" in pictured, pictured  # --worst 2, the pair to drop among them
    data_json = json.loads((out / "misalignment.json").read_text())
    assert data_json["recommendation"]["drop"] == ["00002"] and len(data_json["pairs"]) == 4
    assert "drop" in (out / "index.html").read_text()
    rows = (out / "misalignment.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("name,blur,sharp,width,height,zoom")
    before = (out / "misalignment.csv").read_bytes()
    assert main(argv) == 2  # refused: the report exists
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "misalignment.csv").read_bytes() == before
    assert main([*argv, "--overwrite", "--worst", "0"]) == 1
    assert not list((out / "pairs").glob("*.png"))  # the earlier pictures went with the earlier report


def test_an_aligned_folder_passes(synthetic, tmp_path, capsys):
    assert main(["data", "check", str(synthetic["none"]), "--misalignment", "-o", str(tmp_path / "r"), "--quiet",
                 "--mask", "paper"]) == 0
    printed = capsys.readouterr().out
    assert "pixel loss is fine" in printed
    assert "drop_paper" in (tmp_path / "r" / "misalignment.csv").read_text().splitlines()[0]


def test_a_report_inside_an_image_folder_is_refused(synthetic, capsys):
    folder = synthetic["none"]
    assert main(["data", "check", str(folder), "--misalignment", "-o", str(folder / "blur" / "r"), "--quiet"]) == 2
    assert "among the images" in capsys.readouterr().err
    assert not (folder / "blur" / "r").exists()


def test_a_report_folder_linked_into_an_image_folder_is_refused(synthetic, tmp_path, capsys):
    link = tmp_path / "elsewhere"
    link.symlink_to(synthetic["none"] / "blur", target_is_directory=True)
    assert main(["data", "check", str(synthetic["none"]), "--misalignment", "-o", str(link / "r"), "--quiet"]) == 2
    assert "among the images" in capsys.readouterr().err
    assert not (synthetic["none"] / "blur" / "r").exists()


def test_a_pair_name_that_is_not_utf8_reaches_the_report_escaped(synthetic, tmp_path, capsys):
    import os

    root = tmp_path / "odd"
    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8, kept by Python as a surrogate
    for source, target in (("blur", "blur"), ("gt", "sharp")):
        (root / target).mkdir(parents=True)
        for index in range(2):
            stem = name if index == 0 else f"{index:05d}"
            shutil.copy(synthetic["none"] / source / f"{index:05d}.png", root / target / f"{stem}.png")
    out = tmp_path / "r"
    assert main(["data", "check", str(root), "--misalignment", "-o", str(out), "--quiet", "--worst", "2"]) == 0
    capsys.readouterr()
    assert "caf\\udce9" in (out / "misalignment.csv").read_text(encoding="utf-8")  # valid UTF-8, the byte escaped
    assert "caf\\udce9" in (out / "index.html").read_text(encoding="utf-8")
    assert name in [p["name"] for p in json.loads((out / "misalignment.json").read_text(encoding="utf-8"))["pairs"]]
    assert len(list((out / "pairs").glob("*.png"))) == 2


def _pair(**changes) -> PairAlignment:
    values = dict(name="p", blur="", sharp="", width=64, height=64, zoom=1.0, rotation_deg=0.0, shift_x=0.0,
                  shift_y=0.0, global_max_px=0.2, residual_median_px=0.1, residual_p95_px=0.3,
                  displacement_p95_px=0.3, outlier_share=0.01, reliable_share=0.99, mask_drop={}, exposure=1.0,
                  gain_r=1.0, gain_g=1.0, gain_b=1.0, match=0.95)
    return PairAlignment(**{**values, **changes})


def test_the_verdicts_follow_the_documented_thresholds():
    t = Thresholds()
    assert judge(_pair(), t).verdict == "aligned"
    assert judge(_pair(global_max_px=t.aligned_px + 0.01), t).verdict == "misaligned"
    assert judge(_pair(residual_median_px=t.residual_px + 0.01), t).verdict == "misaligned"
    assert judge(_pair(match=t.min_match - 0.01), t).verdict == "drop"
    assert judge(_pair(outlier_share=t.max_outliers + 0.01), t).verdict == "drop"
    noted = judge(_pair(exposure=1.2, gain_r=1.2, gain_g=1.2, gain_b=1.4), t)
    assert noted.verdict == "aligned" and any("exposure" in r for r in noted.reasons)
    assert any("colour" in r and "b x" in r for r in noted.reasons)
    aligned = [judge(_pair(name=str(i)), t) for i in range(9)]
    assert recommend([*aligned, judge(_pair(global_max_px=3.0), t)], t).objective == "pixel"  # 1 of 10 <= 10 %
    assert recommend([*aligned, *(judge(_pair(global_max_px=3.0), t) for _ in range(2))], t).objective == "jdrl"


# ------------------------------------------------------------------------------------------- bad input


def _one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == 1 and lines[0].startswith("jdrl "), err
    return lines[0]


def test_a_missing_folder_is_a_listed_problem_without_a_traceback(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["data", "check", str(missing), "--misalignment", "-o", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err and str(missing) in err, err
    assert err.splitlines()[0].startswith("jdrl data: error: 1 problem(s)"), err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("extra", "named"), [
    (["--flow", "nope"], "unknown flow estimator 'nope'"),
    (["--flow", "pwcnet"], "needs a weight file"),
    (["--flow", "raft_small", "--flow-weights", "missing.pth"], "missing.pth"),
    (["--no-out"], "give its folder with -o DIR"),
    (["--no-misalignment"], "add --misalignment"),
])
def test_bad_report_options_are_one_line_before_any_image_is_read(synthetic, tmp_path, capsys, extra, named):
    argv = ["data", "check", str(synthetic["none"]), "--misalignment", "-o", str(tmp_path / "r"), "--quiet"]
    if extra == ["--no-out"]:
        argv, extra = argv[:4] + argv[6:], []
    elif extra == ["--no-misalignment"]:
        argv, extra = argv[:3] + argv[4:], []
    code = main([*argv, *extra])
    captured = capsys.readouterr()
    assert named in _one_line_error(code, captured.err)
    assert captured.out == ""  # refused before the images were checked
    assert not (tmp_path / "r").exists()


def test_images_too_small_to_measure_are_problems_not_a_crash(tmp_path, capsys):
    from jdrl.data.alignment import MIN_SIDE
    from jdrl.images import write_image

    root = tmp_path / "tiny"
    rng = np.random.default_rng(0)
    for folder in ("blur", "sharp"):
        write_image(root / folder / "a.png", rng.random((MIN_SIDE - 4, MIN_SIDE + 8, 3)).astype(np.float32))
    assert main(["data", "check", str(root), "--misalignment", "-o", str(tmp_path / "r"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "internal error" not in captured.err, captured.err
    assert f"smaller than the {MIN_SIDE}px side the misalignment report measures" in captured.out
    assert "no usable pair to measure" in captured.out


# ------------------------------------------------------------------------------------------- blur map


@pytest.fixture(scope="module")
def blur_map_world(tmp_path_factory):
    """A tiny UNet checkpoint with and without a (randomly initialised) reblurring module, and a 40x56 input."""
    from jdrl.checkpoint import write_checkpoint
    from jdrl.nets.factory import network_checkpoint
    from jdrl.images import write_image
    from jdrl.nets import create_net
    from jdrl.reblur.module import ReblurModule

    root = tmp_path_factory.mktemp("blur_map")
    torch.manual_seed(0)
    net = create_net("unet", width=0.0625).eval()
    reblur = ReblurModule(features=8).eval()
    plain = network_checkpoint(net, "unet", width=0.0625)
    with_reblur = {**plain, "reblur": {"options": {"kernel": reblur.kernel, "support": reblur.support},
                                       "state_dict": reblur.state_dict()}}
    image = np.random.default_rng(1).random((40, 56, 3)).astype(np.float32)
    write_image(root / "in" / "photo.png", image)
    return {"root": root, "plain": write_checkpoint(plain, root / "plain.pt"),
            "jdrl": write_checkpoint(with_reblur, root / "jdrl.pt"), "image": root / "in" / "photo.png",
            "reblur": reblur}


def test_the_blur_map_has_the_image_size_and_is_written_only_when_asked(blur_map_world, tmp_path, capsys):
    from jdrl.images import read_image
    from jdrl.reblur.blur_map import RADII, blur_map_image, read_blur_map

    world = blur_map_world
    base = ["deblur", str(world["image"]), "--checkpoint", str(world["jdrl"]), "--quiet"]
    assert main([*base, "-o", str(tmp_path / "plain")]) == 0
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["photo.png"]  # no map unless asked
    assert main([*base, "-o", str(tmp_path / "mapped"), "--blur-map"]) == 0
    assert "blur maps (wpn): 1" in capsys.readouterr().out
    radius = read_blur_map(tmp_path / "mapped" / "blur_map" / "photo.png")
    preview = read_image(tmp_path / "mapped" / "blur_map_preview" / "photo.png")
    assert radius.shape == (40, 56) and preview.shape == (40, 56, 3)
    assert 0 <= radius.min() and radius.max() <= RADII[-1] and radius.std() > 0
    expected = blur_map_image(world["reblur"], read_image(tmp_path / "mapped" / "photo.png"),
                              read_image(world["image"]), "wpn")
    np.testing.assert_allclose(radius, expected, atol=0.05)  # the 8-bit restored image on disk vs in memory
    assert main([*base, "-o", str(tmp_path / "mapped"), "--blur-map"]) != 0  # refuses to overwrite
    assert main([*base, "-o", str(tmp_path / "kernel"), "--blur-map", "kernel"]) == 0
    assert read_blur_map(tmp_path / "kernel" / "blur_map" / "photo.png").shape == (40, 56)


def test_tiles_give_the_whole_image_blur_map(blur_map_world):
    from jdrl.reblur.blur_map import blur_map

    rng = torch.Generator().manual_seed(2)
    restored, blurry = torch.rand(1, 3, 40, 56, generator=rng), torch.rand(1, 3, 40, 56, generator=rng)
    for method in ("wpn", "kernel"):
        whole = blur_map(blur_map_world["reblur"], restored, blurry, method, tile=64)
        tiled = blur_map(blur_map_world["reblur"], restored, blurry, method, tile=16)
        assert whole.shape == (1, 1, 40, 56)
        torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_a_checkpoint_without_a_reblurring_module_is_refused_before_any_image(blur_map_world, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["deblur", str(blur_map_world["image"]), "--checkpoint", str(blur_map_world["plain"]), "-o", str(out),
                 "--blur-map", "--quiet"])
    assert "holds no reblurring module" in _one_line_error(code, capsys.readouterr().err)
    assert not out.exists() or not any(out.rglob("*.png"))


def test_synth_stores_the_true_circle_of_confusion_of_every_blurry_pixel(synthetic, tmp_path):
    from jdrl.data.synthetic import read_coc
    from jdrl.images import read_image

    folder = synthetic["none"]
    for path in sorted((folder / "blur").glob("*.png")):
        coc = read_coc(folder / "coc" / f"{path.stem}.npy")
        assert coc.shape == read_image(path).shape[:2] and coc.dtype == np.float32
        assert np.isfinite(coc).all() and coc.min() >= 0 and coc.max() > 0
    with pytest.raises(ValueError, match="is a folder"):
        read_coc(folder / "coc")
    with pytest.raises(ValueError, match="no such file"):
        read_coc(tmp_path / "missing.npy")
