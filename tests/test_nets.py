"""Deblurring networks: exact released layouts, forward shapes and semantics, released-checkpoint loading."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from jdrl.errors import UnknownNameError, WeightsError
from jdrl.nets import count_parameters, create_net, net_names
from jdrl.nets.released import released_reblur_state
from tests.conftest import shared_path

UNET_PARAMS = 31_033_411
TINY_UNET = {"width": 1 / 16}
TINY_MPRNET = {"width": 1 / 12}


def _manifest(key: str) -> dict:
    return json.loads(shared_path("reference", "manifests.json").read_text())[key]


def _shapes(net: torch.nn.Module) -> dict[str, list[int]]:
    return {name: list(tensor.shape) for name, tensor in net.state_dict().items()}


@pytest.fixture(scope="module")
def full_unet() -> torch.nn.Module:
    """The paper-size UNet on the CPU, built once (about 120 MB)."""
    torch.manual_seed(0)
    return create_net("unet").eval()


def test_registry_lists_both_networks_and_rejects_unknown_names():
    assert {"unet", "mprnet"} <= set(net_names())
    with pytest.raises(UnknownNameError, match="unet"):
        create_net("no_such_net")


def test_unet_has_the_paper_parameter_count_and_released_init(full_unet):
    assert count_parameters(full_unet) == UNET_PARAMS
    assert full_unet.size_multiple == 16
    # Kaiming-normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels * k * k)).
    weight = full_unet.encoder.block5[2].weight
    expected_std = (2 / (1024 * 9)) ** 0.5
    assert abs(weight.std().item() / expected_std - 1) < 0.01


def test_unet_matches_the_released_manifest(full_unet):
    manifest = _manifest("unet_vgg_deblur")
    assert _shapes(full_unet) == manifest["keys"]
    assert manifest["num_params"] == UNET_PARAMS


def test_mprnet_matches_the_official_manifest():
    manifest = _manifest("mprnet")
    with torch.device("meta"):
        net = create_net("mprnet")
    assert _shapes(net) == manifest["keys"]
    assert sum(t.numel() for t in net.state_dict().values()) == manifest["num_params"]
    # One PReLU shared by every block, as in the official code: its 55 state-dict copies are one parameter.
    assert count_parameters(net) == manifest["num_params"] - 54
    assert net.size_multiple == 8


@pytest.mark.parametrize("name, opts", [("unet", TINY_UNET), ("mprnet", TINY_MPRNET)])
def test_forward_keeps_the_shape_on_non_square_multiples(name, opts):
    net = create_net(name, **opts).eval()
    x = torch.rand(1, 3, 48, 80)
    with torch.no_grad():
        y = net(x)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name, opts", [("unet", TINY_UNET), ("mprnet", TINY_MPRNET)])
def test_badly_sized_input_gives_a_readable_error(name, opts):
    net = create_net(name, **opts)
    with pytest.raises(ValueError, match="multiples of"):
        net(torch.rand(1, 3, 52, 80))


def test_unet_output_is_a_sigmoid_image():
    net = create_net("unet", **TINY_UNET).eval()
    with torch.no_grad():
        y = net(torch.rand(1, 3, 32, 32))
    assert 0 < y.min() and y.max() < 1


def test_unet_two_by_two_conv_pads_right_and_bottom_only():
    net = create_net("unet", **TINY_UNET)
    conv = net.up6[1]
    x = torch.rand(1, conv.in_channels, 6, 5)
    expected = F.conv2d(F.pad(x, [0, 1, 0, 1]), conv.weight, conv.bias)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    assert not torch.allclose(conv(x), F.conv2d(F.pad(x, [1, 0, 1, 0]), conv.weight, conv.bias), atol=1e-4)


def test_unet_decoder_upsamples_nearest_and_concatenates_upsampled_first():
    net = create_net("unet", **TINY_UNET)
    x5 = torch.rand(1, net.up6[1].in_channels, 2, 3)
    up = net.up6(x5)
    expected = net.up6[1](x5.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    assert torch.allclose(up, expected, atol=1e-6)
    assert net.block6[0].in_channels == 2 * net.up6[1].out_channels


def test_bgr_weights_take_and_return_rgb():
    rgb_net = create_net("unet", **TINY_UNET).eval()
    bgr_net = create_net("unet", channel_order="bgr", **TINY_UNET).eval()
    bgr_net.load_state_dict(rgb_net.state_dict())
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.allclose(bgr_net(x), rgb_net(x.flip(1)).flip(1), atol=1e-6)
    assert set(bgr_net.state_dict()) == set(rgb_net.state_dict())
    with pytest.raises(ValueError, match="channel_order"):
        create_net("unet", channel_order="yuv")


def _official_mprnet_forward(net: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """MPRNet's forward written patch by patch as in the official code, to check the batched one."""
    h, w = x.shape[-2:]
    top, bot = x[:, :, : h // 2], x[:, :, h // 2 :]
    quarters = [top[..., : w // 2], top[..., w // 2 :], bot[..., : w // 2], bot[..., w // 2 :]]
    f = [net.stage1_encoder(net.shallow_feat1(q)) for q in quarters]
    f_top = [torch.cat(kv, 3) for kv in zip(f[0], f[1])]
    f_bot = [torch.cat(kv, 3) for kv in zip(f[2], f[3])]
    r_top, r_bot = net.stage1_decoder(f_top), net.stage1_decoder(f_bot)
    s_top, img_top = net.sam12(r_top[0], top)
    s_bot, img_bot = net.sam12(r_bot[0], bot)
    c_top = net.concat12(torch.cat([net.shallow_feat2(top), s_top], 1))
    c_bot = net.concat12(torch.cat([net.shallow_feat2(bot), s_bot], 1))
    f2_top = net.stage2_encoder(c_top, f_top, r_top)
    f2_bot = net.stage2_encoder(c_bot, f_bot, r_bot)
    f2 = [torch.cat(kv, 2) for kv in zip(f2_top, f2_bot)]
    r2 = net.stage2_decoder(f2)
    s3, img2 = net.sam23(r2[0], x)
    x3 = net.concat23(torch.cat([net.shallow_feat3(x), s3], 1))
    img3 = net.tail(net.stage3_orsnet(x3, f2, r2)) + x
    return [img3, img2, torch.cat([img_top, img_bot], 2)]


def test_mprnet_batched_patches_equal_the_official_patch_by_patch_forward():
    net = create_net("mprnet", **TINY_MPRNET).eval()
    for p in net.parameters():  # move away from the init so that every path matters
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.rand(1, 3, 16, 32)
    with torch.no_grad():
        ours = net.forward_stages(x)
        reference = _official_mprnet_forward(net, x)
        assert torch.equal(net(x), ours[0])
    assert len(ours) == 3
    for a, b in zip(ours, reference):
        assert a.shape == x.shape and torch.allclose(a, b, atol=1e-5)


def test_released_unet_checkpoint_loads_strictly_and_hides_bgr(full_unet, tmp_path):
    state = {f"module.{k}": v for k, v in full_unet.state_dict().items()}
    reblur = {"module.kernel_net.weight": torch.rand(4, 3, 3, 3)}
    path = tmp_path / "jdrl_unet.pth"
    torch.save(
        {"epoch": 3, "global_step": 10, "G_state_dict": state, "Reblur_state_dict": reblur, "G_opt": {"state": {}}},
        path,
    )
    net = create_net(checkpoint=path)
    assert net.channel_order == "bgr" and not net.training
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), full_unet(x.flip(1)).flip(1), atol=1e-5)
    assert set(released_reblur_state(path)) == {"kernel_net.weight"}


def test_released_mprnet_checkpoint_and_bare_state_dicts_are_detected():
    source = create_net("mprnet")
    wrapped = {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}
    net = create_net(checkpoint=wrapped)
    assert type(net).__name__ == "MPRNet"
    assert torch.equal(net.tail.weight, source.tail.weight)
    assert released_reblur_state(wrapped) is None
    tiny = create_net("unet", **TINY_UNET)
    assert create_net(checkpoint=tiny.state_dict(), width=TINY_UNET["width"], channel_order="rgb").channel_order == "rgb"


def test_mismatched_file_names_the_bad_keys_and_shapes(tmp_path):
    tiny = create_net("unet", **TINY_UNET)
    state = {f"module.{k}": v for k, v in tiny.state_dict().items()}
    state["module.encoder.block1.0.weight"] = torch.zeros(4, 3, 5, 5)
    state["module.extra.weight"] = state.pop("module.out.0.bias")
    path = tmp_path / "tiny.pth"
    torch.save({"epoch": 0, "global_step": 0, "G_state_dict": state, "Reblur_state_dict": {}, "G_opt": {}}, path)
    with pytest.raises(WeightsError) as error:
        create_net(checkpoint=path, width=TINY_UNET["width"])
    message = str(error.value)
    assert str(path) in message
    assert "encoder.block1.0.weight: file (4, 3, 5, 5) vs model (4, 3, 3, 3)" in message
    assert "missing keys: out.0.bias" in message and "unexpected keys: extra.weight" in message


def test_unrecognised_and_unreadable_files_are_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="neither"):
        create_net(checkpoint={"conv.weight": torch.zeros(1)})
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pth"):
        create_net(checkpoint=bad)


def test_mprnet_refuses_unshared_prelu_weights():
    net = create_net("mprnet", **TINY_MPRNET)
    state = net.state_dict()
    state["shallow_feat2.1.body.1.weight"] = torch.tensor([0.5])
    with pytest.raises(WeightsError, match="shares one PReLU"):
        net.load_state_dict(state)


def test_cli_lists_the_networks(capsys):
    from jdrl.cli import main

    assert main(["nets"]) == 0
    out = capsys.readouterr().out
    assert "unet" in out and "mprnet" in out and "31,033,411" in out


def test_residual_unet_starts_as_the_identity_and_keeps_the_parameters():
    import torch

    from jdrl.nets import create_net

    plain, residual = create_net("unet", width=0.0625), create_net("unet", width=0.0625, residual=True)
    assert plain.state_dict().keys() == residual.state_dict().keys()
    x = torch.rand(1, 3, 32, 48).clamp(0.01, 0.99)
    assert torch.allclose(residual.eval()(x), x, atol=1e-5)
