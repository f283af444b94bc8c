"""Weight files: reading state dicts, renaming prefixes, strict loading with readable errors."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from jdrl.checkpoint import load_file
from jdrl.errors import WeightsError


def read_state_dict(path: str | os.PathLike, nested_keys: tuple[str, ...] = ("state_dict", "params", "model")) -> dict:
    """Load a weight file on the CPU (``weights_only``) and return its state dict (unwrapping common containers)."""

    state = load_file(path)
    for key in nested_keys:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: holds no state dict")
    return dict(state)


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict:
    """Remove a DataParallel-style prefix from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)``, failing with one error listing missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        lines = [f"{source} does not fit {type(module).__name__}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                lines.append(f"  {title}: {shown}")
        raise WeightsError("\n".join(lines))
    module.load_state_dict(dict(state), strict=True)
