"""The ``released`` warp convention reproduces the authors' ``flow_resample`` (docs/REPRODUCE.md)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jdrl.flow.warp import WARP_CONVENTIONS, warp
from tests.conftest import textured_image


def numpy_released(image: np.ndarray, flow: np.ndarray, padding: str = "border") -> np.ndarray:
    """Per-pixel bilinear sampling at the coordinates the released function samples, derived by hand.

    The released grid is ``g = -1 + 2(x + u)/(W-1)``; ``grid_sample(align_corners=False)`` reads
    pixel ``((g + 1)·W − 1)/2 = (x + u)·W/(W−1) − 0.5`` (same for y with H). Border padding
    clamps the coordinate into ``[0, W-1]``; zeros padding gives out-of-image corners weight 0.
    """
    b, c, h, w = image.shape
    out = np.zeros_like(image, dtype=np.float64)
    for n in range(b):
        for y in range(h):
            for x in range(w):
                px = (x + flow[n, 0, y, x]) * w / (w - 1) - 0.5
                py = (y + flow[n, 1, y, x]) * h / (h - 1) - 0.5
                if padding == "border":
                    px, py = min(max(px, 0.0), w - 1.0), min(max(py, 0.0), h - 1.0)
                x0, y0 = math.floor(px), math.floor(py)
                fx, fy = px - x0, py - y0
                value = np.zeros(c)
                for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                    for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                        if wx * wy == 0:
                            continue
                        if 0 <= xx < w and 0 <= yy < h:
                            value += wx * wy * image[n, :, yy, xx]
                out[n, :, y, x] = value
    return out


def literal_flow_resample(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """utils/Flowfunction.py (get_grid + flow_resample) of the JDRL release, transcribed."""
    b, _, h, w = img.size()
    hor = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(b, 1, h, w)
    ver = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(b, 1, h, w)
    grid = torch.cat([hor, ver], 1)
    flow = torch.cat([flow[:, 0:1, :, :] / ((w - 1.0) / 2.0), flow[:, 1:2, :, :] / ((h - 1.0) / 2.0)], dim=1)
    return F.grid_sample(img, (grid + flow).permute(0, 2, 3, 1), mode="bilinear", padding_mode="border")


def test_conventions_are_listed_and_unknown_names_rejected():
    assert WARP_CONVENTIONS == ("exact", "released")
    image, flow = torch.rand(1, 3, 5, 6), torch.zeros(1, 2, 5, 6)
    with pytest.raises(ValueError, match="exact.*released"):
        warp(image, flow, "border", convention="paper")


@pytest.mark.parametrize("size", [(7, 7), (9, 13), (16, 5)])
@pytest.mark.parametrize("scale", [0.0, 1.5, 6.0])  # 6 px pushes many samples outside: border padding
def test_released_matches_an_independent_bilinear_formula(size, scale):
    gen = torch.Generator().manual_seed(hash((size, scale)) % 2**31)
    h, w = size
    image = torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64)
    flow = scale * torch.randn(2, 2, h, w, generator=gen, dtype=torch.float64)
    ours = warp(image, flow, "border", convention="released")
    expected = numpy_released(image.numpy(), flow.numpy(), "border")
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-10)


def test_released_zeros_padding_matches_the_formula():
    gen = torch.Generator().manual_seed(5)
    image = torch.rand(1, 2, 6, 9, generator=gen, dtype=torch.float64)
    flow = 4 * torch.randn(1, 2, 6, 9, generator=gen, dtype=torch.float64)
    ours = warp(image, flow, padding_mode="zeros", convention="released")
    np.testing.assert_allclose(ours.numpy(), numpy_released(image.numpy(), flow.numpy(), "zeros"), atol=1e-10)


@pytest.mark.filterwarnings("ignore:Default grid_sample")
@pytest.mark.parametrize("size", [(32, 32), (24, 40)])
def test_released_matches_the_literal_recipe(size):
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, *size, generator=gen)
    for flow in (torch.zeros(2, 2, *size), 3 * torch.randn(2, 2, *size, generator=gen)):
        torch.testing.assert_close(warp(image, flow, convention="released"), literal_flow_resample(image, flow), atol=1e-5, rtol=0)


def test_at_zero_flow_exact_is_identity_and_released_zooms(rng):
    image = torch.from_numpy(textured_image(rng, 64, 96)).permute(2, 0, 1)[None].double()
    flow = torch.zeros(1, 2, 64, 96, dtype=torch.float64)
    torch.testing.assert_close(warp(image, flow), image, atol=1e-12, rtol=0)
    released = warp(image, flow, convention="released")
    mse = (released - image).pow(2).mean().item()
    assert mse > 0
    psnr = 10 * math.log10(1 / mse)
    assert 25 < psnr < 60, psnr
    # on a horizontal ramp I(x) = x the released warp returns its sampling position itself:
    # clamp(x·W/(W-1) − 0.5, 0, W-1) — a zoom about the centre, up to half a pixel near the edges
    w = 96
    ramp = torch.arange(w, dtype=torch.float64).expand(1, 1, 8, w)
    out = warp(ramp, torch.zeros(1, 2, 8, w, dtype=torch.float64), convention="released")[0, 0, 0]
    x = torch.arange(w, dtype=torch.float64)
    torch.testing.assert_close(out, (x * w / (w - 1) - 0.5).clamp(0, w - 1), atol=1e-9, rtol=0)
    assert abs(out[w // 2] - w // 2) < 0.01 and abs(out[1] - 1) > 0.45


@pytest.mark.parametrize("convention", WARP_CONVENTIONS)
def test_gradients_wrt_image_are_finite(convention):
    image = torch.rand(1, 3, 12, 17, requires_grad=True)
    flow = 5 * torch.randn(1, 2, 12, 17)
    warp(image, flow, "border", convention).square().sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_positional_padding_still_works():
    image, flow = torch.rand(1, 3, 6, 8), torch.randn(1, 2, 6, 8)
    torch.testing.assert_close(warp(image, flow, "zeros"), warp(image, flow, padding_mode="zeros", convention="exact"))
