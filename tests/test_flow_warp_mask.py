import numpy as np
import pytest
import torch

from jdrl.flow import build_flow, flow_names
from jdrl.flow.mask import calibration_mask, fit_global_motion
from jdrl.flow.viz import flow_to_color, rgb_to_gray_u8
from jdrl.flow.warp import pixel_grid, warp
from tests.conftest import shared_path, textured_image


def shifted_pair(rng, dx: float, dy: float, height=120, width=150, margin=12):
    """``a`` and ``b`` with ``b(p + (dx, dy)) = a(p)``: the flow from a to b is (dx, dy)."""
    image = torch.from_numpy(textured_image(rng, height + 2 * margin, width + 2 * margin)).permute(2, 0, 1)[None]
    a = image[..., margin : margin + height, margin : margin + width]
    b = image[..., margin - dy : margin - dy + height, margin - dx : margin - dx + width]
    return a.contiguous(), b.contiguous()


def test_dis_recovers_a_known_translation(rng):
    a, b = shifted_pair(rng, 4, -3)
    flow = build_flow("dis")(a, b)
    inner = flow[..., 16:-16, 16:-16]
    assert flow.shape == (1, 2, 120, 150)
    assert abs(inner[:, 0].median().item() - 4) < 0.1 and abs(inner[:, 1].median().item() + 3) < 0.1
    assert (warp(b, flow) - a)[..., 16:-16, 16:-16].abs().mean() < 0.01


def test_dis_handles_odd_sizes_and_batches(rng):
    a, b = shifted_pair(rng, 2, 1, height=67, width=91)
    flow = build_flow("dis")(torch.cat([a, b]), torch.cat([b, a]))
    assert flow.shape == (2, 2, 67, 91) and not flow.requires_grad


def test_registry_lists_the_estimators():
    assert set(flow_names()) >= {"dis", "spynet", "raft_small", "raft_large", "pwcnet"}


def test_warp_by_zero_flow_is_the_identity_and_integer_flow_shifts(rng):
    image = torch.rand(2, 3, 13, 17)
    assert torch.allclose(warp(image, torch.zeros(2, 2, 13, 17)), image, atol=1e-6)
    flow = torch.zeros(2, 2, 13, 17)
    flow[:, 0] = 2  # out(p) = image(p + (2, 0))
    assert torch.allclose(warp(image, flow)[..., :-2], image[..., 2:], atol=1e-6)


def test_warp_is_differentiable_in_the_image():
    image = torch.rand(1, 3, 8, 9, requires_grad=True)
    warp(image, torch.full((1, 2, 8, 9), 0.5)).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_reference_mask_reproduces_the_released_rule():
    vectors = torch.load(shared_path("reference", "jdrl_reference_vectors.pt"), weights_only=True)
    mask = calibration_mask(vectors["flow"], "reference", vectors["lambda"])
    assert mask.shape == vectors["mask_reference_rule"].shape
    assert torch.equal(mask, vectors["mask_reference_rule"].to(mask.dtype))


def _numpy_flow_to_color(flow_uv):
    """The classic numpy implementation (Baker et al. wheel), written out independently."""
    segments = [15, 6, 4, 11, 13, 6]
    wheel = np.zeros((sum(segments), 3))
    col = 0
    for index, n in enumerate(segments):
        ramp = np.floor(255 * np.arange(n) / n)
        rows = slice(col, col + n)
        if index == 0:
            wheel[rows, 0], wheel[rows, 1] = 255, ramp
        elif index == 1:
            wheel[rows, 0], wheel[rows, 1] = 255 - ramp, 255
        elif index == 2:
            wheel[rows, 1], wheel[rows, 2] = 255, ramp
        elif index == 3:
            wheel[rows, 1], wheel[rows, 2] = 255 - ramp, 255
        elif index == 4:
            wheel[rows, 2], wheel[rows, 0] = 255, ramp
        else:
            wheel[rows, 2], wheel[rows, 0] = 255 - ramp, 255
        col += n
    u, v = flow_uv[..., 0], flow_uv[..., 1]
    rad_max = np.max(np.sqrt(u**2 + v**2))
    u, v = u / (rad_max + 1e-5), v / (rad_max + 1e-5)
    rad = np.sqrt(u**2 + v**2)
    fk = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (len(wheel) - 1)
    k0 = np.floor(fk).astype(np.int32)
    k1 = np.where(k0 + 1 == len(wheel), 0, k0 + 1)
    f = fk - k0
    out = np.zeros(u.shape + (3,), np.uint8)
    for c in range(3):
        colour = (1 - f) * wheel[k0, c] / 255 + f * wheel[k1, c] / 255
        colour = np.where(rad <= 1, 1 - rad * (1 - colour), colour * 0.75)
        out[..., c] = np.floor(255 * colour)
    return out


