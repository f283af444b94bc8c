"""Optical flow: estimators behind one interface, backward warping, calibration masks.

Convention (paper Eqs. (2)-(3)): ``flow = estimator(a, b)`` has shape ``(B, 2, H, W)`` in
pixels (channel 0 = x, 1 = y) and satisfies ``b(p + flow(p)) ~= a(p)``, so
``warp(b, flow)`` moves ``b`` onto ``a``.

Estimators (``build_flow(name)``): ``dis`` (OpenCV, no weights, the default),
``spynet``, ``raft_small``, ``raft_large``, ``pwcnet``.
"""

from __future__ import annotations

import os

import torch

from jdrl.errors import ConfigError, WeightsError
from jdrl.flow.base import FLOWS, FlowEstimator

__all__ = ["AUTO", "FLOWS", "FlowEstimator", "build_flow", "flow_names", "resolve_flow"]

AUTO = "auto"  # the default estimator for the device: DIS on the CPU, RAFT (small) on CUDA
GPU_DEFAULT = "raft_small"


def build_flow(name: str, weights: str | os.PathLike | None = None, device=None, **options) -> FlowEstimator:
    """A frozen flow estimator by registry name; ``weights`` is a file path where one is needed.

    The factory does what every estimator needs, so a new one is just its ``estimate``: no
    gradient, eval mode for good, on ``device``.
    """
    factory = FLOWS.get(name)
    try:
        estimator = factory(weights=weights, **options)
    except TypeError as error:  # an option this estimator does not take
        raise ConfigError(f"flow estimator {name!r}: {error}") from None
    if not isinstance(estimator, FlowEstimator):
        raise ConfigError(f"flow estimator {name!r} built a {type(estimator).__name__}, not a FlowEstimator")
    estimator.requires_grad_(False).eval()
    return estimator.to(device) if device is not None else estimator


def flow_names() -> list[str]:
    return FLOWS.names()


def resolve_flow(name: str, weights: str | os.PathLike | None, device=None, **options) -> tuple[FlowEstimator, str | None]:
    """``build_flow``, where ``name="auto"`` picks the estimator for ``device``; returns ``(estimator, note)``.

    ``auto`` is DIS (no weights) on the CPU. On CUDA it is RAFT-small with torchvision's pretrained weights,
    which torchvision downloads into its cache on first use when online (its convention); when that fails
    (offline, no file in the cache), DIS is used and the note says which file to place where.
    """

    if name != AUTO:
        return build_flow(name, weights, device, **options), None
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type != "cuda":
        return build_flow("dis", None, device), None
    try:
        return build_flow(GPU_DEFAULT, weights or "default", device, **options), None
    except WeightsError as error:
        return build_flow("dis", None, device), (f"loss.flow=auto: {GPU_DEFAULT} is not available ({error}); "
                                                 "using DIS, which runs on the CPU (slower on a GPU machine)")
