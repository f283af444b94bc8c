"""ONNX export of a deblurring network, checked against PyTorch with onnxruntime.

The exported graph maps ``blurry`` (float32 RGB in [0, 1], ``(batch, 3, height,
width)``) to ``restored`` (same layout); batch, height and width are dynamic, but
height and width must stay multiples of the network's ``size_multiple`` (written
into the model's metadata, with the network name and options). Channel-order
handling (the released UNet's BGR weights) is part of the graph, so callers always
pass RGB.

Two exporters: the current one (``torch.onnx.export(..., dynamo=True)``, which needs
``onnxscript``) is tried first; the TorchScript one is the fallback when ``onnxscript`` is
missing or the dynamo export fails. Either result is verified the same way, and the exporter
used is stored in the metadata (``jdrl.exporter``) and named in the verification line.

The file is written under a temporary name and renamed only after it passed
verification, so a failed export never leaves a plausible-looking model behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import io
import json
import logging
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import Dim

from jdrl.errors import ConfigError, MissingDependencyError, VerificationError
from jdrl.hub import read_model, write_model_folder
from jdrl.runtime import net_device

INPUT_NAME = "blurry"
OUTPUT_NAME = "restored"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
DEFAULT_TOLERANCE = 1e-4
INSTALL_HINT = "pip install jdrl[onnx]"
EXPORTERS = ("auto", "dynamo", "torchscript")  # auto: dynamo, TorchScript when that is impossible
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir")


class ExportVerificationError(VerificationError):
    """onnxruntime's output differs from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class Verification:
    """How the exported model compared with PyTorch (``max_abs_diff is None`` when skipped)."""

    shape: tuple[int, ...]
    max_abs_diff: float | None
    tolerance: float
    skipped: str | None = None
    exporter: str | None = None  # "dynamo" or "torchscript" (None: not known, e.g. verify_onnx alone)
    fallback_reason: str | None = None  # why the dynamo exporter was not used, when it was not

    def __str__(self) -> str:
        if self.skipped:
            text = f"not verified: {self.skipped}"
        else:
            shape = "x".join(map(str, self.shape))
            text = (f"verified with onnxruntime on a {shape} input: "
                    f"max abs diff {self.max_abs_diff:.2e} (tolerance {self.tolerance:g})")
        if self.exporter:
            how = f"{self.exporter} exporter"
            if self.fallback_reason:
                how += f" (fallback: {self.fallback_reason})"
            text = f"{how}; {text}"
        return text


def require_onnx() -> None:
    """Fail with an installation hint when the ``onnx`` package is missing."""
    try:
        import onnx  # noqa: F401
    except ModuleNotFoundError:
        raise MissingDependencyError(f"ONNX export needs the onnx package: {INSTALL_HINT}", name="onnx") from None


def check_export_size(net: nn.Module, height: int, width: int) -> None:
    """The example input's sides must be positive multiples of ``net.size_multiple``."""
    multiple = getattr(net, "size_multiple", 1)
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ConfigError(f"export size {height}x{width}: height and width must be positive multiples of {multiple}")


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's warnings and prints (tracer warnings, constant-folding notes)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _eval_mode(net: nn.Module):
    """``net`` in eval mode for the duration, its previous mode restored after."""
    training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(training)


