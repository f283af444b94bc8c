"""LaKDNet (single-image DPDD defocus models) against the official implementation's reference data."""

from __future__ import annotations

import json

import pytest
import torch

import jdrl.nets.lakdnet  # noqa: F401 - registers "lakdnet" / "lakdnet_large" (until jdrl.nets lists the module)
from jdrl.errors import WeightsError
from jdrl.nets import NETS
from jdrl.nets.lakdnet import (
    DPDD_LARGE_OPTIONS,
    DPDD_SMALL_OPTIONS,
    SIGNATURE_KEYS,
    LaKDNet,
    infer_options,
    lakdnet,
    lakdnet_large,
    official_state_dict,
)
from tests.conftest import backbone_rule_weights as rule_weights
from tests.conftest import shared_path

TINY = {"dim": 8, "num_blocks": (1, 1, 1, 1), "mix_kernel_size": (3, 3, 3, 3)}


def _json(options: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(shared_path("reference", "backbones.json").read_text())["lakdnet_defocus"]


@pytest.fixture(scope="module")
def vectors() -> dict:
    return torch.load(shared_path("reference", "backbone_vectors.pt"), weights_only=True)["lakdnet_defocus"]


@pytest.fixture(scope="module")
def meta_net() -> LaKDNet:
    with torch.device("meta"):
        return NETS.get("lakdnet")()


@pytest.fixture(scope="module")
def meta_large() -> LaKDNet:
    with torch.device("meta"):
        return NETS.get("lakdnet_large")()


def test_official_names_shapes_order_and_count(meta_net, meta_large, reference):
    state = meta_net.state_dict()
    assert list(state) == list(reference["keys"])
    assert {k: list(v.shape) for k, v in state.items()} == reference["keys"]
    assert sum(p.numel() for p in meta_net.parameters()) == reference["param_count"] == 17_727_632
    assert len(state) == reference["num_keys"] == 1050
    assert not list(meta_net.buffers())
    assert LaKDNet.size_multiple == reference["size_multiple"] == 8
    expected = {**reference["constructor"], **reference["constructor_defaults_used"]}
    assert expected == _json(DPDD_SMALL_OPTIONS)
    for key in SIGNATURE_KEYS:
        assert key in state

    (large,) = reference["variants"].values()
    assert large["constructor"] == {k: v for k, v in _json(DPDD_LARGE_OPTIONS).items() if k in large["constructor"]}
    assert sum(p.numel() for p in meta_large.parameters()) == large["param_count"] == 38_412_576
    assert list(meta_large.state_dict()) == list(state)


def test_signature_keys_are_not_restormer_keys():
    from jdrl.nets import restormer

    with torch.device("meta"):
        restormer_keys = set(restormer.restormer(dim=8, num_blocks=(1, 1, 1, 1), heads=(1, 1, 1, 1)).state_dict())
    assert not set(SIGNATURE_KEYS) & restormer_keys
    with pytest.raises(WeightsError, match="not a LaKDNet state dict"):
        official_state_dict(dict.fromkeys(restormer_keys, torch.zeros(1)))


def test_reproduces_official_output(vectors, reference):
    assert set(vectors["offset_one_keys"]) == set(reference["init_ones_keys"])
    state = rule_weights(reference["keys"], vectors["seed0"], vectors["scale"], set(vectors["offset_one_keys"]))
    with torch.device("meta"):
        net = lakdnet()
    net.load_state_dict(state, strict=True, assign=True)
    net.eval()
    with torch.no_grad():
        out = net(vectors["input"])
        diff = (out - vectors["output"]).abs().max().item()
        print(f"lakdnet max abs diff vs official: {diff:.3e}")
        torch.testing.assert_close(out, vectors["output"], atol=1e-5, rtol=1e-4)
        for name, extra in (vectors.get("extra") or {}).items():  # none at present; checked if added
            out = net(extra["input"])
            torch.testing.assert_close(out, extra["output"], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("size", [(36, 52), (34, 48), (32, 49)])
def test_badly_sized_input_is_a_readable_error(size):
    net = lakdnet(**TINY)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 3, *size))
    with pytest.raises(ValueError, match="RGB batch"):
        net(torch.rand(1, 4, 32, 32))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dim": 9}, "even"),
        ({"num_blocks": (1, 1, 1)}, "4 integers"),
        ({"num_blocks": (1, 0, 1, 1)}, ">= 1"),
        ({"mix_kernel_size": (3, 4, 3, 3)}, "odd"),
        ({"LayerNorm_type": "Foo"}, "LayerNorm_type"),
        ({"heads": (1, 1, 1, 1)}, "unknown lakdnet option"),
        ({"ffn_expansion_factor": 0.01}, "hidden channel"),
        ({"inp_channels": 6}, "must equal"),
    ],
)
def test_bad_options_are_readable_errors(options, message):
    with pytest.raises(ValueError, match=message):
        lakdnet(**{**TINY, **options})


