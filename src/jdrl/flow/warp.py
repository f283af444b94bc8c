"""Backward warping by a flow field (bilinear, differentiable in the image).

Two conventions (:data:`WARP_CONVENTIONS`):

- ``"exact"``: pixel centres map to pixel centres (``align_corners=True``); zero flow is the
  identity. This package's default.
- ``"released"``: the authors' ``flow_resample`` (JDRL release, ``utils/Flowfunction.py``
  lines 14-51, called by ``utils/warp.py:get_backwarp`` line 75 for every training target and
  every deformed-GT score). It builds its grid with ``linspace(-1, 1, W)``, divides the flow by
  ``(W-1)/2`` and ``(H-1)/2`` but calls ``grid_sample`` with PyTorch's default
  ``align_corners=False``, so pixel ``x`` is sampled at ``(x + u)·W/(W-1) − 0.5``: at zero
  flow a zoom about the centre by ``W/(W-1)`` (up to half a pixel at the edges) plus bilinear
  resampling. All of the paper's deformed-GT numbers and training targets used it (docs/REPRODUCE.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jdrl.vocabulary import WARP_CONVENTIONS


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(1, 2, H, W)`` pixel coordinates (x, y)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([xs, ys]).unsqueeze(0)


def warp(
    image: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border", convention: str = "exact"
) -> torch.Tensor:
    """``out(p) = image(p + flow(p))``: moves ``image`` onto the frame ``flow`` was estimated for.

    With ``flow = estimator(a, b)``, ``warp(b, flow)`` is ``b`` aligned to ``a``.
    ``padding_mode`` is that of ``grid_sample`` (``border`` as the released code, ``zeros``, ``reflection``).
    ``convention`` is one of :data:`WARP_CONVENTIONS`: ``"exact"`` samples at ``p + flow(p)``
    exactly; ``"released"`` reproduces the released ``flow_resample`` (see the module docstring),
    which samples at ``(p + flow(p))·(W, H)/(W-1, H-1) − 0.5``. A side of length 1 divides by 1
    instead of 0 in both conventions (the released code would produce inf/nan there).
    """
    if convention not in WARP_CONVENTIONS:
        raise ValueError(f"warp convention must be one of {WARP_CONVENTIONS}, not {convention!r}")
    if image.shape[-2:] != flow.shape[-2:] or flow.shape[1] != 2:
        raise ValueError(f"warp: image {tuple(image.shape)} and flow {tuple(flow.shape)} do not match")
    height, width = image.shape[-2:]
    if convention == "released":
        # literally: grid = linspace(-1, 1) per axis + flow / ((size - 1) / 2); grid_sample(align_corners=False)
        xs = torch.linspace(-1.0, 1.0, width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
        ys = torch.linspace(-1.0, 1.0, height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
        gx = xs + flow[:, 0] / ((max(width, 2) - 1.0) / 2.0)
        gy = ys + flow[:, 1] / ((max(height, 2) - 1.0) / 2.0)
        grid = torch.stack([gx, gy], dim=-1)
        return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False)
    coords = pixel_grid(height, width, image.device, flow.dtype) + flow
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], device=flow.device, dtype=flow.dtype)
    grid = (coords * scale.view(1, 2, 1, 1) - 1.0).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True)