@contextlib.contextmanager
def _quiet_loggers():
    """The dynamo exporter logs (opset conversion notes, tracebacks of optional passes): silenced meanwhile."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _onnx_export(net: nn.Module, path: Path, height: int, width: int, opset: int, **exporter: Any) -> None:
    """``torch.onnx.export`` of ``net`` on one random ``(1, 3, height, width)`` example, jdrl's input and output
    names; ``exporter`` holds what differs between the two exporters."""
    example = torch.rand(1, 3, height, width, device=net_device(net))
    with torch.no_grad():
        torch.onnx.export(net, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=opset, **exporter)


def _write_torchscript(net: nn.Module, path: Path, height: int, width: int, opset: int) -> None:
    """``torch.onnx.export`` with the TorchScript exporter (no extra dependencies, dynamic axes)."""
    # ``dynamo`` is off by default in torch 2.4 (the floor), on by default in recent versions: say it
    choice: dict[str, Any] = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with _quiet():
        _onnx_export(net, path, height, width, opset, dynamic_axes={INPUT_NAME: DYNAMIC_AXES, OUTPUT_NAME: DYNAMIC_AXES},
                     do_constant_folding=True, **choice)


def _write_dynamo(net: nn.Module, path: Path, height: int, width: int, opset: int) -> None:
    """``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript): one file, dynamic batch/height/width.

    The dynamo exporter implements opset 18 and later; a lower ``opset`` is converted down when
    onnxscript/onnx can (the opset actually written is in the model, and in the metadata).
    """
    dynamic = getattr(Dim, "DYNAMIC", None) or Dim.AUTO  # torch 2.5 has only AUTO
    with _quiet(), _quiet_loggers():
        _onnx_export(net, path, height, width, opset, dynamo=True,
                     external_data=False,  # one self-contained file (weights inside), as the TorchScript exporter writes
                     dynamic_shapes=({axis: dynamic for axis in DYNAMIC_AXES},))


def dynamo_unavailable() -> str | None:
    """Why the dynamo exporter cannot run here (``None`` when it can)."""
    # torch 2.4 has a ``dynamo`` argument, but its exporter (torch.onnx.dynamo_export) takes no
    # ``dynamic_shapes``: the torch.export-based exporter used here needs torch 2.5
    if "dynamic_shapes" not in inspect.signature(torch.onnx.export).parameters:
        return f"torch {torch.__version__} has no torch.export-based ONNX exporter (torch >= 2.5)"
    if importlib.util.find_spec("onnxscript") is None:
        return f"onnxscript is not installed ({INSTALL_HINT})"
    return None


def _write_onnx(net: nn.Module, path: Path, height: int, width: int, opset: int,
                exporter: str = "auto") -> tuple[str, str | None]:
    """Write the model with ``exporter``; returns ``(exporter used, why dynamo was not used)``.

    ``auto`` tries the dynamo exporter and falls back to TorchScript when onnxscript is missing or
    the dynamo export raises; ``dynamo``/``torchscript`` use that one only (errors propagate).
    """
    if exporter not in EXPORTERS:
        raise ConfigError(f"ONNX exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    reason = None
    if exporter in ("auto", "dynamo"):
        reason = dynamo_unavailable()
        if reason is None:
            try:
                _write_dynamo(net, path, height, width, opset)
                return "dynamo", None
            except Exception as error:  # noqa: BLE001 - any exporter failure: fall back (or re-raise below)
                if exporter == "dynamo":
                    raise
                reason = f"dynamo export failed: {type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
                Path(path).unlink(missing_ok=True)
        elif exporter == "dynamo":
            raise MissingDependencyError(f"the dynamo ONNX exporter is unavailable: {reason}", name="onnxscript")
    _write_torchscript(net, path, height, width, opset)
    return "torchscript", reason


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Check the model with ``onnx.checker`` and store ``metadata`` in its ``metadata_props``.

    ``jdrl.opset`` (the default-domain opset actually written) is added here.
    """
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    opsets = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    if opsets:
        metadata = {**metadata, "jdrl.opset": str(opsets[0])}
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def verification_size(net: nn.Module, height: int, width: int) -> tuple[int, int]:
    """A size different from the export size in both sides (and still valid for the network)."""
    multiple = getattr(net, "size_multiple", 1)
    return height + multiple, width + 2 * multiple


def verify_onnx(
    net: nn.Module,
    path: str | os.PathLike,
    height: int,
    width: int,
    batch: int = 2,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> Verification:
    """Run the ONNX model with onnxruntime (CPU) and PyTorch on one random input; compare.

    Raises :class:`ExportVerificationError` when the largest absolute difference
    exceeds ``tolerance``; returns a skipped verification when onnxruntime is absent.
    """
    shape = (batch, 3, height, width)
    try:
        import onnxruntime
    except ModuleNotFoundError:
        return Verification(shape, None, tolerance, skipped=f"onnxruntime is not installed ({INSTALL_HINT})")
    generator = torch.Generator().manual_seed(seed)
    blurry = torch.rand(shape, generator=generator)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    restored = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: blurry.numpy()})[0])
    with _eval_mode(net), torch.no_grad():
        expected = net(blurry.to(net_device(net))).float().cpu()
    if restored.shape != expected.shape:
        raise ExportVerificationError(
            f"{path}: onnxruntime output shape {tuple(restored.shape)} != PyTorch {tuple(expected.shape)}"
        )
    difference = float((restored - expected).abs().max())
    result = Verification(shape, difference, tolerance)
    if not difference <= tolerance:  # also catches NaN
        raise ExportVerificationError(f"{path}: {result} - the export is wrong; verification failed, nothing written")
    return result


