"""Official weight files of the backbones beyond the paper's two (docs/ARCHITECTURE.md, networks), as a weight format of
:func:`jdrl.create_net`.

Each backbone module (``jdrl.nets.nafnet``, ``restormer``, ``ifan``, ``lakdnet``) knows its own
files: ``official_state_dict(checkpoint)`` unwraps the container and prefixes of the official
code (BasicSR's ``{'params': ...}``, IFAN's ``module.Network.`` with its training-only
re-blurring net dropped, LaKDNet's bare dict), ``SIGNATURE_KEYS`` identify the architecture and
``infer_options(state)`` reads its configuration off the shapes. :data:`FAMILIES` says which
registry name a configuration gets and what options the official test code used that the
weights cannot tell (NAFNet's TLC).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

from jdrl.errors import WeightsError


@dataclass(frozen=True)
class Family:
    """One backbone module: its registry names, and which one (and which fixed options) a file's options mean."""

    module: str
    names: tuple[str, ...]
    choose: Callable[[dict], str]
    fixed: Mapping[str, object]  # what the official test pipeline used that the weights do not say

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


FAMILIES = (
    Family("jdrl.nets.nafnet", ("nafnet_w32", "nafnet_w64"),
           lambda o: "nafnet_w64" if o.get("width") == 64 else "nafnet_w32", {"tlc": True}),
    Family("jdrl.nets.restormer", ("restormer",), lambda o: "restormer", {}),
    Family("jdrl.nets.lakdnet", ("lakdnet", "lakdnet_large"),
           lambda o: "lakdnet_large" if o.get("dim") == 48 else "lakdnet", {}),
    Family("jdrl.nets.ifan", ("ifan",), lambda o: "ifan", {}),
)


def _match(checkpoint: Mapping) -> tuple[Family, dict] | None:
    """The family whose official layout ``checkpoint`` is, and the bare state dict; ``None`` if none."""
    for family in FAMILIES:
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
    return next((family for family in FAMILIES if name in family.names), None)


def read(checkpoint: Mapping, name: str | None, source: str) -> tuple[str, dict, dict]:
    """``(network name, build options, state dict)`` of an official backbone file."""
    family, state = _match(checkpoint)  # type: ignore[misc]  # detect() said yes
    if name is not None and name not in family.names:
        raise WeightsError(f"{source} holds a {family.names[0]} network (official layout), not {name!r}")
    options = {**family.load().infer_options(state), **family.fixed}
    return name or family.choose(options), options, state
