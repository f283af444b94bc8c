"""IFAN (single-image, the paper's IFAN*) against the official implementation's reference data."""

from __future__ import annotations

import json

import pytest
import torch

import jdrl.nets.ifan  # noqa: F401 - registers "ifan" (until jdrl.nets lists the module)
from jdrl.errors import WeightsError
from jdrl.nets import NETS
from jdrl.nets.ifan import (
    IFAN,
    OFFICIAL_OPTIONS,
    RELEASED_FILES,
    SIGNATURE_KEYS,
    ifan,
    infer_options,
    official_state_dict,
)
from tests.conftest import backbone_rule_weights as rule_weights
from tests.conftest import shared_path

TINY = {"ch": 4, "N": 2, "res_num": 1}


def constant_filter_bias(n: int, channels: int, taps: int) -> torch.Tensor:
    """The ``iac_probe`` additions to ``F.3.bias``: [0.1, 0.8, 0.1] for kernel1, [0.3, 0.4, 0.3] for kernel2."""
    kernel1 = torch.tensor([0.1, 0.8, 0.1]).repeat(channels)
    kernel2 = torch.tensor([0.3, 0.4, 0.3]).repeat(channels)
    return torch.cat([kernel1, kernel2]).repeat(n)


def iac_probe_weights(keys: dict, probe: dict) -> dict[str, torch.Tensor]:
    """The ``iac_probe`` rule: the main rule (its scale), then ``F.3.weight := 0`` and constant filters in the bias."""
    state = rule_weights(keys, probe["seed0"], probe["scale"], set())
    n, channels, taps = OFFICIAL_OPTIONS["N"], 4 * OFFICIAL_OPTIONS["ch"], OFFICIAL_OPTIONS["Fs"]
    assert taps == 3
    state["F.3.weight"].zero_()
    kernels = constant_filter_bias(n, channels, taps)
    state["F.3.bias"][: kernels.numel()] += kernels
    return state


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(shared_path("reference", "backbones.json").read_text())["ifan"]


@pytest.fixture(scope="module")
def vectors() -> dict:
    return torch.load(shared_path("reference", "backbone_vectors.pt"), weights_only=True)["ifan"]


@pytest.fixture(scope="module")
def meta_net() -> IFAN:
    with torch.device("meta"):
        return NETS.get("ifan")()


def test_official_names_shapes_order_and_count(meta_net, reference):
    state = meta_net.state_dict()
    assert list(state) == list(reference["keys"])
    assert {k: list(v.shape) for k, v in state.items()} == reference["keys"]
    assert sum(p.numel() for p in meta_net.parameters()) == reference["param_count"] == 10_476_996
    assert len(state) == reference["num_keys"] == 158
    assert IFAN.size_multiple == reference["size_multiple"] == 8
    assert {k: OFFICIAL_OPTIONS[k] for k in reference["constructor"]} == reference["constructor"]
    for key in SIGNATURE_KEYS:
        assert key in state
    assert meta_net.kernel_dim == 15232


def test_reproduces_official_outputs(vectors, reference):
    assert list(vectors["offset_one_keys"]) == reference["init_ones_keys"] == []
    net = ifan().eval()
    net.load_state_dict(rule_weights(reference["keys"], vectors["seed0"], vectors["scale"], set()), strict=True)
    with torch.no_grad():
        out = net(vectors["input"])
    diff = (out - vectors["output"]).abs().max().item()
    print(f"ifan max abs diff vs official: {diff:.3e}")
    torch.testing.assert_close(out, vectors["output"], atol=1e-5, rtol=1e-4)

    probe = vectors["extra"]["iac_probe"]
    net.load_state_dict(iac_probe_weights(reference["keys"], probe), strict=True)
    with torch.no_grad():
        out = net(probe["input"])
    diff = (out - probe["output"]).abs().max().item()
    print(f"ifan iac_probe max abs diff vs official: {diff:.3e}")
    torch.testing.assert_close(out, probe["output"], atol=1e-5, rtol=1e-4)


def _kernel_slices(net: IFAN) -> tuple[slice, slice]:
    """Channels of ``F``'s output holding iteration 0's kernel1 and kernel2."""
    width = net.ch4 * net.Fs
    return slice(0, width), slice(width, 2 * width)


def test_released_iac_bug_kernel2_is_unused():
    net = ifan(**TINY).eval()
    with torch.no_grad():
        for p in net.F[-1].parameters():  # make the filters matter (xavier init gives tiny ones otherwise)
            p.normal_(0, 0.3)
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        base = net.forward_outputs(x)
        kernel1, kernel2 = _kernel_slices(net)
        for kernel, changes in ((kernel2, False), (kernel1, True)):
            saved = net.F[-1].bias.clone()
            net.F[-1].bias[kernel] += 0.5
            outputs = net.forward_outputs(x)
            net.F[-1].bias.copy_(saved)
            assert not torch.equal(outputs["Filter"], base["Filter"])  # the predicted filters did change
            assert torch.equal(outputs["result"], base["result"]) is not changes, kernel


