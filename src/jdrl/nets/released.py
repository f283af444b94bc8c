"""The authors' released checkpoints (docs/REPRODUCE.md, released code), as a weight format of :func:`jdrl.create_net`.

* UNet (``VGG_Deblur``): ``{'epoch', 'global_step', 'G_state_dict', 'Reblur_state_dict',
  'G_opt'}`` with DataParallel ``module.`` prefixes. The released pipeline read images
  with OpenCV and never converted them, so these weights expect BGR; the network is
  built with ``channel_order="bgr"`` and therefore still takes and returns RGB.
* MPRNet: ``{'state_dict': ...}`` (keys possibly ``module.``-prefixed), RGB.

A bare state dict of either network is accepted too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from jdrl.checkpoint import read_checkpoint
from jdrl.errors import WeightsError
from jdrl.nets.record import ReleasedFile, records
from jdrl.weights import strip_prefix

CONTAINER_KEYS = ("G_state_dict", "state_dict")


def released_files() -> dict[str, ReleasedFile]:
    """The networks the authors released, by registry name, with what their files look like (their records)."""
    return {name: record.released for name, record in records().items() if record.released is not None}


def network_state(checkpoint: Mapping) -> dict:
    """The network's state dict inside a released container (or the dict itself), ``module.`` removed."""
    for key in CONTAINER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return strip_prefix(checkpoint[key], "module.")
    return strip_prefix(checkpoint, "module.")


def detect(checkpoint: Mapping) -> bool:
    """Whether ``checkpoint`` is a released UNet/MPRNet file (bare or in its released container)."""
    state = network_state(checkpoint)
    return any(file.signature in state for file in released_files().values())


def read(checkpoint: Mapping, name: str | None, source: str) -> tuple[str, dict, dict]:
    """``(network name, build options, state dict)`` of a released file; ``name`` overrides the detection."""
    state = network_state(checkpoint)
    if not state:
        raise WeightsError(f"{source} is empty")
    name = name or _detect_name(state, source)
    released = released_files().get(name)
    return name, {**(released.options if released else {}), **_inferred_options(name, state)}, state


def _detect_name(state: Mapping, source: str) -> str:
    files = released_files()
    for name, file in files.items():
        if file.signature in state:
            return name
    shown = ", ".join(sorted(state)[:5])
    raise WeightsError(
        f"{source} is neither a released UNet nor an MPRNet checkpoint "
        f"(no {' / '.join(file.signature for file in files.values())}; "
        f"first keys: {shown}); pass net='unet' or net='mprnet' to see which keys are missing"
    )


def _inferred_options(name: str, state: Mapping) -> dict:
    """Build options the weights themselves tell: a narrow UNet's ``width`` (64 first-level channels = 1.0)."""
    first = state.get(released_files()["unet"].signature) if name == "unet" else None
    if first is None or first.shape[0] == 64:
        return {}
    return {"width": first.shape[0] / 64}


def released_reblur_state(path_or_state: str | os.PathLike | Mapping) -> dict | None:
    """The reblurring module's weights (``Reblur_state_dict``, prefix removed) of a released UNet checkpoint, if any."""

    checkpoint = path_or_state if isinstance(path_or_state, Mapping) else read_checkpoint(path_or_state)
    reblur = checkpoint.get("Reblur_state_dict")
    return strip_prefix(reblur, "module.") if isinstance(reblur, Mapping) else None
