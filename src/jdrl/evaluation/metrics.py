"""Image-quality metrics of the paper's evaluation protocol (paper, Experiments; Table 4 for the ablations), batched in torch.

Every full-reference metric takes two ``(B, 3, H, W)`` float tensors in [0, 1]
(CPU or CUDA) and returns a ``(B,)`` float64 tensor with one value per image:

- :func:`psnr` equals ``skimage.metrics.peak_signal_noise_ratio(reference, output, data_range=1)``
  (``inf`` for identical images, as scikit-image);
- :func:`ssim` equals ``skimage.metrics.structural_similarity(a, b, data_range=1, channel_axis=-1)``
  (7x7 uniform window, K1=0.01, K2=0.03, sample covariance, 3-px border cropped,
  mean over channels);
- :func:`mae` is the mean absolute error.

All three are computed in float64 so they agree with scikit-image to ~1e-10,
which lets published numbers be reproduced exactly while running on the GPU.

LPIPS (AlexNet, v0.1, the ``lpips`` package) needs ImageNet AlexNet weights in
torch's hub cache; ``load_lpips`` returns ``None`` and one line
saying how to get them when they are absent, instead of downloading silently
or inventing a number. :func:`flow_error` measures geometric fidelity: the
mean optical-flow magnitude between an output and its reference.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "METRICS",
    "LPIPSMetric",
    "alexnet_weights_path",
    "compute_metrics",
    "flow_error",
    "load_lpips",
    "mae",
    "mean_flow_magnitude",
    "psnr",
    "ssim",
]

logger = logging.getLogger(__name__)

SSIM_WIN_SIZE = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------- helpers


def _check_pair(x: torch.Tensor, y: torch.Tensor, min_side: int = 1) -> None:
    """Both tensors are ``(B, C, H, W)`` of one shape, with sides of at least ``min_side``."""
    if x.dim() != 4 or x.shape != y.shape:
        raise ValueError(f"metrics need two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < min_side:
        raise ValueError(f"images must be at least {min_side}x{min_side} pixels, got {tuple(x.shape[-2:])}")


def _float64(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as float64, moved to the CPU on devices without float64 support (MPS)."""
    if tensor.device.type == "mps":
        tensor = tensor.cpu()
    return tensor.detach().to(torch.float64)


# ---------------------------------------------------------------- full-reference metrics


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``inf`` where the images are identical."""
    _check_pair(x, y)
    mse = (_float64(x) - _float64(y)).square().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(float(data_range) ** 2 / mse)


def mae(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image (the paper's MAE column)."""
    _check_pair(x, y)
    return (_float64(x) - _float64(y)).abs().mean(dim=(1, 2, 3))


