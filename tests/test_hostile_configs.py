"""A generated corpus of hostile configs: every field of the training config x every class of bad value, YAML
documents that are malformed in every way we know, config files that are not files, repeated and conflicting keys.

What each case must do: end in one :class:`~jdrl.errors.JDRLError` (the CLI's one line) naming the key or file,
at once -- never another exception (the CLI's "internal error"), never a hang, never a setting silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import typing

import pytest

from jdrl.config import Range
from jdrl.errors import ConfigError, JDRLError
from jdrl.training import load_train_config
from jdrl.training.config import TrainConfig
from tests.test_bad_inputs import alarm, assert_one_line_error, run_cli

HOSTILE = ["0", "-1", "nan", "inf", "-inf", "1e308", "-1e308", "1" + "0" * 400, "text", "[1, 2]", "{a: 1}", "null",
           "true", "''", "[]", "{}", "[[[[[[[[1]]]]]]]]"]
#: values no number field may accept: non-finite, beyond any sensible bound, of the wrong type
NOT_A_NUMBER_HERE = ["nan", "inf", "-inf", "1e308", "-1e308", "1" + "0" * 400, "text", "[1, 2]", "{a: 1}", "true"]


def leaves(cls: type, prefix: str = ""):
    """``(dotted key, field)`` of every leaf of a config dataclass tree (optional sections included)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        sections = [a for a in (kind, *typing.get_args(kind)) if dataclasses.is_dataclass(a)]
        if sections:
            yield from leaves(sections[0], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


FIELDS = list(leaves(TrainConfig))
NUMBERS = [(key, f) for key, f in FIELDS if "range" in f.metadata]


@pytest.mark.parametrize("key", [key for key, _ in FIELDS])
def test_every_field_takes_every_hostile_value_without_an_internal_error(key):
    for value in HOSTILE:
        with alarm(20):
            try:
                load_train_config("synthetic", [f"{key}={value}"])
            except JDRLError:
                pass  # a clear error: what we want for most of them
            except Exception as error:  # noqa: BLE001 - that is the failure this test looks for
                pytest.fail(f"{key}={value[:20]}: {type(error).__name__}: {error}")


@pytest.mark.parametrize("key", [key for key, _ in NUMBERS])
def test_no_number_field_accepts_an_extreme_or_a_wrong_type(key):
    for value in NOT_A_NUMBER_HERE:
        with pytest.raises(ConfigError) as error:
            load_train_config("synthetic", [f"{key}={value}"])
        assert key.rsplit(".", 1)[-1] in str(error.value), (key, value, str(error.value))


def test_every_number_has_an_upper_bound():
    """'Every count has an upper bound that a user can reach only on purpose': no open-ended range."""
    open_ended = [key for key, f in NUMBERS if isinstance(f.metadata["range"], Range)
                  and f.metadata["range"].le is None and f.metadata["range"].lt is None]
    assert open_ended == []


# ------------------------------------------------------------------------------------------- YAML documents

DOCUMENTS = {
    "int-key-top": ("1: 2\n", "1"),
    "null-key-top": ("null: 2\n", "None"),
    "bool-key-nested": ("schedule:\n  true: 3\n", "True"),
    "int-key-nested": ("net:\n  options:\n    width: 0.1\n  7: x\n", "7"),
    "base-not-a-string": ("base: 5\n", "base"),
    "base-a-list": ("base: [pixel]\n", "base"),
    "base-loops": ("base: SELF\n", "loop"),
    "deep-nesting": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "deep"),
    "deep-mapping": ("a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "deep"),
    "duplicate-key-top": ("schedule: {total: 1}\nschedule: {total: 2}\n", "twice"),
    "duplicate-key-nested": ("optim:\n  lr: 0.1\n  lr: 0.2\n", "twice"),
    "alias": ("a: &x {total: 1}\nschedule: *x\n", "alias"),
    "python-tag": ("schedule: !!python/object/apply:os.system ['true']\n", "YAML"),
    "custom-tag": ("schedule: !foo 1\n", "YAML"),
    "top-level-list": ("- 1\n- 2\n", "mapping"),
    "top-level-string": ("hello\n", "mapping"),
    "huge-int": ("optim:\n  lr: " + "9" * 500 + "\n", "lr"),
    "tabs": ("schedule:\n\ttotal: 1\n", "YAML"),
    "binary": ("\x00\x01\x02\x03" * 10, "binary"),
    "unknown-top-key": ("optimiser: {lr: 1}\n", "optimiser"),
}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_a_malformed_yaml_document_is_one_clear_error(name, tmp_path, capsys):
    text, expected = DOCUMENTS[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("SELF", path.name))
    code, out, err = run_cli(["train", str(path), "--print-config"], capsys)
    assert_one_line_error(code, err, "train")
    assert expected.lower() in err.lower(), err
    assert out == ""


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_config_written_with_a_byte_order_mark_is_read(encoding, tmp_path, capsys):
    path = tmp_path / "bom.yaml"
    path.write_text("base: pixel\nschedule: {total: 3}\n", encoding=encoding)
    assert load_train_config(path).schedule.total == 3


def _special_files(tmp_path):
    loop = tmp_path / "loop.yaml"
    os.symlink(loop, loop)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    return {
        "missing": (tmp_path / "missing.yaml", "does not exist"),
        "folder": (folder, "folder"),
        "fifo": (fifo, "named pipe"),
        "device": ("/dev/zero", "device"),
        "symlink-loop": (loop, "loops"),
        "too-long-name": (tmp_path / ("x" * 300 + ".yaml"), "too long"),
        "too-large": (_write(tmp_path / "large.yaml", "a: 1\n" * 300_000), "too large"),
    }


def _write(path, text):
    path.write_text(text)
    return path


def test_a_config_that_is_not_a_file_is_named_for_what_it_is(tmp_path, capsys):
    for name, (path, expected) in _special_files(tmp_path).items():
        code, out, err = run_cli(["train", str(path), "--print-config"], capsys, timeout=20)
        assert_one_line_error(code, err, "train")
        assert expected in err, (name, err)


def test_a_config_with_a_name_that_is_not_utf8_is_read(tmp_path, capsys):
    path = os.path.join(os.fsencode(tmp_path), b"caf\xe9.yaml")
    with open(path, "w") as handle:
        handle.write("base: pixel\nschedule: {total: 3}\n")
    code, out, err = run_cli(["train", os.fsdecode(path), "--print-config"], capsys)
    assert code == 0, err
    assert "total: 3" in out


# ------------------------------------------------------------------------------------- repeats and conflicts


@pytest.mark.parametrize("overrides", [
    ["optim.lr=0.1", "optim.lr=0.2"],
    ["net.name=unet", "net={name: unet}"],
    ["net={name: unet}", "net.name=mprnet"],
    ["schedule.total=1", "schedule.total=1"],
])
def test_a_key_given_twice_on_the_command_line_is_refused(overrides, capsys):
    argv = ["train", "pixel", "--print-config"] + [word for item in overrides for word in ("-o", item)]
    code, out, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "train")
    assert "again" in err and out == ""


