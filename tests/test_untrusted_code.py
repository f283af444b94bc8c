"""No file runs code: a network named as code (``package.module:Class``) by a checkpoint, a safetensors
file's metadata, a model folder's config.json, a Hub repository or a YAML config is never imported or
called without the explicit ``--trust-code`` (Python: ``trust_code=True``).

Every payload would leave a trace if it ran: ``os:system`` / ``subprocess:run`` create a marker file,
``os:remove`` deletes a victim file, and a planted module creates a marker when it is merely imported.
Each is planted in each kind of file and handed to every command that reads weights (and to
``net.init``); the command must end in one line naming the network and the flag, with no trace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from jdrl.checkpoint import make_checkpoint, write_checkpoint
from jdrl.errors import ConfigError, UntrustedCodeError
from jdrl.images import write_image
from jdrl.nets import create_net
from jdrl.nets.factory import read_weights
from tests.conftest import textured_image
from tests.test_bad_inputs import assert_one_line_error, run_cli

TINY_TRAIN = ["-o", "schedule.unit=step", "-o", "schedule.total=1", "-o", "schedule.warmup=0", "-o", "data.crop=16",
              "-o", "data.batch_size=1", "-o", "data.synthetic={train: 2, val: 0, size: 32}", "-o", "run.samples=0"]


def payloads(marker: Path, victim: Path) -> dict[str, tuple[str, dict]]:
    return {
        "os-system": ("os:system", {"command": f"touch {marker}"}),
        "subprocess-run": ("subprocess:run", {"args": ["touch", str(marker)]}),
        "os-remove": ("os:remove", {"path": str(victim)}),
        "import-time": ("jdrl_test_payload.evil:Net", {}),
    }


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A planted module (creates the marker when imported), a victim file and an image to deblur."""
    package = tmp_path / "site" / "jdrl_test_payload"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    marker, victim = tmp_path / "PWNED", tmp_path / "victim.txt"
    (package / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\nNet = None\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    victim.write_text("the user's file")
    write_image(tmp_path / "photo.png", textured_image(np.random.default_rng(0), 32, 32))
    return tmp_path, marker, victim


def plant(kind: str, folder: Path, name: str, options: dict) -> Path:
    """A weight file of ``kind`` naming the network ``name`` with ``options``."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": torch.zeros(1)}
    if kind == "checkpoint":
        path = folder / "model.pt"
        write_checkpoint(make_checkpoint(name, options, tensors), path)
        return path
    if kind == "safetensors":
        path = folder / "model.safetensors"
        save_file(tensors, str(path), metadata={"format": "pt", "jdrl.format": "jdrl.model", "jdrl.net": name,
                                                 "jdrl.options": json.dumps(options)})
        return path
    assert kind == "folder"
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"format": "jdrl.model", "net": {"name": name, "options": options}}))
    return folder


def assert_no_trace(marker: Path, victim: Path) -> None:
    assert not marker.exists(), "the payload ran"
    assert victim.read_text() == "the user's file", "the payload deleted the user's file"


KINDS = ("checkpoint", "safetensors", "folder")


@pytest.mark.parametrize("payload", ["os-system", "subprocess-run", "os-remove", "import-time"])
@pytest.mark.parametrize("kind", KINDS)
def test_no_command_runs_code_named_by_a_weight_file(world, payload, kind, capsys):
    root, marker, victim = world
    name, options = payloads(marker, victim)[payload]
    weights = plant(kind, root / "weights", name, options)
    commands = {
        "deblur": ["deblur", str(root / "photo.png"), "-o", str(root / "out"), "--checkpoint", str(weights), "--quiet"],
        "eval": ["eval", "synthetic", "--synthetic-n", "1", "--checkpoint", str(weights), "--out", str(root / "ev"),
                 "--no-lpips", "--quiet"],
        "export": ["export", str(weights), "-o", str(root / "m.onnx")],
        "train": ["train", "pixel", "--init", str(weights), "--run-dir", str(root / "run"), "--quiet", *TINY_TRAIN],
    }
    for command, argv in commands.items():
        code, _, err = run_cli(argv, capsys, timeout=120)
        assert_one_line_error(code, err, command)
        assert name in err and "--trust-code" in err, err
        assert_no_trace(marker, victim)


@pytest.mark.parametrize("kind", KINDS)
def test_the_python_api_refuses_code_named_by_a_file_too(world, kind):
    root, marker, victim = world
    for name, options in payloads(marker, victim).values():
        weights = plant(kind, root / f"w-{name.replace(':', '-')}", name, options)
        with pytest.raises(UntrustedCodeError, match="trust_code=True"):
            create_net(checkpoint=weights)
        with pytest.raises(UntrustedCodeError):
            read_weights(weights)
        from jdrl.export import load_export_net

        with pytest.raises(UntrustedCodeError):
            load_export_net(weights)
        assert_no_trace(marker, victim)


def test_a_yaml_config_that_names_code_needs_the_flag(world, capsys):
    root, marker, victim = world
    config = root / "evil.yaml"
    config.write_text(f"base: pixel\nnet:\n  name: 'os:system'\n  options: {{command: 'touch {marker}'}}\n")
    code, _, err = run_cli(["train", str(config), "--run-dir", str(root / "run"), "--quiet", *TINY_TRAIN], capsys)
    assert_one_line_error(code, err, "train")
    assert "os:system" in err and "--trust-code" in err, err
    assert_no_trace(marker, victim)
    from jdrl.training import load_train_config

    with pytest.raises(UntrustedCodeError):
        load_train_config(config)
    # a config cannot give itself the consent: there is no such config key
    config.write_text(config.read_text() + "run:\n  trust_code: true\n")
    with pytest.raises(ConfigError, match="trust_code"):
        load_train_config(config)
    assert_no_trace(marker, victim)


def test_net_options_cannot_smuggle_the_consent_into_read_weights(world):
    root, marker, victim = world
    weights = plant("checkpoint", root / "w", "os:system", {"command": f"touch {marker}"})
    with pytest.raises(UntrustedCodeError):
        read_weights(weights, options={"trust_code": True})
    assert_no_trace(marker, victim)


def test_a_name_the_user_types_is_theirs(world, capsys):
    """``-o net.name=...`` typed by the user is imported (the payload here is harmless: it only imports)."""
    root, marker, _ = world
    config = root / "theirs.yaml"
    config.write_text("base: pixel\nnet:\n  name: 'jdrl_test_payload.evil:Net'\n")
    from jdrl.training import load_train_config

    typed = load_train_config(config, ["net.name=jdrl_test_payload.evil:Net"])  # the same name, typed
    assert typed.net.name == "jdrl_test_payload.evil:Net"
    assert load_train_config(config, trust_code=True).net.name == "jdrl_test_payload.evil:Net"
    assert not marker.exists()  # reading a config imports nothing, even when trusted


def test_with_the_flag_a_trusted_file_is_built(world, capsys):
    root, marker, victim = world
    weights = plant("folder", root / "w", "jdrl_test_payload.evil:Net", {})
    code, _, err = run_cli(["deblur", str(root / "photo.png"), "-o", str(root / "out"), "--checkpoint", str(weights),
                            "--trust-code", "--quiet"], capsys)
    assert marker.exists()  # imported, as consented ("Net = None" then fails the contract, with one line)
    assert_one_line_error(code, err, "deblur")
    assert "jdrl_test_payload.evil has no 'Net'" in err, err


def test_a_hub_repository_that_names_code_is_refused(world, tmp_path):
    pytest.importorskip("huggingface_hub", reason="the hub extra (pip install 'jdrl[hub]') is not installed")
    from tests.test_safetensors import hub_cache

    root, marker, victim = world
    folder = plant("folder", root / "hub-model", "os:system", {"command": f"touch {marker}"})
    home = tmp_path / "hf_home"
    hub_cache(home, "evil-org/model", {"config.json": folder / "config.json",
                                       "model.safetensors": folder / "model.safetensors"})
    script = textwrap.dedent("""
        import sys
        from jdrl.cli import main
        sys.exit(main(["deblur", sys.argv[1], "-o", sys.argv[2], "--checkpoint", "hf:evil-org/model", "--quiet"]))
    """)
    done = subprocess.run([sys.executable, "-c", script, str(root / "photo.png"), str(root / "out")], check=False,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, done.stderr
    assert "os:system" in done.stderr and "--trust-code" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert_no_trace(marker, victim)


@pytest.mark.parametrize("options, message", [
    ({"width": 1e308}, "width"),
    ({"width": float("nan")}, "finite"),
    ({"width": 16}, "parameters"),  # 16x the paper's UNet: 7.9 G parameters, refused from the meta-device size
    ({"width": "wide"}, "must be a number"),
    ({"dropout": 2}, "dropout"),
    ({"channel_order": "xyz"}, "channel_order"),
    ({"no_such_option": 1}, "unknown option"),
    ({"width": [[[[[[[[[[1]]]]]]]]]]}, "nested"),
])
def test_options_read_from_a_file_are_checked_before_anything_is_built(world, options, message, monkeypatch):
    root, _, _ = world
    built = []
    from jdrl.nets.unet import UNet

    original = UNet.__init__
    monkeypatch.setattr(UNet, "__init__", lambda self, *a, **k: (built.append(k), original(self, *a, **k))[1])
    weights = plant("folder", root / "w", "unet", options)
    with pytest.raises(ConfigError, match=message):
        create_net(checkpoint=weights)
    assert all(not kwargs or str(kwargs) == str(options) for kwargs in built)
    if message != "parameters":
        assert not built, "the network was constructed before its options were checked"
