"""IFAN (Lee et al., CVPR 2021, "Iterative Filter Adaptive Network"), single-image model (the paper's IFAN*).

Same network as the official ``models/archs/IFAN.py`` (codeslake/IFAN @ 66bf136): a
feature extractor (``conv1_*`` .. ``conv4_*``, three stride-2 levels) and a separate
filter encoder (``kconv*``) both read the blurred image ``C``. The filter branch predicts
a 1-channel disparity (defocus) map at 1/8 resolution (``DME``), embeds it
(``conv_DME``), fuses it with the encoder features (``conv4_4``) and predicts per-pixel
filters (``F``, ``N * (2 * Fs * 4ch) + N * 4ch`` channels). The IAC layer applies ``N``
separable, spatially varying ``Fs``-tap filters (plus a bias and LeakyReLU(0.1)) to the
1/8-resolution features; a decoder with transposed-conv up-sampling and additive skips
(``conv_res``, ``upconv*``, ``out_res``) predicts a residual that is added to ``C``.

Parameter names, shapes and order are the official ``Network``'s, so the official file
loads strictly after :func:`official_state_dict` (which strips ``module.Network.`` and
drops the training-only ``module.reblurNet.*`` re-blurring network).

**Released IAC bug, reproduced on purpose.** The official ``SAC`` (``models/IAC.py``)
uses ``kernel1`` for *both* the vertical and the horizontal pass; the ``kernel2`` half of
each iteration's filter channels is predicted but never used. The README states the
released checkpoints were trained with this code, so a corrected SAC would not
reproduce them. See :func:`iac`.

**Clipping.** The official forward clips ``result`` to [0, 1] only when
``is_train=False``. Here ``forward`` follows ``self.training``: in eval mode the result is
clipped (the official eval output), in train mode it is not (the official
``is_train=True`` output; a clip there would zero the gradient of every pixel outside
[0, 1]).

**Outputs.** ``forward(x)`` returns the restored image; :meth:`IFAN.forward_outputs`
returns the official dict's single-image entries: ``result`` and ``Filter`` (the IAC
filters, which the official training returns for the re-blurring loss), plus ``DM``, the
disparity map estimate ``(B, 1, H/8, W/8)`` (computed but not returned by the official
forward). The official training-only entries ``f_R_w`` / ``f_L`` need the two
dual-pixel views and the DPD warp, and are not provided. :meth:`IFAN.training_outputs` offers
``Filter`` and ``DM`` to loss terms as auxiliary outputs (the :mod:`jdrl.nets` protocol).

**Released weight files** (:data:`RELEASED_FILES`):

* ``ifan-official`` (``ckpt/IFAN.pytorch``): a bare state dict saved from the
  DataParallel-wrapped trainer ``DeblurNet``, keys ``module.Network.<name>`` plus
  ``module.reblurNet.RBF.*`` (models/trainers/trainer.py ``DeblurNet``; ckpt_manager.py
  ``save``: ``torch.save(network.state_dict())``). Images are RGB: the official loader
  converts (``data_loader/utils.py`` line 15:
  ``cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)``), /255.
* ``ifan-jdrl-dpdd`` (the JDRL authors' IFAN*): the only evidence is liyucs/JDRL
  (commit c9c420e) ``README.md`` line 43: "ifan-jdrl-dpdd: IFAN with JDRL trained on
  DPDD dataset. To test this model, please refer to [IFAN](https://github.com/codeslake/IFAN)",
  and line 54 (JDRL is applied to another model by fine-tuning its *pretrained*
  weights). The JDRL repository holds no IFAN code: its own test/train code
  (``test.py`` lines 50-53, ``solver/solver.py`` lines 111-114) only handles UNet
  (``{'G_state_dict', ...}``, OpenCV BGR) and MPRNet (``{'state_dict'}``, PIL RGB).
  Being tested with IFAN's code implies a file that IFAN's ``CKPT_Manager.load_ckpt``
  reads, i.e. a bare state dict with ``module.Network.`` keys (that loader uses
  ``strict=False``, so other names would silently load nothing), and RGB input
  (IFAN's loader converts BGR to RGB; the pretrained IFAN it started from is RGB).
  The file itself (a Google Drive download) could not be inspected, so this is an
  inference, not a verified fact: :func:`official_state_dict` therefore also accepts
  ``{'state_dict': ...}``, ``{'G_state_dict': ...}`` (and ``params`` / ``model`` /
  ``net``) containers and keys with ``module.`` / ``Network.`` / ``module.Network.``
  prefixes. If the file turns out to expect BGR, build it with ``channel_order="bgr"``
  (a file cannot tell its channel order).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.errors import WeightsError
from jdrl.nets import NETS, check_input_size
from jdrl.nets.official import unwrap_state
from jdrl.nets.options import integer, number, word
from jdrl.nets.record import NetRecord, OfficialFile
from jdrl.nets.tiling import TileHint

# The official configuration (configs/config_IFAN.py): conv kernel, base width, residual
# units per resnet block in conv4_4/DME/F, IAC filter taps, IAC iterations, init gains.
OFFICIAL_OPTIONS: dict[str, Any] = {"ks": 3, "ch": 32, "res_num": 2, "Fs": 3, "N": 17, "wi": 1.0, "wiF": 1.5}
OPTION_NAMES = (*OFFICIAL_OPTIONS, "channel_order")

# Keys only IFAN's bare state dict has (the filter encoder and the disparity-map estimator's last conv).
SIGNATURE_KEYS = ("kconv1_1.0.weight", "DME.3.weight", "conv_DME.0.weight")

# The options each known released file needs (see the module docstring for the evidence).
RELEASED_FILES: dict[str, dict[str, Any]] = {
    # codeslake/IFAN ckpt/IFAN.pytorch: data_loader/utils.py:15 converts BGR->RGB, configs/config_IFAN.py.
    "ifan-official": {"ks": 3, "ch": 32, "res_num": 2, "Fs": 3, "N": 17, "channel_order": "rgb"},
    # liyucs/JDRL README.md:43 "to test this model, please refer to IFAN" -> IFAN's RGB pipeline (file not inspected).
    "ifan-jdrl-dpdd": {"ks": 3, "ch": 32, "res_num": 2, "Fs": 3, "N": 17, "channel_order": "rgb"},
}

CONTAINER_KEYS = ("state_dict", "G_state_dict", "params", "model", "net", "network")
# Prefixes that wrappers add (DataParallel ``module.``, the trainer's ``DeblurNet.Network``), longest first.
KEY_PREFIXES = ("module.Network.", "Network.", "module.")
# Training-only parts of the official trainer's state dict (after the prefixes are stripped).
TRAINING_ONLY_PREFIXES = ("reblurNet.", "module.reblurNet.")

LEAKY_SLOPE = 0.1


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, act: bool = True) -> nn.Module:
    """The official ``conv``: a "same" conv with bias, then LeakyReLU(0.1) (names ``.0.*``) unless ``act`` is False."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=True)
    if not act:
        return conv
    return nn.Sequential(conv, nn.LeakyReLU(LEAKY_SLOPE, inplace=True))


