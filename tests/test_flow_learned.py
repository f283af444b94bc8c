"""Learned flow estimators: SpyNet, RAFT (torchvision), PWC-Net (pure-PyTorch cost volume)."""

from __future__ import annotations

import json
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jdrl.errors import WeightsError
from jdrl.flow import build_flow, flow_names
from jdrl.flow.pwcnet import PWCNet, correlation
from jdrl.flow.warp import warp
from tests.conftest import shared_path, textured_image

SHIFT = (4.0, -3.0)  # (x, y): b(p + SHIFT) = a(p)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float()


def shifted_pair(rng: np.random.Generator, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` and ``b`` cropped from one image so that ``b(x + 4, y - 3) = a(x, y)`` exactly."""
    big = textured_image(rng, height + 32, width + 32)
    dx, dy = int(SHIFT[0]), int(SHIFT[1])
    a = big[16:16 + height, 16:16 + width]
    b = big[16 - dy:16 - dy + height, 16 - dx:16 - dx + width]
    return to_tensor(a), to_tensor(b)


def random_pair(rng: np.random.Generator, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return to_tensor(textured_image(rng, height, width)), to_tensor(textured_image(rng, height, width))


def authors_naming(state: dict) -> dict:
    """Keys as in the authors' PWC-Net file: every ``netX`` component named ``moduleX``."""

    def rename(part: str) -> str:
        return "module" + part[len("net"):] if part.startswith("net") else part

    return {".".join(rename(p) for p in key.split(".")): value for key, value in state.items()}


@pytest.fixture(scope="module")
def pwc_state() -> dict:
    torch.manual_seed(3)
    return PWCNet().state_dict()


def test_registry_lists_all_estimators():
    assert set(flow_names()) >= {"dis", "spynet", "raft_small", "raft_large", "pwcnet"}


@pytest.mark.shared
def test_spynet_recovers_a_known_translation(rng):
    path = shared_path("weights", "spynet_sintel_final.pth")
    net = build_flow("spynet", weights=path)
    a, b = shifted_pair(rng, 128, 192)
    flow = net(a, b)
    assert flow.shape == (1, 2, 128, 192)
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))
    median = flow[inner].flatten(2).median(dim=2).values[0]
    assert torch.allclose(median, torch.tensor(SHIFT), atol=0.1), median
    aligned_error = (warp(b, flow) - a)[inner].abs().mean()
    assert aligned_error < 0.1 * (b - a)[inner].abs().mean()


@pytest.mark.shared
def test_spynet_odd_size(rng):
    net = build_flow("spynet", weights=shared_path("weights", "spynet_sintel_final.pth"))
    a, b = random_pair(rng, 67, 91)
    flow = net(a, b)
    assert flow.shape == (1, 2, 67, 91) and torch.isfinite(flow).all()


def test_correlation_equals_naive_loop():
    torch.manual_seed(0)
    first, second = torch.randn(2, 5, 7, 9), torch.randn(2, 5, 7, 9)
    volume = correlation(first, second)
    assert volume.shape == (2, 81, 7, 9)
    expected = torch.zeros_like(volume)
    for k in range(81):
        dy, dx = k // 9 - 4, k % 9 - 4
        for y in range(7):
            for x in range(9):
                if 0 <= y + dy < 7 and 0 <= x + dx < 9:
                    expected[:, k, y, x] = (first[:, :, y, x] * second[:, :, y + dy, x + dx]).sum(1) / 5
    torch.testing.assert_close(volume, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_pwcnet_loads_the_authors_naming_and_runs(tmp_path, rng, pwc_state, prefix):
    path = tmp_path / "pwc-default.pth"
    torch.save({prefix + k: v for k, v in authors_naming(pwc_state).items()}, path)
    assert any(k.startswith(prefix + "moduleExtractor.moduleOne") for k in torch.load(path, weights_only=True))
    net = build_flow("pwcnet", weights=path)
    for key, value in net.state_dict().items():
        assert torch.equal(value, pwc_state[key]), key
    a, b = random_pair(rng, 67, 91)
    flow = net(a, b)
    assert flow.shape == (1, 2, 67, 91) and torch.isfinite(flow).all()


def test_pwcnet_estimate_is_bgr_network_times_20(rng, pwc_state):
    net = PWCNet()
    net.load_state_dict(pwc_state)
    a, b = random_pair(rng, 64, 128)
    with torch.no_grad():
        raw = net.network(a[:, [2, 1, 0]], b[:, [2, 1, 0]])
    expected = 20.0 * F.interpolate(raw, size=(64, 128), mode="bilinear", align_corners=False)
    torch.testing.assert_close(net(a, b), expected)


@pytest.mark.shared
def test_pwcnet_parameters_match_the_manifest():
    manifest = json.loads(shared_path("reference", "manifests.json").read_text())["pwcnet"]
    state = PWCNet().state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == manifest["keys"]
    assert sum(v.numel() for v in state.values()) == manifest["num_params"] == 9_374_274


def test_raft_small_loads_a_saved_state_dict_and_runs(tmp_path, rng):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(1)
    path = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    net = build_flow("raft_small", weights=path, num_flow_updates=3)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    a, b = random_pair(rng, 67, 91)
    flow = net(a, b)
    assert flow.shape == (1, 2, 67, 91) and torch.isfinite(flow).all()


def test_raft_default_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as error:
        build_flow("raft_large", weights="default")
    message = str(error.value)
    assert "cache" in message and "weights=PATH" in message and "dis" in message


def test_raft_without_weights_uses_torchvisions_cache_and_never_downloads(tmp_path, monkeypatch):
    from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError) as error:
        build_flow("raft_small")
    assert str(tmp_path) in str(error.value) and "weights='default'" in str(error.value)
    torch.manual_seed(2)
    cached = raft_small(weights=None)
    (tmp_path / "checkpoints").mkdir()
    torch.save(cached.state_dict(), tmp_path / "checkpoints" / Raft_Small_Weights.DEFAULT.url.rsplit("/", 1)[-1])
    net = build_flow("raft_small", num_flow_updates=2)
    assert all(torch.equal(v, cached.state_dict()[k]) for k, v in net.net.state_dict().items())


def test_spynet_without_weights_is_a_clear_error():
    with pytest.raises(WeightsError) as error:
        build_flow("spynet")
    assert "spynet" in str(error.value) and "dis" in str(error.value)


def test_missing_weight_file_names_the_path_and_the_alternatives():
    with pytest.raises(WeightsError) as error:
        build_flow("pwcnet", weights="/nonexistent.pth")
    assert "/nonexistent.pth" in str(error.value) and "dis" in str(error.value)


def test_pwcnet_wrong_file_lists_the_mismatch(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"netExtractor.netOne.0.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="missing keys"):
        build_flow("pwcnet", weights=path)
