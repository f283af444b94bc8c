"""Optical flow: estimators behind one interface, backward warping, calibration masks.

Convention (paper Eqs. (2)-(3)): ``flow = estimator(a, b)`` has shape ``(B, 2, H, W)`` in
pixels (channel 0 = x, 1 = y) and satisfies ``b(p + flow(p)) ~= a(p)``, so
``warp(b, flow)`` moves ``b`` onto ``a``.

Estimators (``build_flow(name)``): ``dis`` (OpenCV, no weights, the default),
``spynet``, ``raft_small``, ``raft_large``, ``pwcnet``.
"""

from __future__ import annotations

import os

from jdrl.errors import ConfigError
from jdrl.flow.base import FLOWS, FlowEstimator

__all__ = ["FLOWS", "FlowEstimator", "build_flow", "flow_names"]


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