def test_init_and_an_override_of_net_init_together_are_refused(capsys):
    code, _, err = run_cli(["train", "pixel", "--init", "a.pt", "-o", "net.init=b.pt", "--print-config"], capsys)
    assert_one_line_error(code, err, "train")
    assert "net.init" in err


@pytest.mark.parametrize("config, overrides, expected", [
    ("synthetic", ["data.train.root=mine"], "data.synthetic=null"),
    ("synthetic", ["data.val={root: mine}"], "data.val.root"),
    ("pixel", ["loss.cobi_options={band_width: 2}"], "cobi_options"),
    ("pixel", ["loss.mask_options={model: affine}"], "mask_options"),
    ("pixel", ["loss.flow=dis", "loss.flow_weights=w.pth"], "no weights"),
    ("synthetic", ["loss.flow_options={iterations: 3}"], "loss.flow=auto"),
    ("pixel", ["run.loggers=[tensorboard, comet]"], "comet"),
    ("pixel", ["run.loggers=[tensorboard, tensorboard]"], "twice"),
    ("synthetic", ["schedule.reblur_only=5"], "overlap"),  # found by the demo's fine-tuning tries: a crash before
])
def test_a_setting_that_would_have_no_effect_is_refused(config, overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        load_train_config(config, overrides)


def test_the_synthetic_preset_still_loads_and_its_data_can_be_replaced_by_a_folder():
    assert load_train_config("synthetic").data.synthetic is not None
    mine = load_train_config("synthetic", ["data.synthetic=null", "data.train.root=mine"])
    assert mine.data.synthetic is None and mine.data.train.root == "mine"
