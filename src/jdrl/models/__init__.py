"""Models that ship with jdrl: trained by the project, stored as package data (pickle-free model folders).

Each bundled model is a folder ``jdrl/models/<name>/`` with ``config.json`` and ``model.safetensors``
(the format of :mod:`jdrl.hub`, what ``jdrl export --format safetensors`` writes) and is named
``jdrl:<name>`` wherever a checkpoint is taken::

    create_net(checkpoint="jdrl:synth-nafnet16")          # the one factory, as for any other source
    jdrl deblur photo.jpg -o out                          # no --checkpoint: the default model below
    jdrl train ... -o net.init=jdrl:synth-nafnet16        # fine-tune it (what jdrl demo does)

Its network is a registered one with plain options (``config.json``), so loading it imports no code
named by a file. ``jdrl nets`` lists the bundled models; docs/MODEL_CARD.md says how each was trained,
on what (and under which licences), how it scores, and what it is not. Nothing is read at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from jdrl.errors import WeightsError

PREFIX = "jdrl:"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"  # the names of jdrl.hub (not imported here)


@dataclass(frozen=True)
class BundledModel:
    """What ``jdrl nets`` says about a bundled model (its weights and network live in its folder)."""

    name: str
    net: str  # the registered network name (config.json holds it with its options)
    network: str  # in words
    summary: str  # what it was trained on and for, one line


#: the model ``jdrl deblur`` uses without ``--checkpoint`` and ``jdrl demo`` fine-tunes
DEFAULT_MODEL = "synth-nafnet16"
MODELS: dict[str, BundledModel] = {
    DEFAULT_MODEL: BundledModel(
        DEFAULT_MODEL,
        "nafnet_w32",
        "nafnet_w32 at width 16, one block per level (jdrl.demo.DEMO_NAFNET), 1.14 M parameters",
        "trained by jdrl from scratch on aligned synthetic defocus pairs (disk blur <= 8 px) of 12 scikit-image "
        "photos; not on real captures (docs/MODEL_CARD.md)",
    ),
}


def model_id(name: str = DEFAULT_MODEL) -> str:
    """``"jdrl:<name>"``: how a checkpoint argument names a bundled model."""
    return PREFIX + name


def is_bundled_id(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


def bundled_name(source: str) -> str:
    """``"jdrl:<name>"`` -> ``name``, for a model that ships with this version (else a one-line error)."""
    name = source[len(PREFIX):]
    if name not in MODELS:
        raise WeightsError(f"{source!r}: no bundled model {name!r}; this jdrl ships "
                           f"{', '.join(model_id(n) for n in MODELS)} (jdrl nets lists them)")
    return name


@contextmanager
def model_files(source: str) -> Iterator[tuple[Path, Path]]:
    """Local paths of a bundled model's ``config.json`` and ``model.safetensors`` (``importlib.resources``:
    real files while the context lasts, also from a zipped install)."""
    name = bundled_name(source)
    folder = resources.files(__name__) / name
    config, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not (config.is_file() and weights.is_file()):
        raise WeightsError(f"{source}: the bundled model's files are missing from this installation "
                           f"({folder}); reinstall jdrl")
    with ExitStack() as stack:
        yield Path(stack.enter_context(resources.as_file(config))), Path(stack.enter_context(resources.as_file(weights)))
