"""The paper's baseline UNet, identical to the authors' released ``VGG_Deblur``.

supplement Table 6: a VGG-style encoder (64-128-256-512-1024, dropout 0.4 after the last two
levels), a decoder whose up-sampling is nearest 2x followed by a 2x2 convolution with
TensorFlow-style "same" padding (one pixel on the right and bottom only), skip
concatenation ``[upsampled, skip]``, and a sigmoid output. Parameter names match the
released checkpoints, so their ``G_state_dict`` loads strictly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.nets import NETS, check_input_size
from jdrl.nets.options import flag, number, word
from jdrl.nets.record import NetRecord, ReleasedFile, frozen
from jdrl.nets.tiling import TileHint

ENCODER_CHANNELS = (64, 128, 256, 512, 1024)


class RightBottomPadConv2d(nn.Conv2d):
    """A convolution with TF "same" padding for an even kernel: the extra row/column go right and bottom.

    Only used with kernel 2, where "same" needs exactly one pixel, placed (as TensorFlow
    and the released code do) after the image rather than before it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2):
        if kernel_size != 2:
            raise ValueError("RightBottomPadConv2d is defined for 2x2 kernels only")
        super().__init__(in_channels, out_channels, kernel_size, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, [0, 1, 0, 1]))


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv3-ReLU-conv3-ReLU (indices 0 and 2 hold the weights, as in the released names)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


def _up(in_channels: int, out_channels: int) -> nn.Sequential:
    """Nearest 2x up-sampling then a 2x2 "same" convolution, no activation (names ``upN.1.*``)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), RightBottomPadConv2d(in_channels, out_channels))


class UNetEncoder(nn.Module):
    """Five double-conv levels with max-pooling between them; returns every level's output."""

    def __init__(self, channels: tuple[int, ...], dropout: float):
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.block1 = _double_conv(3, c1)
        self.max1 = nn.MaxPool2d(2)
        self.block2 = _double_conv(c1, c2)
        self.max2 = nn.MaxPool2d(2)
        self.block3 = _double_conv(c2, c3)
        self.max3 = nn.MaxPool2d(2)
        self.block4 = _double_conv(c3, c4)
        self.drop4 = nn.Dropout(dropout)
        self.max4 = nn.MaxPool2d(2)
        self.block5 = _double_conv(c4, c5)
        self.drop5 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x1 = self.block1(x)
        x2 = self.block2(self.max1(x1))
        x3 = self.block3(self.max2(x2))
        x4 = self.drop4(self.block4(self.max3(x3)))
        x5 = self.drop5(self.block5(self.max4(x4)))
        return [x1, x2, x3, x4, x5]


#: the options a UNet accepts, checked before it is built (:mod:`jdrl.nets.options`)
OPTIONS = {"width": number(gt=0, le=16), "dropout": number(ge=0, lt=1), "channel_order": word("rgb", "bgr"),
           "residual": flag()}


# What jdrl knows about these networks besides their code (jdrl.nets.record): the tile hints benchmarks/tiling.py
# suggests (docs/RESULTS.md, "Tiling"; the rule in jdrl.nets.tiling) and their released weight files.
RECORDS = {
    "unet": NetRecord(tile=TileHint(overlap=256, tile=512, max_whole_pixels=2_000_000, tolerance=1e-5),
                     released=ReleasedFile("encoder.block1.0.weight", frozen({"channel_order": "bgr"}), border="released-unet")),
}


@NETS.register("unet", options=OPTIONS, record=RECORDS["unet"])
class UNet(nn.Module):
    """The released ``VGG_Deblur`` (31,033,411 parameters at ``width=1``).

    Args:
        width: channel multiplier (channels = max(1, round(c * width))) for small
            test/demo models; 1.0 is the paper's network.
        dropout: dropout probability after the two deepest encoder levels.
        channel_order: the channel order the *weights* expect. ``"bgr"`` (the released
            checkpoints, trained on OpenCV-read images) flips channels of the input and
            output inside ``forward``, so callers always pass and receive RGB.
        residual: not in the paper. The last conv predicts a correction of the input's
            logit, ``sigmoid(logit(x) + out)``, and starts at zero, so the untrained
            network is the identity; small models on small budgets train much faster.
            The parameters are the same as without it.
    """

    size_multiple: int = 16

    def __init__(
        self,
        width: float = 1.0,
        dropout: float = 0.4,
        channel_order: Literal["rgb", "bgr"] = "rgb",
        residual: bool = False,
    ):
        super().__init__()
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.channel_order = channel_order
        self.residual = residual
        c1, c2, c3, c4, c5 = (max(1, round(c * width)) for c in ENCODER_CHANNELS)
        self.encoder = UNetEncoder((c1, c2, c3, c4, c5), dropout)
        self.up6, self.block6 = _up(c5, c4), _double_conv(2 * c4, c4)
        self.up7, self.block7 = _up(c4, c3), _double_conv(2 * c3, c3)
        self.up8, self.block8 = _up(c3, c2), _double_conv(2 * c2, c2)
        self.up9, self.block9 = _up(c2, c1), _double_conv(2 * c1, c1)
        self.out = nn.Sequential(nn.Conv2d(c1, 3, 3, padding=1))
        self._init_weights()

    def _init_weights(self) -> None:
        """As released: Kaiming-normal (fan_out, ReLU) conv weights, PyTorch's default biases."""
        for module in self.modules():
            # Meta tensors (shape-only builds, e.g. ``jdrl nets``) have no values to draw.
            if isinstance(module, nn.Conv2d) and not module.weight.is_meta:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if self.residual and not self.out[0].weight.is_meta:
            nn.init.zeros_(self.out[0].weight)
            nn.init.zeros_(self.out[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.size_multiple, "unet")
        if self.channel_order == "bgr":
            x = x.flip(1)
        x1, x2, x3, x4, x5 = self.encoder(x)
        y = self.block6(torch.cat([self.up6(x5), x4], dim=1))
        y = self.block7(torch.cat([self.up7(y), x3], dim=1))
        y = self.block8(torch.cat([self.up8(y), x2], dim=1))
        y = self.block9(torch.cat([self.up9(y), x1], dim=1))
        logit = self.out(y)
        if self.residual:
            logit = logit + torch.logit(x.clamp(1e-3, 1 - 1e-3))
        out = torch.sigmoid(logit)
        return out.flip(1) if self.channel_order == "bgr" else out
