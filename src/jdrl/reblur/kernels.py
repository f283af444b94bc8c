"""Per-pixel isotropic blur kernels (paper Eqs. (6)-(7), supplement Table 7) in two interchangeable implementations.

A seed ``(a_0 ... a_r)`` (after ``abs``, as the released code) defines a
``(2r+1)^2`` kernel whose logit at offset ``o`` is ``a`` linearly interpolated at
the radius ``|o|`` inside the radius-``r`` disk, and 0 outside it (the corners of
the square, ``support="square"``, as released) or minus infinity
(``support="disk"``); a softmax over the window normalises it.

* **direct** builds the explicit per-pixel kernels and convolves (correlation,
  zero padding): the readable oracle, and the only choice for free
  (non-isotropic) kernels.
* **ring** uses that a logit depends only on ``d = dy^2 + dx^2``. With the ring
  sums ``S_d(p) = sum_{|o|^2 = d} I(p + o)`` (24 distinct ``d`` inside radius 7,
  shared by every kernel size and every pixel),
  ``sum_o k(p, o) I(p + o) = sum_d w_d(p) S_d(p) + w_corner(p) (box(p) - disk(p))``.
  The per-pixel work is on single-channel weight maps; the image is only shifted
  and added. Same numbers, a fraction of the time and memory.

  The ring (and box) sums themselves are computed in one of two ways: by ~150
  shifted adds (``sums="shift"``: the fewest operations, best on a CPU) or by one
  correlation with a fixed 0/1 filter bank (``sums="conv"``: one kernel instead of
  hundreds, best on a GPU, where small kernels cost their launch). ``"auto"``
  picks by device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

from jdrl.registry import Registry

SUPPORTS = ("square", "disk")
#: the implementations of the isotropic reblur by name (``loss.reblur_impl``): a factory ``() -> function(image,
#: seeds, weights, support)``; ring, direct and compiled (torch.compile of ring: fused kernels on CUDA) agree
REBLUR_IMPLEMENTATIONS: Registry = Registry("reblur implementation", sort=False)
RING_SUMS = ("auto", "shift", "conv")
SEED_LENGTHS = (2, 3, 4, 5, 6, 7, 8)  # kernel sizes 3x3 ... 15x15, 35 numbers per pixel


@lru_cache(maxsize=None)
def ring_table(radius: int) -> tuple[tuple[int, int, float, tuple[tuple[int, int], ...]], ...]:
    """For each distinct squared radius ``d <= radius^2``: ``(d, low, t, offsets)``.

    The logit there is ``(1 - t) a_low + t a_{low+1}`` (``t = 0`` on integer radii);
    ``t`` is computed in float32 like the released code.
    """
    rings: dict[int, list[tuple[int, int]]] = {}
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            d = dy * dy + dx * dx
            if d <= radius * radius:
                rings.setdefault(d, []).append((dy, dx))
    table = []
    for d in sorted(rings):
        rho = torch.sqrt(torch.tensor(float(d), dtype=torch.float32))
        low = int(torch.floor(rho))
        t = float(rho - low)
        table.append((d, low, t, tuple(rings[d])))
    return tuple(table)


def interpolation_matrix(radius: int, support: str = "square") -> tuple[torch.Tensor, torch.Tensor]:
    """``(K*K, r+1)`` matrix mapping a seed to the kernel's logits, and the corner mask ``(K*K,)``."""
    size = 2 * radius + 1
    matrix = torch.zeros(size * size, radius + 1)
    inside = torch.zeros(size * size, dtype=torch.bool)
    for _d, low, t, offsets in ring_table(radius):
        for dy, dx in offsets:
            row = (dy + radius) * size + (dx + radius)
            inside[row] = True
            matrix[row, low] += 1.0 - t if t else 1.0
            if t:
                matrix[row, low + 1] += t
    return matrix, ~inside


