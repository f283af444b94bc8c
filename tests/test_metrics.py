"""Metrics agree with scikit-image (the protocol's definition), LPIPS degrades to one clear message,
flow error measures shifts."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jdrl.evaluation import metrics as M
from jdrl.evaluation.metrics import (
    METRICS,
    LPIPSMetric,
    compute_metrics,
    flow_error,
    load_lpips,
    mae,
    psnr,
    ssim,
)
from jdrl.images import read_image
from tests.conftest import shared_path, textured_image

PSNR_TOL = 1e-6  # dB
SSIM_TOL_F64 = 1e-6  # vs scikit-image fed float64 (it then computes in float64, as we do)
SSIM_TOL_F32 = 1e-4  # vs scikit-image fed float32 (it then computes in float32)


def to_tensor(*images: np.ndarray) -> torch.Tensor:
    """HWC numpy images -> one (B, C, H, W) tensor."""
    return torch.stack([torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1) for i in images])


def reference_metrics(output: np.ndarray, target: np.ndarray, dtype=np.float64) -> dict[str, float]:
    """The protocol's definitions, by scikit-image, on HWC images cast to ``dtype``."""
    a, b = output.astype(dtype), target.astype(dtype)
    return {
        "psnr": peak_signal_noise_ratio(b, a, data_range=1),
        "ssim": structural_similarity(a, b, data_range=1, channel_axis=-1),
        "mae": float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64)))),
    }


def assert_matches_skimage(outputs: list[np.ndarray], targets: list[np.ndarray]) -> None:
    """Per-image psnr/ssim/mae of the batch equal scikit-image's on float64 and on float32 inputs."""
    ours = compute_metrics(to_tensor(*outputs), to_tensor(*targets))
    for i, (out, tgt) in enumerate(zip(outputs, targets)):
        ref64 = reference_metrics(out, tgt, np.float64)
        ref32 = reference_metrics(out, tgt, np.float32)
        assert abs(ours["psnr"][i].item() - ref64["psnr"]) <= PSNR_TOL
        assert abs(ours["psnr"][i].item() - ref32["psnr"]) <= PSNR_TOL
        assert abs(ours["ssim"][i].item() - ref64["ssim"]) <= SSIM_TOL_F64
        assert abs(ours["ssim"][i].item() - ref32["ssim"]) <= SSIM_TOL_F32
        assert abs(ours["mae"][i].item() - ref64["mae"]) <= 1e-12


def noisy(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(image + sigma * rng.standard_normal(image.shape), 0, 1).astype(np.float32)


def structured(height: int, width: int) -> np.ndarray:
    """Ramps, a checkerboard and a flat patch: edges, flat regions and zero-variance windows."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    checker = ((yy // 4 + xx // 4) % 2).astype(np.float32)
    image = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1), checker], axis=2)
    image[: height // 3, : width // 3] = 0.5
    return image


# ---------------------------------------------------------------- agreement with scikit-image


@pytest.mark.parametrize("size", [(7, 7), (37, 53), (64, 48), (131, 97)])
def test_random_images_match_skimage(rng, size):
    a = rng.random((*size, 3)).astype(np.float32)
    assert_matches_skimage([noisy(rng, a, 0.1)], [a])


@pytest.mark.parametrize("size", [(37, 53), (96, 128)])
def test_structured_images_match_skimage(rng, size):
    target = structured(*size)
    blurred = textured_image(rng, *size) * 0.3 + target * 0.7
    assert_matches_skimage([blurred.astype(np.float32), noisy(rng, target, 0.05)], [target, target])


def test_batch_of_different_images_is_scored_per_image(rng):
    first, second = textured_image(rng, 45, 61), structured(45, 61)
    outputs = [noisy(rng, first, 0.02), noisy(rng, second, 0.2)]
    assert_matches_skimage(outputs, [first, second])
    batch = compute_metrics(to_tensor(*outputs), to_tensor(first, second))
    single = compute_metrics(to_tensor(outputs[1]), to_tensor(second))
    for name in METRICS:
        assert batch[name].shape == (2,)
        assert batch[name][1].item() == pytest.approx(single[name][0].item(), abs=1e-12)
    assert batch["psnr"][0] > batch["psnr"][1] + 10  # really different content, not one value repeated


def test_data_range_is_honoured(rng):
    a = rng.random((20, 30, 3))
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    x, y = to_tensor(a * 255), to_tensor(b * 255)
    assert psnr(x, y, data_range=255).item() == pytest.approx(peak_signal_noise_ratio(b * 255, a * 255, data_range=255), abs=1e-9)
    expected = structural_similarity(a * 255, b * 255, data_range=255, channel_axis=-1)
    assert ssim(x, y, data_range=255).item() == pytest.approx(expected, abs=1e-9)


def test_dpdd_pairs_match_skimage():
    blur_dir, sharp_dir = shared_path("data", "dpdd1024", "blur"), shared_path("data", "dpdd1024", "sharp")
    names = sorted(p.name for p in blur_dir.glob("*.png"))[:3]
    assert len(names) == 3
    for name in names:
        blur, sharp = read_image(blur_dir / name), read_image(sharp_dir / name)
        assert_matches_skimage([blur], [sharp])


def test_identical_images_match_skimage_conventions(rng):
    image = textured_image(rng, 33, 40)
    x = to_tensor(image, image)
    with np.errstate(divide="ignore"):
        assert peak_signal_noise_ratio(image, image, data_range=1) == np.inf  # what we reproduce
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()
    assert torch.equal(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert structural_similarity(image, image, data_range=1, channel_axis=-1) == 1.0
    assert torch.equal(mae(x, x), torch.zeros(2, dtype=torch.float64))


def test_outputs_are_per_image_float64_and_keep_the_graph_out():
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    y = torch.rand(3, 3, 16, 16)
    for fn in METRICS.values():
        value = fn(x, y)
        assert value.shape == (3,) and value.dtype == torch.float64 and not value.requires_grad


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="one shape"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="one shape"):
        mae(torch.rand(3, 8, 8), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.rand(1, 3, 6, 20), torch.rand(1, 3, 6, 20))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu(rng):
    a, b = textured_image(rng, 64, 80), structured(64, 80)
    x, y = to_tensor(a, b), to_tensor(b, a)
    cpu = compute_metrics(x, y)
    gpu = compute_metrics(x.cuda(), y.cuda())
    for name in METRICS:
        assert gpu[name].device.type == "cuda"
        assert torch.allclose(gpu[name].cpu(), cpu[name], atol=1e-10, rtol=0)


# ---------------------------------------------------------------- compute_metrics


def test_compute_metrics_selects_and_validates_names(rng):
    x, y = to_tensor(textured_image(rng, 16, 16)), to_tensor(structured(16, 16))
    assert set(compute_metrics(x, y)) == {"psnr", "ssim", "mae"}
    assert set(compute_metrics(x, y, names=("mae",))) == {"mae"}
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(x, y, names=("psnr", "fid"))
    with pytest.raises(ValueError, match="load_lpips"):
        compute_metrics(x, y, names=("psnr", "lpips"))


# ---------------------------------------------------------------- LPIPS


def _write_fake_alexnet(torch_home) -> None:
    """An AlexNet state dict in torch's hub cache: random features, constant (stride-0, tiny) classifier."""
    from torchvision.models import alexnet

    state = alexnet(weights=None).state_dict()
    state = {k: (v if k.startswith("features") else torch.zeros(1).expand(v.shape)) for k, v in state.items()}
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / M.ALEXNET_FILE)


