"""Restormer (Zamir et al., CVPR 2022), single-image defocus-deblurring configuration.

A four-level U-shaped transformer. Every level is a stack of transformer blocks made
of a channel LayerNorm, MDTA (multi-Dconv-head *transposed* attention: attention
between channels, not pixels, so its cost is linear in the image size) and GDFN (a
gated depthwise-conv feed-forward network). Down-sampling is a 3x3 conv halving the
channels followed by ``PixelUnshuffle(2)``; up-sampling a 3x3 conv doubling them
followed by ``PixelShuffle(2)``. Skip features are concatenated; levels 3 and 2
reduce the channels again with a 1x1 conv, level 1 does not, so the level-1 decoder
and the refinement blocks run at ``2 * dim`` channels. The input image is added to
the output (no clamp).

Parameter names, shapes and their order are those of the official
``basicsr/models/archs/restormer_arch.py``, so the released
``single_image_defocus_deblurring.pth`` (``{'params': state_dict}``) loads strictly
after :func:`official_state_dict`. ``build_net("restormer")`` gives the defocus
configuration (26,126,644 parameters); options build smaller variants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.errors import WeightsError
from jdrl.nets import NETS, check_input_size
from jdrl.nets.official import block_count, expansion_factor, unwrap_state
from jdrl.nets.options import flag, integer, integers, number, word
from jdrl.nets.record import NetRecord, OfficialFile
from jdrl.nets.tiling import TileHint

# network_g of Defocus_Deblurring/Options/DefocusDeblur_Single_8bit_Restormer.yml (= the official defaults).
DEFOCUS_OPTIONS: dict[str, Any] = {
    "inp_channels": 3,
    "out_channels": 3,
    "dim": 48,
    "num_blocks": (4, 6, 6, 8),
    "num_refinement_blocks": 4,
    "heads": (1, 2, 4, 8),
    "ffn_expansion_factor": 2.66,
    "bias": False,
    "LayerNorm_type": "WithBias",
    "dual_pixel_task": False,
}
LAYER_NORM_TYPES = ("WithBias", "BiasFree")
LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")  # one per entry of num_blocks / heads

# Keys only a Restormer state dict has (LaKDNet shares e.g. ``encoder_level1.0.norm1.body.weight``,
# but has neither the patch embedding nor attention temperatures).
SIGNATURE_KEYS = ("patch_embed.proj.weight", "encoder_level1.0.attn.temperature")
# Containers of the official (BasicSR) weight files, tried in this order.
CONTAINER_KEYS = ("params", "params_ema", "state_dict")

_EPS = 1e-5


class WithBiasLayerNorm(nn.Module):
    """LayerNorm over the last axis: ``(x - mean) / sqrt(var + 1e-5) * weight + bias`` (biased variance)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + _EPS) * self.weight + self.bias


class BiasFreeLayerNorm(nn.Module):
    """LayerNorm without centring: ``x / sqrt(var + 1e-5) * weight`` (the variance is still about the mean)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + _EPS) * self.weight


class ChannelLayerNorm(nn.Module):
    """Normalise each pixel's channel vector of a ``(B, C, H, W)`` map (weights under ``body``)."""

    def __init__(self, channels: int, layer_norm_type: str):
        super().__init__()
        self.body = BiasFreeLayerNorm(channels) if layer_norm_type == "BiasFree" else WithBiasLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _depthwise(channels: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=bias)


