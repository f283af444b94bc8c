"""Where and how things run: device choice, a network's device, AMP dtypes, version strings.

One copy of each rule, used by the CLI, training, evaluation, inference and the demo.
"""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from jdrl._version import __version__
from jdrl.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

AMP_CHOICES = ("bf16", "fp16")
DEVICE_HELP = "auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:1, mps"


def choose_device(name: str | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto``/``None`` -> CUDA (the local rank's GPU), then MPS, then the CPU; anything else checked and returned."""
    import torch

    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device {name!r}: {error}; choose {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name}: CUDA is not available on this machine")
        index = local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name}: Apple MPS is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r}: choose {DEVICE_HELP}")
    return device


def net_device(net: nn.Module) -> torch.device:
    """The device of the network's first parameter or buffer (CPU for a network with neither)."""
    import torch

    for tensor in net.parameters():
        return tensor.device
    for tensor in net.buffers():
        return tensor.device
    return torch.device("cpu")


def amp_dtype(amp: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (``None``/``"none"``, ``"bf16"``, ``"fp16"``); ``None`` off CUDA (ignored there)."""
    import torch

    if amp in (None, "none"):
        return None
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp] if device.type == "cuda" else None


def versions(*packages: str, git: bool = False) -> dict[str, str]:
    """Versions of jdrl, torch, Python and ``packages`` (those installed); the git commit when asked and known."""
    import torch


    found = {"jdrl": __version__, "torch": str(torch.__version__), "python": platform.python_version()}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    if git:
        commit = _git_commit()
        if commit:
            found["git"] = commit
    return found


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