def _upconv(in_channels: int, out_channels: int) -> nn.Sequential:
    """2x up-sampling: ConvTranspose2d(4, stride 2, pad 1) then LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=True),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    )


class ResnetBlock(nn.Module):
    """``res_num`` residual units ``x = lrelu(x + conv(lrelu(conv(x))))``; with more than one unit
    the block input is added once more at the end (no activation after it), as in the official code.
    """

    def __init__(self, channels: int, kernel_size: int, res_num: int):
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.res_num = res_num
        self.stem = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=True),
                nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
                nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=True),
            )
            for _ in range(res_num)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block_input = x
        for unit in self.stem:
            x = F.leaky_relu(x + unit(x), LEAKY_SLOPE)
        return x + block_input if self.res_num > 1 else x


def _trunk(in_channels: int, channels: int, ks: int, res_num: int, last: nn.Module) -> nn.Sequential:
    """conv -> two resnet blocks -> ``last`` (the shape of ``conv4_4``, ``DME`` and ``F``)."""
    return nn.Sequential(
        _conv(in_channels, channels, ks), ResnetBlock(channels, ks, res_num), ResnetBlock(channels, ks, res_num), last
    )


def _filter_pass(features: torch.Tensor, kernel: torch.Tensor, taps: int, dim: int) -> torch.Tensor:
    """One 1-D spatially varying filter along ``dim`` (2: vertical, 3: horizontal), replicate padding.

    ``kernel`` has ``C * taps`` channels, channel ``c * taps + t`` weighting tap ``t`` of channel ``c``:
    ``out[c, y, x] = sum_t pad(features)[c, y + t, x] * kernel[c * taps + t, y, x]`` (for ``dim`` 2).
    """
    pad = (taps - 1) // 2
    padding = (0, 0, pad, pad) if dim == 2 else (pad, pad, 0, 0)
    padded = F.pad(features, padding, mode="replicate")
    weights = kernel.unflatten(1, (features.shape[1], taps))
    size = features.shape[dim]
    out = padded.narrow(dim, 0, size) * weights[:, :, 0]
    for tap in range(1, taps):
        out = out + padded.narrow(dim, tap, size) * weights[:, :, tap]
    return out


def sac(features: torch.Tensor, kernel1: torch.Tensor, kernel2: torch.Tensor, taps: int) -> torch.Tensor:
    """Separable adaptive convolution AS RELEASED: ``kernel1`` vertically, then ``kernel1`` again horizontally.

    ``kernel2`` is accepted (and ignored) to keep the official signature; the official code
    has a comment saying it should be used for the horizontal pass, but the released
    checkpoints were trained without it.
    """
    del kernel2  # the released bug: predicted but unused
    vertical = _filter_pass(features, kernel1, taps, dim=2)
    return _filter_pass(vertical, kernel1, taps, dim=3)


def iac(features: torch.Tensor, filters: torch.Tensor, iterations: int, channels: int, taps: int) -> torch.Tensor:
    """Iterative adaptive convolution: ``iterations`` x (SAC, + per-pixel bias, LeakyReLU(0.1)).

    ``filters`` holds ``iterations`` chunks ``[kernel1 (C*taps), kernel2 (C*taps)]`` followed by
    ``iterations`` biases of ``C`` channels.
    """
    kernel_channels = iterations * channels * taps * 2
    expected = kernel_channels + iterations * channels
    if filters.shape[1] != expected:
        raise ValueError(f"IAC expects {expected} filter channels, got {filters.shape[1]}")
    kernels = filters[:, :kernel_channels].split(channels * taps * 2, dim=1)
    biases = filters[:, kernel_channels:].split(channels, dim=1)
    x = features
    for kernel_pair, bias in zip(kernels, biases):
        kernel1, kernel2 = kernel_pair.split(channels * taps, dim=1)
        x = F.leaky_relu(sac(x, kernel1, kernel2, taps) + bias, LEAKY_SLOPE)
    return x


def _encoder_levels(prefix: str, module: nn.Module, ch: int, ks: int) -> None:
    """Add ``{prefix}1_1`` .. ``{prefix}4_3``: four levels of three convs (the first of levels 2-4 with stride 2)."""
    widths = (ch, 2 * ch, 4 * ch, 4 * ch)
    in_channels = 3
    for level, width in enumerate(widths, start=1):
        stride = 1 if level == 1 else 2
        setattr(module, f"{prefix}{level}_1", _conv(in_channels, width, ks, stride))
        setattr(module, f"{prefix}{level}_2", _conv(width, width, ks))
        setattr(module, f"{prefix}{level}_3", _conv(width, width, ks))
        in_channels = width


def _run_levels(module: nn.Module, prefix: str, x: torch.Tensor) -> list[torch.Tensor]:
    """The four levels' outputs (full, 1/2, 1/4, 1/8 resolution)."""
    outputs = []
    for level in range(1, 5):
        for index in range(1, 4):
            x = getattr(module, f"{prefix}{level}_{index}")(x)
        outputs.append(x)
    return outputs


