"""A defocus map from the trained reblurring module: where, and how strongly, was the image blurred?

The reblurring module ``R(restored, blurry)`` (paper Eqs. (6)-(7)) predicts, per pixel, a mixture over kernel
sizes (WPN: a softmax over the identity and the isotropic kernels 3x3 ... 15x15) and each kernel's shape (KPN).
To reblur the restored image into the blurry one it must know the local blur, so its prediction is a defocus map.
Two readings (:data:`METHODS`):

``wpn``     the mixture's expected kernel radius, ``sum_k w_k r_k`` with ``r_k = 0, 1, ..., 7`` px (the radius of
            the identity and of the (2 r_k + 1)^2 windows): 0 ... 7;
``kernel``  the radius of the disk with the same second moment as the whole predicted kernel (mixture and shapes):
            ``sqrt(2 E|o|^2)`` (a uniform disk of radius R has ``E|o|^2 = R^2 / 2``): 0 ... ~8.6 px (a uniform
            15x15 square), in px of a thin-lens circle of confusion where the kernel is disk-like.

The map has the image's size. Large images run in tiles (:data:`TILE` px plus a :data:`MARGIN` px border that
covers the networks' receptive field of 8 px), which gives the whole-image map to float rounding.

On disk (:func:`write_blur_map`): a 16-bit grey PNG holding ``round(radius x SCALE)`` (``radius = value / SCALE``
px, so 0 ... 16 px at 1/4096 px steps) and an 8-bit colour preview (``PREVIEW_COLORMAP``, 0 ... the method's
largest radius, the same scale for every image).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from jdrl.checkpoint import is_jdrl_checkpoint
from jdrl.errors import UsageError, WeightsError
from jdrl.reblur.kernels import ring_table, ring_weights, split_seeds
from jdrl.reblur.module import ReblurModule
from jdrl.weights import load_strict, strip_prefix

if TYPE_CHECKING:
    import torch

    from jdrl.reblur.module import ReblurModule

METHODS = ("wpn", "kernel")
SCALE = 4096  # 16-bit PNG value per px of radius
TILE = 512  # px of each tile's core (CPU); twice that on CUDA
MARGIN = 16  # px of context around each tile: more than the 8 px receptive field of KPN and WPN
PREVIEW_COLORMAP = "magma"
RADII = tuple(float(r) for r in range(8))  # identity, then the 3x3 ... 15x15 windows
#: the largest value of each method (the top of the preview's colour scale)
TOP = {"wpn": RADII[-1], "kernel": math.sqrt(2 * 2 * sum(i * i for i in range(-7, 8)) / 15)}


def reblur_from_checkpoint(checkpoint: Mapping[str, Any], source: str = "the checkpoint") -> ReblurModule:
    """The reblurring module held by a checkpoint dict: a jdrl checkpoint's ``reblur`` entry or the authors'
    ``Reblur_state_dict``; a :class:`~jdrl.errors.WeightsError` naming ``source`` when there is none."""

    if is_jdrl_checkpoint(checkpoint):
        stored = checkpoint.get("reblur")
        if not isinstance(stored, Mapping) or not isinstance(stored.get("state_dict"), Mapping):
            raise WeightsError(f"{source} holds no reblurring module (trained with the pixel loss, or written by "
                               "'jdrl export'), so it has no blur map; use a JDRL training checkpoint (RUN/last.pt)")
        options, state = dict(stored.get("options") or {}), dict(stored["state_dict"])
    elif isinstance(checkpoint.get("Reblur_state_dict"), Mapping):
        options, state = {"kernel": "isotropic"}, strip_prefix(checkpoint["Reblur_state_dict"], "module.")
    else:
        raise WeightsError(f"{source} holds no reblurring module (a model folder or .safetensors file holds the "
                           "network only), so it has no blur map; use a JDRL training checkpoint (RUN/last.pt) or "
                           "the authors' file with its Reblur_state_dict")
    first = state.get("kpn.conv_first.weight")
    if first is None:
        raise WeightsError(f"{source}: its reblurring module has no kpn.conv_first.weight; it is not jdrl's")
    module = ReblurModule(kernel=options.get("kernel", "isotropic"), support=options.get("support", "square"),
                          features=int(first.shape[0]))
    load_strict(module, state, f"{source} (reblur)")
    return module.eval()


def load_reblur(checkpoint: str | os.PathLike | Mapping[str, Any], map_location: str = "cpu") -> ReblurModule:
    """:func:`reblur_from_checkpoint` of a file (any ``--checkpoint`` of ``jdrl deblur``) or a loaded dict."""
    if isinstance(checkpoint, Mapping):
        return reblur_from_checkpoint(checkpoint)
    from jdrl.nets.factory import read_weights

    return reblur_from_checkpoint(read_weights(checkpoint, map_location=map_location).checkpoint, str(checkpoint))


def check_method(reblur: ReblurModule, method: str) -> None:
    if method not in METHODS:
        raise UsageError(f"blur map method must be one of {', '.join(METHODS)}, not {method!r}")
    if not hasattr(reblur, "kernel_map_gene"):
        raise UsageError(f"the reblurring module ({reblur.kernel} kernel) has no WPN, so it predicts no mixture over "
                         "kernel sizes: no blur map")
    if method == "kernel" and reblur.kernel != "isotropic":
        raise UsageError(f"blur map method 'kernel' needs the isotropic kernels; this module has {reblur.kernel!r} "
                         "kernels (use method 'wpn')")


def _second_moment(seed: torch.Tensor, support: str) -> torch.Tensor:
    """``(B, 1, H, W)``: ``E|o|^2`` of the per-pixel isotropic kernel of a raw seed ``(B, r+1, H, W)``."""


    radius = seed.shape[1] - 1
    matrix, counts, n_corners = (x.to(seed) if isinstance(x, torch.Tensor) else x for x in ring_weights(radius))
    squared = torch.tensor([d for d, *_ in ring_table(radius)], dtype=seed.dtype, device=seed.device)
    logits = torch.einsum("dk,bkhw->bdhw", matrix, seed.abs())
    corners = support == "square" and n_corners > 0
    peak = logits.amax(dim=1, keepdim=True)
    if corners:  # the corners keep logit 0
        peak = peak.clamp(min=0)
    exps = torch.exp(logits - peak)
    total = torch.einsum("d,bdhw->bhw", counts, exps).unsqueeze(1)
    moment = torch.einsum("d,bdhw->bhw", counts * squared, exps).unsqueeze(1)
    if corners:
        side = 2 * radius + 1
        square_sum = 2 * side * sum(i * i for i in range(-radius, radius + 1))  # sum of |o|^2 over the window
        corner_sum = square_sum - float((counts * squared).sum())
        corner = torch.exp(-peak)
        total = total + n_corners * corner
        moment = moment + corner_sum * corner
    return moment / total


def _map_of(reblur: ReblurModule, restored: torch.Tensor, blurry: torch.Tensor, method: str) -> torch.Tensor:
    features = torch.cat([restored, blurry], dim=1)
    weights = torch.softmax(reblur.kernel_map_gene(features).float(), dim=1)  # (B, 8, H, W)
    if method == "wpn":
        radii = torch.tensor(RADII, dtype=weights.dtype, device=weights.device).view(1, -1, 1, 1)
        return (weights * radii).sum(dim=1, keepdim=True)
    seeds = split_seeds(reblur.kpn(features).float())
    moment = torch.zeros_like(weights[:, :1])  # the identity (weights[:, 0]) has E|o|^2 = 0
    for index, seed in enumerate(seeds):
        moment = moment + weights[:, index + 1 : index + 2] * _second_moment(seed, reblur.support)
    return torch.sqrt(2 * moment)


def blur_map(
    reblur: ReblurModule,
    restored: torch.Tensor,
    blurry: torch.Tensor,
    method: str = "wpn",
    tile: int | None = None,
    margin: int = MARGIN,
) -> torch.Tensor:
    """The defocus radius ``(B, 1, H, W)`` in px (module docstring) of ``blurry`` given the network's ``restored``
    output (both ``(B, 3, H, W)`` in [0, 1]), on the module's device; the result is on ``blurry``'s device.

    ``tile``: the side of each tile's core (``None``: :data:`TILE` on the CPU, twice on CUDA); ``margin`` px of
    context around it (at least the 8 px receptive field for the whole-image result)."""

    check_method(reblur, method)
    if restored.shape != blurry.shape or restored.dim() != 4 or restored.shape[1] != 3:
        raise ValueError(f"blur_map needs two (B, 3, H, W) tensors of one shape, got {tuple(restored.shape)} and "
                         f"{tuple(blurry.shape)}")
    device = next(reblur.parameters()).device
    side = tile or (2 * TILE if device.type == "cuda" else TILE)
    height, width = blurry.shape[-2:]
    out = torch.zeros((blurry.shape[0], 1, height, width), dtype=torch.float32, device=blurry.device)
    with torch.no_grad():
        for y in range(0, height, side):
            for x in range(0, width, side):
                top, left = max(0, y - margin), max(0, x - margin)
                bottom, right = min(height, y + side + margin), min(width, x + side + margin)
                window = (slice(None), slice(None), slice(top, bottom), slice(left, right))
                part = _map_of(reblur, restored[window].to(device), blurry[window].to(device), method)
                core_h, core_w = min(side, height - y), min(side, width - x)
                out[..., y : y + core_h, x : x + core_w] = part[..., y - top : y - top + core_h,
                                                                x - left : x - left + core_w].to(out.device)
    return out


def blur_map_image(reblur: ReblurModule, restored: np.ndarray, blurry: np.ndarray, method: str = "wpn") -> np.ndarray:
    """:func:`blur_map` of float RGB images ``(H, W, 3)``: the radius ``(H, W)`` float32 in px."""

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]

    return blur_map(reblur, tensor(restored), tensor(blurry), method)[0, 0].cpu().numpy()


def preview(radius: np.ndarray, top: float) -> np.ndarray:
    """``(H, W, 3)`` float RGB: ``radius`` through :data:`PREVIEW_COLORMAP` on ``[0, top]``."""
    from matplotlib import colormaps

    return colormaps[PREVIEW_COLORMAP](np.clip(radius / max(top, 1e-9), 0, 1))[..., :3].astype(np.float32)


def encode(radius: np.ndarray) -> np.ndarray:
    """``uint16``: ``round(radius x SCALE)``, clipped to 0 ... 65535."""
    return np.clip(np.round(radius.astype(np.float64) * SCALE), 0, 65535).astype(np.uint16)


def decode(values: np.ndarray) -> np.ndarray:
    """The radius in px of a 16-bit blur-map PNG's values."""
    return values.astype(np.float32) / SCALE


def write_blur_map(path: str | os.PathLike, preview_path: str | os.PathLike, radius: np.ndarray,
                   method: str = "wpn") -> tuple[Path, Path]:
    """The 16-bit PNG at ``path`` and its colour preview at ``preview_path`` (atomically, folders made)."""
    from jdrl.images import write_image

    path, preview_path = Path(path), Path(preview_path)
    for target in (path, preview_path):
        target.parent.mkdir(parents=True, exist_ok=True)
    grey = encode(radius).astype(np.float32) / 65535.0  # write_image quantises [0, 1] to the 16-bit values exactly
    write_image(path, grey, 16)
    write_image(preview_path, preview(radius, TOP[method]), 8)
    return path, preview_path


def read_blur_map(path: str | os.PathLike) -> np.ndarray:
    """A blur map written by :func:`write_blur_map`: the radius ``(H, W)`` float32 in px."""
    from jdrl.images import read_image_raw

    raw = read_image_raw(path)
    return decode(raw if raw.ndim == 2 else raw[..., 0])


__all__ = ["METHODS", "SCALE", "blur_map", "blur_map_image", "decode", "encode", "load_reblur", "read_blur_map",
           "reblur_from_checkpoint", "write_blur_map"]
