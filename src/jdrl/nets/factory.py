"""One network factory, :func:`create_net` (timm's ``create_model`` as the model).

``create_net("unet", width=0.25)``                 a fresh network from the registry
``create_net(checkpoint="runs/a/best.pt")``         a jdrl checkpoint: architecture and options from the file
``create_net(checkpoint="VGG_Deblur.pth")``         an authors' released file (UNet / MPRNet), BGR hidden
``create_net("mprnet", checkpoint=PATH)``           the name checks (or, in a released file, picks) the network
``create_net(checkpoint="runs/a/model")``           a model folder (config.json + model.safetensors), a bare
                                                    ``.safetensors`` file or ``"hf:org/name@rev"`` (:mod:`jdrl.hub`)
``create_net(checkpoint="jdrl:synth-nafnet16")``    a model that ships with jdrl (:mod:`jdrl.models`; ``jdrl nets``)

Whatever the source, the network takes and returns RGB in [0, 1] and carries a
:class:`NetSpec` in ``net.jdrl_spec`` (name, options, where the weights came from).
Networks loaded from a file are returned in eval mode.

Weight files are recognised by :data:`WEIGHT_FORMATS`: each entry is a module with
``detect(checkpoint) -> bool`` and ``read(checkpoint, name, source) -> (name, options, state)``
(see :mod:`jdrl.nets.released`). Adding a file layout is one module and one line here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from jdrl.errors import ConfigError, UntrustedCodeError, WeightsError
from jdrl.hub import is_model_source, read_model
from jdrl.nets.options import check_options, check_size
from jdrl.nets.record import NetSpec, describe
from jdrl.nets.registry import NETS
from jdrl.nets.tiling import as_hint

if TYPE_CHECKING:
    import torch
    from torch import nn

# Modules that know a family of weight files, tried in this order (the first whose detect() says yes reads it).
WEIGHT_FORMATS = ("jdrl.nets.released", "jdrl.nets.official")


@dataclass(frozen=True)
class LoadedWeights:
    """A network's spec and state dict read from a file, before any network is built."""

    spec: NetSpec
    state_dict: Mapping[str, torch.Tensor]
    checkpoint: Mapping[str, Any]  # the whole file, for callers that want more (e.g. a reblurring module)


TRUST_HINT = "pass --trust-code (Python: trust_code=True)"


def is_code_name(name: str) -> bool:
    """``"package.module:Class"``: a name that imports code rather than naming a registered network."""
    return ":" in name


def build_registered(name: str, options: Mapping[str, Any] | None = None, *, where: str = "the command line"
                     ) -> nn.Module:
    """A freshly initialised network: a registry name, a plugin, or ``"package.module:Class"``; contract checked.

    The options are checked first, whoever gave them (``where`` names the source in messages): a
    built-in network's against the rules it declares (:mod:`jdrl.nets.options`), then it is sized on
    the meta device and refused over :data:`~jdrl.nets.options.MAX_PARAMETERS`; anyone's for plain data
    with finite numbers. Only then is it built. Whether ``name`` may be imported is
    the caller's decision (:func:`read_weights` refuses code names from files without ``trust_code``).
    """
    options = dict(options or {})
    if is_code_name(name):  # the user's own code: plain options only; it is called once, by the user's consent
        factory = _import_factory(name)
        check_options(name, options, None, where)
    else:
        factory = NETS.get(name)
        check_options(name, options, NETS.info(name).get("options"), where)
        if NETS.info(name):  # a built-in constructor: sized on the meta device before any memory is taken
            check_size(name, factory, options, where)
    try:
        net = factory(**options)
    except (TypeError, ValueError) as error:  # an unknown option or a value the network refuses
        raise ConfigError(f"network {name!r} with options {options}: {error}") from None
    return check_contract(net, name)