class MDTA(nn.Module):
    """Multi-Dconv-head transposed attention: per head a (C/h x C/h) attention map between channels.

    q, k, v come from a 1x1 conv then a depthwise 3x3; q and k are L2-normalised over
    the pixels, and the logits are scaled by a learnt per-head ``temperature``.
    """

    def __init__(self, channels: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=bias)
        self.qkv_dwconv = _depthwise(channels * 3, bias)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, heads, C / heads, H * W)``."""
        batch, channels, height, width = x.shape
        return x.reshape(batch, self.num_heads, channels // self.num_heads, height * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q = F.normalize(self._heads(q), dim=-1)
        k = F.normalize(self._heads(k), dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        out = (attn @ self._heads(v)).reshape(x.shape)
        return self.project_out(out)


class GDFN(nn.Module):
    """Gated-Dconv feed-forward: 1x1 to 2 x hidden, depthwise 3x3, ``gelu(a) * b``, 1x1 back."""

    def __init__(self, channels: int, expansion: float, bias: bool):
        super().__init__()
        hidden = int(channels * expansion)  # truncation, as in the official code
        self.project_in = nn.Conv2d(channels, hidden * 2, 1, bias=bias)
        self.dwconv = _depthwise(hidden * 2, bias)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``."""

    def __init__(self, channels: int, num_heads: int, expansion: float, bias: bool, layer_norm_type: str):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, layer_norm_type)
        self.attn = MDTA(channels, num_heads, bias)
        self.norm2 = ChannelLayerNorm(channels, layer_norm_type)
        self.ffn = GDFN(channels, expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def _blocks(count: int, channels: int, num_heads: int, expansion: float, bias: bool, ln_type: str) -> nn.Sequential:
    return nn.Sequential(*(TransformerBlock(channels, num_heads, expansion, bias, ln_type) for _ in range(count)))


class PatchEmbed(nn.Module):
    """The overlapping patch embedding: one bias-free 3x3 conv (the official code never passes ``bias``)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """``C -> 2C`` channels at half the size: bias-free 3x3 conv to ``C / 2``, then ``PixelUnshuffle(2)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """``C -> C / 2`` channels at twice the size: bias-free 3x3 conv to ``2C``, then ``PixelShuffle(2)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _four_ints(name: str, value: Sequence[int], minimum: int) -> tuple[int, int, int, int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 4:
        raise ValueError(f"{name} must be a sequence of 4 integers (one per level), got {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
        raise ValueError(f"{name} must hold integers >= {minimum}, got {list(value)}")
    return tuple(value)  # type: ignore[return-value]


def _validate(
    inp_channels: int,
    out_channels: int,
    dim: int,
    num_blocks: Sequence[int],
    num_refinement_blocks: int,
    heads: Sequence[int],
    ffn_expansion_factor: float,
    layer_norm_type: str,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Readable errors for options the official code would fail on deep inside (or silently mis-shape)."""
    for name, value in (("inp_channels", inp_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2 or dim % 2:
        raise ValueError(
            f"dim must be a positive even integer (Downsample halves it before PixelUnshuffle), got {dim!r}"
        )
    blocks = _four_ints("num_blocks", num_blocks, minimum=1)
    head_counts = _four_ints("heads", heads, minimum=1)
    if not isinstance(num_refinement_blocks, int) or num_refinement_blocks < 0:
        raise ValueError(f"num_refinement_blocks must be an integer >= 0, got {num_refinement_blocks!r}")
    for level, count in enumerate(head_counts):
        width = dim * 2**level
        if width % count:
            raise ValueError(
                f"level {level + 1} has {width} channels (dim * 2**{level}), not divisible by heads[{level}]={count}"
            )
    if not isinstance(ffn_expansion_factor, (int, float)) or int(dim * ffn_expansion_factor) < 1:
        raise ValueError(
            f"ffn_expansion_factor must give at least one hidden channel (int(dim * factor) >= 1), "
            f"got {ffn_expansion_factor!r} with dim={dim}"
        )
    if layer_norm_type not in LAYER_NORM_TYPES:
        raise ValueError(f"LayerNorm_type must be one of {LAYER_NORM_TYPES}, got {layer_norm_type!r}")
    return blocks, head_counts


class Restormer(nn.Module):
    """Restormer with the official constructor (defaults = the single-image defocus configuration).

    ``forward`` maps ``(B, inp_channels, H, W)`` in [0, 1] (RGB) to the restored image,
    H and W multiples of 8. With ``dual_pixel_task`` (the official dual-pixel model,
    ``inp_channels=6``) level-1 features are added through ``skip_conv`` instead of
    adding the input image.
    """

    size_multiple: int = 8

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 - the official argument name
        dual_pixel_task: bool = False,
    ):
        super().__init__()
        blocks, head_counts = _validate(
            inp_channels, out_channels, dim, num_blocks, num_refinement_blocks, heads, ffn_expansion_factor,
            LayerNorm_type,
        )
        if not dual_pixel_task and inp_channels != out_channels:
            raise ValueError(
                f"the input is added to the output, so inp_channels ({inp_channels}) must equal "
                f"out_channels ({out_channels}) unless dual_pixel_task=True"
            )
        self.inp_channels = inp_channels
        self.dual_pixel_task = dual_pixel_task
        widths = [dim * 2**level for level in range(4)]
        args = (ffn_expansion_factor, bias, LayerNorm_type)

        self.patch_embed = PatchEmbed(inp_channels, dim)
        self.encoder_level1 = _blocks(blocks[0], widths[0], head_counts[0], *args)
        self.down1_2 = Downsample(widths[0])
        self.encoder_level2 = _blocks(blocks[1], widths[1], head_counts[1], *args)
        self.down2_3 = Downsample(widths[1])
        self.encoder_level3 = _blocks(blocks[2], widths[2], head_counts[2], *args)
        self.down3_4 = Downsample(widths[2])
        self.latent = _blocks(blocks[3], widths[3], head_counts[3], *args)

        self.up4_3 = Upsample(widths[3])
        self.reduce_chan_level3 = nn.Conv2d(widths[3], widths[2], 1, bias=bias)
        self.decoder_level3 = _blocks(blocks[2], widths[2], head_counts[2], *args)
        self.up3_2 = Upsample(widths[2])
        self.reduce_chan_level2 = nn.Conv2d(widths[2], widths[1], 1, bias=bias)
        self.decoder_level2 = _blocks(blocks[1], widths[1], head_counts[1], *args)
        self.up2_1 = Upsample(widths[1])
        # Level 1 keeps the 2 * dim channels of the concatenation (no 1x1 reduction), with heads[0].
        self.decoder_level1 = _blocks(blocks[0], widths[1], head_counts[0], *args)
        self.refinement = _blocks(num_refinement_blocks, widths[1], head_counts[0], *args)
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, widths[1], 1, bias=bias)
        self.output = nn.Conv2d(widths[1], out_channels, 3, padding=1, bias=bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if self.inp_channels == 3:
            check_input_size(x, self.size_multiple, "restormer")
            return
        if x.dim() != 4 or x.shape[1] != self.inp_channels:
            raise ValueError(f"restormer expects (B, {self.inp_channels}, H, W), got shape {tuple(x.shape)}")
        check_input_size(x[:, :3], self.size_multiple, "restormer")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The restored image (the input added back inside, not clamped)."""
        self._check_input(x)
        embedded = self.patch_embed(x)
        enc1 = self.encoder_level1(embedded)
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.refinement(self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1)))
        if self.dual_pixel_task:
            return self.output(dec1 + self.skip_conv(embedded))
        return self.output(dec1) + x


#: the options Restormer accepts, checked before it is built (:mod:`jdrl.nets.options`)
OPTIONS = {"inp_channels": integer(1, 64), "out_channels": integer(1, 64), "dim": integer(1, 1024),
           "num_blocks": integers(0, 256, length=4), "num_refinement_blocks": integer(0, 256),
           "heads": integers(1, 256, length=4), "ffn_expansion_factor": number(gt=0, le=64), "bias": flag(),
           "LayerNorm_type": word(*LAYER_NORM_TYPES), "dual_pixel_task": flag()}


# What jdrl knows about these networks besides their code (jdrl.nets.record): the tile hints benchmarks/tiling.py
# suggests (docs/RESULTS.md, "Tiling"; the rule in jdrl.nets.tiling) and their released weight files.
RECORDS = {
    "restormer": NetRecord(tile=TileHint(overlap=128, tile=256, max_whole_pixels=600_000, tolerance=0.1),
                     official=OfficialFile("jdrl.nets.restormer")),
}


@NETS.register("restormer", options=OPTIONS, record=RECORDS["restormer"])
def restormer(**options: Any) -> Restormer:
    """The single-image defocus Restormer (:data:`DEFOCUS_OPTIONS`); ``options`` override any constructor argument.

    E.g. ``restormer(dim=8, num_blocks=(1, 1, 1, 1), heads=(1, 1, 1, 1), num_refinement_blocks=1)``
    is a tiny net for tests and demos.
    """
    unknown = sorted(set(options) - set(DEFOCUS_OPTIONS))
    if unknown:
        raise ValueError(f"unknown restormer option(s) {unknown}; valid: {', '.join(DEFOCUS_OPTIONS)}")
    return Restormer(**{**DEFOCUS_OPTIONS, **options})


def official_state_dict(checkpoint: Mapping) -> dict:
    """The bare state dict of an official Restormer file (``{'params': state_dict}``), ``module.`` removed.

    A bare state dict is accepted too. Raises :class:`~jdrl.errors.WeightsError` when the
    result does not look like a Restormer state dict.
    """
    return unwrap_state(checkpoint, "Restormer", SIGNATURE_KEYS, containers=CONTAINER_KEYS)


def infer_options(state: Mapping) -> dict:
    """Constructor options that a bare Restormer state dict implies (all of them, JSON-friendly)."""
    missing = [key for key in (*SIGNATURE_KEYS, "output.weight") if key not in state]
    if missing:
        raise WeightsError(f"not a Restormer state dict: no {' / '.join(missing)}")
    embed = state["patch_embed.proj.weight"]
    dim = int(embed.shape[0])
    num_blocks = [block_count(state, level) for level in LEVELS]
    if 0 in num_blocks:
        raise WeightsError(f"Restormer state dict has a level without blocks: num_blocks={num_blocks}")
    try:
        heads = [int(state[f"{level}.0.attn.temperature"].shape[0]) for level in LEVELS]
        hidden = [
            (dim * 2**i, int(state[f"{level}.0.ffn.project_out.weight"].shape[1])) for i, level in enumerate(LEVELS)
        ]
    except KeyError as err:
        raise WeightsError(f"Restormer state dict lacks {err.args[0]}") from None
    return {
        "inp_channels": int(embed.shape[1]),
        "out_channels": int(state["output.weight"].shape[0]),
        "dim": dim,
        "num_blocks": num_blocks,
        "num_refinement_blocks": block_count(state, "refinement"),
        "heads": heads,
        "ffn_expansion_factor": expansion_factor(hidden, DEFOCUS_OPTIONS["ffn_expansion_factor"]),
        "bias": "encoder_level1.0.attn.qkv.bias" in state,
        "LayerNorm_type": "WithBias" if "encoder_level1.0.norm1.body.bias" in state else "BiasFree",
        "dual_pixel_task": "skip_conv.weight" in state,
    }
