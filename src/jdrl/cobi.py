"""CoBi, the contextual bilateral loss (Zhang et al., "Zoom to Learn, Learn to Zoom", CVPR 2019).

The misalignment-tolerant loss the JDRL paper's supplement compares with. Each image is
described by features at grid points (RGB: the ``patch_size``² patch around the point,
flattened; CoBi-VGG: VGG-19 ``conv1_2``/``conv2_2``/``conv3_2`` activations). For output
features ``i`` and target features ``j``::

    d_ij  = d_feat(i, j) + w_s · d_space(i, j)                (combine="distance", the default)
    d̃_ij  = d_ij / (min_k d_ik + eps)
    CX_ij = exp((1 − d̃_ij)/h) / Σ_k exp((1 − d̃_ik)/h)         (a softmax over the targets k)
    CoBi  = (1/N) Σ_j max_i CX_ij,          loss = −log(CoBi)  (mean over the batch)

``d_feat`` is the cosine distance ``(1 − cos)/2`` of features centred by the target's mean
(``distance="cosine"``), or the squared L2 distance of features scaled by 255
(``distance="l2"``); ``d_space`` is the Euclidean distance of the grid points in
normalised coordinates ``(y/H, x/W)``.

What the public code does (``ceciliavision/zoom-learn-zoom``: ``loss.py`` lines 86-127,
``CX/CX_helper.py:CX_loss_helper``, ``CX/CSFlow.py``), and where this module follows it:

- RGB CoBi (``compute_patch_contextual_loss``): 5×5 patches of the ×255 image at stride 1
  with SAME zero padding, **squared L2** distance; CoBi-VGG (``compute_contextual_loss``):
  cosine distance ``(1 − cos)/2`` after centring both by the target's mean, layers
  ``conv1_2: 1.0, conv2_2: 1.0, conv3_2: 0.5`` (after ReLU), average pooling in its VGG.
- Band width ``nn_stretch_sigma = 0.5`` there; ``eps = 1e-3`` in ``calc_relative_distances``.
  Here the defaults are the issue's: ``band_width=1.0``, ``eps=1e-5``, cosine for RGB too
  (``distance="l2"`` gives the code's RGB distance). Both are options.
- The code combines **similarities**, not distances: ``CX = (1 − w_s)·CX_feat + w_s·CX_space``
  with ``CX_space`` computed (same band width) from squared distances of coordinates scaled
  to [0, 255) (``CSFlow.create`` / ``CX_loss``); ``combine="cx"`` does that. The issue's
  definition (the paper's formula, as the issue states it; the paper text itself was not
  checked here) adds distances: ``combine="distance"``, the default. w_s = 0.1 in both.
- Random sampling: ``random_pooling`` keeps 63² random points (the same ones in both images)
  when a map has more. Here: at most ``max_points`` points, the subset
  ``torch.randperm(N, generator=generator)[:max_points]`` (same for every image of the batch
  and both images). Unlike the code, the spatial term uses the sampled points' true
  positions (the code takes positions on the pooled 63×63 grid, i.e. scrambled ones).
- Patches are taken without padding (``VALID``): no zero-padded border patches. Centring uses
  each image's own target mean (the code pools the batch); identical for batch size 1.
- CoBi-VGG here uses torchvision's VGG-19 (max pooling, ImageNet mean/std normalisation of
  [0, 1] inputs), not the MatConvNet one the code loads.

Memory: each CoBi holds a few ``N × N`` matrices per image (``N = min(grid points,
max_points)``); only the sampled patches are gathered. The default ``max_points=1024`` is
1024² floats = 4 MiB per matrix and image, at any crop size (a 256² crop with 5×5 patches at
stride 1 has 252² = 63,504 points: all of them would be 16 GB per matrix). Measured on CPU,
one 256² image, forward + backward: peak RSS grows by ~60 MB at 1024 points and ~380 MB at
the public code's 63² = 3969 points.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from jdrl.errors import WeightsError

COBI_DISTANCES = ("cosine", "l2")
COBI_COMBINES = ("distance", "cx")
# torchvision vgg19().features indices of the ReLU after conv1_2, conv2_2, conv3_2, and the public code's weights
VGG_LAYERS = {"conv1_2": (3, 1.0), "conv2_2": (8, 1.0), "conv3_2": (13, 0.5)}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _check(distance: str, combine: str, band_width: float, max_points: int, spatial_weight: float) -> None:
    if distance not in COBI_DISTANCES:
        raise ValueError(f"CoBi distance must be one of {COBI_DISTANCES}, not {distance!r}")
    if combine not in COBI_COMBINES:
        raise ValueError(f"CoBi combine must be one of {COBI_COMBINES}, not {combine!r}")
    if not band_width > 0:
        raise ValueError(f"CoBi band_width must be > 0, not {band_width}")
    if max_points < 1:
        raise ValueError(f"CoBi max_points must be >= 1, not {max_points}")
    if spatial_weight < 0:
        raise ValueError(f"CoBi spatial_weight must be >= 0, not {spatial_weight}")


def grid_features(
    image: torch.Tensor, patch_size: int, stride: int, index: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, N, C·p²)`` flattened patches at the grid points and their ``(N, 2)`` positions ``(y/H, x/W)``.

    Grid points are patch centres, row-major, ``(H - p)//stride + 1`` per column (no padding);
    the flattening order is ``F.unfold``'s (channel, then patch row, then column). With
    ``index``, only those grid points (and their positions) are returned, and only their
    patches are ever gathered.
    """
    b, c, h, w = image.shape
    if patch_size > h or patch_size > w:
        raise ValueError(f"CoBi patch {patch_size} does not fit in a {w}x{h} image")
    tops = torch.arange(0, h - patch_size + 1, stride, device=image.device)
    lefts = torch.arange(0, w - patch_size + 1, stride, device=image.device)
    top, left = (g.reshape(-1) for g in torch.meshgrid(tops, lefts, indexing="ij"))
    if index is not None:
        top, left = top[index], left[index]
    offsets = torch.arange(patch_size, device=image.device)
    rows = (top[:, None] + offsets)[:, :, None]  # (N, p, 1)
    cols = (left[:, None] + offsets)[:, None, :]  # (N, 1, p)
    patches = image[:, :, rows, cols]  # (B, C, N, p, p)
    feats = patches.permute(0, 2, 1, 3, 4).reshape(b, top.shape[0], c * patch_size * patch_size)
    centre = (patch_size - 1) / 2.0
    positions = torch.stack([(top.to(image.dtype) + centre) / h, (left.to(image.dtype) + centre) / w], dim=1)
    return feats, positions


