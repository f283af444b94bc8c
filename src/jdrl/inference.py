"""Running a deblurring network on images of any size, whole or in overlapping tiles.

Networks need sides that are multiples of ``net.size_multiple``; the input is
reflect-padded up to one and the output cropped back.

Tiled inference bounds memory by the tile instead of the image: the padded image
stays where it is (typically on the CPU), each tile is moved to the network's
device, run, and added into a float32 accumulator with a smooth separable weight,
then normalised by the summed weights. Neighbouring tiles cross-fade (raised
cosine, ``BLEND_WIDTH`` px) in the middle of their overlap and the pixels beyond,
near a tile's inner edge, get weight zero. Tile origins are multiples of
``size_multiple``, so every tile sees the pooling grid of the whole image; the
last tile of a row/column is snapped to the border. A tile output therefore
differs from the whole-image output only through missing context, and not at all
once every kept pixel is a receptive field away from an inner tile edge: for the
paper's UNet (receptive field +-112 px) an overlap of 256 gives the whole-image
result to float rounding, while small overlaps trade exactness for speed. How much
overlap and which tile side suit a network is its :class:`~jdrl.nets.tiling.TileHint`
(``--tile auto`` and ``jdrl deblur``'s default overlap use it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jdrl.errors import ConfigError
from jdrl.nets.tiling import FALLBACK, TileHint, tile_hint
from jdrl.runtime import amp_dtype, net_device

BLEND_WIDTH = 32  # pixels over which neighbouring tiles cross-fade
Progress = Callable[[Iterable], Iterable]  # wraps an iterable, e.g. in a progress bar


def pad_to_multiple(image: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` on the right/bottom to multiples of ``multiple``; returns the padded image and ``(H, W)``."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        if mode == "reflect" and (pad_h >= height or pad_w >= width):
            mode = "replicate"  # reflection needs more pixels than the padding
        image = F.pad(image, (0, pad_w, 0, pad_h), mode=mode)
    return image, (height, width)


def resolve_tile(
    tile: int | str | None, height: int, width: int, device: str | torch.device = "cpu", hint: TileHint | None = None
) -> int | None:
    """The tile side to use: ``None`` (whole image), an int, or ``"auto"``.

    ``"auto"`` follows the network's ``hint`` (:func:`jdrl.nets.tiling.tile_hint`): images
    of at most ``hint.max_whole_pixels`` run whole, larger ones in tiles of ``hint.tile``
    (CPU; twice that on CUDA), which keeps peak memory at a few GB for any image. Without
    a hint: 2 MP whole, else 512 (CPU) or 1024 (CUDA).
    """
    if tile is None:
        return None
    if tile == "auto":
        hint = hint or FALLBACK
        if height * width <= hint.max_whole_pixels:
            return None
        return hint.tile_for(torch.device(device).type)
    tile = int(tile)
    if tile <= 0:
        raise ConfigError(f"tile must be positive, got {tile}")
    return tile


@dataclass(frozen=True)
class TilePlan:
    """How one image is run: whole (``side=None``) or in tiles of ``side`` px (a multiple of the network's
    ``size_multiple``) overlapping by ``overlap`` px. Made once per image by :func:`plan_tiles`."""

    side: int | None
    overlap: int


def plan_tiles(net: nn.Module, tile: int | str | None, overlap: int | None, height: int, width: int) -> TilePlan:
    """The :class:`TilePlan` of an ``height`` x ``width`` image for ``net``: :func:`resolve_tile` and
    :func:`resolve_overlap` with the network's device and tile hint, resolved once."""
    device, hint = net_device(net), tile_hint(net)
    multiple = getattr(net, "size_multiple", 1)
    side = resolve_tile(tile, height, width, device, hint)
    if side is not None:
        side = math.ceil(side / multiple) * multiple
    return TilePlan(side, resolve_overlap(side, overlap, device.type, hint))


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Origins of tiles of side ``tile`` covering ``[0, length)`` every ``stride``, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _rising_ramp(length: int) -> torch.Tensor:
    """``length`` raised-cosine values rising from ~0 to ~1; ``ramp + ramp.flip(0) == 1`` (a partition of unity)."""
    position = (torch.arange(length, dtype=torch.float64) + 0.5) / max(length, 1)
    return torch.sin(position * (math.pi / 2)) ** 2


