"""MPRNet (Zamir et al., CVPR 2021), deblurring configuration, as used for the paper's MPRNet*.

Three stages: stage 1 runs an encoder-decoder on four non-overlapping quarters of the
image, stage 2 on the two horizontal halves, stage 3 (ORSNet) at full resolution
without down-sampling. Supervised attention modules (SAM) pass features and an
intermediate image from one stage to the next; cross-stage feature fusion (CSFF) feeds
stage-1 encoder/decoder features into stage 2 and stage-2 features into stage 3.

Parameter names and shapes are those of the official ``Deblurring/MPRNet.py``, so the
official and JDRL checkpoints load strictly. As in the official code a single PReLU is
shared by every channel-attention block: its slope appears under each block's name in
the state dict (55 copies of one value) but is one parameter.

The quarters (and halves) are pushed through the shared stage modules as one batch
rather than one call each; every layer acts per sample, so the result is the same.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from jdrl.errors import WeightsError
from jdrl.nets import NETS, check_input_size
from jdrl.nets.options import flag, integer, number
from jdrl.nets.record import NetRecord, ReleasedFile
from jdrl.nets.tiling import TileHint


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    """A stride-1 convolution that keeps the size (odd kernels)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class CALayer(nn.Module):
    """Channel attention: global average pool -> 1x1 squeeze -> ReLU -> 1x1 expand -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int, bias: bool):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class CAB(nn.Module):
    """Channel attention block: conv-act-conv, channel attention, residual connection."""

    def __init__(self, channels: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module):
        super().__init__()
        self.CA = CALayer(channels, reduction, bias)
        self.body = nn.Sequential(
            _conv(channels, channels, kernel_size, bias), act, _conv(channels, channels, kernel_size, bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.CA(self.body(x)) + x


def _cabs(count: int, channels: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(*(CAB(channels, kernel_size, reduction, bias, act) for _ in range(count)))


class SAM(nn.Module):
    """Supervised attention: predicts a stage image (residual on the input) and gates the features with it."""

    def __init__(self, channels: int, kernel_size: int, bias: bool):
        super().__init__()
        self.conv1 = _conv(channels, channels, kernel_size, bias)
        self.conv2 = _conv(channels, 3, kernel_size, bias)
        self.conv3 = _conv(3, channels, kernel_size, bias)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        restored = self.conv2(features) + image
        gate = torch.sigmoid(self.conv3(restored))
        return self.conv1(features) * gate + features, restored


class DownSample(nn.Module):
    """Bilinear 0.5x then a 1x1 conv adding ``extra`` channels."""

    def __init__(self, channels: int, extra: int):
        super().__init__()
        self.down = nn.Sequential(
            nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False),
            nn.Conv2d(channels, channels + extra, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class UpSample(nn.Module):
    """Bilinear 2x then a 1x1 conv from ``channels + extra`` back to ``channels``."""

    def __init__(self, channels: int, extra: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(channels + extra, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class SkipUpSample(UpSample):
    """:class:`UpSample` followed by adding the skip features."""

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.up(x) + skip


class Encoder(nn.Module):
    """Three CAB levels (n, n+s, n+2s channels); with ``csff`` it adds 1x1-projected features of the previous stage."""

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, act: nn.Module, bias: bool, s: int, csff: bool):
        super().__init__()
        widths = (n_feat, n_feat + s, n_feat + 2 * s)
        self.encoder_level1 = _cabs(2, widths[0], kernel_size, reduction, bias, act)
        self.encoder_level2 = _cabs(2, widths[1], kernel_size, reduction, bias, act)
        self.encoder_level3 = _cabs(2, widths[2], kernel_size, reduction, bias, act)
        self.down12 = DownSample(widths[0], s)
        self.down23 = DownSample(widths[1], s)
        if csff:
            for level, channels in enumerate(widths, start=1):
                setattr(self, f"csff_enc{level}", nn.Conv2d(channels, channels, 1, bias=bias))
            for level, channels in enumerate(widths, start=1):
                setattr(self, f"csff_dec{level}", nn.Conv2d(channels, channels, 1, bias=bias))

    def _fuse(self, level: int, x: torch.Tensor, enc: list | None, dec: list | None) -> torch.Tensor:
        if enc is None or dec is None:
            return x
        fuse_enc = getattr(self, f"csff_enc{level}")
        fuse_dec = getattr(self, f"csff_dec{level}")
        return x + fuse_enc(enc[level - 1]) + fuse_dec(dec[level - 1])

    def forward(self, x: torch.Tensor, enc: list | None = None, dec: list | None = None) -> list[torch.Tensor]:
        enc1 = self._fuse(1, self.encoder_level1(x), enc, dec)
        enc2 = self._fuse(2, self.encoder_level2(self.down12(enc1)), enc, dec)
        enc3 = self._fuse(3, self.encoder_level3(self.down23(enc2)), enc, dec)
        return [enc1, enc2, enc3]


class Decoder(nn.Module):
    """Three CAB levels, going up with skip connections that pass through a CAB first."""

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, act: nn.Module, bias: bool, s: int):
        super().__init__()
        widths = (n_feat, n_feat + s, n_feat + 2 * s)
        self.decoder_level1 = _cabs(2, widths[0], kernel_size, reduction, bias, act)
        self.decoder_level2 = _cabs(2, widths[1], kernel_size, reduction, bias, act)
        self.decoder_level3 = _cabs(2, widths[2], kernel_size, reduction, bias, act)
        self.skip_attn1 = CAB(widths[0], kernel_size, reduction, bias, act)
        self.skip_attn2 = CAB(widths[1], kernel_size, reduction, bias, act)
        self.up21 = SkipUpSample(widths[0], s)
        self.up32 = SkipUpSample(widths[1], s)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        enc1, enc2, enc3 = features
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))
        return [dec1, dec2, dec3]


class ORB(nn.Module):
    """Original-resolution block: ``num_cab`` CABs and a conv, with a residual connection."""

    def __init__(self, channels: int, kernel_size: int, reduction: int, act: nn.Module, bias: bool, num_cab: int):
        super().__init__()
        blocks = [CAB(channels, kernel_size, reduction, bias, act) for _ in range(num_cab)]
        # The official code builds this last conv without passing ``bias`` (so always bias-free).
        self.body = nn.Sequential(*blocks, _conv(channels, channels, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ORSNet(nn.Module):
    """Stage 3: three ORBs at full resolution, each followed by fusion of one level of stage-2 features."""

    def __init__(
        self, n_feat: int, ors: int, kernel_size: int, reduction: int, act: nn.Module, bias: bool, s: int, num_cab: int
    ):
        super().__init__()
        channels = n_feat + ors
        self.orb1 = ORB(channels, kernel_size, reduction, act, bias, num_cab)
        self.orb2 = ORB(channels, kernel_size, reduction, act, bias, num_cab)
        self.orb3 = ORB(channels, kernel_size, reduction, act, bias, num_cab)
        self.up_enc1 = UpSample(n_feat, s)
        self.up_dec1 = UpSample(n_feat, s)
        self.up_enc2 = nn.Sequential(UpSample(n_feat + s, s), UpSample(n_feat, s))
        self.up_dec2 = nn.Sequential(UpSample(n_feat + s, s), UpSample(n_feat, s))
        for name in ("conv_enc1", "conv_enc2", "conv_enc3", "conv_dec1", "conv_dec2", "conv_dec3"):
            setattr(self, name, nn.Conv2d(n_feat, channels, 1, bias=bias))

    def forward(self, x: torch.Tensor, enc: list[torch.Tensor], dec: list[torch.Tensor]) -> torch.Tensor:
        x = self.orb1(x) + self.conv_enc1(enc[0]) + self.conv_dec1(dec[0])
        x = self.orb2(x) + self.conv_enc2(self.up_enc1(enc[1])) + self.conv_dec2(self.up_dec1(dec[1]))
        x = self.orb3(x) + self.conv_enc3(self.up_enc2(enc[2])) + self.conv_dec3(self.up_dec2(dec[2]))
        return x


def _halves(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Split ``x`` in two along ``dim`` (first half ``size // 2``) and stack the halves on the batch axis."""
    half = x.shape[dim] // 2
    return torch.cat([x.narrow(dim, 0, half), x.narrow(dim, half, x.shape[dim] - half)], dim=0)


