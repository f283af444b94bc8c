"""Checkpoints: what they hold, atomic writing, finding the newest good one, loading networks.

A jdrl checkpoint (BasicSR-like: everything needed to resume or to deploy) is a
dict with ``format == "jdrl.checkpoint"`` and

``net``        ``{"name", "options", "state_dict"}`` - enough to rebuild the network
``reblur``     ``{"options", "state_dict"}`` or ``None``
``optimizer``, ``scaler``   their state dicts (``scaler`` may be ``None``)
``progress``   ``{"epoch", "step", "batch_in_epoch"}``: where training stands
``rng``        torch / CUDA / numpy / python generator states
``stats``      counters (skipped non-finite steps, ...), ``best`` validation score
``config``     the resolved training config (plain data), ``versions``

Files are written to a temporary name in the same folder, flushed to disk and
renamed over the target, so a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jdrl.atomic import atomic_write
from jdrl.errors import WeightsError
from jdrl.weights import load_strict

FORMAT = "jdrl.checkpoint"
FORMAT_VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` via a temporary file + ``os.replace`` (never a half-written file)."""
    with atomic_write(path, durable=True) as handle:
        torch.save(obj, handle)
    return Path(path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load any checkpoint file as a dict (jdrl or released), with a readable error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - truncated, not a torch file, ...
        raise WeightsError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(data, Mapping):
        raise WeightsError(f"{path}: holds no dict")
    return dict(data)


def is_jdrl_checkpoint(data: Mapping) -> bool:
    return data.get("format") == FORMAT


def find_latest(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint of ``run_dir`` (``*.pt``) with the most training steps that loads; ``None`` if none."""
    candidates = []
    for path in Path(run_dir).glob("*.pt"):
        try:
            data = read_checkpoint(path)
        except WeightsError:
            continue
        if is_jdrl_checkpoint(data):
            candidates.append((data["progress"]["step"], path.stat().st_mtime, path))
    return max(candidates)[2] if candidates else None


def load_network(
    path_or_data: str | os.PathLike | Mapping, net: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """A ready-to-run network (eval mode) from a jdrl checkpoint or an authors' released file.

    Returns ``(network, info)`` where ``info`` says what was loaded
    (``source``: ``"jdrl"`` or ``"released"``, ``name``, ``options``, ``step``).
    """
    from jdrl.nets import build_net

    name, options, state, info = network_spec(path_or_data, net, map_location)
    network = build_net(name, **options)
    load_strict(network, state, info["path"])
    return network.eval(), info


def network_spec(
    path_or_data: str | os.PathLike | Mapping, net: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[str, dict, dict, dict]:
    """``(name, options, state_dict, info)`` of the network in a jdrl or released checkpoint."""
    from jdrl.nets.released import read_released

    is_path = not isinstance(path_or_data, Mapping)
    data = read_checkpoint(path_or_data, map_location) if is_path else dict(path_or_data)
    where = str(path_or_data) if is_path else "checkpoint"
    if is_jdrl_checkpoint(data):
        spec = data["net"]
        if net is not None and net != spec["name"]:
            raise WeightsError(f"{where} holds a {spec['name']!r} network, not {net!r}")
        name, options, state = spec["name"], dict(spec.get("options", {})), spec["state_dict"]
        info = {"source": "jdrl", "step": data["progress"]["step"]}
    else:
        name, options, state, _ = read_released(data, net)
        info = {"source": "released", "step": data.get("global_step")}
    info.update(name=name, options=options, path=where)
    return name, options, state, info
