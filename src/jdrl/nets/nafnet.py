"""NAFNet (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022), GoPro configurations.

A U-shaped network of NAF blocks (nonlinear-activation-free: LayerNorm, 1x1 and depthwise
3x3 convolutions, a "simple gate" ``x1 * x2`` instead of an activation, and a simplified
channel attention). Down-sampling is a 2x2 stride-2 convolution, up-sampling a bias-free
1x1 convolution and a pixel shuffle; skips are added, not concatenated, and the network
predicts a residual on its input.

Registry entries ``nafnet_w32`` (17,111,907 parameters) and ``nafnet_w64`` (67,888,835) build
the released GoPro configurations: ``enc_blk_nums (1, 1, 1, 28)``, one middle block,
``dec_blk_nums (1, 1, 1, 1)``, with TLC on, as the official test configuration
(``NAFNetLocal``) runs them.

TLC (test-time local converter, Chu et al. 2021): trained on 256x256 crops, the channel
attention's global average pool is replaced at test time by a local box mean whose
kernel is 1.5x the feature size seen in training (384, 192, 96, 48 on the four levels
and 24 in the middle). A pool is global, exactly as without TLC, while its kernel covers
the whole feature map in both directions (so for padded inputs of at most 384x384 pixels
TLC changes nothing); otherwise it takes the mean over each ``min(h, kh) x min(w, kw)``
window and replicate-pads the result back to ``h x w``. The official code finds the
kernels by one dummy 256x256 forward at construction (consuming the global RNG); here they
are computed from the sizes, with the same result and no forward.

Parameter names, shapes and order are those of the official ``NAFNet_arch.py`` (TLC adds
none), so a released ``NAFNet-GoPro-width*.pth`` loads strictly after
:func:`official_state_dict` unwraps it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.config import Range
from jdrl.errors import WeightsError
from jdrl.nets import NETS
from jdrl.nets.official import unwrap_state
from jdrl.nets.options import Option, build_with_defaults, flag, integer, integers
from jdrl.nets.record import NetRecord, OfficialFile, frozen
from jdrl.nets.tiling import TileHint

# Keys that identify a NAFNet state dict (any configuration with at least one level).
SIGNATURE_KEYS = ("intro.weight", "ending.weight", "downs.0.weight")

GOPRO_BLOCKS = {"enc_blk_nums": (1, 1, 1, 28), "middle_blk_num": 1, "dec_blk_nums": (1, 1, 1, 1)}
OPTION_NAMES = ("img_channel", "width", "middle_blk_num", "enc_blk_nums", "dec_blk_nums", "tlc", "train_size",
                "base_size")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (biased variance, eps 1e-6), per pixel.

    The official code wraps the same formula in a custom autograd function with a
    hand-written backward; autograd of these operations gives the same gradients.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + self.eps).sqrt()
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2


def _box_mean(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Means over every ``kh x kw`` window inside ``x`` (valid region: ``h-kh+1 x w-kw+1``).

    Separable running sums (cumulative sum, then differences ``kw`` / ``kh`` apart): O(1)
    per pixel whatever the kernel, and more accurate than one 2-D integral image because
    the sums stay smaller.
    """
    s = F.pad(x.cumsum(dim=-1), (1, 0))
    rows = s[..., kw:] - s[..., :-kw]
    s = F.pad(rows.cumsum(dim=-2), (0, 0, 1, 0))
    return (s[..., kh:, :] - s[..., :-kh, :]) / (kh * kw)


class LocalAvgPool2d(nn.Module):
    """TLC's pool: the global mean while ``kernel_size`` covers the input, else a local box mean.

    For an input of ``h x w`` with ``kernel_size >= (h, w)`` (both) it returns the
    ``(N, C, 1, 1)`` global mean; otherwise the mean over ``min(h, kh) x min(w, kw)`` windows,
    replicate-padded (half before, the odd pixel after) back to ``(N, C, h, w)``, as the
    official ``local_arch.AvgPool2d`` (``fast_imp=False``). No parameters or buffers.
    """

    def __init__(self, kernel_size: tuple[int, int]):
        super().__init__()
        kh, kw = kernel_size
        if kh < 1 or kw < 1:
            raise ValueError(f"kernel_size must be positive, got {kernel_size}")
        self.kernel_size = (int(kh), int(kw))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        kh, kw = self.kernel_size
        if kh >= h and kw >= w:
            return F.adaptive_avg_pool2d(x, 1)
        out = _box_mean(x, min(h, kh), min(w, kw))
        dh, dw = h - out.shape[-2], w - out.shape[-1]
        return F.pad(out, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode="replicate")