def export_onnx(
    net: nn.Module,
    path: str | os.PathLike,
    height: int = 256,
    width: int = 256,
    opset: int = 17,
    metadata: dict[str, str] | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    exporter: str = "auto",
) -> Verification:
    """Export ``net`` to ``path`` (dynamic batch/height/width) and verify it at another size.

    ``height``/``width`` is the example size used for tracing (multiples of
    ``net.size_multiple``). With ``verify`` the model is compared with PyTorch by
    onnxruntime (when installed) on a different size before it is moved into place.
    ``exporter``: ``auto`` (the dynamo exporter, TorchScript as the fallback), ``dynamo`` or
    ``torchscript``; the one used is in the result and in the metadata (``jdrl.exporter``).
    """
    require_onnx()
    check_export_size(net, height, width)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"jdrl.size_multiple": str(getattr(net, "size_multiple", 1)), "jdrl.input": "RGB float32 in [0, 1], NCHW"}
    info.update(metadata or {})
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # created by the exporter (umask mode)
    try:
        with _eval_mode(net):
            used, reason = _write_onnx(net, tmp, height, width, opset, exporter)
        _add_metadata(tmp, {**info, "jdrl.exporter": used})
        if verify:
            result = verify_onnx(net, tmp, *verification_size(net, height, width), tolerance=tolerance)
        else:
            result = Verification((), None, tolerance, skipped="verification switched off")
        result = dataclasses.replace(result, exporter=used, fallback_reason=reason)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return result


# ------------------------------------------------------------------------ safetensors (a model folder, no pickle)


@dataclass(frozen=True)
class FolderExport:
    """What :func:`export_safetensors` wrote and how it was checked."""

    folder: Path
    tensors: int
    ema: bool
    verified: bool

    def __str__(self) -> str:
        check = ("read back: every tensor bit-identical, the same network and options" if self.verified
                 else "not verified: verification switched off")
        return f"{self.tensors} tensors{' (EMA weights)' if self.ema else ''}; {check}"


def load_export_net(checkpoint, name: str | None = None, ema: bool = True, trust_code: bool = False
                    ) -> tuple[nn.Module, bool]:
    """The network of ``checkpoint`` to export: its EMA weights when the checkpoint keeps them (and ``ema``).

    Returns ``(net, used_ema)``; ``net.jdrl_spec`` says where it came from. ``trust_code`` as in
    :func:`jdrl.create_net`.
    """
    from jdrl.nets.factory import build_loaded, read_weights

    loaded = read_weights(checkpoint, name, trust_code=trust_code)
    averaged = loaded.checkpoint.get("ema") if ema else None
    state = averaged["state_dict"] if isinstance(averaged, dict) and averaged.get("state_dict") else None
    if state is None:
        return build_loaded(loaded), False
    return build_loaded(loaded, state, f"{loaded.spec.path} (ema)"), True


def export_safetensors(net: nn.Module, folder: str | os.PathLike, *, ema: bool = False,
                       verify: bool = True) -> FolderExport:
    """Write ``net`` as a model folder (``config.json`` + ``model.safetensors``, :mod:`jdrl.hub`).

    With ``verify`` the folder is read back and every tensor compared with ``net``'s
    (bit-exact) before returning; a mismatch raises :class:`VerificationError`.
    """
    from jdrl.nets.factory import describe

    spec = describe(net)
    state = net.state_dict()
    folder = write_model_folder(folder, spec.name, spec.options, state, step=spec.step, ema=ema,
                                size_multiple=getattr(net, "size_multiple", None))
    if verify:
        back = read_model(folder)
        wrong = sorted(set(state) ^ set(back.state_dict))
        wrong += [key for key in sorted(set(state) & set(back.state_dict))
                  if not torch.equal(state[key].detach().cpu(), back.state_dict[key])]
        options = json.loads(json.dumps(dict(spec.options)))  # tuples come back as lists
        if wrong or back.name != spec.name or back.options != options:
            raise VerificationError(f"{folder}: reading the model folder back does not give the network "
                                    f"(differing: {', '.join(wrong[:5]) or 'name/options'})")
    return FolderExport(folder, len(state), ema, verify)
