"""jdrl.create_net: every source of a network (registry, jdrl checkpoint, released and official files, the
user's own class, plugins) through one factory, and the extension points of the objective."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from jdrl.checkpoint import write_checkpoint
from jdrl.nets.factory import network_checkpoint
from jdrl.cli import main
from jdrl.errors import ConfigError, UntrustedCodeError, WeightsError
from jdrl.losses import LOSS_TERMS, JDRLConfig, JDRLLoss
from jdrl.nets import create_net, describe, net_names
from jdrl.training import train

# Tiny configurations of the official backbones, and each one's official file layout.
TINY_BACKBONES = {
    "nafnet_w32": {"width": 8, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1]},
    "restormer": {"dim": 8, "num_blocks": [1, 1, 1, 1], "heads": [1, 1, 1, 1], "num_refinement_blocks": 1},
    "lakdnet": {"dim": 8, "num_blocks": [1, 1, 1, 1], "mix_kernel_size": [3, 3, 3, 3]},
    "ifan": {"ch": 4, "N": 2},
}


def official_layout(name: str, state: dict) -> dict:
    """A state dict stored as the official code stores it (the official code of each network)."""
    if name.startswith("nafnet") or name == "restormer":
        return {"params": state}  # BasicSR save_network
    if name == "ifan":  # DataParallel(DeblurNet): module.Network.*, plus the training-only re-blurring net
        return {**{f"module.Network.{k}": v for k, v in state.items()},
                "module.reblurNet.RBF.0.0.weight": torch.zeros(2, 2, 3, 3)}
    return dict(state)  # LaKDNet: a bare state dict


def test_every_listed_network_builds_and_is_described():
    assert {"unet", "mprnet", "ifan", "nafnet_w32", "nafnet_w64", "restormer", "lakdnet"} <= set(net_names())
    net = create_net("unet", width=0.0625)
    assert describe(net).name == "unet" and describe(net).options == {"width": 0.0625} and describe(net).source == "new"


@pytest.mark.parametrize("name", sorted(TINY_BACKBONES))
def test_official_files_load_through_create_net_and_jdrl_deblur_on_8_and_16_bit(name, tmp_path):
    torch.manual_seed(0)
    reference = create_net(name, **TINY_BACKBONES[name]).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(official_layout(name, reference.state_dict()), path)
    loaded = create_net(checkpoint=path, **({"tlc": False} if name.startswith("nafnet") else {}))
    assert describe(loaded).source == "released" and not loaded.training
    rng = np.random.default_rng(1)
    image = rng.random((48, 64, 3)).astype(np.float32)
    for depth, dtype, scale in ((16, np.uint16, 65535), (8, np.uint8, 255)):
        raw = np.round(image * scale).astype(dtype)
        source = tmp_path / f"in{depth}.png"
        cv2.imwrite(str(source), raw[:, :, ::-1])
        out = tmp_path / f"out{depth}"
        assert main(["deblur", str(source), "-o", str(out), "--checkpoint", str(path), "--quiet"]) == 0
        written = cv2.imread(str(out / source.name), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
        assert written.dtype == dtype
        rgb = torch.from_numpy(raw.astype(np.float32) / scale).permute(2, 0, 1)[None]
        with torch.no_grad():
            official = reference.eval()(rgb).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        assert np.abs(written.astype(np.float64) / scale - official).max() <= 1.0 / scale + 1e-6


def test_official_file_with_a_wrong_name_or_keys_is_a_readable_error(tmp_path):
    state = create_net("restormer", **TINY_BACKBONES["restormer"]).state_dict()
    path = tmp_path / "restormer.pth"
    torch.save({"params": state}, path)
    with pytest.raises(WeightsError, match="not 'ifan'"):
        create_net("ifan", checkpoint=path)
    del state["output.weight"]
    torch.save({"params": state}, path)
    with pytest.raises(WeightsError, match="output.weight"):
        create_net(checkpoint=path)


def test_a_jdrl_checkpoint_of_a_backbone_round_trips(tmp_path):
    net = create_net("lakdnet", **TINY_BACKBONES["lakdnet"])
    path = write_checkpoint(network_checkpoint(net), tmp_path / "net.pt")
    loaded = create_net(checkpoint=path)
    assert describe(loaded).name == "lakdnet" and describe(loaded).source == "jdrl"
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))


USER_NET = """
import torch
from torch import nn


