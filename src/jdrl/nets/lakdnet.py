"""LaKDNet (Ruan et al., "Revisiting Image Deblurring with an Efficient ConvNet"), single-image defocus models.

A four-level U-shaped *convolutional* network with Restormer's skeleton but no
attention: every level is a stack of mixer blocks, each a channel LayerNorm, a
large-kernel "mixer" (two rounds of a depthwise ``k x k`` conv and a 1x1 conv, every
shortcut going back to the mixer's input) and Restormer's gated-Dconv feed-forward.
Down-sampling is a 3x3 conv halving the channels followed by ``PixelUnshuffle(2)``;
up-sampling a 3x3 conv doubling them followed by ``PixelShuffle(2)``. Skip features
are concatenated; levels 3 and 2 reduce the channels with a 1x1 conv, level 1 does
not, so the level-1 decoder runs at ``2 * dim`` channels. There is no refinement
stage. The input image is added to the output, which is then clipped to [0, 1].

Two details of the official code are kept as they are:

* a mixer block's feed-forward residual goes back to the block *input*:
  ``y = x + mixer(norm1(x))`` then ``out = x + ffn(norm2(y))`` (the mixer's residual
  only reaches the output through ``norm2``);
* the mixer's 1x1 convs always have a bias (``nn.Conv2d`` default), so the state dict
  has bias keys although ``bias=False``.

Parameter names, shapes and their order are those of the official
``models/LaKDNet.py``, so the released DPDD weights (a bare state dict,
``train_on_dpdd_s.pth`` / ``train_on_dpdd_l.pth``) load strictly. ``lakdnet`` is the
small DPDD model (dim 32, 17,727,632 parameters), ``lakdnet_large`` the large one
(dim 48, 38,412,576); options build smaller variants.

Unlike the official class (whose defaults, ``mix_kernel_size=[1, 2, 4, 8]``, have even
kernels that would change the feature size), :class:`LaKDNet`'s defaults are the small
DPDD configuration, and kernel sizes must be odd.
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
from jdrl.nets.options import build_with_defaults, flag, integer, integers, number, word
from jdrl.nets.record import NetRecord, OfficialFile, frozen
from jdrl.nets.restormer import GDFN, ChannelLayerNorm, Downsample, Upsample
from jdrl.nets.tiling import TileHint

# Defocus.network_s of the official options/Test_configs.yml (test status 'train_on_dpdd_s'),
# with the constructor defaults it relies on.
DPDD_SMALL_OPTIONS: dict[str, Any] = {
    "inp_channels": 3,
    "out_channels": 3,
    "dim": 32,
    "num_blocks": (8, 12, 12, 16),
    "mix_kernel_size": (9, 9, 9, 9),
    "ffn_expansion_factor": 2.3,
    "bias": False,
    "LayerNorm_type": "WithBias",
    "dual_pixel_task": False,
}
# Defocus.network_l ('train_on_dpdd_l'): the same with 48 channels.
DPDD_LARGE_OPTIONS: dict[str, Any] = {**DPDD_SMALL_OPTIONS, "dim": 48}

LAYER_NORM_TYPES = ("WithBias", "BiasFree")
LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")  # one per entry of num_blocks

# Keys only a LaKDNet state dict has (Restormer shares the block, norm and ffn names, but calls its
# first conv ``patch_embed.proj`` and has ``attn`` where LaKDNet has ``mixer``).
SIGNATURE_KEYS = ("embed.weight", "encoder_level1.0.mixer.dense_depth_1.weight")
# Wrappers a re-saved file may have (the official files are bare state dicts), tried in this order.
CONTAINER_KEYS = ("params", "params_ema", "state_dict")


class MixerLayer(nn.Module):
    """The large-kernel token mixer: two rounds of depthwise ``k x k`` then 1x1, GELU after each conv.

    ``s = x + gelu(depth_1(x)); s = x + gelu(point_1(s)); t = x + gelu(depth_2(s));
    out = x + gelu(point_2(t))``: every shortcut adds the layer input ``x``.
    """

    def __init__(self, channels: int, kernel_size: int, bias: bool):
        super().__init__()
        self.dense_depth_1 = _depthwise(channels, kernel_size, bias)
        self.dense_point_1 = nn.Conv2d(channels, channels, 1)  # always with a bias, as in the official code
        self.dense_depth_2 = _depthwise(channels, kernel_size, bias)
        self.dense_point_2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = x + F.gelu(self.dense_depth_1(x))
        step = x + F.gelu(self.dense_point_1(step))
        step = x + F.gelu(self.dense_depth_2(step))
        return x + F.gelu(self.dense_point_2(step))


def _depthwise(channels: int, kernel_size: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=bias)


class MixerBlock(nn.Module):
    """``y = x + mixer(norm1(x))``, then ``x + ffn(norm2(y))`` (the second residual is the block input)."""

    def __init__(self, channels: int, kernel_size: int, expansion: float, bias: bool, layer_norm_type: str):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, layer_norm_type)
        self.mixer = MixerLayer(channels, kernel_size, bias)
        self.norm2 = ChannelLayerNorm(channels, layer_norm_type)
        self.ffn = GDFN(channels, expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = x + self.mixer(self.norm1(x))
        return x + self.ffn(self.norm2(mixed))


def _blocks(count: int, channels: int, kernel_size: int, expansion: float, bias: bool, ln_type: str) -> nn.Sequential:
    return nn.Sequential(*(MixerBlock(channels, kernel_size, expansion, bias, ln_type) for _ in range(count)))


def _four_ints(name: str, value: Sequence[int], minimum: int) -> tuple[int, int, int, int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 4:
        raise ValueError(f"{name} must be a sequence of 4 integers (one per level), got {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
        raise ValueError(f"{name} must hold integers >= {minimum}, got {list(value)}")
    return tuple(value)  # type: ignore[return-value]


def _validate_channels(inp_channels: int, out_channels: int, dual_pixel_task: bool) -> None:
    for name, value in (("inp_channels", inp_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if dual_pixel_task:
        if out_channels != 3 or inp_channels < 3:
            raise ValueError(
                "with dual_pixel_task the last 3 input channels are added to the output, so out_channels must be 3 "
                f"and inp_channels >= 3, got inp_channels={inp_channels}, out_channels={out_channels}"
            )
    elif inp_channels != out_channels:
        raise ValueError(
            f"the input is added to the output, so inp_channels ({inp_channels}) must equal "
            f"out_channels ({out_channels}) unless dual_pixel_task=True"
        )


def _validate(
    dim: int,
    num_blocks: Sequence[int],
    mix_kernel_size: Sequence[int],
    ffn_expansion_factor: float,
    layer_norm_type: str,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Readable errors for options the official code would fail on deep inside (or silently mis-shape)."""
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2 or dim % 2:
        raise ValueError(
            f"dim must be a positive even integer (Downsample halves it before PixelUnshuffle), got {dim!r}"
        )
    blocks = _four_ints("num_blocks", num_blocks, minimum=1)
    kernels = _four_ints("mix_kernel_size", mix_kernel_size, minimum=1)
    if any(k % 2 == 0 for k in kernels):
        raise ValueError(
            f"mix_kernel_size must hold odd integers (padding k // 2 keeps the size only for odd k), got {list(kernels)}"
        )
    if (
        not isinstance(ffn_expansion_factor, (int, float))
        or isinstance(ffn_expansion_factor, bool)
        or int(dim * ffn_expansion_factor) < 1
    ):
        raise ValueError(
            f"ffn_expansion_factor must give at least one hidden channel (int(dim * factor) >= 1), "
            f"got {ffn_expansion_factor!r} with dim={dim}"
        )
    if layer_norm_type not in LAYER_NORM_TYPES:
        raise ValueError(f"LayerNorm_type must be one of {LAYER_NORM_TYPES}, got {layer_norm_type!r}")
    return blocks, kernels


