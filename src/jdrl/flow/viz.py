"""Flow colour coding (Middlebury colour wheel, Baker et al. 2007) in torch.

Used for pictures in reports and, because the released JDRL code measures its
calibration mask on the grey value of this picture, by the ``reference`` mask.
The arithmetic mirrors the widely used numpy ``flow_to_color`` step by step
(float32 angles, float64 wheel, ``floor(255 * c)``), so the 8-bit colours agree.
"""

from __future__ import annotations

import math

import torch

_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def colour_wheel(dtype=torch.float64, device=None) -> torch.Tensor:
    """The 55 x 3 wheel (RGB, 0..255)."""
    rows = []
    for name, n in _SEGMENTS:
        ramp = [math.floor(255 * i / n) for i in range(n)]
        for r in ramp:
            rows.append({
                "RY": (255, r, 0), "YG": (255 - r, 255, 0), "GC": (0, 255, r),
                "CB": (0, 255 - r, 255), "BM": (r, 0, 255), "MR": (255, 0, 255 - r),
            }[name])
    return torch.tensor(rows, dtype=dtype, device=device)


def flow_to_color(flow: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)`` flow -> ``(B, 3, H, W)`` uint8 RGB, normalised by each image's largest radius."""
    flow = flow.detach().float()
    u, v = flow[:, 0], flow[:, 1]
    rad_max = torch.sqrt(u * u + v * v).flatten(1).max(dim=1).values.view(-1, 1, 1)
    u = u / (rad_max + 1e-5)
    v = v / (rad_max + 1e-5)
    wheel = colour_wheel(device=flow.device)
    ncols = wheel.shape[0]
    rad = torch.sqrt(u * u + v * v)
    angle = torch.atan2(-v, -u) / math.pi
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = torch.floor(fk).long()
    k1 = torch.where(k0 + 1 == ncols, torch.zeros_like(k0), k0 + 1)
    f = (fk - k0.float()).double()
    rad64 = rad.double()
    channels = []
    for c in range(3):
        col = (1 - f) * (wheel[k0, c] / 255.0) + f * (wheel[k1, c] / 255.0)
        col = torch.where(rad <= 1, 1 - rad64 * (1 - col), col * 0.75)
        channels.append(torch.floor(255 * col).to(torch.uint8))
    return torch.stack(channels, dim=1)


def rgb_to_gray_u8(rgb: torch.Tensor) -> torch.Tensor:
    """OpenCV 4's 8-bit ``COLOR_RGB2GRAY`` (ITU-R 601, 14-bit fixed point, rounded).

    The released code ran on OpenCV 4; OpenCV 5 rounds with 15-bit weights and
    differs by one grey level on about 0.1 % of colours, which can flip mask pixels.
    The formula is spelled out so the result does not depend on the installed OpenCV.
    """
    r, g, b = (rgb[:, i].to(torch.int32) for i in range(3))
    return ((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14).unsqueeze(1)
