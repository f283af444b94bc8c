"""Restormer (single-image defocus configuration) against the official implementation's reference data."""

from __future__ import annotations

import json

import pytest
import torch

import jdrl.nets.restormer  # noqa: F401 - registers "restormer" (until jdrl.nets lists the module)
from jdrl.errors import WeightsError
from jdrl.nets import NETS
from jdrl.nets.restormer import (
    DEFOCUS_OPTIONS,
    SIGNATURE_KEYS,
    Restormer,
    infer_options,
    official_state_dict,
    restormer,
)
from tests.conftest import backbone_rule_weights as rule_weights
from tests.conftest import shared_path

TINY = {"dim": 8, "num_blocks": (1, 1, 1, 1), "heads": (1, 1, 1, 1), "num_refinement_blocks": 1}


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(shared_path("reference", "backbones.json").read_text())["restormer_defocus"]


@pytest.fixture(scope="module")
def vectors() -> dict:
    return torch.load(shared_path("reference", "backbone_vectors.pt"), weights_only=True)["restormer_defocus"]


@pytest.fixture(scope="module")
def meta_net() -> Restormer:
    with torch.device("meta"):
        return NETS.get("restormer")()


def test_official_names_shapes_order_and_count(meta_net, reference):
    state = meta_net.state_dict()
    assert list(state) == list(reference["keys"])
    assert {k: list(v.shape) for k, v in state.items()} == reference["keys"]
    assert sum(p.numel() for p in meta_net.parameters()) == reference["param_count"] == 26_126_644
    assert len(state) == reference["num_keys"]
    assert Restormer.size_multiple == reference["size_multiple"] == 8
    assert dict(reference["constructor"]) == {
        k: list(v) if isinstance(v, tuple) else v for k, v in DEFOCUS_OPTIONS.items()
    }
    for key in SIGNATURE_KEYS:
        assert key in state


def test_reproduces_official_output(vectors, reference):
    assert set(vectors["offset_one_keys"]) == set(reference["init_ones_keys"])
    state = rule_weights(reference["keys"], vectors["seed0"], vectors["scale"], set(vectors["offset_one_keys"]))
    net = restormer().eval()
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = net(vectors["input"])
        diff = (out - vectors["output"]).abs().max().item()
        print(f"restormer max abs diff vs official: {diff:.3e}")
        torch.testing.assert_close(out, vectors["output"], atol=1e-5, rtol=1e-4)
        for name, extra in (vectors.get("extra") or {}).items():  # none at present; checked if added
            out = net(extra["input"])
            torch.testing.assert_close(out, extra["output"], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("size", [(36, 52), (34, 48), (32, 49)])
def test_badly_sized_input_is_a_readable_error(size):
    net = restormer(**TINY)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 3, *size))
    with pytest.raises(ValueError, match="RGB batch"):
        net(torch.rand(1, 4, 32, 32))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dim": 9}, "even"),
        ({"dim": 6, "heads": (4, 1, 1, 1)}, "heads"),
        ({"num_blocks": (1, 1, 1)}, "4 integers"),
        ({"LayerNorm_type": "Foo"}, "LayerNorm_type"),
        ({"width": 1.0}, "unknown restormer option"),
        ({"ffn_expansion_factor": 0.01}, "hidden channel"),
    ],
)
def test_bad_options_are_readable_errors(options, message):
    with pytest.raises(ValueError, match=message):
        restormer(**{**TINY, **options})


def test_official_file_layout_loads_strictly(tmp_path):
    source = restormer(**TINY)
    path = tmp_path / "single_image_defocus_deblurring.pth"
    torch.save({"params": source.state_dict()}, path)
    state = official_state_dict(torch.load(path, weights_only=True))
    assert list(state) == list(source.state_dict())
    target = restormer(**TINY)
    target.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)

    prefixed = {"params": {f"module.{k}": v for k, v in source.state_dict().items()}}
    assert list(official_state_dict(prefixed)) == list(state)
    assert list(official_state_dict(source.state_dict())) == list(state)  # a bare state dict too


def test_wrong_file_is_a_weights_error(tmp_path):
    lakdnet_like = {"params": {"embed.weight": torch.zeros(1), "encoder_level1.0.norm1.body.weight": torch.zeros(1)}}
    path = tmp_path / "other.pth"
    torch.save(lakdnet_like, path)
    with pytest.raises(WeightsError, match="not a Restormer state dict"):
        official_state_dict(torch.load(path, weights_only=True))
    with pytest.raises(WeightsError):
        official_state_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(WeightsError):
        infer_options({"embed.weight": torch.zeros(1)})


def test_dual_pixel_variant_builds_and_runs():
    net = restormer(**TINY, inp_channels=6, dual_pixel_task=True)
    assert "skip_conv.weight" in net.state_dict()
    assert infer_options(net.state_dict())["dual_pixel_task"] is True
    assert net(torch.rand(1, 6, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 6, 12, 16))


def test_infer_options_recovers_configurations(meta_net):
    assert infer_options(meta_net.state_dict()) == {
        k: list(v) if isinstance(v, tuple) else v for k, v in DEFOCUS_OPTIONS.items()
    }
    options = {"dim": 16, "num_blocks": (1, 2, 1, 2), "heads": (1, 2, 2, 4), "num_refinement_blocks": 2,
               "ffn_expansion_factor": 1.5, "bias": True, "LayerNorm_type": "BiasFree"}
    with torch.device("meta"):
        state = restormer(**options).state_dict()
    inferred = infer_options(state)
    assert inferred == {**DEFOCUS_OPTIONS, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}}
    rebuilt = restormer(**inferred)
    rebuilt.load_state_dict(restormer(**options).state_dict(), strict=True)


def test_tiny_net_trains():
    net = restormer(**TINY)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(2, 3, 16, 24)
    target = torch.rand(2, 3, 16, 24)
    out = net(x)
    assert out.shape == x.shape
    loss = torch.nn.functional.l1_loss(out, target)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    optimiser.step()
    assert torch.isfinite(net(x)).all()
