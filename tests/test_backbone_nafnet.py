"""NAFNet (GoPro width 32 / 64): official layout, reference outputs, TLC pooling, weight files."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import jdrl.nets.nafnet  # noqa: F401 - registers the entries (until listed in NETS' modules)
from jdrl.errors import WeightsError
from jdrl.nets import NETS
from jdrl.nets.nafnet import (
    SIGNATURE_KEYS,
    LayerNorm2d,
    LocalAvgPool2d,
    NAFNet,
    infer_options,
    official_state_dict,
)
from tests.conftest import backbone_rule_weights as rule_state
from tests.conftest import shared_path

NAMES = ("nafnet_w32", "nafnet_w64")
TINY = {"width": 8, "enc_blk_nums": (1, 1, 1, 1), "middle_blk_num": 1, "dec_blk_nums": (1, 1, 1, 1)}
ATOL, RTOL = 1e-5, 1e-4


def _ones_keys(keys) -> list[str]:
    return [k for k in keys if k.endswith(("norm1.weight", "norm2.weight", ".beta", ".gamma"))]


def tiny_net(seed0: int = 5, **options) -> NAFNet:
    """A width-8 net with rule weights (beta/gamma near one, so every block and pool matters)."""
    net = NETS.get("nafnet_w32")(**{**TINY, **options})
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    net.load_state_dict(rule_state(shapes, seed0, 0.5, _ones_keys(shapes)))
    return net.eval()


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(shared_path("reference", "backbones.json").read_text())


@pytest.fixture(scope="module")
def vectors() -> dict:
    return torch.load(shared_path("reference", "backbone_vectors.pt"), weights_only=True)


@pytest.fixture(scope="module", params=NAMES)
def reference_net(request, reference, vectors):
    """``(name, registry net with the rule weights, vectors)``, built once per network (meta, then assigned)."""
    name = request.param
    torch.manual_seed(0)
    vec = vectors[name]
    with torch.device("meta"):
        net = NETS.get(name)()
    state = rule_state(reference[name]["keys"], vec["seed0"], vec["scale"], vec["offset_one_keys"])
    net.load_state_dict(state, strict=True, assign=True)
    return name, net.eval(), vec


@pytest.mark.parametrize("name", NAMES)
def test_official_names_shapes_order_and_parameter_count(name, reference):
    ref = reference[name]
    with torch.device("meta"):
        net = NETS.get(name)()
    shapes = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    assert shapes == list(ref["keys"].items())
    assert sum(p.numel() for p in net.parameters()) == ref["param_count"]
    assert len(list(net.parameters())) == ref["param_tensors"] and not list(net.buffers())
    assert net.size_multiple == ref["size_multiple"] == 16
    assert net.tlc  # the released test configuration is NAFNetLocal
    assert all(k in net.state_dict() for k in SIGNATURE_KEYS)


def test_reproduces_the_official_outputs(reference_net):
    name, net, vec = reference_net
    probes = {"main": (vec["input"], vec["output"])}
    probes.update({tag: (extra["input"], extra["output"]) for tag, extra in vec["extra"].items()})
    assert {"pad_crop", "tlc"} <= set(probes)
    with torch.no_grad():
        for tag, (x, expected) in probes.items():
            y = net(x)
            assert y.shape == expected.shape, (name, tag)
            diff = (y - expected).abs().max().item()
            assert torch.allclose(y, expected, atol=ATOL, rtol=RTOL), f"{name} {tag}: max abs diff {diff:.2e}"


def test_tlc_kernels_are_the_official_ones():
    net = NETS.get("nafnet_w32")(**TINY)
    assert [net.tlc_kernel(level) for level in range(5)] == [(384, 384), (192, 192), (96, 96), (48, 48), (24, 24)]
    assert net.encoders[0][0].sca[0].kernel_size == (384, 384)
    assert net.middle_blks[0].sca[0].kernel_size == (24, 24)
    assert net.decoders[0][0].sca[0].kernel_size == (48, 48)  # first decoder works at 1/8 resolution
    assert net.decoders[3][0].sca[0].kernel_size == (384, 384)
    assert isinstance(NAFNet(**TINY).encoders[0][0].sca[0], torch.nn.AdaptiveAvgPool2d)  # plain NAFNet


def _local_mean_reference(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Brute force: global mean if the kernel covers x, else stride-1 average pool + replicate pad."""
    h, w = x.shape[-2:]
    if kernel[0] >= h and kernel[1] >= w:
        return x.mean((-2, -1), keepdim=True)
    out = F.avg_pool2d(x, (min(h, kernel[0]), min(w, kernel[1])), stride=1)
    dh, dw = h - out.shape[-2], w - out.shape[-1]
    return F.pad(out, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode="replicate")


@pytest.mark.parametrize(
    ("kernel", "size"),
    [
        ((4, 6), (9, 13)),
        ((20, 3), (9, 13)),  # kernel taller than the map: one window row, replicated
        ((3, 40), (9, 13)),
        ((9, 13), (9, 13)),  # kernel covers the map: global mean
        ((48, 48), (5, 7)),  # map smaller than the kernel: global mean
        ((1, 1), (4, 5)),
    ],
)
def test_local_pool_matches_a_brute_force_box_mean(kernel, size):
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    y = LocalAvgPool2d(kernel)(x)
    expected = _local_mean_reference(x, kernel)
    assert y.shape == expected.shape
    assert torch.allclose(y, expected, atol=1e-12)


