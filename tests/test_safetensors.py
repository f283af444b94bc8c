"""Shareable weights without pickle: model folders (config.json + model.safetensors), bare files, Hub ids."""

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from jdrl.checkpoint import read_checkpoint
from jdrl.cli import main
from jdrl.errors import MissingDependencyError, WeightsError
from jdrl.hub import CONFIG_NAME, WEIGHTS_NAME, read_safetensors
from jdrl.images import read_image, write_image
from jdrl.nets import create_net
from jdrl.nets.factory import read_weights
from jdrl.training import train
from tests.conftest import textured_image

TINY = [
    "net.options={width: 0.0625, dropout: 0.0}",
    "data.batch_size=2",
    "data.crop=32",
    "data.synthetic={train: 4, val: 1, size: 48}",
    "schedule.unit=step",
    "schedule.total=2",
    "schedule.warmup=0",
    "schedule.log_every=1",
    "schedule.val_every=1000",
    "schedule.save_every=1000",
    "optim.lr=0.001",
    "optim.decay_every=1000",
    "run.deterministic=true",
    "run.samples=0",
]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train("pixel", TINY, run_dir=tmp_path_factory.mktemp("run") / "run", quiet=True)


@pytest.fixture(scope="module")
def blurry(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "blurry.png"
    write_image(path, textured_image(np.random.default_rng(3), 40, 56))
    return path


def jdrl_subprocess(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m jdrl ...`` in a fresh process (nothing of this one's imports or state)."""
    return subprocess.run([sys.executable, "-m", "jdrl", *args], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_training_writes_the_selected_network_as_a_model_folder(run):
    folder = run / "model"
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["format"] == "jdrl.model" and config["net"] == {"name": "unet",
                                                                  "options": {"width": 0.0625, "dropout": 0.0}}
    assert config["step"] == 2 and config["ema"] is False and config["size_multiple"] == 16
    tensors, metadata = read_safetensors(folder / WEIGHTS_NAME)
    assert metadata["jdrl.net"] == "unet" and json.loads(metadata["jdrl.options"])["width"] == 0.0625
    last = read_checkpoint(run / "last.pt")["net"]["state_dict"]  # run.select=last: the folder follows last.pt
    assert tensors.keys() == last.keys() and all(torch.equal(tensors[k], last[k]) for k in last)
    net = create_net(checkpoint=folder)
    assert (net.jdrl_spec.name, net.jdrl_spec.source, net.jdrl_spec.step) == ("unet", "jdrl", 2)


@pytest.mark.slow
def test_export_cli_writes_a_folder_and_a_fresh_process_deblurs_with_it(run, blurry, tmp_path, capsys):
    folder = tmp_path / "shared-model"
    assert main(["export", str(run / "last.pt"), "--format", "safetensors", "-o", str(folder)]) == 0
    assert "bit-identical" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    assert main(["deblur", str(blurry), "-o", str(tmp_path / "from_pt"), "--checkpoint", str(run / "last.pt"),
                 "--quiet"]) == 0
    done = jdrl_subprocess("deblur", str(blurry), "-o", str(tmp_path / "from_folder"), "--checkpoint", str(folder),
                           "--quiet")
    assert done.returncode == 0, done.stderr
    expected, got = read_image(tmp_path / "from_pt" / "blurry.png"), read_image(tmp_path / "from_folder" / "blurry.png")
    assert np.abs(expected - got).max() <= 1 / 255 + 1e-6  # other process, other thread count: at most 1 level

    bare = tmp_path / "alone.safetensors"  # the weights file alone names its network in its metadata
    shutil.copy(folder / WEIGHTS_NAME, bare)
    assert create_net(checkpoint=bare).jdrl_spec.options == {"width": 0.0625, "dropout": 0.0}
    with pytest.raises(WeightsError, match="holds a 'unet' network, not 'mprnet'"):
        read_weights(folder, "mprnet")


def hub_cache(home, repo: str, files: dict, commit: str = COMMIT):
    """The Hugging Face cache layout (HF_HOME/hub/models--org--name/{refs/main, snapshots/COMMIT/...})."""
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


@pytest.mark.slow
def test_a_hub_id_is_served_from_the_local_cache_offline(run, blurry, tmp_path):
    pytest.importorskip("huggingface_hub", reason="the hub extra (pip install 'jdrl[hub]') is not installed")
    home = tmp_path / "hf_home"
    model = run / "model"
    hub_cache(home, "jdrl-test/tiny", {CONFIG_NAME: model / CONFIG_NAME, WEIGHTS_NAME: model / WEIGHTS_NAME})
    hub_cache(home, "jdrl-test/partial", {CONFIG_NAME: model / CONFIG_NAME})
    offline = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = jdrl_subprocess("deblur", str(blurry), "-o", str(tmp_path / "out"), "--checkpoint", "hf:jdrl-test/tiny",
                           "--quiet", env=offline)
    assert done.returncode == 0, done.stderr
    assert read_image(tmp_path / "out" / "blurry.png").shape == (40, 56, 3)

    script = textwrap.dedent(f"""
        import json
        from jdrl.errors import WeightsError
        from jdrl.nets.factory import read_weights
        out = {{"pinned": read_weights("hf:jdrl-test/tiny@{COMMIT}").spec.name}}
        for key, source in [("absent", "hf:jdrl-test/absent"), ("partial", "hf:jdrl-test/partial"),
                            ("bad", "hf:not a repo")]:
            try:
                read_weights(source)
            except WeightsError as error:
                out[key] = str(error)
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **offline})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["pinned"] == "unet"
    assert "config.json and model.safetensors of jdrl-test/absent not in the local Hugging Face cache" in out["absent"]
    assert "HF_HUB_OFFLINE is set" in out["absent"] and "hf download jdrl-test/absent" in out["absent"]
    assert "model.safetensors of jdrl-test/partial not in the local" in out["partial"]
    assert "config.json" not in out["partial"].split(" of ")[0]
    assert "is not a Hub id" in out["bad"]


def test_without_huggingface_hub_a_hub_id_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'jdrl\[hub\]'"):
        create_net(checkpoint="hf:org/name")


class Payload:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malformed_safetensors_files_give_a_clear_error_naming_the_file(run, tmp_path):
    good = (run / "model" / WEIGHTS_NAME).read_bytes()
    header = struct.unpack("<Q", good[:8])[0]
    marker = tmp_path / "pickle-was-run"
    cases = {
        "truncated": good[: len(good) - 100],
        "random": np.random.default_rng(0).bytes(4096),
        "too-short": good[:5],
        "empty": b"",
        "header-claims-more": struct.pack("<Q", len(good) * 4) + good[8:],
        "header-not-json": struct.pack("<Q", header) + b"{" * header + good[8 + header:],
        "a-pickle": pickle.dumps({"state_dict": Payload(marker)}),
    }
    for name, payload in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(payload)
        with pytest.raises(WeightsError, match="not a readable .safetensors file") as error:
            create_net(checkpoint=path)
        assert str(path) in str(error.value), name
        folder = tmp_path / f"folder-{name}"  # the same inside a model folder
        folder.mkdir()
        (folder / WEIGHTS_NAME).write_bytes(payload)
        with pytest.raises(WeightsError, match="not a readable .safetensors file") as error:
            create_net("unet", checkpoint=folder)
        assert str(folder / WEIGHTS_NAME) in str(error.value), name
    assert not marker.exists()


def test_folders_that_are_not_model_folders_say_what_they_lack(run, tmp_path):
    with pytest.raises(WeightsError, match="looks like a run folder: use .*model"):
        create_net(checkpoint=run)
    with pytest.raises(WeightsError, match="jdrl export CKPT --format safetensors"):
        create_net(checkpoint=tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(run / "model" / WEIGHTS_NAME, broken / WEIGHTS_NAME)
    (broken / CONFIG_NAME).write_text("{not json")
    with pytest.raises(WeightsError, match="config.json: not valid JSON"):
        create_net(checkpoint=broken)
    (broken / CONFIG_NAME).write_text(json.dumps({"net": {"name": "mprnet", "options": {}}}))
    with pytest.raises(WeightsError, match="mixes two models"):
        create_net(checkpoint=broken)