def test_flow_colours_match_the_numpy_formula_and_grey_matches_opencv4():
    flow = torch.from_numpy(np.random.default_rng(3).normal(0, 3, (2, 2, 16, 16)).astype(np.float32))
    ours = flow_to_color(flow).permute(0, 2, 3, 1).numpy()
    for b in range(2):
        expected = _numpy_flow_to_color(flow[b].permute(1, 2, 0).numpy())
        assert np.abs(ours[b].astype(int) - expected).max() <= 1 and (ours[b] != expected).mean() < 0.01
    assert flow_to_color(torch.zeros(1, 2, 2, 2)).eq(255).all()  # no motion is white
    grey = rgb_to_gray_u8(torch.tensor([[255, 208, 247], [255, 179, 63]], dtype=torch.uint8).T.reshape(1, 3, 1, 2))
    assert grey.flatten().tolist() == [227, 188]  # OpenCV 4 rounding (OpenCV 5 says 226, 189)


def test_paper_mask_keeps_uniform_flow_and_drops_outliers():
    flow = torch.full((1, 2, 10, 10), 2.0)
    flow[0, :, 3, 4] = 9.0
    mask = calibration_mask(flow, "paper", 0.35)
    assert mask[0, 0, 3, 4] == 0 and mask.sum() == 99
    assert calibration_mask(torch.zeros(1, 2, 5, 5), "paper").all()


def test_parametric_mask_accepts_zoom_and_rejects_local_errors():
    height, width = 48, 64
    grid = pixel_grid(height, width)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2]).view(1, 2, 1, 1)
    flow = 0.06 * (grid - centre) + torch.tensor([1.5, -2.0]).view(1, 2, 1, 1)  # 6 % zoom + shift
    broken = flow.clone()
    broken[..., 10:14, 20:26] += 6.0
    fitted = fit_global_motion(broken)
    assert torch.allclose(fitted, flow, atol=0.2)
    mask = calibration_mask(broken, "parametric", 0.35)
    assert mask[..., 10:14, 20:26].sum() == 0 and mask.mean() > 0.95
    assert calibration_mask(flow, "parametric").all()
    # the magnitude rule punishes the zoom itself: it drops pixels of a perfect flow
    assert calibration_mask(flow, "paper").mean() < 0.9


def test_affine_fit_recovers_a_shear_that_a_similarity_cannot():
    height, width = 40, 56
    grid = pixel_grid(height, width)
    x = grid[:, :1] - (width - 1) / 2
    y = grid[:, 1:] - (height - 1) / 2
    flow = torch.cat([0.5 + 0.04 * x + 0.05 * y, -1.0 + 0.02 * x - 0.03 * y], dim=1)  # a general affine motion
    assert torch.allclose(fit_global_motion(flow, model="affine"), flow, atol=1e-4)
    assert (fit_global_motion(flow, model="similarity") - flow).abs().max() > 0.3
    broken = flow.clone()
    broken[..., 5:9, 30:36] -= 5.0
    mask = calibration_mask(broken, "parametric", model="affine")
    assert mask[..., 5:9, 30:36].sum() == 0 and mask.mean() > 0.95


def test_none_mask_and_bad_mode():
    assert calibration_mask(torch.randn(2, 2, 4, 4), "none").all()
    with pytest.raises(ValueError, match="reference, paper, parametric, none"):
        calibration_mask(torch.zeros(1, 2, 2, 2), "magic")


def test_flows_command_lists_every_estimator(capsys):
    from jdrl.cli import main

    assert main(["flows"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("dis", "spynet", "raft_small", "raft_large", "pwcnet"))
