"""Backward warping by a flow field (bilinear, differentiable in the image)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(1, 2, H, W)`` pixel coordinates (x, y)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([xs, ys]).unsqueeze(0)


def warp(image: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """``out(p) = image(p + flow(p))``: moves ``image`` onto the frame ``flow`` was estimated for.

    With ``flow = estimator(a, b)``, ``warp(b, flow)`` is ``b`` aligned to ``a``.
    ``padding_mode`` is that of ``grid_sample`` (``border`` as the released code, ``zeros``, ``reflection``).
    """
    if image.shape[-2:] != flow.shape[-2:] or flow.shape[1] != 2:
        raise ValueError(f"warp: image {tuple(image.shape)} and flow {tuple(flow.shape)} do not match")
    height, width = image.shape[-2:]
    coords = pixel_grid(height, width, image.device, flow.dtype) + flow
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], device=flow.device, dtype=flow.dtype)
    grid = (coords * scale.view(1, 2, 1, 1) - 1.0).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True)