def axis_weights(starts: list[int], tile: int, blend: int = BLEND_WIDTH) -> list[torch.Tensor]:
    """One weight vector per tile along an axis: a cross-fade in the middle of each overlap, zero outside it.

    Where two tiles overlap, the first keeps weight 1 up to the middle of the shared
    strip, the two cross-fade over ``blend`` pixels (raised cosine; the weights sum
    to one), and the second takes over. Pixels near a tile's inner edge, which lack
    context, are thus never used: with an overlap of ``2 * margin + blend`` every
    kept pixel is at least ``margin`` pixels from an inner edge.
    """
    weights = []
    for index, start in enumerate(starts):
        weight = torch.ones(tile, dtype=torch.float64)
        if index > 0:
            shared = starts[index - 1] + tile - start
            ramp = min(blend, shared)
            begin = (shared - ramp) // 2
            weight[:begin] = 0.0
            weight[begin : begin + ramp] *= _rising_ramp(ramp)
        if index + 1 < len(starts):
            shared = start + tile - starts[index + 1]
            ramp = min(blend, shared)
            begin = tile - shared + (shared - ramp) // 2
            weight[begin : begin + ramp] *= _rising_ramp(ramp).flip(0)
            weight[begin + ramp :] = 0.0
        weights.append(weight)
    return weights