def _import_factory(spec: str) -> Callable[..., Any]:
    """``"package.module:Class"`` (or a function) -> the object, with a readable error."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"network {spec!r}: cannot import {module_name!r} ({error}); is it installed or on "
                          "PYTHONPATH?") from None
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ConfigError(f"network {spec!r}: {module_name} has no {attribute!r}")
    if not callable(factory):
        raise ConfigError(f"network {spec!r}: {attribute} is not a class or function")
    return factory


def check_contract(net: Any, name: str) -> nn.Module:
    """A network jdrl can train: an ``nn.Module`` with an int ``size_multiple`` >= 1 (README, "Any network").

    An optional ``tile_hint`` (how ``jdrl deblur`` tiles it, :mod:`jdrl.nets.tiling`) must be well-formed.
    """
    from torch import nn

    if not isinstance(net, nn.Module):
        raise ConfigError(f"network {name!r} built a {type(net).__name__}, not a torch.nn.Module")
    multiple = getattr(net, "size_multiple", None)
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"network {name!r}: needs an int attribute size_multiple >= 1 (the factor H and W must be "
                          f"multiples of; 1 if any size works), got {multiple!r}")
    if getattr(net, "tile_hint", None) is not None:
        as_hint(net.tile_hint, f"network {name!r}: tile_hint")
    return net


def create_net(
    name: str | None = None,
    *,
    checkpoint: str | os.PathLike | Mapping | None = None,
    map_location: str | torch.device = "cpu",
    trust_code: bool = False,
    **options: Any,
) -> nn.Module:
    """A network ready for RGB in [0, 1]: fresh by ``name``, or holding the weights of ``checkpoint``.

    With a checkpoint, ``name`` is optional (the file tells it) and ``options``
    override the options the file implies. Loading is strict: a file that does not
    fit raises :class:`~jdrl.errors.WeightsError` naming the missing, unexpected and
    mis-shaped keys. A file that names code (``package.module:Class``) instead of a
    registered network is refused unless ``trust_code`` (or ``name`` is that same name).
    """
    if checkpoint is None:
        if name is None:
            raise ConfigError("create_net needs a network name or a checkpoint")
        net = build_registered(name, options, where="the arguments")
        net.jdrl_spec = NetSpec(name, dict(options))
        return net
    loaded = read_weights(checkpoint, name, map_location, options=options, trust_code=trust_code)
    return build_loaded(loaded)


def build_loaded(loaded: LoadedWeights, state_dict: Mapping[str, torch.Tensor] | None = None,
                 source: str | None = None) -> nn.Module:
    """The network ``loaded`` describes, holding its weights (or ``state_dict``, e.g. an EMA copy), in eval mode.

    The one place where "fresh network + weights from a file" is assembled (``create_net``, ``jdrl export``,
    ``net.init`` in training).
    """
    from jdrl.weights import load_strict

    where = loaded.spec.path or "checkpoint"
    net = build_registered(loaded.spec.name, loaded.spec.options, where=where)
    load_strict(net, loaded.state_dict if state_dict is None else state_dict, source or where)
    net.jdrl_spec = loaded.spec
    return net.eval()


def read_weights(
    checkpoint: str | os.PathLike | Mapping,
    name: str | None = None,
    map_location: str | torch.device = "cpu",
    *,
    source: str | None = None,
    options: Mapping[str, Any] | None = None,
    trust_code: bool = False,
    trusted_name: str | None = None,
) -> LoadedWeights:
    """The network name, options and state dict held by a weight file (or an already loaded dict, named
    ``source`` in messages); ``options`` override the options the file implies.

    Nothing in the file is imported or called: a network the file names as code (``package.module:Class``)
    is refused with :class:`~jdrl.errors.UntrustedCodeError` unless ``trust_code``, or the caller's ``name``
    or ``trusted_name`` is that same name (the user typed it).
    """
    loaded = _read_weights(checkpoint, name, map_location, source, dict(options or {}))
    typed = {n for n in (name, trusted_name) if n is not None}
    _refuse_untrusted(loaded.spec.name, typed, loaded.spec.path or "the given checkpoint", trust_code)
    return loaded


def _refuse_untrusted(file_name: str, typed: set[str], where: str, trust_code: bool) -> None:
    if is_code_name(file_name) and not trust_code and file_name not in typed:
        raise UntrustedCodeError(
            f"{where} asks for the network {file_name!r}, which is code to import, not a registered network "
            f"(jdrl nets); jdrl never imports or calls code named by a file. If you trust this file, {TRUST_HINT}")


def _read_weights(checkpoint: str | os.PathLike | Mapping, name: str | None, map_location: str | torch.device,
                  source: str | None, options: dict) -> LoadedWeights:
    from jdrl.checkpoint import is_jdrl_checkpoint, read_checkpoint

    is_path = not isinstance(checkpoint, Mapping)
    where = str(checkpoint) if is_path else (source or "the given checkpoint")
    if is_path and is_model_source(checkpoint):  # a model folder, a .safetensors file or hf:org/name (no pickle)
        model = read_model(checkpoint, map_location)
        if model.name is not None:
            if name is not None and name != model.name:
                raise WeightsError(f"{where} holds a {model.name!r} network, not {name!r}")
            spec = NetSpec(model.name, {**model.options, **options}, "jdrl", where, model.step)
            return LoadedWeights(spec, model.state_dict, model.as_checkpoint())
        data = dict(model.state_dict)  # a .safetensors file that names no network: recognise its keys below
    else:
        data = read_checkpoint(checkpoint, map_location) if is_path else dict(checkpoint)
    if is_jdrl_checkpoint(data):
        stored = data.get("net")
        if not (isinstance(stored, Mapping) and isinstance(stored.get("name"), str)
                and isinstance(stored.get("state_dict"), Mapping)):
            raise WeightsError(f"{where} is a jdrl checkpoint without a network (its 'net' entry is missing or "
                               "incomplete): the file is damaged or was not written by jdrl")
        if name is not None and name != stored["name"]:
            raise WeightsError(f"{where} holds a {stored['name']!r} network, not {name!r}")
        progress = data.get("progress") if isinstance(data.get("progress"), Mapping) else {}
        spec = NetSpec(stored["name"], {**_stored_options(stored.get("options"), where), **options}, "jdrl", where,
                       progress.get("step"))
        return LoadedWeights(spec, stored["state_dict"], data)
    for module_name in WEIGHT_FORMATS:
        weight_format = importlib.import_module(module_name)
        if weight_format.detect(data):
            found, found_options, state = weight_format.read(data, name, where)
            spec = NetSpec(found, {**found_options, **options}, "released", where, data.get("global_step"))
            return LoadedWeights(spec, state, data)
    if name is not None:  # not recognised, but the user says what it is: load it to list what does not fit
        from jdrl.nets.released import network_state  # imports torch: not on the --help path

        return LoadedWeights(NetSpec(name, dict(options), "released", where), network_state(data), data)
    shown = ", ".join(sorted(map(str, data))[:5])
    raise WeightsError(f"{where} is neither a jdrl checkpoint nor a weight file of a network jdrl knows "
                       f"(first keys: {shown}); give the network with --net NAME to see which keys do not fit")


def _stored_options(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise WeightsError(f"{where}: the network options it holds are a {type(value).__name__}, not a mapping of "
                           "names to values; the file is damaged or was not written by jdrl")
    return dict(value)


def network_checkpoint(net: nn.Module, name: str | None = None, **options: Any) -> dict:
    """A deployable checkpoint of ``net`` alone (name and options from :func:`create_net` unless given)."""
    from jdrl.checkpoint import make_checkpoint

    spec = describe(net)
    return make_checkpoint(name or spec.name, {**spec.options, **options}, net.state_dict())


def with_options(spec: NetSpec, **options: Any) -> NetSpec:
    return replace(spec, options={**spec.options, **options})
