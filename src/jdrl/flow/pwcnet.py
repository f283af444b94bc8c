"""PWC-Net (Sun et al. 2018) as the JDRL authors use it (sniklaus/pytorch-pwc), pure PyTorch.

Faithful to the released pipeline: the network sees **BGR** in [0, 1] (sniklaus's
``run.py`` flips PIL's RGB; the JDRL code feeds OpenCV's BGR), inputs are resized to a
multiple of 64, and the quarter-resolution output is upsampled and multiplied by 20.
The CuPy cost volume is replaced by :func:`correlation`, the same numbers in PyTorch.
``network(first, second)`` gives ``second(p + flow) ~= first(p)``, our convention.

Weight files from the authors name modules ``moduleExtractor.moduleOne...``; they are
renamed to ``netExtractor.netOne...`` (what the released code does), and a DataParallel
``module.`` prefix is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.flow.base import FLOWS, FlowEstimator, weights_for
from jdrl.weights import load_strict, strip_prefix

MAX_DISPLACEMENT = 4
VOLUME = (2 * MAX_DISPLACEMENT + 1) ** 2  # 81 cost channels
NAMES = ("One", "Two", "Thr", "Fou", "Fiv", "Six")
FEATURES = (16, 32, 64, 96, 128, 196)  # extractor widths, level 1..6
DENSE = (128, 128, 96, 64, 32)  # decoder DenseNet widths
OUTPUT_SCALE = 20.0


def correlation(first: torch.Tensor, second: torch.Tensor, max_displacement: int = MAX_DISPLACEMENT) -> torch.Tensor:
    """Cost volume ``out[:, k](p) = mean_c first(p) * second(p + d)``, zero where ``p + d`` is outside.

    ``d = (dx, dy)`` in ``[-m, m]^2`` with channel ``k = (dy + m) * (2m + 1) + (dx + m)``, as the
    CuPy kernel of sniklaus/pytorch-pwc (which divides by the channel count). One displacement
    at a time keeps memory at two feature maps instead of ``(2m+1)^2``.
    """
    m = max_displacement
    height, width = first.shape[-2:]
    padded = F.pad(second, (m, m, m, m))
    side = 2 * m + 1
    out = first.new_empty(first.shape[0], side * side, height, width)
    for dy in range(side):
        for dx in range(side):
            shifted = padded[:, :, dy:dy + height, dx:dx + width]
            out[:, dy * side + dx] = (first * shifted).mean(1)
    return out


def backwarp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The released code's backward warp: zero padding, and zero wherever any tap fell outside.

    Its grid is pixel centres (``align_corners=False``) while the flow is normalised by
    ``(size - 1) / 2``; kept as is because the weights were trained with it.
    """
    batch, _, height, width = flow.shape
    xs = torch.linspace(-1.0 + 1.0 / width, 1.0 - 1.0 / width, width, device=flow.device, dtype=flow.dtype)
    ys = torch.linspace(-1.0 + 1.0 / height, 1.0 - 1.0 / height, height, device=flow.device, dtype=flow.dtype)
    grid = torch.stack([xs.view(1, -1).expand(height, -1), ys.view(-1, 1).expand(-1, width)]).unsqueeze(0)
    half = torch.tensor([image.shape[3] - 1.0, image.shape[2] - 1.0], device=flow.device, dtype=flow.dtype) / 2.0
    sample_at = (grid + flow / half.view(1, 2, 1, 1)).permute(0, 2, 3, 1)
    ones = image.new_ones(batch, 1, height, width)
    out = F.grid_sample(
        torch.cat([image, ones], 1), sample_at, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    inside = (out[:, -1:] > 0.999).to(out.dtype)
    return out[:, :-1] * inside


def _leaky() -> nn.Module:
    return nn.LeakyReLU(negative_slope=0.1, inplace=False)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=dilation, dilation=dilation)


class Extractor(nn.Module):
    """Six-level feature pyramid, each level stride-2 conv + two convs (``netOne`` ... ``netSix``)."""

    def __init__(self) -> None:
        super().__init__()
        for name, cin, cout in zip(NAMES, (3,) + FEATURES[:-1], FEATURES):
            layers = [_conv(cin, cout, stride=2), _leaky(), _conv(cout, cout), _leaky(), _conv(cout, cout), _leaky()]
            setattr(self, "net" + name, nn.Sequential(*layers))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for name in NAMES:
            image = getattr(self, "net" + name)(image)
            features.append(image)
        return features


