"""Tiling sized to the network: tile hints (jdrl.nets.tiling), their use by jdrl deblur, and benchmarks/tiling.py."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from jdrl.errors import ConfigError
from jdrl.inference import deblur_image, resolve_tile
from jdrl.nets import create_net, net_names
from jdrl.nets.factory import check_contract
from jdrl.nets.tiling import FALLBACK, TILE_HINTS, TileHint, as_hint, tile_hint
from tests.conftest import textured_image

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class ThreeConvs(nn.Module):
    """Three 3x3 convolutions: sees +-3 px, so an overlap of 2 * 3 + the 32 px cross-fade gives the whole image."""

    size_multiple = 1
    tile_hint = {"overlap": 40, "tile": 96, "max_whole_pixels": 1000}

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 3, 3, padding=1))
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        return torch.sigmoid(self.body(x))


class NoHint(ThreeConvs):
    tile_hint = None


def record_tiling(monkeypatch) -> list[dict]:
    """Replace deblur_image (as jdrl.deblurring calls it) by a recorder of the tile and overlap it gets."""
    import jdrl.inference

    calls: list[dict] = []

    def fake(net, image, tile=None, overlap=32, **kwargs):
        calls.append({"tile": tile, "overlap": overlap})
        return image

    monkeypatch.setattr(jdrl.inference, "deblur_image", fake)
    return calls


@pytest.fixture
def photo(tmp_path, rng) -> Path:
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    assert cv2.imwrite(str(path), (rng.random((48, 40, 3)) * 255).astype(np.uint8))  # 1920 px: above 1000
    return path


def test_deblur_uses_the_networks_hint_unless_the_overlap_is_given(monkeypatch, photo, tmp_path):
    from jdrl.deblurring import deblur_files

    calls = record_tiling(monkeypatch)
    deblur_files([photo], tmp_path / "a", ThreeConvs())
    deblur_files([photo], tmp_path / "b", ThreeConvs(), overlap=16)
    deblur_files([photo], tmp_path / "c", ThreeConvs(), tile=48)
    assert calls == [{"tile": 96, "overlap": 40}, {"tile": 96, "overlap": 16}, {"tile": 48, "overlap": 24}]


def test_a_network_without_a_hint_gets_the_fallback(monkeypatch, photo, tmp_path):
    from jdrl.deblurring import deblur_files

    calls = record_tiling(monkeypatch)
    deblur_files([photo], tmp_path / "a", NoHint())
    assert tile_hint(NoHint()) == FALLBACK == TileHint(overlap=256, tile=512, max_whole_pixels=2_000_000)
    assert calls == [{"tile": None, "overlap": 256}]  # 1920 px: whole, as for any image up to 2 MP
    assert resolve_tile("auto", 2160, 4096, "cpu", FALLBACK) == resolve_tile("auto", 2160, 4096, "cpu") == 512


def test_built_in_networks_have_measured_hints():
    assert sorted(TILE_HINTS) == net_names()
    unet = create_net("unet", width=0.0625)
    assert tile_hint(unet) is TILE_HINTS["unet"] and tile_hint(unet).overlap == 256  # +-112 px, exact
    for hint in TILE_HINTS.values():
        assert 2 * hint.overlap <= hint.tile  # the default overlap is never cut to half the tile
    assert resolve_tile("auto", 2160, 4096, "cuda", TILE_HINTS["unet"]) == 2 * TILE_HINTS["unet"].tile


def test_auto_tiling_follows_the_hint_and_matches_the_whole_image(rng):
    from jdrl.inference import resolve_overlap

    torch.manual_seed(0)
    net = ThreeConvs().eval()
    image = textured_image(rng, 150, 170)
    whole = deblur_image(net, image)
    net.sizes.clear()
    overlap = resolve_overlap("auto", None, "cpu", tile_hint(net))
    tiled = deblur_image(net, image, tile="auto", overlap=overlap)
    assert overlap == 40 and set(net.sizes) == {(96, 96)} and len(net.sizes) > 4
    assert float(np.abs(tiled - whole).max()) <= 1e-5


def test_hints_are_checked():
    assert as_hint({"overlap": 64}) == TileHint(overlap=64)
    with pytest.raises(ConfigError, match="unknown field"):
        as_hint({"overlapp": 64})
    with pytest.raises(ConfigError, match="smaller than the tile"):
        as_hint({"overlap": 600})
    with pytest.raises(ConfigError, match="overlap must be an int"):
        TileHint(overlap=-1)

    class Bad(NoHint):
        tile_hint = {"tile": "big"}

    with pytest.raises(ConfigError, match="tile_hint"):
        check_contract(Bad(), "bad")


def test_tiling_benchmark_measures_the_edge_profile():
    sys.path.insert(0, str(BENCHMARKS))
    from tiling import edge_profile, measure, overlap_for

    whole = np.zeros((3, 8, 8))
    crop = np.zeros((3, 6, 6))
    crop[1, 5, 2] = 0.5  # on the bottom edge: distance 0
    crop[0, 3, 3] = 0.01  # 2 px from both inner edges
    assert edge_profile(whole, crop).tolist() == [0.5, 0.0, 0.01, 0.0, 0.0, 0.0]
    assert overlap_for(np.array([0.5, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0]), 1e-3, blend=4, multiple=4) == 12  # margin 3
    result = measure("unet", {"width": 0.0625}, size=96, crop=64, image_path=None, tolerance=1e-3, validate=False,
                     validate_tile=64)
    assert len(result["profile"]) == 64 and result["profile"][0] > 1e-3  # a crop edge lacks context
    assert result["errors"]["0"] >= result["errors"]["64"] >= 0