def test_lpips_missing_weights_gives_one_line_and_no_network(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger=M.__name__):
        assert load_lpips(log=True)[0] is None
    reason = load_lpips()[1]
    assert reason and "\n" not in reason
    assert "lpips.LPIPS" in reason and M.ALEXNET_FILE in reason and str(tmp_path) in reason
    assert [r.getMessage() for r in caplog.records] == [reason]
    assert load_lpips() == (None, reason)
    assert not (tmp_path / "hub").exists()  # nothing was downloaded or created
    assert capsys.readouterr().out == ""


def test_lpips_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "lpips", None)  # makes `import lpips` fail
    metric, reason = load_lpips()
    assert metric is None and "pip install lpips" in reason


def test_lpips_with_cached_weights_is_built_quietly_and_scores(tmp_path, monkeypatch, capsys, rng):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _write_fake_alexnet(tmp_path)
    assert load_lpips()[1] is None
    metric = load_lpips()[0]
    captured = capsys.readouterr()
    assert isinstance(metric, LPIPSMetric) and captured.out == "" and captured.err == ""
    a, b = textured_image(rng, 64, 64), structured(64, 64)
    x, y = to_tensor(a, b), to_tensor(a, a)
    values = metric(x, y)
    assert values.shape == (2,) and values.dtype == torch.float64
    assert values[0].item() == pytest.approx(0.0, abs=1e-7) and values[1].item() > 0
    assert torch.equal(compute_metrics(x, y, lpips=metric)["lpips"], values)


def test_lpips_here_is_either_a_reason_or_zero_for_identical_images(rng):
    metric, reason = load_lpips()
    if metric is None:
        assert reason and "lpips.LPIPS" in reason
        pytest.skip(reason)
    image = to_tensor(textured_image(rng, 64, 64))
    assert metric(image, image).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- flow error


def test_flow_error_of_a_two_pixel_shift_is_two(rng):
    from jdrl.flow.dis import DISFlow

    base = textured_image(rng, 128, 162)
    image, shifted = to_tensor(base[:, 2:-32]), to_tensor(base[:, :-34])
    estimator = DISFlow()
    assert flow_error(image, shifted, estimator, border=8).item() == pytest.approx(2.0, abs=0.2)
    assert flow_error(image, image, estimator).item() == pytest.approx(0.0, abs=0.05)


def test_flow_error_averages_magnitudes_and_skips_the_border():
    def constant_flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        flow = torch.zeros(a.shape[0], 2, *a.shape[-2:])
        flow[:, 0], flow[:, 1] = 3.0, 4.0
        flow[:, :, :2] = 100.0  # junk in the top 2 rows
        return flow

    x = torch.rand(2, 3, 20, 24)
    assert torch.allclose(flow_error(x, x, constant_flow, border=2), torch.full((2,), 5.0, dtype=torch.float64))
    assert flow_error(x, x, constant_flow).min() > 5.0
    with pytest.raises(ValueError):
        flow_error(x, x, lambda a, b: torch.zeros(2, 3, 20, 24))