def _grid_size(height: int, width: int, patch_size: int, stride: int) -> int:
    if patch_size > height or patch_size > width:
        raise ValueError(f"CoBi patch {patch_size} does not fit in a {width}x{height} image")
    return ((height - patch_size) // stride + 1) * ((width - patch_size) // stride + 1)


def _subset(n: int, max_points: int, generator: torch.Generator | None, device) -> torch.Tensor | None:
    if n <= max_points:
        return None
    return torch.randperm(n, generator=generator)[:max_points].to(device)


def _cx(distances: torch.Tensor, band_width: float, eps: float) -> torch.Tensor:
    """Contextual similarity ``CX_ij``, normalised over the targets ``j`` (last axis)."""
    relative = distances / (distances.amin(dim=-1, keepdim=True) + eps)
    return torch.softmax((1.0 - relative) / band_width, dim=-1)  # = exp((1-d̃)/h) / Σ_k exp((1-d̃_k)/h)


def cobi_from_features(
    output: torch.Tensor,
    target: torch.Tensor,
    positions: torch.Tensor,
    *,
    spatial_weight: float = 0.1,
    band_width: float = 1.0,
    distance: str = "cosine",
    combine: str = "distance",
    eps: float = 1e-5,
) -> torch.Tensor:
    """``(B,)`` CoBi similarities (in (0, 1], higher is better) of ``(B, N, D)`` feature sets at ``(N, 2)`` positions."""
    if distance == "cosine":
        mean = target.mean(dim=1, keepdim=True)
        o = F.normalize(output - mean, dim=-1, eps=1e-12)
        t = F.normalize(target - mean, dim=-1, eps=1e-12)
        d_feat = (1.0 - o @ t.transpose(1, 2)) / 2.0
    else:
        o, t = output * 255.0, target * 255.0
        sq = (o * o).sum(-1, keepdim=True) - 2.0 * o @ t.transpose(1, 2) + (t * t).sum(-1).unsqueeze(1)
        d_feat = sq.clamp_min(0.0)
    if combine == "distance":
        d = d_feat
        if spatial_weight:
            d = d + spatial_weight * torch.cdist(positions, positions).unsqueeze(0)
        cx = _cx(d, band_width, eps)
    else:
        p = positions * 255.0
        d_space = ((p.unsqueeze(1) - p.unsqueeze(0)) ** 2).sum(-1).unsqueeze(0)
        cx = (1.0 - spatial_weight) * _cx(d_feat, band_width, eps) + spatial_weight * _cx(d_space, band_width, eps)
    return cx.amax(dim=1).mean(dim=1)  # max over outputs i, mean over targets j


def cobi_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    *,
    patch_size: int = 5,
    stride: int = 1,
    spatial_weight: float = 0.1,
    band_width: float = 1.0,
    max_points: int = 1024,
    distance: str = "cosine",
    combine: str = "distance",
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RGB CoBi loss ``mean_b −log(CoBi)`` of ``(B, C, H, W)`` images in [0, 1] (see the module docstring).

    At most ``max_points`` grid points are used: ``torch.randperm(N, generator=generator)[:max_points]``
    (a CPU generator; the global RNG when ``None``), the same subset for output and target.
    Memory: ~4 MiB per ``N × N`` matrix and image at the default 1024 points (~60 MB peak, forward + backward).
    """
    _check(distance, combine, band_width, max_points, spatial_weight)
    if output.shape != target.shape:
        raise ValueError(f"CoBi: output {tuple(output.shape)} and target {tuple(target.shape)} differ")
    index = _subset(_grid_size(*output.shape[-2:], patch_size, stride), max_points, generator, output.device)
    out_f, positions = grid_features(output, patch_size, stride, index)
    tgt_f, _ = grid_features(target, patch_size, stride, index)
    return _loss(out_f, tgt_f, positions, spatial_weight, band_width, distance, combine, eps)


def _loss(out_f, tgt_f, positions, spatial_weight, band_width, distance, combine, eps):
    cobi = cobi_from_features(
        out_f, tgt_f, positions, spatial_weight=spatial_weight, band_width=band_width,
        distance=distance, combine=combine, eps=eps,
    )  # fmt: skip
    return -torch.log(cobi).mean()


def load_vgg_features(path: str | Path) -> nn.Module:
    """Frozen ``torchvision.models.vgg19(weights=None).features[:14]`` (through ReLU after conv3_2), eval mode.

    ``path`` is a torchvision VGG-19 state dict (``torch.load(path, weights_only=True)``); only
    the ``features.*`` keys of the first 14 layers are used (others, e.g. ``classifier.*``, are
    ignored), and every one of them must be present with the right shape. Nothing is downloaded.
    """
    import torchvision

    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"CoBi-VGG weights {str(path)!r} not found: give a torchvision VGG-19 state dict file "
            "(e.g. vgg19-dcbb9e9d.pth); nothing is downloaded"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the user's to fix
        raise WeightsError(f"CoBi-VGG weights {str(path)!r} could not be read: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"CoBi-VGG weights {str(path)!r} are not a state dict")
    with torch.device("meta"):  # no time spent initialising weights that the file replaces (or the classifier)
        features = torchvision.models.vgg19(weights=None).features[:14]
    wanted = features.state_dict()
    missing = [k for k in wanted if f"features.{k}" not in state]
    wrong = [
        f"features.{k}: {tuple(state[f'features.{k}'].shape)} != {tuple(v.shape)}"
        for k, v in wanted.items()
        if f"features.{k}" in state and tuple(state[f"features.{k}"].shape) != tuple(v.shape)
    ]
    if missing or wrong:
        raise WeightsError(
            f"CoBi-VGG weights {str(path)!r} do not fit VGG-19: "
            + "; ".join([*(f"missing features.{k}" for k in missing), *wrong])
        )
    features = features.to_empty(device="cpu")
    features.load_state_dict({k: state[f"features.{k}"].float() for k in wanted})
    features.eval().requires_grad_(False)
    return features


class CoBiLoss(nn.Module):
    """``loss = CoBiLoss(...)(output, target)``: :func:`cobi_loss` as a module, or CoBi-VGG.

    With ``vgg_weights`` (a torchvision VGG-19 state dict path), the features are VGG-19's
    ``conv1_2``, ``conv2_2``, ``conv3_2`` activations (after ReLU) of ImageNet-normalised
    inputs, one CoBi per layer (1×1 features, at most ``max_points`` points each) summed with
    the public code's weights 1.0, 1.0, 0.5; ``patch_size`` and ``stride`` are then unused.
    The VGG is frozen, in eval mode, and not part of ``state_dict()``/``parameters()``.
    """

    def __init__(
        self,
        *,
        patch_size: int = 5,
        stride: int = 1,
        spatial_weight: float = 0.1,
        band_width: float = 1.0,
        max_points: int = 1024,
        distance: str = "cosine",
        combine: str = "distance",
        eps: float = 1e-5,
        generator: torch.Generator | None = None,
        vgg_weights: str | Path | None = None,
    ):
        super().__init__()
        _check(distance, combine, band_width, max_points, spatial_weight)
        self.patch_size, self.stride = patch_size, stride
        self.spatial_weight, self.band_width, self.max_points = spatial_weight, band_width, max_points
        self.distance, self.combine, self.eps, self.generator = distance, combine, eps, generator
        self.vgg_weights = vgg_weights
        # a plain attribute (a list): frozen, never in state_dict or parameters()
        self._vgg = [load_vgg_features(vgg_weights)] if vgg_weights is not None else []

    def extra_repr(self) -> str:
        kind = "vgg" if self._vgg else f"rgb patch={self.patch_size} stride={self.stride}"
        return (
            f"{kind}, spatial_weight={self.spatial_weight}, band_width={self.band_width}, "
            f"max_points={self.max_points}, distance={self.distance}, combine={self.combine}"
        )

    def _options(self):
        return self.spatial_weight, self.band_width, self.distance, self.combine, self.eps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self._vgg:
            return cobi_loss(
                output, target, patch_size=self.patch_size, stride=self.stride, spatial_weight=self.spatial_weight,
                band_width=self.band_width, max_points=self.max_points, distance=self.distance,
                combine=self.combine, eps=self.eps, generator=self.generator,
            )  # fmt: skip
        vgg = self._vgg[0].to(output.device)
        self._vgg[0] = vgg
        total = output.new_zeros(())
        with torch.no_grad():
            target_maps = self.vgg_maps(target)
        for (out_map, weight), (tgt_map, _) in zip(self.vgg_maps(output), target_maps, strict=True):
            index = _subset(out_map.shape[-2] * out_map.shape[-1], self.max_points, self.generator, output.device)
            out_f, positions = grid_features(out_map, 1, 1, index)  # 1x1 features, as the public code
            tgt_f, _ = grid_features(tgt_map, 1, 1, index)
            total = total + weight * _loss(out_f, tgt_f, positions, *self._options())
        return total

    def vgg_maps(self, image: torch.Tensor) -> list[tuple[torch.Tensor, float]]:
        """The ``(activation, weight)`` pairs of the CoBi-VGG layers for ``image`` in [0, 1]."""
        if not self._vgg:
            raise RuntimeError("CoBiLoss was built without vgg_weights")
        vgg = self._vgg[0]
        mean = image.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = image.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        x = (image - mean) / std
        taps = {index: weight for index, weight in VGG_LAYERS.values()}
        maps = []
        for index, layer in enumerate(vgg):
            x = layer(x)
            if index in taps:
                maps.append((x, taps[index]))
        return maps