def test_odd_and_tiny_sizes_return_the_input_size():
    net = tiny_net()
    with torch.no_grad():
        for h, w in [(1, 1), (17, 33), (5, 130), (31, 16)]:
            assert net(torch.rand(2, 3, h, w)).shape == (2, 3, h, w)


def test_tlc_equals_global_pooling_up_to_384_pixels_and_differs_beyond():
    tlc, plain = tiny_net(tlc=True), tiny_net(tlc=False)
    with torch.no_grad():
        for h, w in [(40, 100), (16, 384), (383, 9)]:  # padded sizes <= 384: every pool is global
            x = torch.rand(1, 3, h, w)
            assert torch.equal(tlc(x), plain(x)), (h, w)
        x = torch.rand(1, 3, 16, 400)  # padded width 400 > 384: the pools become local means
        assert not torch.allclose(tlc(x), plain(x), atol=1e-4)


def test_layer_norm_gradient_matches_the_official_backward():
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    norm = norm.double()
    g_out = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    norm(x).backward(g_out)
    # The official LayerNormFunction.backward, written out.
    mu = x.detach().mean(1, keepdim=True)
    var = (x.detach() - mu).pow(2).mean(1, keepdim=True)
    y = (x.detach() - mu) / (var + 1e-6).sqrt()
    g = g_out * norm.weight.view(1, -1, 1, 1)
    gx = (g - y * (g * y).mean(1, keepdim=True) - g.mean(1, keepdim=True)) / (var + 1e-6).sqrt()
    assert torch.allclose(x.grad, gx, atol=1e-10)
    assert torch.allclose(norm.weight.grad, (g_out * y).sum((0, 2, 3)), atol=1e-10)


def test_official_state_dict_unwraps_and_a_saved_file_loads_strictly(tmp_path):
    net = tiny_net()
    state = net.state_dict()
    assert official_state_dict({"params": state}).keys() == state.keys()
    prefixed = {"module." + k: v for k, v in state.items()}
    assert official_state_dict({"params": prefixed}).keys() == state.keys()
    assert official_state_dict({"params_ema": prefixed}).keys() == state.keys()
    assert official_state_dict(state).keys() == state.keys()  # bare

    path = tmp_path / "NAFNet-tiny.pth"
    torch.save({"params": state}, path)  # BasicSR's save_network layout
    loaded = official_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    fresh = NETS.get("nafnet_w32")(**infer_options(loaded))
    fresh.load_state_dict(loaded, strict=True)
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), net(x))


@pytest.mark.parametrize(
    "checkpoint",
    [{"state_dict": {"conv.weight": torch.zeros(1)}}, {"params": {}}, {"epoch": 3}, [1, 2]],
)
def test_official_state_dict_rejects_other_files(checkpoint):
    with pytest.raises(WeightsError, match="NAFNet"):
        official_state_dict(checkpoint)


def test_official_state_dict_rejects_non_tensors():
    state = dict.fromkeys(SIGNATURE_KEYS, torch.zeros(1))
    state["extra"] = "text"
    with pytest.raises(WeightsError, match="not tensors"):
        official_state_dict({"params": state})


def test_infer_options_recovers_the_configuration():
    options = {"width": 8, "enc_blk_nums": [1, 2, 0, 3], "middle_blk_num": 2, "dec_blk_nums": [2, 0, 1, 1]}
    state = NAFNet(**options).state_dict()
    assert infer_options(state) == {"img_channel": 3, **options}
    with torch.device("meta"):
        w64 = NETS.get("nafnet_w64")().state_dict()
    assert infer_options(w64) == {"img_channel": 3, "width": 64, "middle_blk_num": 1,
                                  "enc_blk_nums": [1, 1, 1, 28], "dec_blk_nums": [1, 1, 1, 1]}
    with pytest.raises(WeightsError):
        infer_options({"conv.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"width": 0}, "width"),
        ({"width": 2.5}, "width"),
        ({"middle_blk_num": -1}, "middle_blk_num"),
        ({"enc_blk_nums": (1, 1)}, "levels"),
        ({"enc_blk_nums": (1, -1, 1, 1)}, "enc_blk_nums"),
        ({"train_size": 0}, "train_size"),
        ({"depth": 3}, "unknown NAFNet option"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        NETS.get("nafnet_w32")(**{**TINY, **options})


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match="expects a batch"):
        tiny_net()(torch.rand(1, 4, 16, 16))


def test_tiny_net_takes_a_training_step():
    net = NETS.get("nafnet_w32")(**TINY).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2)  # Adam's first step imports dynamo (~2 s)
    blurred, sharp = torch.rand(2, 3, 24, 20), torch.rand(2, 3, 24, 20)
    loss = F.l1_loss(net(blurred), sharp)
    loss.backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["encoders.0.0.beta"].abs().sum() > 0  # zero-initialised scales still learn
    before = net.encoders[0][0].beta.detach().clone()
    optimizer.step()
    assert not torch.equal(before, net.encoders[0][0].beta)
