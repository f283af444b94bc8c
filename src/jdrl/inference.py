"""Running a deblurring network on images of any size.

Networks need sides that are multiples of ``net.size_multiple``; the input is
reflect-padded up to one and the output cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(image: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` on the right/bottom to multiples of ``multiple``; returns the padded image and ``(H, W)``."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        if mode == "reflect" and (pad_h >= height or pad_w >= width):
            mode = "replicate"  # reflection needs more pixels than the padding
        image = F.pad(image, (0, pad_w, 0, pad_h), mode=mode)
    return image, (height, width)


@torch.no_grad()
def deblur_tensor(
    net: nn.Module,
    image: torch.Tensor,
    tile: int | None = None,
    overlap: int = 32,
    amp: str | None = None,
) -> torch.Tensor:
    """``net`` applied to ``image (B, 3, H, W)`` in [0, 1], any size; returns the clamped output.

    ``tile=None`` runs the whole image at once. ``amp`` is ``None``, ``"bf16"`` or
    ``"fp16"`` (CUDA autocast).
    """
    if tile is not None:
        raise ValueError("tiled inference is not available in this build")
    multiple = getattr(net, "size_multiple", 1)
    padded, (height, width) = pad_to_multiple(image, multiple)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    with torch.autocast(device_type=image.device.type, dtype=dtype, enabled=dtype is not None):
        output = net(padded)
    return output[..., :height, :width].float().clamp(0, 1)