def _decoder_input(level: int) -> int:
    """Channels entering the decoder of ``level``: cost volume (+ features, flow, upsampled feature at levels < 6)."""
    return VOLUME if level == 6 else VOLUME + FEATURES[level - 1] + 2 + 2


class Decoder(nn.Module):
    """Flow estimator at one pyramid level: cost volume -> DenseNet of 5 convs -> flow (``netOne`` ... ``netSix``)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        current = _decoder_input(level)
        if level < 6:
            previous = _decoder_input(level + 1) + sum(DENSE)
            self.netUpflow = nn.ConvTranspose2d(2, 2, kernel_size=4, stride=2, padding=1)
            self.netUpfeat = nn.ConvTranspose2d(previous, 2, kernel_size=4, stride=2, padding=1)
            # The coarser flow is in units of 20 px at full resolution / 2**level: back to this level's pixels.
            self.backwarp_scale = OUTPUT_SCALE / 2**level
        width = current
        for name, cout in zip(NAMES, DENSE):
            setattr(self, "net" + name, nn.Sequential(_conv(width, cout), _leaky()))
            width += cout
        self.netSix = nn.Sequential(_conv(width, 2))

    def forward(self, first: torch.Tensor, second: torch.Tensor, previous: tuple[torch.Tensor, torch.Tensor] | None):
        if previous is None:
            feat = F.leaky_relu(correlation(first, second), 0.1)
        else:
            flow = self.netUpflow(previous[0])
            upfeat = self.netUpfeat(previous[1])
            volume = F.leaky_relu(correlation(first, backwarp(second, flow * self.backwarp_scale)), 0.1)
            feat = torch.cat([volume, first, flow, upfeat], 1)
        for name in NAMES[:5]:
            feat = torch.cat([getattr(self, "net" + name)(feat), feat], 1)
        return self.netSix(feat), feat


class Refiner(nn.Module):
    """Context network: dilated convs (1, 2, 4, 8, 16, 1, 1) on the last decoder features."""

    def __init__(self) -> None:
        super().__init__()
        widths = (_decoder_input(2) + sum(DENSE), 128, 128, 128, 96, 64, 32)
        layers: list[nn.Module] = []
        for cin, cout, dilation in zip(widths, widths[1:], (1, 2, 4, 8, 16, 1)):
            layers += [_conv(cin, cout, dilation=dilation), _leaky()]
        layers.append(_conv(32, 2))
        self.netMain = nn.Sequential(*layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.netMain(feat)


class PWCNet(FlowEstimator):
    """PWC-Net flow ``b(p + flow(p)) ~= a(p)`` on RGB input (fed to the network as BGR)."""

    size_multiple = 64
    resize_mode = "resize"

    def __init__(self) -> None:
        super().__init__()
        self.netExtractor = Extractor()
        for level in range(2, 7):
            setattr(self, "net" + NAMES[level - 1], Decoder(level))
        self.netRefiner = Refiner()

    def network(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """The released network: BGR [0, 1] inputs -> flow / 20 at quarter resolution."""
        feats_first, feats_second = self.netExtractor(first), self.netExtractor(second)
        estimate = None
        for level in range(6, 1, -1):
            decoder = getattr(self, "net" + NAMES[level - 1])
            estimate = decoder(feats_first[level - 1], feats_second[level - 1], estimate)
        flow, feat = estimate
        return flow + self.netRefiner(feat)

    def estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        bgr = [2, 1, 0]
        flow = self.network(a[:, bgr].contiguous(), b[:, bgr].contiguous())
        return OUTPUT_SCALE * F.interpolate(flow, size=a.shape[-2:], mode="bilinear", align_corners=False)


def canonical_keys(state: Mapping[str, torch.Tensor]) -> dict:
    """Current ``net…`` names from any released naming: drop ``module.``, rename ``moduleX`` -> ``netX``."""

    def rename(part: str) -> str:
        return "net" + part[len("module"):] if part.startswith("module") and part != "module" else part

    return {".".join(rename(p) for p in key.split(".")): value for key, value in strip_prefix(state, "module.").items()}


@FLOWS.register("pwcnet")
def build_pwcnet(weights: str | os.PathLike | None = None) -> PWCNet:
    """PWC-Net with the weight file at ``weights`` (sniklaus / JDRL authors' file, either naming)."""
    state = weights_for(
        weights, "pwcnet", "PWC-Net needs the weight file of sniklaus/pytorch-pwc (as used by the JDRL authors)."
    )
    model = PWCNet()
    load_strict(model, canonical_keys(state), str(weights))
    return model