def _axis_plan(
    length: int, tile: int, overlap: int, multiple: int
) -> tuple[int, list[int], list[torch.Tensor], torch.Tensor]:
    """``(tile side, starts, per-tile weights, summed weights)`` along one padded axis."""
    side = min(tile, length)
    stride = max(multiple, (side - overlap) // multiple * multiple)
    starts = tile_starts(length, side, stride)
    weights = axis_weights(starts, side)
    total = torch.zeros(length, dtype=torch.float64)
    for start, weight in zip(starts, weights):
        total[start : start + side] += weight
    return side, starts, weights, total


def count_tiles(height: int, width: int, tile: int | None, overlap: int, multiple: int = 1) -> int:
    """How many network runs :func:`deblur_tensor` makes for an image of this size (1 when whole)."""
    height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    if tile is None:
        return 1
    tile = math.ceil(tile / multiple) * multiple
    if max(height, width) <= tile:
        return 1
    return len(_axis_plan(height, tile, overlap, multiple)[1]) * len(_axis_plan(width, tile, overlap, multiple)[1])


def _forward(net: nn.Module, image: torch.Tensor, amp: str | None, device: torch.device) -> torch.Tensor:
    """``net(image)`` on the network's ``device`` (autocast and channels-last on CUDA); float32 output there."""
    image = image.to(device, non_blocking=True)
    if device.type == "cuda":
        image = image.contiguous(memory_format=torch.channels_last)
    dtype = amp_dtype(amp, device)
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
        output = net(image)
    return output.float()


def _deblur_tiled(net: nn.Module, padded: torch.Tensor, tile: int, overlap: int, amp: str | None,
                  progress: Progress | None, device: torch.device) -> torch.Tensor:
    """Blend overlapping tiles of an already padded image into an output on the image's device."""
    multiple = getattr(net, "size_multiple", 1)
    height, width = padded.shape[-2:]
    side_h, starts_h, weights_h, total_h = _axis_plan(height, tile, overlap, multiple)
    side_w, starts_w, weights_w, total_w = _axis_plan(width, tile, overlap, multiple)
    output = torch.zeros(padded.shape, dtype=torch.float32, device=padded.device)
    tiles = [(y, wy, x, wx) for y, wy in zip(starts_h, weights_h) for x, wx in zip(starts_w, weights_w)]
    for y, weight_y, x, weight_x in (progress(tiles) if progress else tiles):
        window = padded[..., y : y + side_h, x : x + side_w]
        result = _forward(net, window, amp, device).to(padded.device)
        weight = (weight_y[:, None] * weight_x[None, :]).to(result)
        output[..., y : y + side_h, x : x + side_w] += result * weight
    normaliser = (total_h[:, None] * total_w[None, :]).to(output)
    return output.div_(normaliser)


def resolve_overlap(
    tile: int | str | None, overlap: int | None, device_type: str = "cpu", hint: TileHint | None = None
) -> int:
    """``overlap``, or the network's (``hint.overlap``, at most half the tile); refuses one not below the tile.

    The one place a tile overlap is decided: ``jdrl deblur``, ``jdrl eval``, validation during training and
    :func:`deblur_tensor` / :func:`deblur_image` (``overlap=None``) all resolve it here, so the same network
    is tiled the same way everywhere. ``hint`` is the network's :class:`~jdrl.nets.tiling.TileHint`
    (``None``: the fallback, 256 px overlap, 512 px tiles on the CPU). With ``tile="auto"`` the tile that
    large images get on ``device_type`` is the limit, so the check happens before any image runs rather than
    in the middle of a run.
    """
    hint = hint or FALLBACK
    largest = hint.tile_for(device_type) if tile == "auto" else tile
    if overlap is None:
        return min(hint.overlap, largest // 2) if isinstance(largest, int) else hint.overlap
    if overlap < 0:
        raise ConfigError(f"the tile overlap must be >= 0, got {overlap}")
    if isinstance(largest, int) and overlap >= largest:
        raise ConfigError(f"the overlap of neighbouring tiles ({overlap} px) must be smaller than the tile "
                          f"({largest} px): choose a larger --tile or a smaller --overlap")
    return overlap


@torch.no_grad()
def deblur_tensor(
    net: nn.Module,
    image: torch.Tensor,
    tile: int | str | None = None,
    overlap: int | None = None,
    amp: str | None = None,
    *,
    progress: Progress | None = None,
    plan: TilePlan | None = None,
) -> torch.Tensor:
    """``net`` applied to ``image (B, 3, H, W)`` in [0, 1], any size; returns the clamped float32 output.

    The network runs on its own device; the result is on ``image``'s device. With
    ``tile=None``, or an image that fits in one tile, the whole image runs at once.
    Otherwise tiles of ``tile`` pixels (``"auto"``: see :func:`resolve_tile`; rounded up
    to ``net.size_multiple``) overlapping by at least ``overlap`` pixels (``None``: the network's tile hint,
    :func:`resolve_overlap`) are blended, so peak memory is set by the tile. ``amp`` is ``None``, ``"bf16"`` or ``"fp16"`` (autocast, CUDA only;
    ignored on the CPU). ``progress`` wraps the list of tiles (e.g. a progress bar). A ``plan``
    (:func:`plan_tiles`, made by a caller that already resolved it) replaces ``tile`` and ``overlap``.
    """
    multiple = getattr(net, "size_multiple", 1)
    padded, (height, width) = pad_to_multiple(image, multiple)
    plan = plan or plan_tiles(net, tile, overlap, height, width)
    device = net_device(net)
    if plan.side is None or max(padded.shape[-2:]) <= plan.side:
        output = _forward(net, padded, amp, device).to(image.device)
    else:
        output = _deblur_tiled(net, padded, plan.side, plan.overlap, amp, progress, device)
    return output[..., :height, :width].clamp_(0, 1)


def deblur_image(
    net: nn.Module,
    image: np.ndarray,
    tile: int | str | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    amp: str | None = None,
    *,
    progress: Progress | None = None,
) -> np.ndarray:
    """Deblur one float32 RGB image ``(H, W, 3)`` in [0, 1]; returns the same layout.

    ``device=None`` runs on the network's device; another device moves the network
    there (``nn.Module.to`` works in place). ``tile`` may also be ``"auto"`` (see
    :func:`resolve_tile`; the network's tile hint decides); ``progress`` wraps the list
    of tiles. The image itself stays in CPU memory when tiled, so only tiles occupy the
    accelerator.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if device is not None and torch.device(device) != net_device(net):
        net.to(device)
    plan = plan_tiles(net, tile, overlap, image.shape[0], image.shape[1])  # numbers already resolved pass through
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]
    output = deblur_tensor(net, tensor, amp=amp, progress=progress, plan=plan)
    return np.ascontiguousarray(output[0].cpu().numpy().transpose(1, 2, 0))
