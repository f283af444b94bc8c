"""Whole and tiled inference on any image size, and ``jdrl deblur``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from jdrl.checkpoint import write_checkpoint
from jdrl.nets.factory import network_checkpoint
from jdrl.cli import main
from jdrl.inference import (
    axis_weights,
    count_tiles,
    deblur_image,
    deblur_tensor,
    resolve_tile,
    tile_starts,
)
from jdrl.nets import create_net
from tests.conftest import textured_image

TINY = 0.0625


class Pointwise(nn.Module):
    """A per-pixel network (no spatial context): tiling must reproduce it exactly, whatever the tiles."""

    size_multiple = 16

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % self.size_multiple == 0 and x.shape[-1] % self.size_multiple == 0
        self.sizes.append(tuple(x.shape[-2:]))
        return torch.sigmoid(self.conv(x))


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None]


@pytest.fixture(scope="module")
def tiny_unet() -> nn.Module:
    torch.manual_seed(0)
    return create_net("unet", width=TINY).eval()  # default (Kaiming) init: outputs vary strongly with context


# ---------------------------------------------------------------- tiling


def test_tiled_unet_equals_whole_image_when_the_overlap_covers_its_receptive_field(tiny_unet, rng):
    # docs/RESULTS.md: seams invisible, tiled vs whole <= 1e-3 on an image that fits whole. The UNet
    # sees +-112 px, so an overlap of 2 * 112 + the 32 px cross-fade leaves no visible trace.
    image = as_batch(textured_image(rng, 361, 421))
    whole = deblur_tensor(tiny_unet, image)
    tiled = deblur_tensor(tiny_unet, image, tile=320, overlap=256)  # 2 x 3 tiles
    assert tiled.shape == whole.shape == image.shape
    assert float((tiled - whole).abs().max()) <= 1e-3


def test_small_tiles_blend_exactly_for_a_network_without_context(rng):
    net = Pointwise().eval()
    image = as_batch(textured_image(rng, 150, 200))
    whole = deblur_tensor(net, image)
    net.sizes.clear()
    tiled = deblur_tensor(net, image, tile=64, overlap=16)
    assert len(net.sizes) == count_tiles(150, 200, 64, 16, multiple=16) > 4  # really tiled
    assert all(h <= 64 and w <= 64 for h, w in net.sizes)
    assert float((tiled - whole).abs().max()) < 1e-6


def test_small_tiles_run_the_unet_with_bounded_tiles(tiny_unet, rng):
    image = as_batch(textured_image(rng, 150, 200))
    tiled = deblur_tensor(tiny_unet, image, tile=64, overlap=16)
    assert tiled.shape == image.shape and torch.isfinite(tiled).all()
    assert 0 <= float(tiled.min()) and float(tiled.max()) <= 1


@pytest.mark.parametrize("size", [(1, 1), (5, 17), (37, 53), (63, 130), (129, 47)])
def test_odd_sizes_whole_and_tiled(size, rng):
    net = Pointwise().eval()
    image = as_batch(rng.random((*size, 3), dtype=np.float32))
    whole = deblur_tensor(net, image)
    tiled = deblur_tensor(net, image, tile=32, overlap=16)
    assert whole.shape == tiled.shape == image.shape
    assert float((tiled - whole).abs().max()) < 1e-6


def test_odd_size_unet_output_keeps_the_input_size(tiny_unet, rng):
    image = rng.random((45, 71, 3), dtype=np.float32)
    out = deblur_image(tiny_unet, image)
    assert out.shape == image.shape and out.dtype == np.float32


def test_an_image_that_fits_one_tile_runs_whole(rng):
    net = Pointwise().eval()
    deblur_tensor(net, as_batch(rng.random((50, 60, 3), dtype=np.float32)), tile=64)
    assert net.sizes == [(64, 64)]


def test_tile_is_rounded_up_to_the_size_multiple(rng):
    net = Pointwise().eval()
    deblur_tensor(net, as_batch(rng.random((100, 100, 3), dtype=np.float32)), tile=40, overlap=8)
    assert {size for size in net.sizes} == {(48, 48)}


def test_tile_starts_cover_the_axis_and_snap_the_last_tile():
    assert tile_starts(100, 128, 96) == [0]
    assert tile_starts(256, 64, 48) == [0, 48, 96, 144, 192]
    starts = tile_starts(250, 64, 48)
    assert starts[0] == 0 and starts[-1] == 250 - 64 and starts == sorted(set(starts))


@pytest.mark.parametrize("starts", [[0, 48, 96, 144, 176], [0, 16, 32], [0, 64]])
def test_blend_weights_sum_to_one_and_fade_smoothly(starts):
    tile = 64
    weights = axis_weights(starts, tile)
    total = torch.zeros(starts[-1] + tile, dtype=torch.float64)
    for start, weight in zip(starts, weights):
        assert float(weight.min()) >= 0
        total[start : start + tile] += weight
    assert float(total.min()) > 0
    if starts == [0, 48, 96, 144, 176] or starts == [0, 64]:  # each pixel in at most two tiles: a partition of unity
        assert torch.allclose(total, torch.ones_like(total))
    assert float(weights[0][:16].min()) == 1.0  # no fade at the image border


def test_deblur_image_matches_deblur_tensor_and_keeps_layout(tiny_unet, rng):
    image = textured_image(rng, 70, 90)
    out = deblur_image(tiny_unet, image, tile=48, overlap=16)
    expected = deblur_tensor(tiny_unet, as_batch(image), tile=48, overlap=16)[0].numpy().transpose(1, 2, 0)
    assert out.shape == (70, 90, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_amp_is_ignored_on_the_cpu_and_checked(tiny_unet, rng):
    image = as_batch(rng.random((32, 48, 3), dtype=np.float32))
    assert torch.equal(deblur_tensor(tiny_unet, image, amp="bf16"), deblur_tensor(tiny_unet, image))
    with pytest.raises(ValueError, match="amp"):
        deblur_tensor(tiny_unet, image, amp="fp8")


def test_overlap_must_be_smaller_than_the_tile(rng):
    image = as_batch(rng.random((100, 100, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="overlap"):
        deblur_tensor(Pointwise().eval(), image, tile=64, overlap=64)


def test_cli_overlap_default_fits_the_tile():
    from jdrl.inference import resolve_overlap
    from jdrl.errors import ConfigError

    assert resolve_overlap(None, None) == resolve_overlap("auto", None) == resolve_overlap(1024, None) == 256
    assert resolve_overlap(128, None) == 64 and resolve_overlap(128, 100) == 100
    with pytest.raises(ConfigError, match="smaller than the tile"):
        resolve_overlap(128, 128)
    with pytest.raises(ConfigError, match="smaller than the tile"):
        resolve_overlap("auto", 600, "cpu")  # large images get 512 px tiles on the CPU
    assert resolve_overlap("auto", 600, "cuda") == 600


def test_auto_tile_runs_small_images_whole():
    assert resolve_tile("auto", 1000, 1000, "cpu") is None
    assert resolve_tile("auto", 2160, 4096, "cpu") == 512
    assert resolve_tile("auto", 2160, 4096, "cuda") == 1024
    assert resolve_tile(None, 5000, 5000) is None and resolve_tile(300, 10, 10) == 300


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tiles_match_the_cpu(tiny_unet, rng):
    image = textured_image(rng, 200, 260)
    cpu = deblur_image(tiny_unet, image, tile=128, overlap=32)
    gpu_net = create_net("unet", width=TINY).eval()
    gpu_net.load_state_dict(tiny_unet.state_dict())
    gpu = deblur_image(gpu_net, image, tile=128, overlap=32, device="cuda")
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)
    assert deblur_image(gpu_net, image, tile=128, overlap=32, amp="bf16").shape == image.shape


# ---------------------------------------------------------------- jdrl deblur


def save_checkpoint(path, net: nn.Module, width: float = TINY):
    return write_checkpoint(network_checkpoint(net, "unet", width=width), path)


@pytest.fixture
def checkpoint(tmp_path, tiny_unet):
    return str(save_checkpoint(tmp_path / "net.pt", tiny_unet))


def write_raw(path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return str(path)


@pytest.fixture
def photos(tmp_path, rng):
    """A folder with an 8-bit PNG, a 16-bit PNG, a JPEG and a corrupt file."""
    folder = tmp_path / "photos"
    write_raw(folder / "eight.png", (rng.random((40, 56, 3)) * 255).astype(np.uint8))
    write_raw(folder / "sixteen.png", (rng.random((33, 47, 3)) * 65535).astype(np.uint16))
    write_raw(folder / "photo.jpg", (rng.random((48, 32, 3)) * 255).astype(np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def read_raw(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_cli_keeps_bit_depth_and_reports_unreadable_files_at_the_end(photos, tmp_path, checkpoint, capsys):
    out = tmp_path / "out"
    code = main(["deblur", str(photos), "-o", str(out), "--checkpoint", checkpoint, "--quiet"])
    assert code == 1
    assert read_raw(out / "eight.png").dtype == np.uint8
    assert read_raw(out / "photo.png").dtype == np.uint8
    sixteen = read_raw(out / "sixteen.png")
    assert sixteen.dtype == np.uint16 and sixteen.shape == (33, 47, 3)
    assert not (out / "broken.png").exists()
    err = capsys.readouterr().err
    tail = err[err.index("not deblurred"):]
    assert "broken.png" in tail and "not a readable image" in tail


def test_cli_output_matches_the_library(photos, tmp_path, checkpoint, tiny_unet):
    out = tmp_path / "out"
    assert main(["deblur", str(photos / "eight.png"), "-o", str(out), "--checkpoint", checkpoint, "--quiet"]) == 0
    image = read_raw(photos / "eight.png")[:, :, ::-1].astype(np.float32) / 255
    expected = np.round(deblur_image(tiny_unet, image) * 255).astype(np.uint8)
    np.testing.assert_array_equal(read_raw(out / "eight.png")[:, :, ::-1], expected)


def test_cli_bit_depth_option_forces_the_output_depth(photos, tmp_path, checkpoint):
    out = tmp_path / "out"
    args = ["-o", str(out), "--checkpoint", checkpoint, "--quiet", "--bit-depth"]
    assert main(["deblur", str(photos / "eight.png"), *args, "16"]) == 0
    assert read_raw(out / "eight.png").dtype == np.uint16
    assert main(["deblur", str(photos / "sixteen.png"), *args, "8"]) == 0
    assert read_raw(out / "sixteen.png").dtype == np.uint8


def test_cli_glob_patterns_and_tiles(photos, tmp_path, checkpoint):
    out = tmp_path / "out"
    code = main(["deblur", str(photos / "*.jpg"), str(photos / "eight.*"), "-o", str(out), "--checkpoint", checkpoint,
                 "--tile", "32", "--overlap", "16", "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["eight.png", "photo.png"]


def test_cli_never_overwrites_an_input(photos, checkpoint, capsys):
    before = (photos / "eight.png").read_bytes()
    code = main(["deblur", str(photos / "eight.png"), str(photos / "photo.jpg"), "-o", str(photos),
                 "--checkpoint", checkpoint, "--quiet"])
    assert code == 1
    assert (photos / "eight.png").read_bytes() == before
    assert (photos / "photo.png").is_file()  # a different file: written
    assert "is the input itself" in capsys.readouterr().err


def test_cli_duplicate_stems_fail_before_anything_runs(photos, tmp_path, checkpoint, capsys, rng):
    write_raw(photos / "eight.jpg", (rng.random((20, 20, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    assert main(["deblur", str(photos), "-o", str(out), "--checkpoint", checkpoint, "--quiet"]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "eight.jpg" in err and "eight.png" in err


def test_cli_missing_input_is_reported_and_the_rest_processed(photos, tmp_path, checkpoint, capsys):
    out = tmp_path / "out"
    code = main(["deblur", str(tmp_path / "nope.png"), str(photos / "eight.png"), "-o", str(out),
                 "--checkpoint", checkpoint, "--quiet"])
    assert code == 1 and (out / "eight.png").is_file()
    assert "nope.png: no such file or folder" in capsys.readouterr().err


def test_cli_bad_checkpoint_is_a_one_line_error(photos, tmp_path, capsys):
    code = main(["deblur", str(photos / "eight.png"), "-o", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "x.pt")])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_cli_deblurs_with_the_authors_released_file_in_their_bgr_convention(photos, tmp_path, tiny_unet):
    # the released UNet file: DataParallel names, trained on OpenCV's BGR arrays; a narrow one here (its width is
    # read off the weights), the same container as the authors' 31M-parameter file
    released = {"epoch": 3, "global_step": 30, "G_opt": {},
                "G_state_dict": {f"module.{k}": v for k, v in tiny_unet.state_dict().items()}}
    torch.save(released, tmp_path / "released.pth")
    out = tmp_path / "out"
    code = main(["deblur", str(photos / "eight.png"), "-o", str(out), "--checkpoint", str(tmp_path / "released.pth"),
                 "--quiet"])
    assert code == 0
    bgr = read_raw(photos / "eight.png").astype(np.float32) / 255  # what the released pipeline fed the network
    expected = np.round(deblur_image(tiny_unet, bgr) * 255).astype(np.uint8)  # ... and wrote back with OpenCV
    np.testing.assert_array_equal(read_raw(out / "eight.png"), expected)


def test_eval_validation_and_deblur_tile_a_network_alike(tmp_path, tiny_unet, checkpoint):
    """One tiling: what `jdrl deblur` writes is what `jdrl eval` and validation during training score (they
    call evaluate with the run's tile), with the network's own overlap, not a second default."""
    from jdrl.evaluation.protocol import evaluate
    from jdrl.images import read_image

    rng = np.random.default_rng(3)
    sharp = cv2.GaussianBlur(rng.random((320, 320, 3)).astype(np.float32), (0, 0), 2)
    blur = cv2.GaussianBlur(sharp, (0, 0), 2)
    write_raw(tmp_path / "in" / "blur.png", (blur[:, :, ::-1] * 65535).round().astype(np.uint16))
    blur = read_image(tmp_path / "in" / "blur.png")  # exactly what jdrl deblur reads
    assert main(["deblur", str(tmp_path / "in" / "blur.png"), "-o", str(tmp_path / "out"), "--checkpoint", checkpoint,
                 "--tile", "192", "--quiet"]) == 0
    written = read_image(tmp_path / "out" / "blur.png")
    pair = {"blur": torch.from_numpy(blur.transpose(2, 0, 1).copy()), "sharp": torch.from_numpy(sharp.transpose(2, 0, 1).copy()),
            "name": "blur"}
    scored = evaluate([pair], tiny_unet, lpips=None, tile=192).rows[0]["mae"]
    assert abs(scored - float(np.abs(written - sharp).mean())) < 2e-5  # 16-bit rounding of the written file
    api = deblur_image(tiny_unet, blur, tile=192)
    assert abs(scored - float(np.abs(api - sharp).mean())) < 1e-6
    # the overlap the three used to disagree on (32 px in eval and validation) gives a measurably different output
    old = deblur_image(tiny_unet, blur, tile=192, overlap=32)
    assert abs(scored - float(np.abs(old - sharp).mean())) > 1e-4