class LaKDNet(nn.Module):
    """LaKDNet with the official constructor arguments (defaults = the small DPDD configuration).

    ``forward`` maps ``(B, inp_channels, H, W)`` in [0, 1] (RGB) to the restored image in
    [0, 1], H and W multiples of 8. With ``dual_pixel_task`` (the official dual-pixel
    models, ``inp_channels=9``: left, right and centre views) the last three input
    channels are added to the output instead of the whole input.
    """

    size_multiple: int = 8

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 32,
        num_blocks: Sequence[int] = (8, 12, 12, 16),
        mix_kernel_size: Sequence[int] = (9, 9, 9, 9),
        ffn_expansion_factor: float = 2.3,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # the official argument name
        dual_pixel_task: bool = False,
    ):
        super().__init__()
        _validate_channels(inp_channels, out_channels, dual_pixel_task)
        blocks, kernels = _validate(dim, num_blocks, mix_kernel_size, ffn_expansion_factor, LayerNorm_type)
        self.inp_channels = inp_channels
        self.dual_pixel_task = dual_pixel_task
        widths = [dim * 2**level for level in range(4)]
        args = (ffn_expansion_factor, bias, LayerNorm_type)

        self.embed = nn.Conv2d(inp_channels, dim, 3, padding=1, bias=bias)
        self.encoder_level1 = _blocks(blocks[0], widths[0], kernels[0], *args)
        self.down1_2 = Downsample(widths[0])
        self.encoder_level2 = _blocks(blocks[1], widths[1], kernels[1], *args)
        self.down2_3 = Downsample(widths[1])
        self.encoder_level3 = _blocks(blocks[2], widths[2], kernels[2], *args)
        self.down3_4 = Downsample(widths[2])
        self.latent = _blocks(blocks[3], widths[3], kernels[3], *args)

        self.up4_3 = Upsample(widths[3])
        self.reduce_chan_level3 = nn.Conv2d(widths[3], widths[2], 1, bias=bias)
        self.decoder_level3 = _blocks(blocks[2], widths[2], kernels[2], *args)
        self.up3_2 = Upsample(widths[2])
        self.reduce_chan_level2 = nn.Conv2d(widths[2], widths[1], 1, bias=bias)
        self.decoder_level2 = _blocks(blocks[1], widths[1], kernels[1], *args)
        self.up2_1 = Upsample(widths[1])
        # Level 1 keeps the 2 * dim channels of the concatenation (no 1x1 reduction), with mix_kernel_size[0].
        self.decoder_level1 = _blocks(blocks[0], widths[1], kernels[0], *args)
        self.output = nn.Conv2d(widths[1], out_channels, 3, padding=1, bias=bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if self.inp_channels == 3:
            check_input_size(x, self.size_multiple, "lakdnet")
            return
        if x.dim() != 4 or x.shape[1] != self.inp_channels:
            raise ValueError(f"lakdnet expects (B, {self.inp_channels}, H, W), got shape {tuple(x.shape)}")
        check_input_size(x[:, -3:], self.size_multiple, "lakdnet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The restored image: the input (its last 3 channels for dual-pixel) added inside, clipped to [0, 1]."""
        self._check_input(x)
        enc1 = self.encoder_level1(self.embed(x))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        residual = x[:, -3:] if self.dual_pixel_task else x
        return torch.clip(self.output(dec1) + residual, 0, 1)


#: the options LaKDNet accepts, checked before it is built (:mod:`jdrl.nets.options`)
OPTIONS = {"inp_channels": integer(1, 64), "out_channels": integer(1, 64), "dim": integer(1, 1024),
           "num_blocks": integers(0, 256, length=4), "mix_kernel_size": integers(1, 255, length=4),
           "ffn_expansion_factor": number(gt=0, le=64), "bias": flag(), "LayerNorm_type": word(*LAYER_NORM_TYPES),
           "dual_pixel_task": flag()}


# What jdrl knows about these networks besides their code (jdrl.nets.record): the tile hints benchmarks/tiling.py
# suggests (docs/RESULTS.md, "Tiling"; the rule in jdrl.nets.tiling) and their released weight files.
RECORDS = {
    "lakdnet": NetRecord(tile=TileHint(overlap=240, tile=512, max_whole_pixels=1_100_000, tolerance=1e-3),
                     official=OfficialFile("jdrl.nets.lakdnet")),
    "lakdnet_large": NetRecord(tile=TileHint(overlap=232, tile=512, max_whole_pixels=700_000, tolerance=1e-3),
                     official=OfficialFile("jdrl.nets.lakdnet", match=frozen({"dim": 48}))),
}


@NETS.register("lakdnet", options=OPTIONS, record=RECORDS["lakdnet"])
def lakdnet(**options: Any) -> LaKDNet:
    """The small DPDD LaKDNet (:data:`DPDD_SMALL_OPTIONS`); ``options`` override any constructor argument.

    E.g. ``lakdnet(dim=8, num_blocks=(1, 1, 1, 1), mix_kernel_size=(3, 3, 3, 3))`` is a
    tiny net for tests and demos.
    """
    return build_with_defaults(LaKDNet, DPDD_SMALL_OPTIONS, options, "lakdnet", DPDD_SMALL_OPTIONS)


@NETS.register("lakdnet_large", options=OPTIONS, record=RECORDS["lakdnet_large"])
def lakdnet_large(**options: Any) -> LaKDNet:
    """The large DPDD LaKDNet (:data:`DPDD_LARGE_OPTIONS`, dim 48); ``options`` override."""
    return build_with_defaults(LaKDNet, DPDD_LARGE_OPTIONS, options, "lakdnet_large", DPDD_LARGE_OPTIONS)


def official_state_dict(checkpoint: Mapping) -> dict:
    """The bare state dict of an official LaKDNet file (a bare state dict; wrappers and ``module.`` accepted)."""
    return unwrap_state(checkpoint, "LaKDNet", SIGNATURE_KEYS, containers=CONTAINER_KEYS,
                        layout="a bare state dict as the official code saves")


def infer_options(state: Mapping) -> dict:
    """Constructor options that a bare LaKDNet state dict implies (all of them, JSON-friendly).

    ``dual_pixel_task`` is not a weight property: it is taken to be on when the input has
    more channels than the output (the official dual-pixel models, 9 in and 3 out).
    """
    missing = [key for key in (*SIGNATURE_KEYS, "output.weight") if key not in state]
    if missing:
        raise WeightsError(f"not a LaKDNet state dict: no {' / '.join(missing)}")
    embed = state["embed.weight"]
    dim = int(embed.shape[0])
    num_blocks = [block_count(state, level) for level in LEVELS]
    if 0 in num_blocks:
        raise WeightsError(f"LaKDNet state dict has a level without blocks: num_blocks={num_blocks}")
    try:
        kernels = [int(state[f"{level}.0.mixer.dense_depth_1.weight"].shape[-1]) for level in LEVELS]
        hidden = [
            (dim * 2**i, int(state[f"{level}.0.ffn.project_out.weight"].shape[1])) for i, level in enumerate(LEVELS)
        ]
    except KeyError as err:
        raise WeightsError(f"LaKDNet state dict lacks {err.args[0]}") from None
    inp_channels, out_channels = int(embed.shape[1]), int(state["output.weight"].shape[0])
    return {
        "inp_channels": inp_channels,
        "out_channels": out_channels,
        "dim": dim,
        "num_blocks": num_blocks,
        "mix_kernel_size": kernels,
        "ffn_expansion_factor": expansion_factor(hidden, DPDD_SMALL_OPTIONS["ffn_expansion_factor"]),
        "bias": "embed.bias" in state,
        "LayerNorm_type": "WithBias" if "encoder_level1.0.norm1.body.bias" in state else "BiasFree",
        "dual_pixel_task": inp_channels != out_channels,
    }