def _validate(ks: Any, ch: Any, res_num: Any, Fs: Any, N: Any, wi: Any, wiF: Any, channel_order: Any) -> None:
    def positive_int(name: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"ifan option {name} must be a positive integer, got {value!r}")

    for name, value in (("ks", ks), ("ch", ch), ("res_num", res_num), ("Fs", Fs), ("N", N)):
        positive_int(name, value)
    if ks % 2 == 0:
        raise ValueError(f"ifan option ks (conv kernel size) must be odd to keep the size, got {ks}")
    if Fs % 2 == 0:
        raise ValueError(f"ifan option Fs (IAC filter taps) must be odd to keep the size, got {Fs}")
    for name, value in (("wi", wi), ("wiF", wiF)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"ifan option {name} (init gain) must be a positive number, got {value!r}")
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"ifan option channel_order must be 'rgb' or 'bgr', got {channel_order!r}")


class IFAN(nn.Module):
    """The single-image IFAN ``Network`` (10,476,996 parameters with the official options).

    Args:
        ks: conv kernel size (3).
        ch: base width; the levels have ``ch, 2ch, 4ch, 4ch`` channels (32).
        res_num: residual units per resnet block in ``conv4_4``, ``DME`` and ``F`` (2).
        Fs: taps of the IAC 1-D filters (3).
        N: IAC iterations (17).
        wi, wiF: Xavier-uniform gains of the official training init (all convs / the
            filter predictor ``F``); biases start at zero.
        channel_order: the order the *weights* expect; ``"bgr"`` flips input and output
            inside ``forward`` so callers always use RGB.
    """

    size_multiple: int = 8

    def __init__(
        self,
        ks: int = 3,
        ch: int = 32,
        res_num: int = 2,
        Fs: int = 3,
        N: int = 17,
        wi: float = 1.0,
        wiF: float = 1.5,
        channel_order: Literal["rgb", "bgr"] = "rgb",
    ):
        super().__init__()
        _validate(ks, ch, res_num, Fs, N, wi, wiF, channel_order)
        self.Fs, self.N, self.channel_order = Fs, N, channel_order
        ch1, ch2, ch3, ch4 = ch, 2 * ch, 4 * ch, 4 * ch
        self.ch4 = ch4
        self.kernel_dim = N * (ch4 * Fs * 2) + N * ch4

        # Feature extractor and reconstructor (registered in the official order).
        _encoder_levels("conv", self, ch, ks)
        self.conv4_4 = _trunk(2 * ch4, ch4, ks, res_num, last=_conv(ch4, ch4, ks))
        self.conv_res = nn.Sequential(_conv(ch4, ch4, ks), ResnetBlock(ch4, ks, 3), _conv(ch4, ch4, ks))
        for level, (wide, narrow) in zip((3, 2, 1), ((ch4, ch3), (ch3, ch2), (ch2, ch1))):
            setattr(self, f"upconv{level}_u", _upconv(wide, narrow))
            setattr(self, f"upconv{level}_1", ResnetBlock(narrow, ks, 1))
            setattr(self, f"upconv{level}_2", ResnetBlock(narrow, ks, 1))
        self.out_res = _conv(ch1, 3, ks)

        # Filter encoder, disparity map estimator, filter predictor.
        _encoder_levels("kconv", self, ch, ks)
        self.DME = _trunk(ch4, ch4, ks, res_num, last=_conv(ch4, 1, 3, act=False))
        self.conv_DME = _conv(1, ch4, 3)
        self.F = _trunk(ch4, ch4, ks, res_num, last=_conv(ch4, self.kernel_dim, 1, act=False))
        self._init_weights(wi, wiF)

    def _init_weights(self, wi: float, wiF: float) -> None:
        """The official training init (``DeblurNet.init`` then ``Network.init_F``); skipped on meta tensors."""
        for name, module in self.named_modules():
            if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) or module.weight.is_meta:
                continue
            gain = wiF if name.startswith("F.") else wi
            nn.init.xavier_uniform_(module.weight, gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The restored RGB image: clipped to [0, 1] in eval mode, unclipped in train mode."""
        return self.forward_outputs(x)["result"]

    def training_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{'restored': result (what forward returns), 'Filter', 'DM'}`` from one pass (see :mod:`jdrl.nets`).

        IFAN has no auxiliary image of the restored scene: ``Filter`` and ``DM`` are its IAC filters
        and 1/8-resolution disparity map, for loss terms that know IFAN (``stage_deblur`` refuses them).
        """
        outputs = self.forward_outputs(x)
        return {"restored": outputs["result"], "Filter": outputs["Filter"], "DM": outputs["DM"]}

    def forward_outputs(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """``{'result', 'Filter', 'DM'}``: the image (clipped only in eval mode), the IAC filters
        ``(B, kernel_dim, H/8, W/8)`` and the disparity map estimate ``(B, 1, H/8, W/8)``.
        """
        check_input_size(x, self.size_multiple, "ifan")
        blurred = x.flip(1) if self.channel_order == "bgr" else x
        f1, f2, f3, f_c = _run_levels(self, "conv", blurred)

        encoded = _run_levels(self, "kconv", blurred)[-1]
        disparity = self.DME(encoded)
        fused = self.conv4_4(torch.cat([encoded, self.conv_DME(disparity)], dim=1))
        filters = self.F(fused)

        f = self.conv_res(iac(f_c, filters, self.N, self.ch4, self.Fs))
        for level, skip in ((3, f3), (2, f2), (1, f1)):
            f = getattr(self, f"upconv{level}_u")(f) + skip
            f = getattr(self, f"upconv{level}_2")(getattr(self, f"upconv{level}_1")(f))
        result = self.out_res(f) + blurred
        if not self.training:
            result = result.clamp(0.0, 1.0)
        if self.channel_order == "bgr":
            result = result.flip(1)
        return OrderedDict(result=result, Filter=filters, DM=disparity)


#: the options IFAN accepts, checked before it is built (:mod:`jdrl.nets.options`)
OPTIONS = {"ks": integer(1, 31), "ch": integer(1, 1024), "res_num": integer(0, 64), "Fs": integer(1, 31),
           "N": integer(1, 64), "wi": number(ge=0, le=100), "wiF": number(ge=0, le=100),
           "channel_order": word("rgb", "bgr")}


# What jdrl knows about these networks besides their code (jdrl.nets.record): the tile hints benchmarks/tiling.py
# suggests (docs/RESULTS.md, "Tiling"; the rule in jdrl.nets.tiling) and their released weight files.
RECORDS = {
    "ifan": NetRecord(tile=TileHint(overlap=184, tile=576, max_whole_pixels=2_800_000, tolerance=1e-5),
                     official=OfficialFile("jdrl.nets.ifan")),
}


@NETS.register("ifan", options=OPTIONS, record=RECORDS["ifan"])
def ifan(**options: Any) -> IFAN:
    """IFAN with the official options (:data:`OFFICIAL_OPTIONS`); ``options`` override them.

    E.g. ``ifan(ch=4, N=2, res_num=1)`` is a tiny net for tests; ``ifan(**RELEASED_FILES[name])``
    builds the network a released file needs.
    """
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ValueError(f"unknown ifan option(s) {unknown}; valid: {', '.join(OPTION_NAMES)}")
    return IFAN(**{**OFFICIAL_OPTIONS, **options})


def official_state_dict(checkpoint: Mapping) -> dict:
    """The bare ``Network`` state dict of an IFAN weight file (official ``IFAN.pytorch`` or the JDRL IFAN*).

    Accepts a bare state dict or one inside ``state_dict`` / ``G_state_dict`` / ``params`` /
    ``model`` / ``net`` / ``network``; strips ``module.Network.`` / ``Network.`` / ``module.``
    and drops the training-only ``reblurNet.*`` keys. Raises
    :class:`~jdrl.errors.WeightsError` when the result does not look like IFAN.
    """
    return unwrap_state(checkpoint, "IFAN", SIGNATURE_KEYS, containers=CONTAINER_KEYS, prefixes=KEY_PREFIXES,
                        drop=TRAINING_ONLY_PREFIXES,
                        layout="keys like 'module.Network.kconv1_1.0.weight' or 'kconv1_1.0.weight'")


def _count_units(state: Mapping, prefix: str) -> int:
    count = 0
    while f"{prefix}.stem.{count}.0.weight" in state:
        count += 1
    return count


def infer_options(state: Mapping, Fs: int | None = None) -> dict:
    """The architecture options (``ks``, ``ch``, ``res_num``, ``Fs``, ``N``) a bare IFAN state dict implies.

    ``Fs`` and ``N`` only show in the filter predictor's width, ``N * 4ch * (2 Fs + 1)``, so
    a width can fit several pairs (e.g. 33 = 3 x 11 = 11 x 3). The official ``Fs = 3`` (every
    released IFAN) wins when it fits, a single fit is taken, otherwise pass ``Fs``.
    """
    needed = ("conv1_1.0.weight", "F.3.weight")
    missing = [key for key in (*SIGNATURE_KEYS, *needed) if key not in state]
    if missing:
        raise WeightsError(f"not an IFAN state dict: no {' / '.join(missing)}")
    first = state["conv1_1.0.weight"]
    ch, ks = int(first.shape[0]), int(first.shape[-1])
    ch4 = 4 * ch
    res_num = _count_units(state, "DME.1")
    if res_num == 0:
        raise WeightsError("IFAN state dict has no DME.1.stem.* (residual units of the disparity estimator)")
    kernel_dim = int(state["F.3.weight"].shape[0])
    per_iteration, remainder = divmod(kernel_dim, ch4)
    fits = {fs: per_iteration // (2 * fs + 1) for fs in range(1, per_iteration, 2) if per_iteration % (2 * fs + 1) == 0}
    if remainder or not fits:
        raise WeightsError(
            f"IFAN F.3 has {kernel_dim} outputs, not N * 4ch * (2 Fs + 1) for odd Fs with 4ch = {ch4}"
        )
    if Fs is not None:
        if Fs not in fits:
            raise WeightsError(f"IFAN F.3 has {kernel_dim} outputs: Fs={Fs} does not fit (fits: Fs in {sorted(fits)})")
        chosen = Fs
    elif OFFICIAL_OPTIONS["Fs"] in fits:
        chosen = OFFICIAL_OPTIONS["Fs"]
    elif len(fits) == 1:
        chosen = next(iter(fits))
    else:
        pairs = ", ".join(f"Fs={fs} N={n}" for fs, n in fits.items())
        raise WeightsError(f"IFAN F.3 has {kernel_dim} outputs, which fits {pairs}; pass Fs to choose")
    return {"ks": ks, "ch": ch, "res_num": res_num, "Fs": chosen, "N": fits[chosen]}