def test_official_file_layout_loads_strictly(tmp_path):
    source = lakdnet(**TINY)
    path = tmp_path / "train_on_dpdd_s.pth"
    torch.save(source.state_dict(), path)  # the official files are bare state dicts
    state = official_state_dict(torch.load(path, weights_only=True))
    assert list(state) == list(source.state_dict())
    target = lakdnet(**TINY)
    target.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)

    prefixed = {f"module.{k}": v for k, v in source.state_dict().items()}
    assert list(official_state_dict(prefixed)) == list(state)
    assert list(official_state_dict({"params": prefixed})) == list(state)
    assert list(official_state_dict({"state_dict": source.state_dict()})) == list(state)


def test_wrong_file_is_a_weights_error(tmp_path):
    restormer_like = {"patch_embed.proj.weight": torch.zeros(1), "encoder_level1.0.norm1.body.weight": torch.zeros(1)}
    path = tmp_path / "other.pth"
    torch.save({"params": restormer_like}, path)
    with pytest.raises(WeightsError, match="not a LaKDNet state dict"):
        official_state_dict(torch.load(path, weights_only=True))
    with pytest.raises(WeightsError):
        official_state_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(WeightsError, match="non-tensor"):
        official_state_dict({key: 1 for key in SIGNATURE_KEYS})
    with pytest.raises(WeightsError):
        infer_options({"embed.weight": torch.zeros(1)})


def test_infer_options_recovers_configurations(meta_net, meta_large):
    assert infer_options(meta_net.state_dict()) == _json(DPDD_SMALL_OPTIONS)
    assert infer_options(meta_large.state_dict()) == _json(DPDD_LARGE_OPTIONS)
    options = {"dim": 16, "num_blocks": (1, 2, 1, 3), "mix_kernel_size": (3, 5, 7, 1),
               "ffn_expansion_factor": 1.5, "bias": True, "LayerNorm_type": "BiasFree"}
    with torch.device("meta"):
        state = lakdnet(**options).state_dict()
    inferred = infer_options(state)
    assert inferred == {**_json(DPDD_SMALL_OPTIONS), **_json(options)}
    rebuilt = lakdnet(**inferred)
    rebuilt.load_state_dict(lakdnet(**options).state_dict(), strict=True)


def test_dual_pixel_variant_builds_and_runs():
    net = lakdnet(**TINY, inp_channels=9, dual_pixel_task=True)
    assert infer_options(net.state_dict())["dual_pixel_task"] is True
    x = torch.rand(1, 9, 16, 16)
    out = net(x)
    assert out.shape == (1, 3, 16, 16)
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 9, 12, 16))


def test_tiny_net_trains():
    net = lakdnet(**TINY)
    assert lakdnet_large(**TINY).state_dict().keys() == net.state_dict().keys()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(2, 3, 16, 24) * 0.5 + 0.25  # away from the clip bounds so every parameter gets a gradient
    target = torch.rand(2, 3, 16, 24)
    out = net(x)
    assert out.shape == x.shape
    loss = torch.nn.functional.l1_loss(out, target)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    optimiser.step()
    assert torch.isfinite(net(x)).all()