class NAFBlock(nn.Module):
    """Norm -> 1x1 (c -> 2c) -> depthwise 3x3 -> gate -> channel attention -> 1x1, scaled by ``beta``;
    then norm -> 1x1 (c -> 2c) -> gate -> 1x1, scaled by ``gamma``; both residual.

    ``pool`` is the channel attention's pooling: global (``nn.AdaptiveAvgPool2d(1)``) or TLC's.
    ``beta`` and ``gamma`` start at zero, so a fresh block is the identity.
    """

    def __init__(self, channels: int, pool: nn.Module):
        super().__init__()
        c, dw = channels, 2 * channels
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.sca = nn.Sequential(pool, nn.Conv2d(dw // 2, dw // 2, 1))  # names sca.1.* as official
        self.sg = SimpleGate()
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + x * self.gamma


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _counts(values: Any, name: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence of block counts, got {values!r}")
    return tuple(_count(v, f"{name}[{i}]", 0) for i, v in enumerate(values))


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad right and bottom up to a multiple of ``multiple`` (as the official ``check_image_size``)."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple))


class NAFNet(nn.Module):
    """NAFNet; with ``tlc=True`` the official ``NAFNetLocal`` (the released test configuration).

    Args:
        img_channel: image channels (3: RGB in, RGB out).
        width: channels of the first level (32 or 64 in the GoPro releases); each level doubles them.
        middle_blk_num: NAF blocks at the lowest resolution.
        enc_blk_nums, dec_blk_nums: NAF blocks per encoder / decoder level (same number of levels).
        tlc: TLC pooling in the channel attention (see the module docstring); ``False`` is
            the plain global pooling of the official ``NAFNet`` class (and of training).
        train_size: training crop size (int or (H, W)); with ``base_size`` it fixes the TLC kernels.
        base_size: TLC kernel at full resolution; default ``int(1.5 * train_size)`` (384 for 256).

    ``forward`` takes any H x W: it zero-pads right/bottom to a multiple of
    ``2 ** len(enc_blk_nums)`` (16) and crops back, so ``size_multiple`` (16, the official
    value, used by tilers) is a preference rather than a requirement; 1 would work too.
    The output is not clamped.
    """

    size_multiple: int = 16

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 32,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = GOPRO_BLOCKS["enc_blk_nums"],
        dec_blk_nums: Sequence[int] = GOPRO_BLOCKS["dec_blk_nums"],
        tlc: bool = False,
        train_size: int | Sequence[int] = 256,
        base_size: int | Sequence[int] | None = None,
    ):
        super().__init__()
        self.img_channel = _count(img_channel, "img_channel", 1)
        width = _count(width, "width", 1)
        middle_blk_num = _count(middle_blk_num, "middle_blk_num", 0)
        enc, dec = _counts(enc_blk_nums, "enc_blk_nums"), _counts(dec_blk_nums, "dec_blk_nums")
        if len(enc) != len(dec):
            raise ValueError(f"enc_blk_nums and dec_blk_nums need as many levels, got {len(enc)} and {len(dec)}")
        self.tlc = bool(tlc)
        train = _pair(train_size, "train_size")
        base = _pair(base_size, "base_size") if base_size is not None else (int(1.5 * train[0]), int(1.5 * train[1]))
        self.padder_size = 2 ** len(enc)
        if self.padder_size != 16:  # the class value is the official configuration's
            self.size_multiple = self.padder_size
        self._train_size, self._base_size = train, base

        # Registration order gives the official state-dict order: intro, ending, encoders, decoders,
        # middle_blks, ups, downs.
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        chan, level = width, 0
        downs = []
        for num in enc:
            self.encoders.append(self._blocks(chan, num, level))
            downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan, level = 2 * chan, level + 1
        self.middle_blks = self._blocks(chan, middle_blk_num, level)
        ups = []
        for num in dec:
            ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 1, bias=False), nn.PixelShuffle(2)))
            chan, level = chan // 2, level - 1
            self.decoders.append(self._blocks(chan, num, level))
        self.ups = nn.ModuleList(ups)
        self.downs = nn.ModuleList(downs)

    def tlc_kernel(self, level: int) -> tuple[int, int]:
        """The TLC kernel at ``level`` (0 = full resolution): the level's feature size on a
        (padded) training crop, times ``base_size / train_size`` (rounded down), as the official code fixes it.
        """
        sizes = []
        for train, base in zip(self._train_size, self._base_size):
            padded = train + (-train % self.padder_size)
            sizes.append((padded >> level) * base // train)
        return sizes[0], sizes[1]

    def _pool(self, level: int) -> nn.Module:
        return LocalAvgPool2d(self.tlc_kernel(level)) if self.tlc else nn.AdaptiveAvgPool2d(1)

    def _blocks(self, channels: int, count: int, level: int) -> nn.Sequential:
        return nn.Sequential(*(NAFBlock(channels, self._pool(level)) for _ in range(count)))

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.img_channel:
            raise ValueError(
                f"nafnet expects a batch (B, {self.img_channel}, H, W), got shape {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The restored batch, same shape as ``x`` (any H x W)."""
        self._check(x)
        h, w = x.shape[-2:]
        inp = _pad_to_multiple(x, self.padder_size)
        feat = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            feat = encoder(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.middle_blks(feat)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            feat = decoder(up(feat) + skip)
        out = self.ending(feat) + inp
        return out[:, :, :h, :w]


#: the options NAFNet accepts, checked before it is built (:mod:`jdrl.nets.options`)
OPTIONS = {"img_channel": integer(1, 64), "width": integer(1, 1024), "middle_blk_num": integer(0, 256),
           "enc_blk_nums": integers(0, 256, max_items=8), "dec_blk_nums": integers(0, 256, max_items=8),
           "tlc": flag(), "train_size": Option("int_or_pair", Range(ge=1, le=16384)),
           "base_size": Option("int_or_pair", Range(ge=1, le=16384), nullable=True)}


# What jdrl knows about these networks besides their code (jdrl.nets.record): the tile hints benchmarks/tiling.py
# suggests (docs/RESULTS.md, "Tiling"; the rule in jdrl.nets.tiling) and their released weight files.
RECORDS = {
    "nafnet_w32": NetRecord(tile=TileHint(overlap=80, tile=576, max_whole_pixels=2_800_000, tolerance=1e-3),
                     official=OfficialFile("jdrl.nets.nafnet", fixed=frozen({"tlc": True}))),
    "nafnet_w64": NetRecord(tile=TileHint(overlap=80, tile=512, max_whole_pixels=2_100_000, tolerance=1e-3),
                     official=OfficialFile("jdrl.nets.nafnet", fixed=frozen({"tlc": True}), match=frozen({"width": 64}))),
}


@NETS.register("nafnet_w32", options=OPTIONS, record=RECORDS["nafnet_w32"])
def nafnet_w32(**options: Any) -> NAFNet:
    """NAFNet-GoPro-width32 as released and tested (``NAFNetLocal``, TLC on); ``options`` override."""
    return build_with_defaults(NAFNet, {"width": 32, **GOPRO_BLOCKS, "tlc": True}, options, "NAFNet", OPTION_NAMES)


@NETS.register("nafnet_w64", options=OPTIONS, record=RECORDS["nafnet_w64"])
def nafnet_w64(**options: Any) -> NAFNet:
    """NAFNet-GoPro-width64 as released and tested (``NAFNetLocal``, TLC on); ``options`` override."""
    return build_with_defaults(NAFNet, {"width": 64, **GOPRO_BLOCKS, "tlc": True}, options, "NAFNet", OPTION_NAMES)


def official_state_dict(checkpoint: Mapping) -> dict:
    """The bare state dict of an official NAFNet weight file (what ``torch.load`` returns).

    BasicSR saves ``{'params': state_dict}`` (``params_ema`` as well with EMA); ``params`` is
    preferred, as BasicSR's loader does. A leading ``module.`` is removed. A bare state dict
    is accepted too.
    """
    return unwrap_state(checkpoint, "NAFNet", SIGNATURE_KEYS)


def _block_counts(state: Mapping, prefix: str) -> dict[int, int]:
    """``{level: blocks}`` from keys ``<prefix>.<level>.<block>.*``."""
    counts: dict[int, int] = {}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(\d+)\.")
    for key in state:
        match = pattern.match(key)
        if match:
            level, block = int(match[1]), int(match[2])
            counts[level] = max(counts.get(level, 0), block + 1)
    return counts


def infer_options(state: Mapping) -> dict:
    """Constructor options (``img_channel``, ``width``, block counts) of a bare NAFNet state dict.

    Levels are counted from ``downs.*`` / ``ups.*`` (a level with no blocks has no
    ``encoders.i.*`` keys); TLC is not a weight property and is left to the caller.
    """
    if "intro.weight" not in state:
        raise WeightsError("not a NAFNet state dict: no intro.weight")
    width, img_channel = (int(n) for n in state["intro.weight"].shape[:2])
    levels = _levels(state, "downs", r"(\d+)\.weight")
    if _levels(state, "ups", r"(\d+)\.0\.weight") != levels:
        raise WeightsError("not a NAFNet state dict: it has different numbers of downs.* and ups.*")
    enc, dec = _block_counts(state, "encoders"), _block_counts(state, "decoders")
    middle = 1 + max((int(m[1]) for k in state if (m := re.match(r"^middle_blks\.(\d+)\.", k))), default=-1)
    return {
        "img_channel": img_channel,
        "width": width,
        "middle_blk_num": middle,
        "enc_blk_nums": [enc.get(i, 0) for i in range(levels)],
        "dec_blk_nums": [dec.get(i, 0) for i in range(levels)],
    }


def _levels(state: Mapping, prefix: str, tail: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}\.{tail}$")
    return 1 + max((int(m[1]) for k in state if (m := pattern.match(k))), default=-1)