class MyNet(nn.Module):
    size_multiple = 4

    def __init__(self, features: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, features, 3, padding=1), nn.ReLU(), nn.Conv2d(features, 3, 3, padding=1))

    def forward(self, x):
        return (x + self.body(x)).clamp(0, 1)


class NoMultiple(nn.Module):
    def forward(self, x):
        return x


def not_a_module(**options):
    return 42
"""


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(USER_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_network_from_a_file_of_the_users_trains_from_the_cli(user_package, tmp_path):
    run = tmp_path / "run"
    args = ["train", "synthetic", "--run-dir", str(run), "--quiet"]
    for item in ["net.name=userpkg.models:MyNet", "net.options={features: 6}", "schedule.total=2",
                 "schedule.warmup=1", "data.crop=32", "data.batch_size=2", "loss.reblur_features=4",
                 "data.synthetic={train: 4, val: 1, size: 48, holdout: 0}"]:
        args += ["-o", item]
    assert main(args) == 0
    with pytest.raises(UntrustedCodeError, match="userpkg.models:MyNet.*--trust-code"):
        create_net(checkpoint=run / "last.pt")  # the file names code: not imported without consent
    for net in (create_net(checkpoint=run / "last.pt", trust_code=True),
                create_net("userpkg.models:MyNet", checkpoint=run / "last.pt")):  # consent, or the name typed
        assert type(net).__name__ == "MyNet" and net.body[0].out_channels == 6


@pytest.mark.parametrize("spec, message", [
    ("userpkg.models:NoMultiple", "size_multiple"),
    ("userpkg.models:not_a_module", "not a torch.nn.Module"),
    ("userpkg.models:Missing", "has no 'Missing'"),
    ("userpkg.nowhere:MyNet", "cannot import"),
])
def test_a_user_network_that_breaks_the_contract_is_a_clear_error(user_package, spec, message):
    with pytest.raises(ConfigError, match=message):
        create_net(spec)


def test_a_plugin_registered_by_entry_point_shows_in_jdrl_nets(tmp_path):
    (tmp_path / "plugnet.py").write_text(USER_NET.replace("class MyNet", "class PlugNet"))
    info = tmp_path / "plugnet-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugnet\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[jdrl.nets]\nplugnet = plugnet:PlugNet\n")
    code = "import sys; from jdrl.cli import main; sys.exit(main(['nets']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    line = next(row for row in result.stdout.splitlines() if row.startswith("plugnet"))
    assert line.split()[1] == "223"  # (3*4*9 + 4) + (4*3*9 + 3) parameters


def test_a_loss_term_added_through_the_extension_point_is_logged(tmp_path):
    def total_variation(**options):
        def term(restored, blurry, sharp):
            return (restored[..., 1:, :] - restored[..., :-1, :]).abs().mean()
        return term

    LOSS_TERMS.register("tv_test")(total_variation)
    assert JDRLLoss(JDRLConfig(objective="pixel", terms={"tv_test": 0.1})).part_names()[-1] == "tv_test"
    run = tmp_path / "run"
    train("pixel", ["net.options={width: 0.0625, dropout: 0.0}", "loss.terms={tv_test: 0.1}", "schedule.unit=step",
                    "schedule.total=2", "schedule.log_every=1", "data.crop=32", "data.batch_size=2",
                    "data.synthetic={train: 4, val: 0, size: 48}"], run_dir=run, quiet=True)
    with open(run / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert "tv_test" in rows[0] and all(float(row["tv_test"]) > 0 for row in rows)


def test_an_unknown_loss_term_lists_the_registered_ones():
    with pytest.raises(Exception, match="unknown loss term 'nope'"):
        JDRLLoss(JDRLConfig(objective="pixel", terms={"nope": 1.0}))
