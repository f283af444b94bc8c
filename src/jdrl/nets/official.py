"""Official weight files of the backbones beyond the paper's two (docs/ARCHITECTURE.md, networks), as a weight format of
:func:`jdrl.create_net`.

Each backbone module (``jdrl.nets.nafnet``, ``restormer``, ``ifan``, ``lakdnet``) knows its own
files: ``official_state_dict(checkpoint)`` unwraps the container and prefixes of the official
code (BasicSR's ``{'params': ...}``, IFAN's ``module.Network.`` with its training-only
re-blurring net dropped, LaKDNet's bare dict), ``SIGNATURE_KEYS`` identify the architecture and
``infer_options(state)`` reads its configuration off the shapes. :func:`families` groups the networks
by backbone module from their records (:mod:`jdrl.nets.record`): which registry name a
configuration gets and what options the official test code used that the weights cannot tell
(NAFNet's TLC).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

from jdrl.errors import WeightsError
from jdrl.nets.record import OfficialFile, records

BASICSR_CONTAINERS = ("params", "params_ema", "state_dict")  # BasicSR's save_network (and its EMA copy)


def unwrap_state(
    checkpoint: object,
    network: str,
    signature: Sequence[str],
    *,
    containers: Sequence[str] = BASICSR_CONTAINERS,
    prefixes: Sequence[str] = ("module.",),
    drop: Sequence[str] = (),
    layout: str = "{'params': state_dict} or a bare state dict",
) -> dict:
    """The bare state dict of an official weight file: the first container found, one key prefix stripped,
    keys starting with ``drop`` left out; a :class:`WeightsError` naming the layout when it does not fit."""
    import torch

    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"a {network} weight file holds a dict, got {type(checkpoint).__name__}")
    state: Mapping = next((checkpoint[k] for k in containers if isinstance(checkpoint.get(k), Mapping)), checkpoint)
    if not all(isinstance(key, str) for key in state):
        raise WeightsError(f"not a {network} state dict: its keys are not all strings")
    bare = {}
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), "")
        key = key[len(prefix):]
        if not (drop and key.startswith(tuple(drop))):
            bare[key] = value
    missing = [key for key in signature if key not in bare]
    if missing:
        shown = ", ".join(map(str, list(state)[:5])) or "none"
        raise WeightsError(f"not a {network} state dict: no {' / '.join(missing)} (expected {layout}; "
                           f"first keys: {shown})")
    not_tensors = [k for k, v in bare.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{network} state dict has non-tensor values: {', '.join(not_tensors[:5])} are not tensors")
    return bare


def block_count(state: Mapping, prefix: str) -> int:
    """How many numbered children ``prefix.0.``, ``prefix.1.``, ... a state dict has."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def expansion_factor(widths_and_hidden: Sequence[tuple[int, int]], default: float) -> float:
    """The simplest factor ``f`` with ``int(width * f) == hidden`` for every (width, hidden) pair."""
    if all(int(w * default) == h for w, h in widths_and_hidden):
        return default
    low = max(h / w for w, h in widths_and_hidden)
    high = min((h + 1) / w for w, h in widths_and_hidden)
    for decimals in range(7):
        factor = math.ceil(low * 10**decimals) / 10**decimals
        if factor < high and all(int(w * factor) == h for w, h in widths_and_hidden):
            return factor
    raise WeightsError(f"no ffn_expansion_factor fits the hidden widths {list(widths_and_hidden)} (width, hidden)")


@dataclass(frozen=True)
class Family:
    """One backbone module and the registry names whose records say its official files are theirs."""

    module: str
    files: Mapping[str, OfficialFile]  # registry name -> what its official file looks like

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.files)

    def choose(self, options: Mapping) -> str:
        """The registry name a file's options mean: the one whose ``match`` they fit (the default matches all)."""
        fitting = sorted(self.files, key=lambda name: -len(self.files[name].match))
        return next(name for name in fitting if self.files[name].fits(options))

    def fixed(self, name: str) -> Mapping[str, object]:
        return self.files[name].fixed

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


def families() -> tuple[Family, ...]:
    """The official weight families, grouped by backbone module from the networks' records, in registry order."""
    grouped: dict[str, dict[str, OfficialFile]] = {}
    for name, record in records().items():
        if record.official is not None:
            grouped.setdefault(record.official.module, {})[name] = record.official
    return tuple(Family(module, files) for module, files in grouped.items())


def _match(checkpoint: Mapping) -> tuple[Family, dict] | None:
    """The family whose official layout ``checkpoint`` is, and the bare state dict; ``None`` if none."""
    for family in families():
        module = family.load()
        try:
            state = module.official_state_dict(checkpoint)
        except WeightsError:
            continue
        if all(key in state for key in module.SIGNATURE_KEYS[:1]):
            return family, state
    return None


def detect(checkpoint: Mapping) -> bool:
    return _match(checkpoint) is not None


def family_of(name: str) -> Family | None:
    return next((family for family in families() if name in family.names), None)


def read(checkpoint: Mapping, name: str | None, source: str) -> tuple[str, dict, dict]:
    """``(network name, build options, state dict)`` of an official backbone file."""
    family, state = _match(checkpoint)  # type: ignore[misc]  # detect() said yes
    if name is not None and name not in family.names:
        raise WeightsError(f"{source} holds a {family.names[0]} network (official layout), not {name!r}")
    inferred = family.load().infer_options(state)
    chosen = name or family.choose(inferred)
    return chosen, {**inferred, **family.fixed(chosen)}, state
