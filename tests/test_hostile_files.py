"""A generated corpus of hostile files: every file argument of every command x every kind of thing that is not
the file it should be -- missing, a folder, a named pipe (FIFO), a device, a symlink loop, empty, truncated, a
header that lies, random bytes, a name that is not UTF-8, a name that starts with ``-``, a name too long for the
file system -- and CSV pair lists broken in every way.

Each case runs the real command in-process and asserts: an exit status of 0 or a one-line error (never a
traceback or "internal error"), no hang (a FIFO opened for reading blocks forever; /dev/zero never ends), the
offending name in the message, and nothing written into the inputs.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from jdrl.checkpoint import make_checkpoint, write_checkpoint
from jdrl.images import write_image
from jdrl.nets import create_net
from tests.conftest import textured_image
from tests.test_bad_inputs import assert_one_line_error, run_cli, snapshot

KINDS = ("missing", "folder", "fifo", "device", "loop", "empty", "truncated", "lying-header", "garbage", "non-utf8",
         "dash", "too-long")


def _png_with_size(data: bytes, width: int, height: int) -> bytes:
    patched = bytearray(data)
    struct.pack_into(">II", patched, 16, width, height)
    struct.pack_into(">I", patched, 29, zlib.crc32(bytes(patched[12:29])) & 0xFFFFFFFF)
    return bytes(patched)


def make_kinds(folder: Path, extension: str, good: bytes) -> dict[str, str]:
    """``kind -> path`` (relative to ``folder`` for the dash name) of each hostile file for one argument."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"missing": folder / f"missing.{extension}", "folder": folder / f"folder.{extension}",
             "fifo": folder / f"fifo.{extension}", "loop": folder / f"loop.{extension}",
             "empty": folder / f"empty.{extension}", "truncated": folder / f"truncated.{extension}",
             "lying-header": folder / f"lying.{extension}", "garbage": folder / f"garbage.{extension}"}
    paths["folder"].mkdir()
    os.mkfifo(paths["fifo"])
    os.symlink(paths["loop"], paths["loop"])
    paths["empty"].write_bytes(b"")
    paths["truncated"].write_bytes(good[: len(good) // 2])
    lying = _png_with_size(good, 40_000, 40_000) if good.startswith(b"\x89PNG") else good[:64] + b"\x00" * 64
    paths["lying-header"].write_bytes(lying)
    paths["garbage"].write_bytes(np.random.default_rng(0).bytes(600))
    undecodable = os.path.join(os.fsencode(folder), b"caf\xe9." + extension.encode())
    with open(undecodable, "wb") as handle:
        handle.write(good)
    (folder / f"-dash.{extension}").write_bytes(good)
    out = {kind: str(path) for kind, path in paths.items()}
    out.update({"device": "/dev/zero", "non-utf8": os.fsdecode(undecodable), "dash": f"-dash.{extension}",
                "too-long": str(folder / ("x" * 300 + f".{extension}"))})
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    write_image(root / "ok.png", textured_image(rng, 48, 48))
    for sub in ("blur", "gt"):
        for name in "ab":
            write_image(root / "ds" / sub / f"{name}.png", textured_image(rng, 48, 48))
    net = create_net("unet", width=0.0625)
    write_checkpoint(make_checkpoint("unet", {"width": 0.0625}, net.state_dict()), root / "ok.pt")
    kinds = {"png": make_kinds(root / "png", "png", (root / "ok.png").read_bytes()),
             "pt": make_kinds(root / "pt", "pt", (root / "ok.pt").read_bytes()),
             "yaml": make_kinds(root / "yaml", "yaml", b"base: pixel\n"),
             "csv": make_kinds(root / "csv", "csv", b"blur,sharp\n../ds/blur/a.png,../ds/gt/a.png\n")}
    return root, kinds


TRAIN = ["-o", "data.crop=16", "-o", "schedule.unit=step", "-o", "schedule.total=1", "-o", "run.loggers=[]",
         "-o", "net.options={width: 0.0625}", "--quiet"]

#: (command, which hostile files, argv builder: (root, hostile path, out) -> argv); the hostile path is the argument
ARGUMENTS = {
    "deblur-input": ("png", lambda r, p, o: ["deblur", p, "-o", o, "--checkpoint", f"{r}/ok.pt", "--quiet"]),
    "deblur-checkpoint": ("pt", lambda r, p, o: ["deblur", f"{r}/ok.png", "-o", o, "--checkpoint", p, "--quiet"]),
    "synth-source": ("png", lambda r, p, o: ["synth", p, "-n", "1", "-o", o, "--size", "32", "--quiet"]),
    "data-check": ("png", lambda r, p, o: ["data", "check", p, "--quiet"]),
    "data-check-csv": ("csv", lambda r, p, o: ["data", "check", p, "--layout", "csv", "--quiet"]),
    "prepare-data": ("png", lambda r, p, o: ["prepare", p, "-o", o, "--quiet"]),
    "eval-data": ("png", lambda r, p, o: ["eval", p, "--baseline", "input", "--out", o, "--no-lpips", "--quiet"]),
    "eval-checkpoint": ("pt", lambda r, p, o: ["eval", f"{r}/ds", "--checkpoint", p, "--out", o, "--no-lpips",
                                               "--quiet"]),
    "eval-flow-weights": ("pt", lambda r, p, o: ["eval", f"{r}/ds", "--baseline", "input", "--flow", "spynet",
                                                 "--flow-weights", p, "--out", o, "--no-lpips", "--quiet"]),
    "export-checkpoint": ("pt", lambda r, p, o: ["export", p, "-o", f"{o}.onnx"]),
    "plot-run": ("png", lambda r, p, o: ["plot", p, "-o", f"{o}.png"]),
    "train-config": ("yaml", lambda r, p, o: ["train", p, "--print-config"]),
    "train-init": ("pt", lambda r, p, o: ["train", "pixel", "--init", p, "-o", f"data.train.root={r}/ds",
                                          "--run-dir", o, *TRAIN]),
    "train-resume": ("pt", lambda r, p, o: ["train", "pixel", "--resume", p, "-o", f"data.train.root={r}/ds",
                                            "--run-dir", o, *TRAIN]),
    "train-data-root": ("png", lambda r, p, o: ["train", "pixel", "-o", f"data.train.root={p}", "--run-dir", o,
                                                *TRAIN]),
    "train-csv-root": ("csv", lambda r, p, o: ["train", "pixel", "-o", f"data.train.root={p}",
                                               "-o", "data.train.layout=csv", "--run-dir", o, *TRAIN]),
}


def _named(path: str, text: str) -> bool:
    """The message names the file (a name that is not UTF-8 may be shown escaped)."""
    name = os.path.basename(path)
    return name in text or name.encode("utf-8", "backslashreplace").decode() in text or name[:40] in text


@pytest.mark.parametrize("argument", sorted(ARGUMENTS))
def test_every_file_argument_takes_every_hostile_file(argument, world, tmp_path, capsys, monkeypatch):
    root, kinds = world
    group, build = ARGUMENTS[argument]
    folder = Path(kinds[group]["missing"]).parent
    monkeypatch.chdir(folder)  # the dash name is relative
    before = snapshot(root)
    for kind in KINDS:
        path = kinds[group][kind]
        out = str(tmp_path / f"out-{kind}")
        code, out_text, err = run_cli(build(root, path, out), capsys, timeout=60)
        where = f"{argument} x {kind}: status {code}\n{err}"
        assert "Traceback" not in err and "internal error" not in err, where
        if code != 0:
            report = "not deblurred" in err or "problem" in (err + out_text)
            if not report:
                assert_one_line_error(code, err, build(root, path, out)[0])
            if kind not in ("non-utf8",):
                assert _named(path, err + out_text), where
    assert snapshot(root) == before, f"{argument}: an input file changed"
    shutil.rmtree(tmp_path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- CSV pair lists

CSV_CASES = {
    "utf-16-with-bom": (lambda: "blur,sharp\nblur/a.png,gt/a.png\n".encode("utf-16"), 0, ""),
    "utf-8-bom": (lambda: b"\xef\xbb\xbfblur,sharp\nblur/a.png,gt/a.png\n", 0, ""),
    "utf-16-no-bom": (lambda: "blur,sharp\nblur/a.png,gt/a.png\n".encode("utf-16-le"), 2, "binary"),
    "binary": (lambda: np.random.default_rng(1).bytes(2000), 2, "pairs.csv"),
    "field-over-the-limit": (lambda: b"blur,sharp\n" + b"x" * 200_000 + b",gt/a.png\n", 2, "pairs.csv"),
    "long-path": (lambda: b"blur,sharp\n" + b"x" * 5000 + b",gt/a.png\n", 2, "not a path"),
    "unclosed-quote": (lambda: b'blur,sharp\n"blur/a.png,gt/a.png\n', 2, "pairs.csv"),
    "duplicate-rows": (lambda: b"blur,sharp\nblur/a.png,gt/a.png\nblur/a.png,gt/a.png\n", 1, "repeats"),
    "one-column": (lambda: b"blur,sharp\nblur/a.png\n", 1, "two columns"),
    "missing-file": (lambda: b"blur,sharp\nblur/zzz.png,gt/a.png\n", 1, "zzz.png"),
    "a-folder-listed": (lambda: b"blur,sharp\nblur,gt/a.png\n", 1, "folder"),
    "header-only": (lambda: b"blur,sharp\n", 1, "lists no pairs"),
    "header-input-gt": (lambda: b"input,gt\nblur/a.png,gt/a.png\n", 0, ""),
    "crlf": (lambda: b"blur,sharp\r\nblur/a.png,gt/a.png\r\nblur/b.png,gt/b.png\r\n", 0, ""),
}


@pytest.mark.parametrize("name", sorted(CSV_CASES))
def test_a_csv_pair_list_broken_in_any_way_is_one_clear_report(name, world, tmp_path, capsys):
    root, _ = world
    shutil.copytree(root / "ds", tmp_path / "ds")
    make, status, expected = CSV_CASES[name]
    csv_path = tmp_path / "ds" / "pairs.csv"
    csv_path.write_bytes(make())
    code, out, err = run_cli(["data", "check", str(csv_path), "--quiet"], capsys, timeout=60)
    assert "Traceback" not in err and "internal error" not in err, err
    if status == 0:
        assert code == 0, err + out
        assert "2 usable pairs" in out or "1 usable pair" in out or "usable" in out, out
    else:
        assert code != 0, out
        assert expected in err + out, err + out


def test_duplicate_rows_of_a_csv_are_not_counted_twice(world, tmp_path):
    from jdrl.data.pairs import discover_pairs

    root, _ = world
    shutil.copytree(root / "ds", tmp_path / "ds")
    csv_path = tmp_path / "ds" / "pairs.csv"
    csv_path.write_text("blur,sharp\nblur/a.png,gt/a.png\nblur/a.png,gt/a.png\nblur/b.png,gt/b.png\n")
    found = discover_pairs(csv_path)
    assert [pair.name for pair in found.pairs] == ["a", "b"]
    assert any("repeats" in problem.message for problem in found.problems)


# -------------------------------------------------------------------------------- outputs that must not be silent


def test_a_network_whose_output_is_not_finite_writes_no_black_image(world, tmp_path, capsys):
    root, _ = world
    net = create_net("unet", width=0.0625)
    state = {key: value.clone() for key, value in net.state_dict().items()}
    state["out.0.bias"][:] = float("nan")
    write_checkpoint(make_checkpoint("unet", {"width": 0.0625}, state), tmp_path / "nan.pt")
    code, _, err = run_cli(["deblur", f"{root}/ok.png", "-o", str(tmp_path / "out"), "--checkpoint",
                            str(tmp_path / "nan.pt"), "--quiet"], capsys)
    assert code != 0 and "NaN or infinite" in err, err
    assert not (tmp_path / "out" / "ok.png").exists()


def test_a_run_whose_every_step_is_non_finite_is_not_a_success(world, tmp_path, capsys, monkeypatch):
    import torch

    from jdrl.losses import JDRLLoss

    original = JDRLLoss.forward

    def nan_loss(self, *args, **kwargs):
        loss, parts = original(self, *args, **kwargs)
        return loss * torch.tensor(float("nan")), parts

    monkeypatch.setattr(JDRLLoss, "forward", nan_loss)
    root, _ = world
    code, _, err = run_cli(["train", "pixel", "-o", f"data.train.root={root}/ds", "--run-dir", str(tmp_path / "r"),
                            *TRAIN], capsys)
    assert code != 0 and "did not train" in err, err


def test_a_jpeg_whose_data_ends_before_its_header_says_is_refused(tmp_path):
    import cv2

    from jdrl.errors import ImageReadError
    from jdrl.images import read_image

    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    data = bytearray(cv2.imencode(".jpg", image)[1].tobytes())
    frame = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, 128, 128)  # the header claims 128x128; the data holds 64x64
    (tmp_path / "lying.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="header"):
        read_image(tmp_path / "lying.jpg")
    assert cv2.imwrite(str(tmp_path / "fine.jpg"), image)
    assert read_image(tmp_path / "fine.jpg").shape == (64, 64, 3)


def test_a_16_bit_file_that_the_decoder_would_reduce_to_8_bits_is_refused(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from jdrl.errors import ImageReadError
    from jdrl.images import read_image

    gray_alpha = (np.random.default_rng(0).random((32, 32, 2)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "la.tif", gray_alpha, photometric="minisblack", extrasamples=[2])
    with pytest.raises(ImageReadError, match="16-bit"):
        read_image(tmp_path / "la.tif")


def test_images_smaller_than_dis_accepts_are_scored(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for side in (8, 11):
        image = textured_image(rng, side, side)
        write_image(tmp_path / "ds" / "blur" / f"s{side}.png", image)
        write_image(tmp_path / "ds" / "gt" / f"s{side}.png", image)
    code, out, err = run_cli(["eval", str(tmp_path / "ds"), "--baseline", "input", "--out", str(tmp_path / "e"),
                              "--no-lpips", "--quiet"], capsys)
    assert code == 0, err


def test_a_file_name_that_is_not_utf8_reaches_the_reports(world, tmp_path, capsys):
    root, kinds = world
    checkpoint = kinds["pt"]["non-utf8"]
    code, _, err = run_cli(["eval", f"{root}/ds", "--checkpoint", checkpoint, "--out", str(tmp_path / "e"),
                            "--no-lpips", "--report", str(tmp_path / "rep"), "--quiet"], capsys)
    assert code == 0, err
    assert (tmp_path / "e" / "metrics.csv").read_text(encoding="utf-8")  # valid UTF-8, the name escaped


# ------------------------------------------------------------------------------------- every numeric argument


def _numeric_options():
    import argparse

    from jdrl.cli import build_parser

    def walk(name, parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from walk(f"{name} {sub_name}".strip(), sub)
            elif action.type not in (None, str) and action.option_strings and not action.choices:
                yield f"{name} {action.option_strings[-1]}", action.type

    return sorted(walk("", build_parser()), key=lambda item: item[0])


def _checked_later(name: str) -> bool:
    from jdrl.cli.synth import CHECKED_BY_SYNTHPARAMS

    command, option = name.rsplit(" ", 1)
    return command == "synth" and option in CHECKED_BY_SYNTHPARAMS


NUMERIC_OPTIONS = [pytest.param(check, id=name) for name, check in _numeric_options()
                   if getattr(check, "__name__", "") != "_json_dict" and not _checked_later(name)]


@pytest.mark.parametrize("option", ["--r-max", "--shift", "--local-regions", "--noise"])
def test_synth_options_checked_by_their_declared_ranges_refuse_extremes(option, tmp_path, capsys):
    for text in ["1e308", "nan", "inf", "-1e308"]:
        code, _, err = run_cli(["synth", "-n", "1", "-o", str(tmp_path / "o"), option, text, "--quiet"], capsys)
        assert_one_line_error(code, err, "synth")
        assert not (tmp_path / "o" / "meta.jsonl").exists()


@pytest.mark.parametrize("check", NUMERIC_OPTIONS)
def test_no_numeric_argument_accepts_an_extreme(check):
    """Every count and size a command takes has an upper bound; nothing non-finite gets through."""
    import argparse

    for text in ["1e308", "-1e308", "1" + "0" * 400, "nan", "inf", "-inf", "text", ""]:
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            check(text)