def _join(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`_halves`: the two batch halves, concatenated along ``dim``."""
    first, second = x.chunk(2, dim=0)
    return torch.cat([first, second], dim=dim)


def _check_shared_prelu(net: nn.Module, state: Mapping[str, torch.Tensor], prefix: str) -> None:
    """Refuse weights whose PReLU copies differ: they come from a net with one PReLU per block.

    Loading them here would silently keep only the last copy, since all names point at one parameter.
    """
    modules = net.named_modules(remove_duplicate=False)
    names = [f"{prefix}{name}.weight" for name, module in modules if isinstance(module, nn.PReLU)]
    slopes = {name: state[name] for name in names if name in state}
    if slopes:
        first_key, first = next(iter(slopes.items()))
        for key, value in slopes.items():
            if value.shape != first.shape or not torch.equal(value, first):
                raise WeightsError(
                    f"MPRNet shares one PReLU between all blocks, but the weights differ: {first_key} "
                    f"= {first.tolist()} vs {key} = {value.tolist()} (a variant with a PReLU per block?)"
                )


def _scaled(channels: int, width: float, minimum: int = 1) -> int:
    return max(minimum, round(channels * width))


#: the options an MPRNet accepts, checked before it is built (:mod:`jdrl.nets.options`)
OPTIONS = {"width": number(gt=0, le=16), "num_cab": integer(1, 64), "reduction": integer(1, 1024),
           "kernel_size": integer(1, 31), "bias": flag()}


# What jdrl knows about these networks besides their code (jdrl.nets.record): the tile hints benchmarks/tiling.py
# suggests (docs/RESULTS.md, "Tiling"; the rule in jdrl.nets.tiling) and their released weight files.
RECORDS = {
    "mprnet": NetRecord(tile=TileHint(overlap=40, tile=320, max_whole_pixels=800_000, tolerance=0.15),
                     released=ReleasedFile("shallow_feat1.0.weight", border="released-mprnet")),
}


@NETS.register("mprnet", options=OPTIONS, record=RECORDS["mprnet"])
class MPRNet(nn.Module):
    """Three-stage MPRNet for deblurring (20,127,127 state-dict values at ``width=1``; RGB in and out).

    Args:
        width: multiplier of ``n_feat`` (96), ``scale_unetfeats`` (48) and
            ``scale_orsnetfeats`` (32) for small test/demo models; 1.0 is the standard net.
        num_cab: CABs per ORB (8).
        reduction: channel-attention reduction (4); ``n_feat`` is kept >= it.
    """

    size_multiple: int = 8

    def __init__(
        self, width: float = 1.0, num_cab: int = 8, reduction: int = 4, kernel_size: int = 3, bias: bool = False
    ):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        n_feat = _scaled(96, width, minimum=reduction)
        s = _scaled(48, width)
        ors = _scaled(32, width)
        act = nn.PReLU()  # one module shared by all CABs, as in the official code
        self.shallow_feat1 = self._shallow(n_feat, kernel_size, reduction, bias, act)
        self.shallow_feat2 = self._shallow(n_feat, kernel_size, reduction, bias, act)
        self.shallow_feat3 = self._shallow(n_feat, kernel_size, reduction, bias, act)
        self.stage1_encoder = Encoder(n_feat, kernel_size, reduction, act, bias, s, csff=False)
        self.stage1_decoder = Decoder(n_feat, kernel_size, reduction, act, bias, s)
        self.stage2_encoder = Encoder(n_feat, kernel_size, reduction, act, bias, s, csff=True)
        self.stage2_decoder = Decoder(n_feat, kernel_size, reduction, act, bias, s)
        self.stage3_orsnet = ORSNet(n_feat, ors, kernel_size, reduction, act, bias, s, num_cab)
        self.sam12 = SAM(n_feat, kernel_size=1, bias=bias)
        self.sam23 = SAM(n_feat, kernel_size=1, bias=bias)
        self.concat12 = _conv(2 * n_feat, n_feat, kernel_size, bias)
        self.concat23 = _conv(2 * n_feat, n_feat + ors, kernel_size, bias)
        self.tail = _conv(n_feat + ors, 3, kernel_size, bias)

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:  # noqa: ANN001 - torch's signature
        # Overridden (rather than a load pre-hook, public only from torch 2.5) to check the PReLU copies first.
        _check_shared_prelu(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    @staticmethod
    def _shallow(n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module) -> nn.Sequential:
        """A stage's shallow feature extractor: conv from RGB, then one CAB."""
        return nn.Sequential(_conv(3, n_feat, kernel_size, bias), CAB(n_feat, kernel_size, reduction, bias, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The final (stage-3) restored image."""
        return self.forward_stages(x)[0]

    def training_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{'restored': stage 3 (what forward returns), 'stage2', 'stage1'}`` from one pass.

        The earlier stages are the auxiliary images MPRNet's own training supervises; under JDRL
        the loss term ``stage_deblur`` does (README, "Loss terms"). See :mod:`jdrl.nets`.
        """
        stage3, stage2, stage1 = self.forward_stages(x)
        return {"restored": stage3, "stage2": stage2, "stage1": stage1}

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[stage3, stage2, stage1]`` images, as the official network returns them (for the multi-stage loss)."""
        check_input_size(x, self.size_multiple, "mprnet")
        halves = _halves(x, dim=2)  # (2B): top halves, then bottom halves
        quarters = _halves(halves, dim=3)  # (4B): left quarters of both, then right quarters

        # Stage 1: the four quarters; encoder features are re-joined into halves for the decoder.
        feat1 = [_join(f, dim=3) for f in self.stage1_encoder(self.shallow_feat1(quarters))]
        res1 = self.stage1_decoder(feat1)
        sam_feat1, stage1_halves = self.sam12(res1[0], halves)
        stage1 = _join(stage1_halves, dim=2)

        # Stage 2: the two halves, fused with stage-1 features; joined into full images for the decoder.
        x2 = self.concat12(torch.cat([self.shallow_feat2(halves), sam_feat1], dim=1))
        feat2 = [_join(f, dim=2) for f in self.stage2_encoder(x2, feat1, res1)]
        res2 = self.stage2_decoder(feat2)
        sam_feat2, stage2 = self.sam23(res2[0], x)

        # Stage 3: full resolution.
        x3 = self.concat23(torch.cat([self.shallow_feat3(x), sam_feat2], dim=1))
        stage3 = self.tail(self.stage3_orsnet(x3, feat2, res2)) + x
        return [stage3, stage2, stage1]