@pytest.mark.parametrize("size", [(36, 52), (34, 48), (32, 49)])
def test_badly_sized_input_is_a_readable_error(size):
    net = ifan(**TINY)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 3, *size))
    with pytest.raises(ValueError, match="RGB batch"):
        net(torch.rand(1, 4, 32, 32))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"Fs": 4}, "odd"),
        ({"ks": 2}, "odd"),
        ({"N": 0}, "positive integer"),
        ({"ch": 2.5}, "positive integer"),
        ({"wiF": -1}, "init gain"),
        ({"channel_order": "rbg"}, "channel_order"),
        ({"width": 1.0}, "unknown ifan option"),
    ],
)
def test_bad_options_are_readable_errors(options, message):
    with pytest.raises(ValueError, match=message):
        ifan(**{**TINY, **options})


def test_official_file_layout_loads_strictly(tmp_path):
    source = ifan(**TINY)
    checkpoint = {f"module.Network.{k}": v for k, v in source.state_dict().items()}
    checkpoint["module.reblurNet.RBF.0.0.weight"] = torch.zeros(4, source.kernel_dim, 3, 3)
    checkpoint["module.reblurNet.RBF.0.0.bias"] = torch.zeros(4)
    checkpoint["module.reblurNet.RBF.3.weight"] = torch.zeros(21, 4, 3, 3)
    path = tmp_path / "IFAN.pytorch"
    torch.save(checkpoint, path)
    state = official_state_dict(torch.load(path, weights_only=True))
    assert list(state) == list(source.state_dict())
    target = ifan(**TINY).eval()
    target.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source.eval()(x), atol=0, rtol=0)

    # The other plausible layouts of the JDRL IFAN* file give the same bare dict.
    bare = source.state_dict()
    for layout in (
        bare,
        {f"module.{k}": v for k, v in bare.items()},
        {f"Network.{k}": v for k, v in bare.items()},
        {"state_dict": checkpoint},
        {"G_state_dict": {f"module.{k}": v for k, v in bare.items()}, "epoch": 3},
    ):
        assert list(official_state_dict(layout)) == list(bare)


@pytest.mark.parametrize(
    "checkpoint",
    [
        {"module.conv1.weight": torch.zeros(1)},
        {"state_dict": {"encoder.block1.0.weight": torch.zeros(1)}},
        {},
        [1, 2],
    ],
)
def test_wrong_file_is_a_weights_error(checkpoint):
    with pytest.raises(WeightsError, match="IFAN"):
        official_state_dict(checkpoint)


def _bare(options: dict) -> dict:
    return official_state_dict({f"module.Network.{k}": v for k, v in ifan(**options).state_dict().items()})


def test_infer_options_recovers_configurations(meta_net):
    defaults = {k: OFFICIAL_OPTIONS[k] for k in ("ks", "ch", "res_num", "Fs", "N")}
    for options in (TINY, {"ch": 8, "N": 3, "res_num": 2}, {"ch": 4, "N": 1, "Fs": 5, "ks": 5}):
        state = _bare(options)
        inferred = infer_options(state)
        assert inferred == {**defaults, **options}
        ifan(**inferred).load_state_dict(state, strict=True)
    assert infer_options(meta_net.state_dict()) == defaults

    # N * (2 Fs + 1) = 33 fits Fs=5 N=3 and Fs=1 N=11: an error unless Fs is given.
    ambiguous = _bare({"ch": 4, "N": 3, "Fs": 5})
    with pytest.raises(WeightsError, match="pass Fs"):
        infer_options(ambiguous)
    assert infer_options(ambiguous, Fs=5) == {**defaults, "ch": 4, "N": 3, "Fs": 5}
    with pytest.raises(WeightsError, match="does not fit"):
        infer_options(ambiguous, Fs=3)
    with pytest.raises(WeightsError, match="not an IFAN"):
        infer_options({"conv1_1.0.weight": torch.zeros(4, 3, 3, 3)})


def test_released_files_build():
    assert set(RELEASED_FILES) == {"ifan-official", "ifan-jdrl-dpdd"}
    with torch.device("meta"):
        for options in RELEASED_FILES.values():
            assert sum(p.numel() for p in ifan(**options).parameters()) == 10_476_996


def test_bgr_channel_order_flips_inside():
    rgb = ifan(**TINY).eval()
    bgr = ifan(**TINY, channel_order="bgr").eval()
    bgr.load_state_dict(rgb.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(bgr(x), rgb(x.flip(1)).flip(1), atol=0, rtol=0)


def test_tiny_net_trains_and_clips_only_in_eval():
    net = ifan(**TINY)
    with torch.no_grad():  # a residual large enough to leave [0, 1] somewhere
        net.out_res[0].bias.fill_(0.6)
    x = torch.rand(2, 3, 16, 24)
    net.train()
    outputs = net.forward_outputs(x)
    assert set(outputs) == {"result", "Filter", "DM"}
    assert outputs["DM"].shape == (2, 1, 2, 3)
    assert outputs["Filter"].shape == (2, net.kernel_dim, 2, 3)
    out = outputs["result"]
    assert out.max() > 1  # unclipped in train mode
    loss = (out - x).abs().mean()
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.conv1_1[0].weight.grad.abs().sum() > 0
    assert net.kconv1_1[0].weight.grad.abs().sum() > 0  # the filter branch is trained through IAC

    net.eval()
    with torch.no_grad():
        clipped = net(x)
    assert clipped.min() >= 0 and clipped.max() <= 1
    torch.testing.assert_close(clipped, out.detach().clamp(0, 1))