def isotropic_kernels(seed: torch.Tensor, support: str = "square") -> torch.Tensor:
    """Explicit per-pixel kernels ``(B, K*K, H, W)`` (softmax-normalised) from a raw seed ``(B, r+1, H, W)``."""
    radius = seed.shape[1] - 1
    matrix, corners = interpolation_matrix(radius, support)
    logits = torch.einsum("ki,bihw->bkhw", matrix.to(seed), seed.abs())
    if support == "disk":
        logits = logits.masked_fill(corners.to(seed.device).view(1, -1, 1, 1), float("-inf"))
    return torch.softmax(logits, dim=1)


def apply_kernels(image: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Per-pixel correlation of ``image (B, C, H, W)`` with ``kernels (B, K*K, H, W)``, zero padding."""
    batch, channels, height, width = image.shape
    size = math.isqrt(kernels.shape[1])
    patches = F.unfold(image, size, padding=size // 2).view(batch, channels, size * size, height, width)
    return (patches * kernels.unsqueeze(1)).sum(dim=2)


class _RingSums(torch.autograd.Function):
    """``(B, C, H, W)`` -> ``(B, n_rings, C, H, W)``: for each ring, the sum of the image shifted by its offsets.

    A custom function because autograd's slice backward would allocate and zero a
    padded tensor for each of the 149 offsets; the adjoint is just the same
    shifts added in place into one padded gradient.
    """

    @staticmethod
    def forward(ctx, image: torch.Tensor, radius: int) -> torch.Tensor:
        ctx.radius, ctx.shape = radius, image.shape
        height, width = image.shape[-2:]
        padded = F.pad(image, (radius, radius, radius, radius))
        table = ring_table(radius)
        sums = image.new_zeros(image.shape[0], len(table), *image.shape[1:])
        for index, (_, _, _, offsets) in enumerate(table):
            target = sums[:, index]
            for dy, dx in offsets:
                target += padded[..., radius + dy : radius + dy + height, radius + dx : radius + dx + width]
        return sums

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        radius, (batch, channels, height, width) = ctx.radius, ctx.shape
        padded = grad.new_zeros(batch, channels, height + 2 * radius, width + 2 * radius)
        for index, (_, _, _, offsets) in enumerate(ring_table(radius)):
            ring_grad = grad[:, index]
            for dy, dx in offsets:
                padded[..., radius + dy : radius + dy + height, radius + dx : radius + dx + width] += ring_grad
        return padded[..., radius : radius + height, radius : radius + width], None


@lru_cache(maxsize=None)
def ring_bank(radius: int, box_radii: tuple[int, ...] = ()) -> torch.Tensor:
    """0/1 filters ``(n_rings + len(box_radii), 1, K, K)``: each ring of :func:`ring_table`, then each box."""
    size = 2 * radius + 1
    table = ring_table(radius)
    bank = torch.zeros(len(table) + len(box_radii), 1, size, size, dtype=torch.float64)
    for index, (*_, offsets) in enumerate(table):
        for dy, dx in offsets:
            bank[index, 0, radius + dy, radius + dx] = 1.0
    for index, r in enumerate(box_radii, start=len(table)):
        bank[index, 0, radius - r : radius + r + 1, radius - r : radius + r + 1] = 1.0
    return bank


@lru_cache(maxsize=None)
def _ring_bank_on(radius: int, box_radii: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """:func:`ring_bank` on a device, made once."""
    return ring_bank(radius, box_radii).to(device, dtype)


class _BankSums(torch.autograd.Function):
    """``(B, C, H, W)`` -> ``(B, n_filters, C, H, W)``: one zero-padded correlation with a 0/1 filter bank.

    TF32 is switched off in both directions: these sums must be exact to float32,
    like the shifted adds they replace (TF32 keeps 10 mantissa bits).
    """

    @staticmethod
    def forward(ctx, image: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(bank)
        batch, channels, height, width = image.shape
        with _no_tf32():
            sums = F.conv2d(image.reshape(batch * channels, 1, height, width), bank, padding=bank.shape[-1] // 2)
        return sums.view(batch, channels, -1, height, width).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (bank,) = ctx.saved_tensors
        batch, filters, channels, height, width = grad.shape
        grad = grad.transpose(1, 2).reshape(batch * channels, filters, height, width)
        with _no_tf32():
            image_grad = F.conv_transpose2d(grad, bank, padding=bank.shape[-1] // 2)
        return image_grad.view(batch, channels, height, width), None


class _no_tf32:
    def __enter__(self) -> None:
        self.previous = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc) -> None:
        torch.backends.cudnn.allow_tf32 = self.previous


def _box_sums(image: torch.Tensor, radii: Sequence[int]) -> dict[int, torch.Tensor]:
    """``{r: sum over the (2r+1)^2 window}`` (zero padding) from one float64 integral image.

    float64 keeps the differences of large prefix sums exact to float32 precision.
    """
    top = max(radii)
    height, width = image.shape[-2:]
    padded = F.pad(image.double(), (top + 1, top, top + 1, top))
    integral = padded.cumsum(-1).cumsum(-2)
    boxes = {}
    for r in radii:
        y0, y1 = top - r, top + r + 1  # rows [y - r, y + r] of the image sit at integral rows y0 .. y1 offsets
        x0, x1 = top - r, top + r + 1
        box = (
            integral[..., y1 : y1 + height, x1 : x1 + width]
            - integral[..., y0 : y0 + height, x1 : x1 + width]
            - integral[..., y1 : y1 + height, x0 : x0 + width]
            + integral[..., y0 : y0 + height, x0 : x0 + width]
        )
        boxes[r] = box.to(image.dtype)
    return boxes


@lru_cache(maxsize=None)
def _ring_weights_on(radius: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`ring_weights` on a device, made once (not copied to the GPU at every call)."""
    matrix, counts, corners = ring_weights(radius)
    return matrix.to(device, dtype), counts.to(device, dtype), corners


@lru_cache(maxsize=None)
def ring_weights(radius: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(n_rings, r+1)`` seed -> ring-logit matrix, the offsets per ring, and the number of corners."""
    table = ring_table(radius)
    matrix = torch.zeros(len(table), radius + 1, dtype=torch.float64)
    for index, (_, low, t, _) in enumerate(table):
        matrix[index, low] = 1.0 - t
        if t:
            matrix[index, low + 1] = t
    counts = torch.tensor([len(offsets) for *_, offsets in table], dtype=torch.float64)
    corners = (2 * radius + 1) ** 2 - int(counts.sum())
    return matrix, counts, corners


def ring_reblur(
    image: torch.Tensor, seeds: Sequence[torch.Tensor], weights: torch.Tensor, support: str = "square",
    sums: str = "auto",
) -> torch.Tensor:
    """``weights[:, 0] * image + sum_i weights[:, i+1] * (k_i (*) image)`` by ring sums.

    ``seeds[i]`` is ``(B, r_i + 1, H, W)``; ``weights`` is ``(B, 1 + len(seeds), H, W)``.
    The rings of a radius-``r`` kernel are the first ones of the largest kernel's
    table (they are sorted by ``d``), so one set of ring sums serves every size.
    ``sums``: how the ring sums are computed (module docstring); the same numbers.
    """
    if sums not in RING_SUMS:
        raise ValueError(f"sums must be one of {RING_SUMS}, not {sums!r}")
    radii = [seed.shape[1] - 1 for seed in seeds]
    top = max(radii)
    n_rings = len(ring_table(top))
    if sums == "conv" or (sums == "auto" and image.is_cuda):
        box_radii = tuple(radii) if support == "square" else ()
        bank = _ring_bank_on(top, box_radii, image.device, image.dtype)
        every = _BankSums.apply(image, bank)  # (B, n_rings + boxes, C, H, W)
        rings = every[:, :n_rings]
        boxes = {r: every[:, n_rings + index] for index, r in enumerate(box_radii)}
    else:
        rings = _RingSums.apply(image, top)  # (B, n_rings, C, H, W)
        boxes = _box_sums(image, radii) if support == "square" else {}
    output = weights[:, :1] * image
    coefficients = 0
    for index, (seed, radius) in enumerate(zip(seeds, radii)):
        matrix, counts, n_corners = _ring_weights_on(radius, seed.device, seed.dtype)
        seed = seed.abs()
        peak = seed.amax(dim=1, keepdim=True).detach()  # softmax is shift invariant: a stabiliser only
        exps = torch.exp(torch.einsum("dk,bkhw->bdhw", matrix, seed) - peak)
        normaliser = torch.einsum("d,bdhw->bhw", counts, exps).unsqueeze(1)
        if support == "square":  # corners: logit 0, i.e. exp(-peak) after the shift
            corner = torch.exp(-peak)
            normaliser = normaliser + n_corners * corner
            exps = exps - corner  # the box sum below counts the disk too; remove it once here
        gain = weights[:, index + 1 : index + 2] / normaliser
        coefficients = coefficients + F.pad(gain * exps, (0, 0, 0, 0, 0, n_rings - len(counts)))
        if support == "square":
            output = output + (gain * corner) * boxes[radius]
    return output + (coefficients.unsqueeze(2) * rings).sum(dim=1)


def direct_reblur(
    image: torch.Tensor, seeds: Sequence[torch.Tensor], weights: torch.Tensor, support: str = "square"
) -> torch.Tensor:
    """The same as :func:`ring_reblur` with explicit per-pixel kernels (the oracle)."""
    output = weights[:, :1] * image
    for index, seed in enumerate(seeds):
        output = output + weights[:, index + 1 : index + 2] * apply_kernels(image, isotropic_kernels(seed, support))
    return output


def split_seeds(seeds: torch.Tensor, lengths: Sequence[int] = SEED_LENGTHS) -> list[torch.Tensor]:
    if seeds.shape[1] != sum(lengths):
        raise ValueError(f"expected {sum(lengths)} seed channels (lengths {tuple(lengths)}), got {seeds.shape[1]}")
    return list(torch.split(seeds, list(lengths), dim=1))


def isotropic_reblur(
    image: torch.Tensor,
    seeds: torch.Tensor,
    weights: torch.Tensor,
    impl: str = "ring",
    support: str = "square",
    lengths: Sequence[int] = SEED_LENGTHS,
) -> torch.Tensor:
    """Reblur ``image (B, C, H, W)`` with per-pixel isotropic kernels (kornia-style functional form).

    ``seeds``: the raw KPN output ``(B, 35, H, W)`` (split 2, 3, ..., 8);
    ``weights``: the WPN softmax ``(B, 8, H, W)`` (identity, then 3x3 ... 15x15).
    """
    if support not in SUPPORTS:
        raise ValueError(f"support must be one of {SUPPORTS}, not {support!r}")
    if weights.shape[1] != len(lengths) + 1:
        raise ValueError(f"expected {len(lengths) + 1} weight maps, got {weights.shape[1]}")
    return reblur_function(impl)(image, split_seeds(seeds, lengths), weights, support)


def reblur_function(impl: str):
    """The function of one implementation of :data:`REBLUR_IMPLEMENTATIONS`: ``ring``, ``direct`` or ``compiled``
    (all give the same numbers); an unknown name is an :class:`~jdrl.errors.UnknownNameError` listing them."""
    return REBLUR_IMPLEMENTATIONS.get(impl)()


@REBLUR_IMPLEMENTATIONS.register("ring")
def _ring_reblur():
    return ring_reblur


@REBLUR_IMPLEMENTATIONS.register("direct")
def _direct_reblur():
    return direct_reblur


@REBLUR_IMPLEMENTATIONS.register("compiled")
@lru_cache(maxsize=None)
def _compiled_ring_reblur():
    """``torch.compile`` of :func:`ring_reblur`, made once per process (compiling is the expensive part).

    Shapes are static (``dynamic=False``): each new image size compiles again, as training crops are fixed.
    """
    return torch.compile(ring_reblur, dynamic=False)


def free_kernels(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over a free (non-isotropic) ``(B, K*K, H, W)`` logit map: the #5 ablation's kernels."""
    return torch.softmax(logits, dim=1)