def _ssim_channel(a: torch.Tensor, b: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean SSIM of ``(B, 1, H, W)`` float64 maps over the valid (border-cropped) region.

    scikit-image filters the whole image with a reflect-padded 7x7 mean filter and
    then crops ``(7 - 1) // 2 = 3`` px on every side; the remaining positions are
    exactly those whose window lies inside the image, i.e. an unpadded 7x7 box
    filter (``avg_pool2d`` with stride 1), so no padding is needed here.
    """
    n = SSIM_WIN_SIZE * SSIM_WIN_SIZE
    cov_norm = n / (n - 1)  # sample covariance, skimage's use_sample_covariance=True
    stats = F.avg_pool2d(torch.cat([a, b, a * a, b * b, a * b], dim=1), SSIM_WIN_SIZE, stride=1)
    ux, uy, uxx, uyy, uxy = stats.unbind(dim=1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux**2 + uy**2 + c1, vx + vy + c2
    return ((a1 * a2) / (b1 * b2)).mean(dim=(1, 2))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image, as scikit-image's ``structural_similarity(..., channel_axis=-1)``.

    Channels are processed one at a time so a 4K image needs only a few hundred MB.
    """
    _check_pair(x, y, min_side=SSIM_WIN_SIZE)
    per_channel = [
        _ssim_channel(_float64(x[:, c : c + 1]), _float64(y[:, c : c + 1]), float(data_range)) for c in range(x.shape[1])
    ]
    return torch.stack(per_channel, dim=1).mean(dim=1)


METRICS: dict[str, Metric] = {"psnr": psnr, "ssim": ssim, "mae": mae}


# ---------------------------------------------------------------- LPIPS


class LPIPSMetric:
    """LPIPS (AlexNet trunk, v0.1 linear layers) on ``(B, 3, H, W)`` images in [0, 1].

    Wraps an ``lpips.LPIPS`` model; inputs are scaled to [-1, 1] as the package
    expects. Build it with :func:`load_lpips`; the caller keeps the object.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> LPIPSMetric:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image as a ``(B,)`` float64 tensor on ``x``'s device."""
        _check_pair(x, y)
        device = self.device
        x_scaled = x.detach().to(device=device, dtype=torch.float32) * 2 - 1
        y_scaled = y.detach().to(device=device, dtype=torch.float32) * 2 - 1
        distance = self.model(x_scaled, y_scaled)
        return distance.reshape(x.shape[0]).to(device=x.device, dtype=torch.float64)


def alexnet_weights_path() -> str:
    """Where torchvision looks for (and downloads) the ImageNet AlexNet weights LPIPS needs."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", ALEXNET_FILE)


def _enable_hint(path: str) -> str:
    return (
        f"run once online: python -c 'import lpips; lpips.LPIPS(net=\"alex\")' "
        f"or copy {ALEXNET_FILE} into {os.path.dirname(path)}"
    )


def _lpips_import_problem(import_it: bool) -> str | None:
    """Why the ``lpips`` package cannot be imported, or ``None`` (``import_it=False``: only look it up, cheaply)."""
    import importlib.util

    hint = "install it with: pip install lpips"
    if importlib.util.find_spec("lpips") is None:
        return f"LPIPS unavailable: the lpips package is not installed; {hint}"
    if import_it:
        try:
            import lpips  # noqa: F401
        except Exception as error:  # a broken install
            return f"LPIPS unavailable: the lpips package cannot be imported ({error}); {hint}"
    return None


def _weights_problem() -> str | None:
    """Why the AlexNet backbone weights are not available offline, or ``None``."""
    path = alexnet_weights_path()
    if not os.path.isfile(path):
        return f"LPIPS unavailable: AlexNet weights not in the torch hub cache ({path}); {_enable_hint(path)}"
    return None


def _build_lpips_model() -> torch.nn.Module:
    """``lpips.LPIPS(net="alex", version="0.1")`` without its prints and torchvision's deprecation warnings."""
    import lpips

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return lpips.LPIPS(net="alex", version="0.1", verbose=False)


def load_lpips(
    device: torch.device | str | None = None, allow_download: bool = False, log: bool = False
) -> tuple[LPIPSMetric | None, str | None]:
    """``(metric, None)``, or ``(None, reason)`` when LPIPS cannot be built here; never raises.

    The one LPIPS loader. The reason is one line saying how to enable it. Cheap checks
    come first (package lookup, weight file), so a missing piece costs no import and
    no network attempt; with ``allow_download=True`` torchvision downloads the AlexNet
    weights into its hub cache (its convention). ``log=True`` also logs the reason.
    """
    reason = _lpips_import_problem(import_it=False) or (None if allow_download else _weights_problem())
    reason = reason or _lpips_import_problem(import_it=True)
    metric = None
    if reason is None:
        try:
            metric = LPIPSMetric(_build_lpips_model())
        except Exception as error:  # offline download, corrupt file, ...
            path = alexnet_weights_path()
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            reason = f"LPIPS unavailable: could not load AlexNet weights ({message}); {_enable_hint(path)}"
    if reason is not None and log:
        logger.warning(reason)
    return (metric.to(device) if metric is not None and device is not None else metric), reason


# ---------------------------------------------------------------- geometric fidelity


def flow_error(
    output: torch.Tensor,
    reference: torch.Tensor,
    flow_estimator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    border: int = 0,
) -> torch.Tensor:
    """Mean optical-flow magnitude (px) per image from ``output`` to ``reference``.

    Measures how far the output's geometry is from the reference's: ~0 when
    aligned, ~d for a d-px shift. ``flow_estimator(a, b)`` returns ``(B, 2, H, W)``
    (any ``jdrl.flow`` estimator); ``border`` px on each side are left out of the
    mean, where flow is least reliable.
    """
    _check_pair(output, reference, min_side=2 * border + 1)
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    flow = flow_estimator(output, reference)
    if flow.dim() != 4 or flow.shape[0] != output.shape[0] or flow.shape[1] != 2:
        raise ValueError(f"the flow estimator must return (B, 2, H, W), got {tuple(flow.shape)}")
    return mean_flow_magnitude(flow, border)


def mean_flow_magnitude(flow: torch.Tensor, border: int = 0) -> torch.Tensor:
    """Mean flow length (px) per image of a ``(B, 2, H, W)`` field, ``border`` px on each side left out."""
    if border:
        flow = flow[:, :, border:-border, border:-border]
    return flow.detach().to(torch.float64).square().sum(dim=1).sqrt().mean(dim=(1, 2))


# ---------------------------------------------------------------- one call for several metrics


def compute_metrics(
    x: torch.Tensor,
    y: torch.Tensor,
    names: Sequence[str] = ("psnr", "ssim", "mae"),
    lpips: LPIPSMetric | None = None,
) -> dict[str, torch.Tensor]:
    """``{name: (B,) tensor}`` for the named full-reference metrics, plus ``"lpips"`` when a metric is given.

    ``x`` is the output and ``y`` the reference. Naming ``"lpips"`` without
    passing an :class:`LPIPSMetric` is an error rather than a silent gap.
    """
    unknown = [n for n in names if n not in METRICS and n != "lpips"]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join([*METRICS, 'lpips'])}")
    if "lpips" in names and lpips is None:
        raise ValueError("'lpips' was requested but no LPIPS metric was passed (build one with load_lpips())")
    results = {name: METRICS[name](x, y) for name in names if name != "lpips"}
    if lpips is not None:
        results["lpips"] = lpips(x, y)
    return results
