"""A corpus of bad and edge-case inputs for every ``jdrl`` command (run in-process through ``jdrl.cli.main``).

Each case asserts what the command line promises (README, "What jdrl promises about your files"):

* an error ends in ONE line ``jdrl CMD: error: ...`` (or a list whose first line names the count) and a
  non-zero status, never a traceback and never "internal error";
* the message names the offending path, key or value;
* no file that existed before the command changed, and no temporary file is left behind;
* nothing hangs (a per-case alarm).

The world (datasets, images, checkpoints, configs) is built once per module in a temporary folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import re
import shlex
import signal
import struct
import time
import typing
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from jdrl.cli import main

TIMEOUT_S = 60  # per case: a hang fails the case instead of the suite
TINY_NET = "net.options={width: 0.0625}"


# ------------------------------------------------------------------------------------------- helpers


class Hang(BaseException):  # noqa: N818 - not an Exception: the CLI boundary must not swallow it
    pass


@contextlib.contextmanager
def alarm(seconds: int):
    def on_alarm(signum, frame):
        raise Hang(f"no answer in {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str], capsys, timeout: int = TIMEOUT_S) -> tuple[int, str, str]:
    capsys.readouterr()
    with alarm(timeout):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(*roots: Path) -> dict[Path, str]:
    files = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                files[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def temporaries(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*.tmp")]


COUNT_LINE = re.compile(r"\b\d+ (problem|invalid|input)")


def assert_one_line_error(code: int, err: str, command: str) -> None:
    assert code not in (0, 70), f"status {code}\n{err}"
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines)
              if line.startswith((f"jdrl {command}: ", "jdrl: error:")) or (line.startswith(f"jdrl {command} ")
                                                                          and ": error: " in line)]
    assert errors, f"no line starting 'jdrl {command}: ' in\n{err}"
    first = errors[0]
    if first > 0:  # argparse: the usage lines, then one error line, the last
        assert lines[0].startswith("usage:") and first == len(lines) - 1, err
        return
    rest = lines[1:]
    # more lines only as a list: a count first ("3 problem(s) in ..."), or indented items under the one line
    assert not rest or COUNT_LINE.search(lines[0]) or all(line.startswith((" ", "\t")) for line in rest), \
        f"a multi-line error must be one line plus an indented list, or start with a count:\n{err}"


# ------------------------------------------------------------------------------------------- the world


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression-bomb look-alike)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    idat = zlib.compress(b"\x00" * 8)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # uncompressed float TIFF: OpenCV <= 4.12 writes 3-channel float with lossy SGILOG (NaN becomes 0)
    lossless = [cv2.IMWRITE_TIFF_COMPRESSION, 1] if path.suffix == ".tif" and image.dtype.kind == "f" else []
    assert cv2.imwrite(str(path), image, lossless), path
    return path


def rgb(rng, h=32, w=32, dtype=np.uint8) -> np.ndarray:
    top = 255 if dtype == np.uint8 else 65535
    return (rng.random((h, w, 3)) * top).astype(dtype)


def dataset(root: Path, rng, names=("a", "b"), blur="blur", sharp="gt", size=(32, 32)) -> Path:
    for name in names:
        write(root / blur / f"{name}.png", rgb(rng, *size))
        write(root / sharp / f"{name}.png", rgb(rng, *size))
    return root


class Evil:
    """A pickle that would create a marker file when unpickled by a loader that runs code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from jdrl.checkpoint import write_checkpoint
    from jdrl.nets.factory import network_checkpoint
    from jdrl.nets import create_net

    rng = np.random.default_rng(7)
    W = tmp_path_factory.mktemp("world")
    dataset(W / "good", rng)
    dataset(W / "ds space ünï", rng)
    # broken datasets
    dataset(W / "ds_missing", rng)
    (W / "ds_missing" / "gt" / "b.png").unlink()
    (W / "ds_empty" / "blur").mkdir(parents=True)
    (W / "ds_empty" / "gt").mkdir(parents=True)
    dataset(W / "ds_names", rng, names=("a",))
    write(W / "ds_names" / "gt" / "zzz.png", rgb(rng))
    (W / "ds_names" / "gt" / "a.png").rename(W / "ds_names" / "gt" / "other.png")
    dataset(W / "ds_size", rng)
    write(W / "ds_size" / "gt" / "a.png", rgb(rng, 24, 40))
    dataset(W / "ds_huge", rng)
    (W / "ds_huge" / "blur" / "a.png").write_bytes(png_claiming(100000, 100000))
    dataset(W / "ds_trunc", rng)
    data = (W / "ds_trunc" / "gt" / "a.png").read_bytes()
    (W / "ds_trunc" / "gt" / "a.png").write_bytes(data[: len(data) // 2])
    dataset(W / "ds_zero", rng)
    (W / "ds_zero" / "blur" / "a.png").write_bytes(b"")
    dataset(W / "ds_text", rng)
    (W / "ds_text" / "blur" / "a.png").write_text("this is not a PNG\n")
    dataset(W / "ds_one", rng, size=(1, 1))
    dataset(W / "ds_dirpng", rng, names=("b",))
    (W / "ds_dirpng" / "blur" / "a.png").mkdir()
    write(W / "ds_dirpng" / "gt" / "a.png", rgb(rng))
    dataset(W / "ds_loop", rng)
    (W / "ds_loop" / "blur" / "c.png").symlink_to(W / "ds_loop" / "blur" / "c.png")
    (W / "ds_loop" / "gt" / "c.png").symlink_to(W / "ds_loop" / "gt" / "c.png")
    for name in ("a", "b"):
        write(W / "ds_16" / "blur" / f"{name}.png", rgb(rng, dtype=np.uint16))
        write(W / "ds_16" / "gt" / f"{name}.png", rgb(rng, dtype=np.uint16))
        write(W / "ds_grey" / "blur" / f"{name}.png", rgb(rng)[..., 0])
        write(W / "ds_grey" / "gt" / f"{name}.png", rgb(rng)[..., 0])
        write(W / "ds_rgba" / "blur" / f"{name}.png", np.dstack([rgb(rng), rgb(rng)[..., :1]]))
        write(W / "ds_rgba" / "gt" / f"{name}.png", np.dstack([rgb(rng), rgb(rng)[..., :1]]))
    dataset(W / "ds_nan", rng)
    nan = rng.random((32, 32, 3)).astype(np.float32)
    nan[3, 3, 1] = np.nan
    write(W / "ds_nan" / "blur" / "a.tif", nan)
    (W / "ds_nan" / "blur" / "a.png").unlink()
    (W / "ds_nested").mkdir()
    for name in ("s1", "s2"):
        write(W / "src64" / f"{name}.png", rgb(rng, 96, 96))
    dataset(W / "ds_nested" / "src", rng)
    (W / "layout_unknown" / "x").mkdir(parents=True)
    (W / "pairs.csv").write_text("blur,sharp\ngood/blur/a.png,good/gt/a.png\nnope/x.png,good/gt/b.png\n")
    (W / "short.csv").write_text("blur,sharp\ngood/blur/a.png\n")
    (W / "ok.csv").write_text("blur,sharp\ngood/blur/a.png,good/gt/a.png\n")
    # loose images
    img = W / "img"
    write(img / "ok.png", rgb(rng))
    write(img / "sixteen.png", rgb(rng, dtype=np.uint16))
    write(img / "grey.png", rgb(rng)[..., 0])
    write(img / "rgba.png", np.dstack([rgb(rng), rgb(rng)[..., :1]]))
    write(img / "one.png", rgb(rng, 1, 1))
    write(img / "space name ünï.png", rgb(rng))
    (img / "huge.png").write_bytes(png_claiming(100000, 100000))
    (img / "zero.png").write_bytes(b"")
    (img / "text.png").write_text("hello\n")
    (img / "trunc.png").write_bytes((img / "ok.png").read_bytes()[:60])
    (img / "dir.png").mkdir()
    (img / "loop.png").symlink_to(img / "loop.png")
    write(img / "nan.tif", nan)
    (W / "img_empty").mkdir()
    (W / "a_file").write_text("I am a file, not a folder\n")
    # checkpoints
    torch.manual_seed(0)
    net = create_net("unet", width=0.0625)
    good = network_checkpoint(net, "unet", width=0.0625)
    write_checkpoint(good, W / "ck" / "good.pt")
    ck = W / "ck"
    (ck / "empty.pt").write_bytes(b"")
    raw = (ck / "good.pt").read_bytes()
    (ck / "trunc.pt").write_bytes(raw[: len(raw) // 3])
    (ck / "random.pt").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (ck / "text.pt").write_text("not a checkpoint\n")
    torch.save({"state_dict": Evil(W / "PWNED")}, ck / "evil.pt")
    torch.save(torch.nn.Linear(3, 3).state_dict(), ck / "wrong_net.pt")
    torch.save(create_net("unet", width=0.125).state_dict(), ck / "wrong_width.pt")
    torch.save([1, 2, 3], ck / "list.pt")
    missing = {k: v for k, v in good.items() if k not in ("net",)}
    torch.save(missing, ck / "missing_net.pt")
    broken = dict(good)
    broken["net"] = dict(good["net"])
    broken["net"]["state_dict"] = dict(list(good["net"]["state_dict"].items())[1:])
    torch.save(broken, ck / "missing_keys.pt")
    unknown = dict(good)
    unknown["net"] = {**good["net"], "name": "no_such_net"}
    torch.save(unknown, ck / "unknown_net.pt")
    (ck / "dir.pt").mkdir()
    from jdrl.hub import write_model_folder

    write_model_folder(ck / "model", "unet", {"width": 0.0625}, net.state_dict())
    tensors = (ck / "model" / "model.safetensors").read_bytes()
    (ck / "trunc.safetensors").write_bytes(tensors[: len(tensors) // 2])
    (ck / "garbage.safetensors").write_bytes(b"\xff" * 64)
    (ck / "model_bad").mkdir()
    (ck / "model_bad" / "config.json").write_text("{not json")
    (ck / "model_bad" / "model.safetensors").write_bytes(tensors)
    # configs
    c = W / "cfg"
    c.mkdir()
    (c / "syntax.yaml").write_text("net: {name: unet\noptim: [\n")
    (c / "alias.yaml").write_text("a: &a [1, 2]\nb: &b [*a, *a]\nc: [*b, *b]\n")
    (c / "huge.yaml").write_text("# " + "x" * 1_100_000 + "\n")
    (c / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01" * 64)
    (c / "empty.yaml").write_text("")
    (c / "list.yaml").write_text("- 1\n- 2\n")
    (c / "scalar.yaml").write_text("42\n")
    (c / "unknown.yaml").write_text("net: {name: unet}\nbogus: 1\n")
    (c / "wrongtype.yaml").write_text("optim: {lr: fast}\n")
    (c / "section_scalar.yaml").write_text("optim: 3\n")
    (c / "loop.yaml").write_text("base: loop.yaml\n")
    (c / "base_missing.yaml").write_text("base: no_such_preset_xyz\n")
    (c / "python.yaml").write_text("net: !!python/object/apply:os.system ['touch PWNED']\n")
    (c / "dir.yaml").mkdir()
    # run folders
    run = W / "runs" / "existing"
    run.mkdir(parents=True)
    (run / "log.csv").write_text("step,loss\n1,0.5\n")
    (run / "config.yaml").write_text("net: {name: unet}\n")
    bad_run = W / "runs" / "unreadable"
    bad_run.mkdir(parents=True)
    (bad_run / "last.pt").write_bytes(b"garbage")
    (bad_run / "log.csv").write_text("step,loss\n1,0.5\n")
    (W / "runs" / "plot_empty").mkdir()
    (W / "runs" / "plot_empty" / "log.csv").write_text("")
    (W / "runs" / "plot_text").mkdir()
    (W / "runs" / "plot_text" / "log.csv").write_text("step,loss\nabc,def\n")
    (W / "runs" / "plot_binary").mkdir()
    (W / "runs" / "plot_binary" / "log.csv").write_bytes(b"\xff\xfe\x00" * 50)
    (W / "runs" / "plot_nan").mkdir()
    (W / "runs" / "plot_nan" / "log.csv").write_text("step,loss\n1,nan\n2,inf\n")
    (W / "runs" / "plot_ok").mkdir()
    (W / "runs" / "plot_ok" / "log.csv").write_text("step,loss,lr\n1,0.5,0.001\n2,0.4,0.001\n")
    (W / "exists.png").write_bytes(b"precious")
    dataset(W / "ds_synth", rng, names=("00000",))
    (W / "ds_synth" / "meta.jsonl").write_text("{}\n")
    (W / "runs" / "evaluated").mkdir()
    (W / "runs" / "evaluated" / "metrics.csv").write_text("image,psnr\na,30\n")
    (W / "exists.onnx").write_bytes(b"precious")
    return W


# ------------------------------------------------------------------------------------------- cases


@dataclasses.dataclass
class Case:
    id: str
    argv: str  # {W}: the world, {T}: this case's own empty folder
    names: tuple[str, ...] = ()  # each must appear in stderr (formatted like argv)
    status: int | None = None  # None: any error status; 0: success expected
    timeout: int = TIMEOUT_S

    @property
    def command(self) -> str:
        first = shlex.split(self.argv)[0]
        return first


def case(id, argv, *names, status=None, timeout=TIMEOUT_S):
    return pytest.param(Case(id, _last_override_wins(argv), names, status, timeout), id=id)


def _last_override_wins(argv: str) -> str:
    """The cases write ``TRAIN_OK`` then the value under test; jdrl refuses a key given twice, so the earlier one goes."""
    words = shlex.split(argv)
    keys = [words[i + 1].partition("=")[0] if word == "-o" and i + 1 < len(words) else None
            for i, word in enumerate(words)]
    kept = []
    for i, word in enumerate(words):
        if i > 0 and keys[i - 1] is not None and keys[i - 1] in keys[i + 1:]:
            kept.pop()  # the "-o" before this override
            continue
        kept.append(word)
    return shlex.join(kept)


TRAIN_OK = (f"-o '{TINY_NET}' -o data.crop=16 -o data.batch_size=1 -o loss.objective=pixel -o schedule.unit=step "
            "-o schedule.total=1 -o schedule.warmup=0 -o run.loggers=[] --quiet")
TRAIN_DATA = "-o data.train.root={W}/good"
DATA_CASES = [  # (id, dataset, expected names)
    ("missing_partner", "ds_missing", ("b.png", "no partner")),
    ("empty_folders", "ds_empty", ("no image files",)),
    ("mismatched_names", "ds_names", ("zzz.png", "other.png")),
    ("sizes_differ", "ds_size", ("size mismatch", "a.png")),
    ("huge_header", "ds_huge", ("a.png", "over the limit")),
    ("truncated", "ds_trunc", ("a.png",)),
    ("zero_bytes", "ds_zero", ("a.png", "empty file")),
    ("text_as_png", "ds_text", ("a.png",)),
    ("directory_named_png", "ds_dirpng", ("a.png",)),
    ("symlink_loop", "ds_loop", ("c.png",)),
    ("float_nan", "ds_nan", ("a.tif", "NaN")),
    ("no_such_folder", "nope", ("nope",)),
    ("layout_unknown", "layout_unknown", ("layout_unknown",)),
    ("a_file_not_a_folder", "a_file", ("a_file",)),
    ("csv_missing_file", "pairs.csv", ("pairs.csv",)),
    ("csv_short_row", "short.csv", ("short.csv",)),
]
DATA_OK = [("16bit", "ds_16"), ("grey", "ds_grey"), ("rgba", "ds_rgba"), ("unicode_spaces", "ds space ünï"),
           ("csv_ok", "ok.csv"), ("one_px", "ds_one")]

CASES = []
for id_, ds, names in DATA_CASES:
    CASES.append(case(f"data-check-{id_}", f"data check '{{W}}/{ds}' --quiet", *names))
    CASES.append(case(f"eval-{id_}", f"eval '{{W}}/{ds}' --baseline input --no-lpips --out {{T}}/e --quiet", *names))
    CASES.append(case(f"prepare-{id_}", f"prepare '{{W}}/{ds}' -o {{T}}/p --patch 16 --quiet", *names))
    CASES.append(case(f"train-{id_}", f"train pixel -o 'data.train.root={{W}}/{ds}' -o data.crop=16 --run-dir {{T}}/r "
                      "--quiet", *names))
for id_, ds in DATA_OK:
    CASES.append(case(f"data-check-ok-{id_}", f"data check '{{W}}/{ds}' --quiet", status=0))
CASES += [
    case("data-check-min-size", "data check {W}/good --min-size 64 --quiet", "smaller than", status=1),
    case("data-check-min-size-0", "data check {W}/good --min-size 0", "--min-size", "0"),
    case("data-check-min-size-neg", "data check {W}/good --min-size -4", "--min-size", "-4"),
    case("data-check-blur-dir-only", "data check {W}/good --blur-dir {W}/good/blur", "--sharp-dir"),
    case("data-check-folders-missing", "data check {W}/good --blur-dir x --sharp-dir y", "does not exist"),
    case("data-check-max-pixels", "data check {W}/good --max-pixels 100 --quiet", "over the limit", status=1),
    case("data-check-max-pixels-0", "data check {W}/good --max-pixels 0", "--max-pixels"),
    case("data-check-bad-layout", "data check {W}/good --layout nope", "--layout"),
    case("data-check-no-action", "data", "ACTION"),
    case("data-check-dpdd-missing-split", "data check {W}/good --layout dpdd --split val", "val_c"),
    case("data-check-csv-layout-on-folder", "data check {W}/good --layout csv", "good"),
    # eval: arguments
    case("eval-nothing-to-score", "eval {W}/good --out {T}/e", "--checkpoint"),
    case("eval-net-without-checkpoint", "eval {W}/good --net unet --baseline input --out {T}/e", "--net"),
    case("eval-limit-0", "eval {W}/good --baseline input --limit 0 --out {T}/e", "--limit", "0"),
    case("eval-limit-neg", "eval {W}/good --baseline input --limit -2 --out {T}/e", "--limit", "-2"),
    case("eval-tile-0", "eval {W}/good --baseline input --tile 0 --out {T}/e", "--tile", "0"),
    case("eval-overlap-ge-tile", "eval {W}/good --baseline input --tile 32 --overlap 32 --out {T}/e", "--overlap", "32"),
    case("eval-overlap-neg", "eval {W}/good --baseline input --overlap -1 --out {T}/e", "--overlap", "-1"),
    case("eval-tile-neg", "eval {W}/good --baseline input --tile -5 --out {T}/e", "--tile", "-5"),
    case("eval-synthetic-n-0", "eval synthetic --baseline input --synthetic-n 0 --out {T}/e", "--synthetic-n"),
    case("eval-synthetic-size-3", "eval synthetic --baseline input --synthetic-size 3 --out {T}/e", "3"),
    case("eval-seed-neg", "eval synthetic --baseline input --seed -1 --synthetic-n 1 --synthetic-size 32 --out {T}/e",
         "--seed", "-1"),
    case("eval-device-nope", "eval {W}/good --baseline input --device nope --out {T}/e", "nope"),
    case("eval-device-cuda7", "eval {W}/good --baseline input --device cuda:7 --out {T}/e", "cuda:7"),
    case("eval-unknown-flow", "eval {W}/good --baseline input --flow nope --out {T}/e --no-lpips --quiet", "nope"),
    case("eval-paper-no-weights", "eval {W}/good --baseline input --protocol paper --out {T}/e", "--flow-weights"),
    case("eval-flow-weights-missing", "eval {W}/good --baseline input --flow spynet --flow-weights {W}/nope.pth "
         "--out {T}/e --no-lpips --quiet", "nope.pth"),
    case("eval-out-is-a-file", "eval {W}/good --baseline input --out {W}/a_file --no-lpips --quiet", "a_file"),
    case("eval-out-under-a-file", "eval {W}/good --baseline input --out {W}/a_file/sub --no-lpips --quiet", "a_file"),
    case("eval-report-under-a-file", "eval {W}/good --baseline input --out {T}/e --report {W}/a_file/r --no-lpips "
         "--quiet", "a_file"),
    case("eval-ok-huge-skip-bad", "eval {W}/ds_huge --baseline input --skip-bad --no-lpips --out {T}/e --quiet",
         status=0),
    case("eval-one-px", "eval {W}/ds_one --baseline input --no-lpips --out {T}/e --quiet", "1x1", "7px"),
    case("eval-results-exist", "eval {W}/good --baseline input --no-lpips --out {W}/runs/evaluated --quiet",
         "metrics.csv", "--overwrite"),
    case("eval-ok-max-pixels", "eval {W}/good --baseline input --no-lpips --out {T}/e --max-pixels 100 --quiet",
         "over the limit"),
    # prepare
    case("prepare-out-is-input", "prepare {W}/good -o {W}/good --patch 16 --quiet", "good"),
    case("prepare-out-inside-input", "prepare {W}/good -o {W}/good/patches --patch 16 --quiet", "patches"),
    case("prepare-out-inside-blur", "prepare {W}/good -o {W}/good/blur --patch 16 --quiet", "blur"),
    case("prepare-input-inside-out", "prepare {W}/ds_nested/src -o {W}/ds_nested --patch 16 --quiet", "ds_nested"),
    case("prepare-patch-0", "prepare {W}/good -o {T}/p --patch 0", "--patch", "0"),
    case("prepare-patch-neg", "prepare {W}/good -o {T}/p --patch -16", "--patch", "-16"),
    case("prepare-overlap-1", "prepare {W}/good -o {T}/p --patch 16 --overlap 1", "--overlap", "1"),
    case("prepare-overlap-neg", "prepare {W}/good -o {T}/p --patch 16 --overlap -0.5", "--overlap", "-0.5"),
    case("prepare-overlap-nan", "prepare {W}/good -o {T}/p --patch 16 --overlap nan", "--overlap", "nan"),
    case("prepare-drop-1", "prepare {W}/good -o {T}/p --patch 16 --drop 1", "--drop", "1"),
    case("prepare-drop-neg", "prepare {W}/good -o {T}/p --patch 16 --drop -0.1", "--drop", "-0.1"),
    case("prepare-drop-inf", "prepare {W}/good -o {T}/p --patch 16 --drop inf", "--drop", "inf"),
    case("prepare-patch-too-big", "prepare {W}/good -o {T}/p --patch 64 --quiet", "smaller than"),
    case("prepare-out-is-a-file", "prepare {W}/good -o {W}/a_file --patch 16 --quiet", "a_file"),
    case("prepare-out-under-a-file", "prepare {W}/good -o {W}/a_file/p --patch 16 --quiet", "a_file"),
    case("prepare-out-exists", "prepare {W}/good -o {W}/ds_16 --patch 16 --quiet", "ds_16"),
    case("prepare-ok", "prepare {W}/good -o {T}/p --patch 16 --quiet", status=0),
    case("prepare-ok-max-pixels", "prepare {W}/good -o {T}/p --patch 16 --max-pixels 100 --quiet", "over the limit"),
    # synth
    case("synth-n-0", "synth -n 0 -o {T}/s --size 32", "-n", "0"),
    case("synth-n-neg", "synth -n -3 -o {T}/s --size 32", "-n", "-3"),
    case("synth-size-3", "synth -n 1 -o {T}/s --size 3", "size", "3"),
    case("synth-size-huge", "synth -n 1 -o {T}/s --size 100000", "size", "100000"),
    case("synth-r-max-neg", "synth -n 1 -o {T}/s --size 32 --r-max -1", "r_max", "-1"),
    case("synth-r-max-nan", "synth -n 1 -o {T}/s --size 32 --r-max nan", "r_max", "nan"),
    case("synth-shift-inf", "synth -n 1 -o {T}/s --size 32 --shift inf", "shift", "inf"),
    case("synth-zoom-neg", "synth -n 1 -o {T}/s --size 32 --zoom -0.1", "zoom", "-0.1"),
    case("synth-noise-2", "synth -n 1 -o {T}/s --size 32 --noise 2", "noise", "2"),
    case("synth-local-size-0", "synth -n 1 -o {T}/s --size 32 --local-size 0 0.3", "local_size", "0"),
    case("synth-local-regions-neg", "synth -n 1 -o {T}/s --size 32 --local-regions -1", "local_regions", "-1"),
    case("synth-local-regions-float", "synth -n 1 -o {T}/s --size 32 --local-regions 1.5", "--local-regions", "1.5"),
    case("synth-seed-neg", "synth -n 1 -o {T}/s --size 32 --seed -1", "--seed", "-1"),
    case("synth-source-missing", "synth -n 1 -o {T}/s --size 32 {W}/nope", "nope"),
    case("synth-source-empty", "synth -n 1 -o {T}/s --size 32 {W}/img_empty", "img_empty"),
    case("synth-source-a-file", "synth -n 1 -o {T}/s --size 32 {W}/a_file", "a_file"),
    case("synth-source-all-bad", "synth -n 1 -o {T}/s --size 32 {W}/ds_huge/blur", "a.png"),
    case("synth-out-is-a-file", "synth -n 1 -o {W}/a_file --size 32 {W}/src64", "a_file"),
    case("synth-out-under-a-file", "synth -n 1 -o {W}/a_file/s --size 32 {W}/src64", "a_file"),
    case("synth-out-is-a-dataset", "synth -n 1 -o {W}/ds_synth --size 32 {W}/src64", "ds_synth", "--overwrite"),
    case("synth-out-is-source", "synth -n 1 -o {W}/src64 --size 32 {W}/src64", "src64"),
    case("synth-out-inside-source", "synth -n 1 -o {W}/src64/out --size 32 {W}/src64", "src64"),
    case("synth-ok", "synth -n 1 -o {T}/s --size 32 {W}/src64 --quiet", status=0),
    # deblur
    case("deblur-tile-0", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --tile 0", "--tile", "0"),
    case("deblur-tile-neg", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --tile -5", "--tile", "-5"),
    case("deblur-tile-word", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --tile big", "big"),
    case("deblur-overlap-neg", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --overlap -1",
         "--overlap", "-1"),
    case("deblur-overlap-ge-tile", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --tile 32 "
         "--overlap 32", "--overlap", "32"),
    case("deblur-overlap-ge-auto-tile", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt "
         "--overlap 100000", "--overlap", "100000"),
    case("deblur-bit-depth-12", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --bit-depth 12",
         "--bit-depth", "12"),
    case("deblur-device-nope", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --device nope", "nope"),
    case("deblur-device-cuda7", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --device cuda:7",
         "cuda:7"),
    case("deblur-amp-nope", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --amp nope", "--amp"),
    case("deblur-no-inputs", "deblur -o {T}/d --checkpoint {W}/ck/good.pt", "INPUT"),
    case("deblur-missing-input", "deblur {W}/img/nope.png -o {T}/d --checkpoint {W}/ck/good.pt --quiet",
         "nope.png", "1 input"),
    case("deblur-empty-folder", "deblur {W}/img_empty -o {T}/d --checkpoint {W}/ck/good.pt --quiet", "img_empty"),
    case("deblur-glob-nothing", "deblur '{W}/img/*.xyz' -o {T}/d --checkpoint {W}/ck/good.pt --quiet", "*.xyz"),
    case("deblur-huge-header", "deblur {W}/img/huge.png {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --quiet",
         "huge.png", "over the limit", status=1),
    case("deblur-zero", "deblur {W}/img/zero.png -o {T}/d --checkpoint {W}/ck/good.pt --quiet", "zero.png", status=1),
    case("deblur-text", "deblur {W}/img/text.png -o {T}/d --checkpoint {W}/ck/good.pt --quiet", "text.png", status=1),
    case("deblur-trunc", "deblur {W}/img/trunc.png -o {T}/d --checkpoint {W}/ck/good.pt --quiet", "trunc.png",
         status=1),
    case("deblur-dir-png", "deblur {W}/img/dir.png -o {T}/d --checkpoint {W}/ck/good.pt --quiet", "dir.png"),
    case("deblur-loop", "deblur {W}/img/loop.png -o {T}/d --checkpoint {W}/ck/good.pt --quiet", "loop.png"),
    case("deblur-nan", "deblur {W}/img/nan.tif -o {T}/d --checkpoint {W}/ck/good.pt --quiet", "nan.tif", status=1),
    case("deblur-max-pixels", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --max-pixels 100 --quiet",
         "ok.png", "over the limit", status=1),
    case("deblur-max-pixels-0", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --max-pixels 0",
         "--max-pixels"),
    case("deblur-ok-one-px", "deblur {W}/img/one.png -o {T}/d --checkpoint {W}/ck/good.pt --quiet", status=0),
    case("deblur-ok-16-grey-rgba", "deblur {W}/img/sixteen.png {W}/img/grey.png {W}/img/rgba.png -o {T}/d "
         "--checkpoint {W}/ck/good.pt --quiet", status=0),
    case("deblur-ok-unicode", "deblur '{W}/img/space name ünï.png' -o '{T}/out ünï' --checkpoint {W}/ck/good.pt "
         "--quiet", status=0),
    case("deblur-ok-safetensors-folder", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/model --quiet", status=0),
    case("deblur-out-is-a-file", "deblur {W}/img/ok.png -o {W}/a_file --checkpoint {W}/ck/good.pt --quiet", "a_file"),
    case("deblur-out-under-a-file", "deblur {W}/img/ok.png -o {W}/a_file/d --checkpoint {W}/ck/good.pt --quiet",
         "a_file"),
    case("deblur-onto-existing", "deblur {W}/ds_16/gt/a.png -o {W}/good/blur --checkpoint {W}/ck/good.pt --quiet",
         "a.png", "--overwrite"),
    case("deblur-onto-input", "deblur {W}/img/ok.png -o {W}/img --checkpoint {W}/ck/good.pt --quiet", "input itself"),
    case("deblur-same-stem", "deblur {W}/img/ok.png {W}/good/blur/a.png {W}/ds_16/blur/a.png -o {T}/d "
         "--checkpoint {W}/ck/good.pt --quiet", "a.png", "same file name"),
    case("deblur-net-mismatch", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --net mprnet --quiet",
         "mprnet"),
    case("deblur-net-unknown", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/good.pt --net nope --quiet",
         "nope"),
]
CHECKPOINT_CASES = [  # (id, file, names)
    ("missing", "ck/nope.pt", ("nope.pt",)),
    ("empty", "ck/empty.pt", ("empty.pt",)),
    ("truncated", "ck/trunc.pt", ("trunc.pt",)),
    ("random_bytes", "ck/random.pt", ("random.pt",)),
    ("text", "ck/text.pt", ("text.pt",)),
    ("malicious_pickle", "ck/evil.pt", ("evil.pt",)),
    ("wrong_network", "ck/wrong_net.pt", ("wrong_net.pt",)),
    ("a_list", "ck/list.pt", ("list.pt",)),
    ("jdrl_missing_net", "ck/missing_net.pt", ("missing_net.pt",)),
    ("jdrl_missing_keys", "ck/missing_keys.pt", ("missing_keys.pt",)),
    ("jdrl_unknown_net", "ck/unknown_net.pt", ("no_such_net",)),
    ("a_folder", "ck/dir.pt", ("dir.pt",)),
    ("truncated_safetensors", "ck/trunc.safetensors", ("trunc.safetensors",)),
    ("garbage_safetensors", "ck/garbage.safetensors", ("garbage.safetensors",)),
    ("model_folder_bad_json", "ck/model_bad", ("model_bad",)),
    ("an_image", "img/ok.png", ("ok.png",)),
]
for id_, file, names in CHECKPOINT_CASES:
    CASES.append(case(f"deblur-ckpt-{id_}", f"deblur {{W}}/img/ok.png -o {{T}}/d --checkpoint {{W}}/{file} --quiet",
                      *names))
    CASES.append(case(f"eval-ckpt-{id_}", f"eval {{W}}/good --checkpoint {{W}}/{file} --out {{T}}/e --no-lpips "
                      "--quiet", *names))
    CASES.append(case(f"export-ckpt-{id_}", f"export {{W}}/{file} -o {{T}}/m.onnx", *names))
    CASES.append(case(f"train-init-{id_}", f"train pixel --init {{W}}/{file} {TRAIN_DATA} -o data.crop=16 "
                      f"-o '{TINY_NET}' --run-dir {{T}}/r --quiet", *names))
CASES += [
    case("deblur-ok-width-read-off-the-weights", "deblur {W}/img/ok.png -o {T}/d --checkpoint {W}/ck/wrong_width.pt "
         "--quiet", status=0),
    case("train-init-wrong-width", f"train pixel --init {{W}}/ck/wrong_width.pt {TRAIN_DATA} -o data.crop=16 "
         f"-o '{TINY_NET}' --run-dir {{T}}/r --quiet", "wrong_width.pt"),
    case("train-resume-path-garbage", f"train pixel {TRAIN_DATA} -o data.crop=16 --run-dir {{T}}/r "
         "--resume {W}/ck/random.pt --quiet", "random.pt"),
    case("train-resume-path-evil", f"train pixel {TRAIN_DATA} -o data.crop=16 --run-dir {{T}}/r "
         "--resume {W}/ck/evil.pt --quiet", "evil.pt"),
    case("train-resume-path-network-only", f"train pixel {TRAIN_DATA} -o data.crop=16 -o '{TINY_NET}' --run-dir {{T}}/r "
         "--resume {W}/ck/good.pt --quiet", "good.pt"),
    case("train-resume-missing", f"train pixel {TRAIN_DATA} --run-dir {{T}}/r --resume {{W}}/ck/nope.pt", "nope.pt"),
    case("train-resume-auto-no-run-dir", "train pixel --resume auto", "--run-dir"),
    case("train-resume-and-overwrite", "train pixel --run-dir {T}/r --resume auto --overwrite", "--overwrite"),
    case("train-existing-run", f"train pixel {TRAIN_DATA} -o data.crop=16 --run-dir {{W}}/runs/existing --quiet",
         "existing", "--resume auto"),
    case("train-resume-unreadable", f"train pixel {TRAIN_DATA} -o data.crop=16 --run-dir {{W}}/runs/unreadable "
         "--resume auto --quiet", "last.pt", "no readable checkpoint"),
    case("train-run-dir-is-a-file", f"train pixel {TRAIN_DATA} {TRAIN_OK} --run-dir {{W}}/a_file", "a_file"),
    case("train-run-dir-under-a-file", f"train pixel {TRAIN_DATA} {TRAIN_OK} --run-dir {{W}}/a_file/r", "a_file"),
    case("train-no-data-root", "train pixel --run-dir {T}/r --quiet", "data.train.root"),
    case("train-val-one-px", f"train pixel {TRAIN_DATA} {TRAIN_OK} -o data.val.root={{W}}/ds_one --run-dir {{T}}/r",
         "ds_one", "1x1"),
    case("train-val-huge", f"train pixel {TRAIN_DATA} {TRAIN_OK} -o data.val.root={{W}}/ds_huge --run-dir {{T}}/r",
         "a.png", "over the limit"),
    case("train-val-missing", f"train pixel {TRAIN_DATA} {TRAIN_OK} -o data.val.root={{W}}/nope --run-dir {{T}}/r",
         "nope"),
    case("train-val-crop-too-big", f"train pixel {TRAIN_DATA} {TRAIN_OK} -o data.val.root={{W}}/good "
         "-o data.val_crop=64 --run-dir {T}/r", "smaller than"),
    case("train-crop-not-multiple", f"train pixel {TRAIN_DATA} {TRAIN_OK} -o data.crop=15 --run-dir {{T}}/r",
         "data.crop", "15"),
    case("train-crop-too-big", f"train pixel {TRAIN_DATA} {TRAIN_OK} -o data.crop=64 --run-dir {{T}}/r",
         "smaller than the 64px crop"),
    case("train-unknown-net", f"train pixel {TRAIN_DATA} -o data.crop=16 -o net.name=nope --run-dir {{T}}/r --quiet", "nope"),
    case("train-bad-net-option", f"train pixel {TRAIN_DATA} -o data.crop=16 -o 'net.options={{{{bogus: 1}}}}' --run-dir {{T}}/r "
         "--quiet", "bogus"),
    case("train-bad-net-option-value", f"train pixel {TRAIN_DATA} -o data.crop=16 -o 'net.options={{{{width: -1}}}}' --run-dir {{T}}/r "
         "--quiet", "width"),
    case("train-unknown-loss-flow", f"train pixel {TRAIN_DATA} -o data.crop=16 -o loss.objective=jdrl -o loss.flow=nope "
         "--run-dir {T}/r --quiet", "nope"),
    # choices read from a registry (config.named): an unknown name is one line listing the registry's names
    case("train-unknown-objective", f"train pixel {TRAIN_DATA} -o data.crop=16 -o loss.objective=nope --run-dir {{T}}/r "
         "--quiet", "nope", "pixel"),
    case("train-unknown-mask", f"train pixel {TRAIN_DATA} -o data.crop=16 -o loss.mask=magic --run-dir {{T}}/r --quiet",
         "magic", "reference"),
    case("train-unknown-reblur-kernel", f"train pixel {TRAIN_DATA} -o data.crop=16 -o loss.reblur=bent --run-dir {{T}}/r "
         "--quiet", "bent", "isotropic"),
    case("train-unknown-reblur-impl", f"train pixel {TRAIN_DATA} -o data.crop=16 -o loss.reblur_impl=fast --run-dir {{T}}/r "
         "--quiet", "fast", "ring"),
    case("train-mask-option-not-taken", f"train pixel {TRAIN_DATA} -o data.crop=16 -o loss.mask=paper "
         "-o 'loss.mask_options={{{{model: affine}}}}' --run-dir {{T}}/r --quiet", "mask_options"),
    case("train-unknown-logger", f"train pixel {TRAIN_DATA} -o data.crop=16 -o run.loggers=[nope] --run-dir {{T}}/r --quiet", "nope"),
    case("train-device-nope", f"train pixel {TRAIN_DATA} -o data.crop=16 -o run.device=nope --run-dir {{T}}/r --quiet", "nope"),
    case("train-device-cuda7", f"train pixel {TRAIN_DATA} -o data.crop=16 -o run.device=cuda:7 --run-dir {{T}}/r --quiet", "cuda:7"),
    case("train-holdout-too-big", "train synthetic -o data.synthetic.holdout=1000 --run-dir {T}/r --quiet",
         "holdout"),
    case("train-synthetic-sources-missing", "train synthetic -o data.synthetic.sources={W}/nope --run-dir {T}/r "
         "--quiet", "nope"),
    case("train-best-metric-unknown", f"train pixel {TRAIN_DATA} {TRAIN_OK} -o data.val.root={{W}}/good "
         "-o schedule.best_metric=nope -o run.select=best --run-dir {T}/r", "nope"),
    case("train-ok-resume-auto-fresh", f"train pixel {TRAIN_DATA} {TRAIN_OK} --run-dir {{T}}/r --resume auto",
         status=0),
    case("train-ok-val-every-past-total", f"train pixel {TRAIN_DATA} {TRAIN_OK} -o data.val.root={{W}}/good "
         "-o schedule.val_every=1000 --run-dir {T}/r", status=0),
    # configs
    case("config-missing-file", "train {W}/cfg/nope.yaml --print-config", "nope.yaml"),
    case("config-missing-preset", "train no_such_preset_xyz --print-config", "no_such_preset_xyz"),
    case("config-syntax", "train {W}/cfg/syntax.yaml --print-config", "syntax.yaml", "not valid YAML"),
    case("config-alias", "train {W}/cfg/alias.yaml --print-config", "alias", "aliases"),
    case("config-huge", "train {W}/cfg/huge.yaml --print-config", "huge.yaml", "too large"),
    case("config-binary", "train {W}/cfg/binary.yaml --print-config", "binary.yaml"),
    case("config-list", "train {W}/cfg/list.yaml --print-config", "list.yaml", "mapping"),
    case("config-scalar", "train {W}/cfg/scalar.yaml --print-config", "scalar.yaml", "mapping"),
    case("config-unknown-key", "train {W}/cfg/unknown.yaml --print-config", "bogus"),
    case("config-wrong-type", "train {W}/cfg/wrongtype.yaml --print-config", "optim.lr", "fast"),
    case("config-section-scalar", "train {W}/cfg/section_scalar.yaml --print-config", "optim"),
    case("config-base-loop", "train {W}/cfg/loop.yaml --print-config", "loop"),
    case("config-base-missing", "train {W}/cfg/base_missing.yaml --print-config", "no_such_preset_xyz"),
    case("config-python-tag", "train {W}/cfg/python.yaml --print-config", "python.yaml"),
    case("config-a-folder", "train {W}/cfg/dir.yaml --print-config", "dir.yaml"),
    case("config-empty-ok", "train {W}/cfg/empty.yaml --print-config", status=0),
    case("override-no-equals", "train pixel -o optim.lr --print-config", "optim.lr"),
    case("override-empty-key", "train pixel -o =3 --print-config", "=3"),
    case("override-unknown-section", "train pixel -o bogus.x=1 --print-config", "bogus"),
    case("override-unknown-key", "train pixel -o optim.bogus=1 --print-config", "optim.bogus"),
    case("override-into-scalar", "train pixel -o optim.lr.x=1 --print-config", "lr"),
    case("override-list-for-scalar", "train pixel -o optim.lr=[1,2] --print-config", "optim.lr"),
    case("override-scalar-for-list", "train pixel -o optim.betas=0.9 --print-config", "optim.betas"),
    case("override-string-for-int", "train pixel -o data.batch_size=many --print-config", "data.batch_size"),
    case("override-bool-for-int", "train pixel -o data.batch_size=true --print-config", "data.batch_size"),
    case("override-float-for-int", "train pixel -o data.batch_size=1.5 --print-config", "data.batch_size"),
    case("override-int-for-bool", "train pixel -o data.augment=2 --print-config", "data.augment"),
    case("override-bad-literal", "train pixel -o schedule.unit=fortnight --print-config", "fortnight"),
    case("override-bad-yaml", "train pixel -o 'optim.lr=[1' --print-config", "optim.lr"),
    case("override-alias", "train pixel -o 'net.options=&a {x: *a}' --print-config", "alias"),
    case("override-mapping-for-number", "train pixel -o 'optim.lr={a: 1}' --print-config", "optim.lr"),
    case("override-betas-wrong-length", "train pixel -o optim.betas=[0.9] --print-config", "optim.betas"),
    case("override-null-for-int", "train pixel -o data.batch_size=null --print-config", "data.batch_size"),
    # export
    case("export-height-7", "export {W}/ck/good.pt -o {T}/m.onnx --height 7", "7"),
    case("export-height-0", "export {W}/ck/good.pt -o {T}/m.onnx --height 0", "--height", "0"),
    case("export-width-neg", "export {W}/ck/good.pt -o {T}/m.onnx --width -16", "--width", "-16"),
    case("export-opset-0", "export {W}/ck/good.pt -o {T}/m.onnx --opset 0", "--opset", "0"),
    case("export-opset-99", "export {W}/ck/good.pt -o {T}/m.onnx --opset 99 --height 16 --width 16", "99"),
    case("export-format-nope", "export {W}/ck/good.pt -o {T}/m.onnx --format nope", "--format"),
    case("export-onto-existing", "export {W}/ck/good.pt -o {W}/exists.onnx --height 16 --width 16", "exists.onnx"),
    case("export-onto-checkpoint", "export {W}/ck/good.pt -o {W}/ck/good.pt --height 16 --width 16", "good.pt"),
    case("export-st-onto-existing", "export {W}/ck/good.pt -o {W}/ck/model --format safetensors", "model"),
    case("export-st-onto-a-file", "export {W}/ck/good.pt -o {W}/a_file --format safetensors", "a_file"),
    case("export-out-under-a-file", "export {W}/ck/good.pt -o {W}/a_file/m.onnx --height 16 --width 16", "a_file"),
    case("export-net-mismatch", "export {W}/ck/good.pt -o {T}/m.onnx --net mprnet", "mprnet"),
    case("export-hf-bad-id", "export hf:/// -o {T}/m.onnx", "hf:"),
    case("export-ok-onnx", "export {W}/ck/good.pt -o {T}/m.onnx --height 16 --width 16 --exporter torchscript",
         status=0),
    case("export-ok-safetensors", "export {W}/ck/good.pt -o {T}/st --format safetensors", status=0),
    # plot
    case("plot-missing-run", "plot {W}/runs/nope", "nope"),
    case("plot-no-log", "plot {W}/img_empty -o {T}/c.png", "img_empty"),
    case("plot-empty-log", "plot {W}/runs/plot_empty -o {T}/c.png", "log.csv"),
    case("plot-text-log", "plot {W}/runs/plot_text -o {T}/c.png", "log.csv"),
    case("plot-binary-log", "plot {W}/runs/plot_binary -o {T}/c.png", "log.csv"),
    case("plot-run-is-a-file", "plot {W}/a_file -o {T}/c.png", "a_file"),
    case("plot-dpi-0", "plot {W}/runs/plot_ok -o {T}/c.png --dpi 0", "--dpi", "0"),
    case("plot-dpi-neg", "plot {W}/runs/plot_ok -o {T}/c.png --dpi -5", "--dpi", "-5"),
    case("plot-dpi-huge", "plot {W}/runs/plot_ok -o {T}/c.png --dpi 100000", "--dpi", "100000"),
    case("plot-out-existing", "plot {W}/runs/plot_ok -o {W}/exists.png", "exists.png"),
    case("plot-out-under-a-file", "plot {W}/runs/plot_ok -o {W}/a_file/c.png", "a_file"),
    case("plot-out-a-folder", "plot {W}/runs/plot_ok -o {W}/img_empty", "img_empty"),
    case("plot-only-nan", "plot {W}/runs/plot_nan -o {T}/c.png", "log.csv", "no numbers"),
    case("plot-ok", "plot {W}/runs/plot_ok -o {T}/c.png", status=0),
    # nets, flows, presets, demo, top level
    case("nets-extra-argument", "nets extra", "extra"),
    case("nets-ok", "nets --no-macs", status=0),
    case("flows-extra-argument", "flows --bogus", "--bogus"),
    case("flows-ok", "flows", status=0),
    case("presets-show-missing", "presets --show nope", "nope"),
    case("presets-show-path-missing", "presets --show {W}/cfg/nope.yaml", "nope.yaml"),
    case("presets-show-alias", "presets --show {W}/cfg/alias.yaml", "aliases"),
    case("presets-show-syntax", "presets --show {W}/cfg/syntax.yaml", "syntax.yaml"),
    case("presets-show-binary", "presets --show {W}/cfg/binary.yaml", "binary.yaml"),
    case("presets-show-list", "presets --show {W}/cfg/list.yaml", "list.yaml"),
    case("presets-ok", "presets", status=0),
    case("presets-show-ok", "presets --show pixel", status=0),
    case("demo-seed-word", "demo --seed x --out {T}/demo", "--seed", "x"),
    case("demo-steps-word", "demo --steps many --out {T}/demo", "--steps", "many"),
    case("demo-unknown-option", "demo --bogus", "--bogus"),
    case("demo-init-missing", "demo --init {T}/missing.pt --out {T}/demo --quiet", "missing.pt"),
    case("demo-init-and-from-scratch", "demo --init jdrl:synth-nafnet16 --from-scratch --out {T}/demo", "--from-scratch"),
    case("demo-init-unknown-bundled", "demo --init jdrl:nope --out {T}/demo --quiet", "jdrl:nope"),
    case("deblur-net-without-checkpoint", "deblur {W}/img/ok.png -o {T}/d --net unet", "--checkpoint"),
    case("deblur-blur-map-bundled", "deblur {W}/img/ok.png -o {T}/d --blur-map", "reblurring module"),
    case("demo-width-without-unet", "demo --width 0.5 --out {T}/demo", "--width", "--net unet"),
    case("top-unknown-command", "bogus", "bogus"),
]
for id_, argv in (("steps-0", "--steps 0"), ("steps-neg", "--steps -5"), ("batch-0", "--batch 0"),
                  ("width-0", "--net unet --width 0"), ("width-nan", "--net unet --width nan")):
    CASES.append(pytest.param(Case(f"demo-{id_}", f"demo {argv} --out {{T}}/demo", ()), id=f"demo-{id_}"))


def _fmt(text: str, W: Path, T: Path) -> str:
    return text.replace("{W}", str(W)).replace("{T}", str(T)).replace("{{", "{").replace("}}", "}")


@pytest.mark.parametrize("c", CASES)
def test_bad_input(c: Case, world: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default outputs (eval-..., runs/...) land here
    monkeypatch.delenv("JDRL_MAX_PIXELS", raising=False)
    argv = shlex.split(_fmt(c.argv, world, tmp_path))
    before = snapshot(world)
    started = time.perf_counter()
    code, out, err = run_cli(argv, capsys, c.timeout)
    after = snapshot(world)
    changed = [str(p) for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f"pre-existing files changed: {changed}\n{err}"
    added = sorted(str(p) for p in set(after) - set(before))
    assert not added, f"files written into the inputs' folders: {added[:5]}\n{err}"
    assert not temporaries(world, tmp_path), temporaries(world, tmp_path)
    assert not (world / "PWNED").exists() and not (tmp_path / "PWNED").exists(), "a pickle ran code"
    assert "Traceback" not in err and "internal error" not in err, err
    if c.status == 0:
        assert code == 0, f"status {code}\n{err}"
    else:
        if c.status is not None:
            assert code == c.status, f"status {code}, expected {c.status}\n{err}"
        if c.status == 1 and "not deblurred" in err or "problems:" in out:  # a listed report, not an error line
            assert code != 0
        else:
            assert_one_line_error(code, err, argv[0])
    text = err + out
    for name in c.names:
        assert _fmt(name, world, tmp_path) in text, f"{name!r} not named in\n{text}"
    assert time.perf_counter() - started < c.timeout


# ------------------------------------------------------------------------------------------- config ranges


def _ranged_fields(cls, prefix=""):
    """Every ``(dotted key, field type, Range)`` of a config tree (from the declared metadata)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        inner = [a for a in typing.get_args(kind) if dataclasses.is_dataclass(a)]
        target = kind if dataclasses.is_dataclass(kind) else (inner[0] if inner else None)
        if target is not None:
            yield from _ranged_fields(target, f"{prefix}{f.name}.")
        elif "range" in f.metadata:
            yield f"{prefix}{f.name}", kind, f.metadata["range"]


def _bad_values(kind, check):
    """Values outside ``check``: each bound crossed, plus NaN/inf for numbers."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    base = args[0] if args and typing.get_origin(kind) is typing.Union else kind
    is_sequence = typing.get_origin(base) in (tuple, list)
    scalar = typing.get_args(base)[0] if is_sequence else base
    integer = scalar is int
    values = []
    if check.ge is not None:
        values.append(check.ge - 1)
    if check.gt is not None:
        values.append(check.gt if integer else check.gt - 1e-3 * max(1, abs(check.gt)))
    if check.le is not None:
        values.append(check.le + 1)
    if check.lt is not None:
        values.append(check.lt)
    if not integer:
        values += [".nan", ".inf", "-.inf"]
    texts = []
    for value in values:
        text = value if isinstance(value, str) else (str(int(value)) if integer else repr(float(value)))
        if is_sequence:
            size = len(typing.get_args(base)) if typing.get_origin(base) is tuple else 1
            text = "[" + ", ".join([text] * max(size, 1)) + "]"
        texts.append(text)
    return texts


def _range_cases():
    from jdrl.training.config import TrainConfig

    cases = []
    for key, kind, check in _ranged_fields(TrainConfig):
        for value in _bad_values(kind, check):
            cases.append(pytest.param(key, value, id=f"{key}={value}"))
    return cases


@pytest.mark.parametrize(("key", "value"), _range_cases())
def test_every_declared_range_is_enforced(key, value, capsys):
    code, out, err = run_cli(["train", "synthetic", "-o", f"{key}={value}", "--print-config"], capsys)
    assert_one_line_error(code, err, "train")
    assert key in err, err
    assert out == ""


def test_every_number_in_the_configs_has_a_declared_range():
    """'Every config value has a declared range': int/float fields without ``ranged`` are listed here."""
    from jdrl.training.config import TrainConfig

    def unranged(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            inner = [a for a in typing.get_args(kind) if dataclasses.is_dataclass(a)]
            target = kind if dataclasses.is_dataclass(kind) else (inner[0] if inner else None)
            if target is not None:
                yield from unranged(target, f"{prefix}{f.name}.")
                continue
            scalars = {kind, *typing.get_args(kind)} | {a for t in typing.get_args(kind) for a in typing.get_args(t)}
            if (int in scalars or float in scalars) and "range" not in f.metadata:
                yield f"{prefix}{f.name}"

    assert list(unranged(TrainConfig)) == []


# ------------------------------------------------------------------------------------------- full disk


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_deblurring_lists_each_image_and_leaves_no_partial_file(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "replace", _enospc)
    out = tmp_path / "d"
    code, _, err = run_cli(["deblur", str(world / "img" / "ok.png"), str(world / "img" / "grey.png"), "-o", str(out),
                            "--checkpoint", str(world / "ck" / "good.pt"), "--quiet"], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.count("No space left on device") == 2
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_full_disk_while_saving_a_checkpoint_is_one_line(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch, "save", _enospc)
    argv = ["train", "pixel", "-o", f"data.train.root={world}/good", "--run-dir", str(tmp_path / "r"),
            *shlex.split(TRAIN_OK)]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "train")
    assert "No space left on device" in err
    assert not temporaries(tmp_path) and not list((tmp_path / "r").glob("*.pt"))


def test_full_disk_while_exporting_keeps_no_partial_model(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "replace", _enospc)
    code, _, err = run_cli(["export", str(world / "ck" / "good.pt"), "-o", str(tmp_path / "m.onnx"), "--height", "16",
                            "--width", "16", "--exporter", "torchscript"], capsys)
    assert_one_line_error(code, err, "export")
    assert "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_synthesizing_is_one_line(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "replace", _enospc)
    code, _, err = run_cli(["synth", "-n", "1", "--size", "32", "-o", str(tmp_path / "s"), str(world / "src64"),
                            "--quiet"], capsys)
    assert_one_line_error(code, err, "synth")
    assert "No space left on device" in err
    assert not temporaries(tmp_path)


# ------------------------------------------------------------------------------------------- promises


def test_weight_files_never_execute_code(world, tmp_path, capsys):
    """The malicious pickle is refused by every reader (``weights_only=True``) and its code never runs."""
    from jdrl.checkpoint import load_file
    from jdrl.errors import WeightsError

    with pytest.raises(WeightsError):
        load_file(world / "ck" / "evil.pt")
    assert not (world / "PWNED").exists()


def test_a_killed_save_leaves_the_previous_checkpoint_and_resume_removes_the_temporary(world, tmp_path, capsys):
    run = tmp_path / "r"
    argv = ["train", "pixel", "-o", f"data.train.root={world}/good", "--run-dir", str(run), *shlex.split(TRAIN_OK)]
    assert run_cli(argv, capsys)[0] == 0
    last = (run / "last.pt").read_bytes()
    (run / ".last.pt.abc123.tmp").write_bytes(last[:100])  # what a save killed mid-way leaves
    code, _, err = run_cli(shlex.split(_last_override_wins(shlex.join([*argv, "-o", "schedule.total=2", "--resume", "auto"]))),
                           capsys)
    assert code == 0, err
    assert not list(run.glob("*.tmp"))
