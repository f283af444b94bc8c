"""Shareable weights without pickle: a model folder, a bare ``.safetensors`` file, or a Hugging Face Hub id.

A **model folder** holds two files, both readable without running any code:

``config.json``         plain JSON: ``format`` (``"jdrl.model"``), ``net`` (``{"name", "options"}``: what
                        :func:`jdrl.create_net` rebuilds), ``size_multiple``, ``step``, ``ema``, ``versions``
``model.safetensors``   the network's state dict (a JSON header + raw tensors: there is no pickle to run);
                        its metadata repeats the name and options (``jdrl.net``, ``jdrl.options``), so the
                        file alone is enough too

``jdrl export CKPT --format safetensors -o DIR`` writes one, and so does training (``RUN/model/``).
Everything that takes ``--checkpoint`` / ``net.init`` reads, through
:func:`jdrl.nets.factory.read_weights`:

* such a folder (``config.json`` is optional when the safetensors metadata names the network);
* a bare ``.safetensors`` file (the network from its metadata, or from ``--net``);
* ``jdrl:<name>``: a model that ships with jdrl (:mod:`jdrl.models`, ``jdrl nets`` lists them);
* ``hf:org/name`` or ``hf:org/name@revision`` (a branch, tag or commit): the two files of a Hub model
  repository, through ``huggingface_hub`` and its local cache (``pip install 'jdrl[hub]'``). Offline
  (``HF_HUB_OFFLINE=1`` or no network) the cache is used; a pinned commit is read from the cache first.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jdrl._version import __version__
from jdrl.atomic import atomic_write
from jdrl.errors import ConfigError, MissingDependencyError, WeightsError
from jdrl.files import file_problem, read_text
from jdrl.models import is_bundled_id, model_files
from jdrl.runtime import versions

if TYPE_CHECKING:
    import torch

MODEL_FORMAT = "jdrl.model"
MODEL_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
HUB_PREFIX = "hf:"
HUB_HINT = "pip install 'jdrl[hub]'"
MAX_CONFIG_BYTES = 1_000_000
# keys of the safetensors metadata (strings only, by the format's rules)
META_FORMAT, META_NET, META_OPTIONS, META_VERSION = "jdrl.format", "jdrl.net", "jdrl.options", "jdrl.version"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ModelFiles:
    """What a model folder, ``.safetensors`` file or Hub id holds (``name`` is ``None`` when nothing names it)."""

    name: str | None
    options: dict
    state_dict: dict[str, torch.Tensor]
    path: str  # what the user gave, for messages
    config: dict = field(default_factory=dict)  # config.json ({} without one)
    metadata: dict = field(default_factory=dict)  # the safetensors header's metadata

    @property
    def step(self) -> int | None:
        step = self.config.get("step")
        return step if isinstance(step, int) else None

    def as_checkpoint(self) -> dict:
        """A dict for :class:`jdrl.nets.factory.LoadedWeights`' ``checkpoint`` (no reblurring module, no state)."""
        return {"format": MODEL_FORMAT, "config": dict(self.config), "metadata": dict(self.metadata)}


# ------------------------------------------------------------------------------------------------ recognising


