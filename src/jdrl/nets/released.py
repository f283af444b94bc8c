"""Loading the authors' released checkpoints (SPEC 3), strictly and with readable errors.

* UNet (``VGG_Deblur``): ``{'epoch', 'global_step', 'G_state_dict', 'Reblur_state_dict',
  'G_opt'}`` with DataParallel ``module.`` prefixes. The released pipeline read images
  with OpenCV and never converted them, so these weights expect BGR; the returned
  network is built with ``channel_order="bgr"`` and therefore still takes and returns RGB.
* MPRNet: ``{'state_dict': ...}`` (keys possibly ``module.``-prefixed), RGB.

A bare state dict of either network is accepted too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from jdrl.errors import WeightsError

if TYPE_CHECKING:
    from torch import nn

# One key that only each network's state dict has (after removing ``module.``).
_SIGNATURES = {"unet": "encoder.block1.0.weight", "mprnet": "shallow_feat1.0.weight"}
# The options a released checkpoint of each network needs.
_RELEASED_OPTIONS = {"unet": {"channel_order": "bgr"}, "mprnet": {}}


def _read(path_or_state: str | os.PathLike | Mapping) -> tuple[dict, str]:
    """The checkpoint as a plain dict, and a name for it in error messages."""
    if isinstance(path_or_state, Mapping):
        return dict(path_or_state), "the given state dict"
    from jdrl.weights import read_state_dict

    return read_state_dict(path_or_state, nested_keys=()), str(path_or_state)


def _network_state(checkpoint: dict, source: str) -> dict:
    """The network's state dict inside a released container (or the dict itself), ``module.`` removed."""
    from jdrl.weights import strip_prefix

    for key in ("G_state_dict", "state_dict"):
        if isinstance(checkpoint.get(key), Mapping):
            return strip_prefix(checkpoint[key], "module.")
    if not checkpoint:
        raise WeightsError(f"{source} is empty")
    return strip_prefix(checkpoint, "module.")


def _detect(state: Mapping, source: str) -> str:
    for name, key in _SIGNATURES.items():
        if key in state:
            return name
    shown = ", ".join(sorted(state)[:5])
    raise WeightsError(
        f"{source} is neither a released UNet nor an MPRNet checkpoint (no {' / '.join(_SIGNATURES.values())}; "
        f"first keys: {shown}); pass net='unet' or net='mprnet' to see which keys are missing"
    )


def load_released(path_or_state: str | os.PathLike | Mapping, net: str | None = None, **opts) -> nn.Module:
    """A network holding the weights of a released checkpoint (path, loaded checkpoint, or bare state dict).

    ``net`` ("unet" or "mprnet") is detected from the keys when omitted. ``opts`` go to
    :func:`jdrl.nets.build_net` and override the released defaults (e.g. pass
    ``channel_order="rgb"`` for a UNet state dict trained on RGB images). Raises
    :class:`jdrl.errors.WeightsError` naming the missing, unexpected and mis-shaped keys
    when the weights do not fit. The network is returned in eval mode (call ``.train()``
    to fine-tune it).
    """
    from jdrl.nets import build_net
    from jdrl.weights import load_strict

    name, options, state, source = read_released(path_or_state, net, **opts)
    network = build_net(name, **options)
    load_strict(network, state, source)
    return network.eval()


def read_released(path_or_state: str | os.PathLike | Mapping, net: str | None = None, **opts) -> tuple[str, dict, dict, str]:
    """``(network name, build options, state dict, source name)`` of a released checkpoint, without building it."""
    checkpoint, source = _read(path_or_state)
    state = _network_state(checkpoint, source)
    name = net or _detect(state, source)
    return name, {**_RELEASED_OPTIONS.get(name, {}), **_inferred_options(name, state), **opts}, state, source


def _inferred_options(name: str, state: Mapping) -> dict:
    """Build options the weights themselves tell: a narrow UNet's ``width`` (64 first-level channels = 1.0)."""
    first = state.get(_SIGNATURES["unet"]) if name == "unet" else None
    if first is None or first.shape[0] == 64:
        return {}
    return {"width": first.shape[0] / 64}


def released_reblur_state(path_or_state: str | os.PathLike | Mapping) -> dict | None:
    """The reblurring module's weights (``Reblur_state_dict``, prefix removed) of a released UNet checkpoint, if any."""
    from jdrl.weights import strip_prefix

    checkpoint, _ = _read(path_or_state)
    reblur = checkpoint.get("Reblur_state_dict")
    return strip_prefix(reblur, "module.") if isinstance(reblur, Mapping) else None