def is_hub_id(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def is_model_source(source: Any) -> bool:
    """A Hub id, a folder or a ``.safetensors`` file: what :func:`read_model` reads (not ``torch.load``)."""
    if isinstance(source, Mapping):
        return False
    if is_hub_id(source) or is_bundled_id(source):
        return True
    path = Path(source).expanduser()
    return path.is_dir() or path.suffix.lower() == ".safetensors"


# ------------------------------------------------------------------------------------------------------ writing


def write_model_folder(
    folder: str | os.PathLike,
    name: str,
    options: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    step: int | None = None,
    ema: bool = False,
    size_multiple: int | None = None,
) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` (each atomically; weights first)."""
    from safetensors.torch import save


    try:
        options_json = json.dumps(dict(options), sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"network options {dict(options)!r} are not plain JSON data ({error}); "
                          "a model folder can only hold plain options") from None
    metadata = {"format": "pt", META_FORMAT: MODEL_FORMAT, META_NET: name, META_OPTIONS: options_json,
                META_VERSION: __version__}
    config = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "net": {"name": name, "options": json.loads(options_json)},
        "size_multiple": size_multiple,
        "input": "RGB float32 in [0, 1], NCHW; output the same",
        "step": step,
        "ema": bool(ema),
        "versions": versions(),
    }
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file; a model folder (config.json + model.safetensors) needs a folder path")
    payload = save(_plain_tensors(state_dict), metadata=metadata)
    with atomic_write(folder / WEIGHTS_NAME, durable=True) as handle:
        handle.write(payload)
    with atomic_write(folder / CONFIG_NAME, durable=True) as handle:
        handle.write((json.dumps(config, indent=2) + "\n").encode())
    return folder


def _plain_tensors(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors that share no memory (safetensors refuses shared or strided ones)."""
    import torch

    tensors, seen = {}, set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor; "
                               "a .safetensors file holds tensors only")
        tensor = value.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr() if tensor.numel() else None
        if pointer is not None and pointer in seen:
            tensor = tensor.clone()
        elif pointer is not None:
            seen.add(pointer)
        tensors[key] = tensor
    return tensors


# ------------------------------------------------------------------------------------------------------ reading


def read_model(source: str | os.PathLike, map_location: str | torch.device = "cpu") -> ModelFiles:
    """The network name, options and tensors of a model folder, ``.safetensors`` file, ``jdrl:`` or ``hf:`` id."""
    if is_bundled_id(source):  # a model that ships with jdrl (jdrl.models): real files only while the context lasts
        with model_files(str(source)) as (config_path, weights_path):
            return _read_files(config_path, weights_path, str(source), map_location)
    config, weights = hub_files(str(source)) if is_hub_id(source) else _local_files(source)
    return _read_files(config, weights, str(source), map_location)


def _local_files(source: str | os.PathLike) -> tuple[Path | None, Path]:
    """``(config.json or None, model.safetensors)`` of a local folder or file; a missing or empty one is named."""
    path = Path(source).expanduser()
    config_path: Path | None = None
    if path.is_dir():
        config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
        if file_problem(weights_path) == "no such file":
            raise WeightsError(_folder_problem(path))
        config_path = None if file_problem(config_path) == "no such file" else config_path
    else:
        weights_path = path
    problem = file_problem(weights_path)
    if problem == "is empty (0 bytes)":
        raise WeightsError(f"{weights_path}: not a readable .safetensors file (it is empty, 0 bytes)")
    if problem:
        raise WeightsError(f"checkpoint {weights_path}: {problem}")
    return config_path, weights_path


def _read_files(config_path: Path | None, weights_path: Path, where: str,
                map_location: str | torch.device) -> ModelFiles:
    config = _read_config(config_path) if config_path is not None else {}
    tensors, metadata = read_safetensors(weights_path, map_location)
    name, options = _network(config, metadata, config_path, weights_path)
    return ModelFiles(name, options, tensors, where, config, metadata)


def read_safetensors(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """The tensors and metadata of a ``.safetensors`` file; a malformed file is a :class:`WeightsError` naming it."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    except Exception as error:  # noqa: BLE001 - SafetensorError (truncated, not safetensors, bad header), OSError
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        size = path.stat().st_size if path.is_file() else 0
        raise WeightsError(f"{path}: not a readable .safetensors file ({reason[:200]}; {size} bytes); it may be "
                           "truncated or another kind of file - export or download it again") from None
    if str(map_location) != "cpu":
        tensors = {key: value.to(map_location) for key, value in tensors.items()}
    return tensors, metadata


def _read_config(path: Path) -> dict:
    try:
        text = read_text(path, MAX_CONFIG_BYTES, "model config.json")
    except ValueError as error:
        raise WeightsError(f"{path}: {error}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise WeightsError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise WeightsError(f"{path}: nested too deeply to be a model config") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path}: holds no JSON object")
    return config


def _network(config: dict, metadata: dict, config_path: Path | None, weights_path: Path) -> tuple[str | None, dict]:
    """The network name and options: config.json's ``net``, else the safetensors metadata; checked to agree."""
    net = config.get("net")
    if config_path is not None and (not isinstance(net, dict) or not isinstance(net.get("name"), str)
                                    or not isinstance(net.get("options", {}), dict)):
        raise WeightsError(f"{config_path}: needs \"net\": {{\"name\": ..., \"options\": {{...}}}} "
                           "(written by jdrl export --format safetensors)")
    meta_name = metadata.get(META_NET)
    meta_options: dict = {}
    if META_OPTIONS in metadata:
        try:
            meta_options = json.loads(metadata[META_OPTIONS])
        except (json.JSONDecodeError, RecursionError) as error:
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
            raise WeightsError(f"{weights_path}: metadata {META_OPTIONS} is not valid JSON ({reason})") from None
        if not isinstance(meta_options, dict):
            raise WeightsError(f"{weights_path}: metadata {META_OPTIONS} is not a JSON object")
    if net is not None:
        if meta_name is not None and meta_name != net["name"]:
            raise WeightsError(f"{config_path} names the network {net['name']!r} but {weights_path} holds a "
                               f"{meta_name!r} network; the folder mixes two models")
        return net["name"], dict(net.get("options", {}))
    return meta_name, meta_options


def _folder_problem(path: Path) -> str:
    message = f"{path} is a folder without {WEIGHTS_NAME}; a jdrl model folder holds {CONFIG_NAME} and {WEIGHTS_NAME}"
    if (path / "model" / WEIGHTS_NAME).is_file():
        return message + f" (this looks like a run folder: use {path / 'model'})"
    checkpoints = sorted(p.name for p in path.glob("*.pt"))
    if checkpoints:
        return message + f" (it holds {', '.join(checkpoints[:3])}: pass one of those files)"
    return message + " (write one with: jdrl export CKPT --format safetensors -o DIR)"


# ----------------------------------------------------------------------------------------------------- the Hub


def parse_hub_id(source: str) -> tuple[str, str | None]:
    """``hf:org/name@revision`` -> ``("org/name", "revision")`` (revision ``None`` = the default branch)."""
    body = source[len(HUB_PREFIX):]
    repo, _, revision = body.partition("@")
    if not _REPO_ID.match(repo) or (revision == "" and "@" in body):
        raise WeightsError(f"{source!r} is not a Hub id; write hf:ORG/NAME or hf:ORG/NAME@REVISION "
                           "(a branch, tag or commit)")
    return repo, revision or None


def hub_files(source: str) -> tuple[Path | None, Path]:
    """Local paths of ``config.json`` (``None`` when the repository has none) and ``model.safetensors``."""
    repo, revision = parse_hub_id(source)
    try:
        import huggingface_hub  # noqa: F401
    except ModuleNotFoundError:
        raise MissingDependencyError(f"{source}: Hugging Face Hub ids need the huggingface_hub package: "
                                     f"{HUB_HINT}", name="huggingface_hub") from None
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.utils import (  # re-exported there by every version since 0.23
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    found: dict[str, Path] = {}
    not_cached: list[str] = []
    not_in_repo: list[str] = []
    pinned = revision is not None and _COMMIT.match(revision) is not None

    def download(filename: str) -> Path:
        if pinned:  # a commit never changes: its cached files are the answer, without asking the Hub
            try:
                return Path(hf_hub_download(repo, filename, revision=revision, local_files_only=True))
            except LocalEntryNotFoundError:
                pass
        return Path(hf_hub_download(repo, filename, revision=revision))

    for filename in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            found[filename] = download(filename)
        except LocalEntryNotFoundError:  # offline or unreachable, and not in the cache (checked before EntryNotFound)
            not_cached.append(filename)
        except GatedRepoError:
            raise WeightsError(f"{source}: the repository {repo} is gated; accept its terms on huggingface.co and "
                               "log in (hf auth login) or set HF_TOKEN") from None
        except RepositoryNotFoundError:
            raise WeightsError(f"{source}: no repository {repo} on the Hub (or it is private: log in with "
                               "hf auth login or set HF_TOKEN)") from None
        except RevisionNotFoundError:
            raise WeightsError(f"{source}: the repository {repo} has no revision {revision!r}") from None
        except EntryNotFoundError:
            not_in_repo.append(filename)
        except HFValidationError as error:
            raise WeightsError(f"{source}: {error}") from None
        except HfHubHTTPError as error:  # a server error, a refused token, ...
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WeightsError(f"{source}: the Hub refused {filename} ({reason[:200]})") from None
    at = f" --revision {revision}" if revision else ""
    if not_cached:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub could not be reached"
        raise WeightsError(
            f"{source}: {' and '.join(not_cached)} of {repo}{'@' + revision if revision else ''} not in the local "
            f"Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}. Download them once with network access: "
            f"hf download {repo} {CONFIG_NAME} {WEIGHTS_NAME}{at} (into the same HF_HOME / HF_HUB_CACHE), "
            "or copy the model folder here and pass its path")
    if WEIGHTS_NAME in not_in_repo:
        raise WeightsError(f"{source}: the repository {repo} has no {WEIGHTS_NAME}"
                           f"{' (nor ' + CONFIG_NAME + ')' if CONFIG_NAME in not_in_repo else ''}; a jdrl model "
                           f"repository holds {CONFIG_NAME} and {WEIGHTS_NAME} (upload a folder written by "
                           "jdrl export --format safetensors)")
    return found.get(CONFIG_NAME), found[WEIGHTS_NAME]
