"""Shared fixtures. Tests that need ../shared skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JDRL_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (set JDRL_SHARED to the shared folder to run this test)")
    return path


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def textured_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth-but-detailed random colour image in [0, 1] (good for flow and blur tests)."""
    import cv2

    noise = rng.random((height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
    image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 1)


def backbone_rule_weights(keys, seed0: int, scale: float, offset_one_keys=()) -> dict[str, torch.Tensor]:
    """Deterministic weights by the rule stated in ``backbone_vectors.pt`` (official state-dict order):
    conv kernels ``randn * sqrt(1 / fan_in) * scale``, everything else ``randn * 0.01 + c`` (c = 1 for the
    keys the official code initialises to one), each key from its own generator seeded ``seed0 + index``."""
    import math

    ones = set(offset_one_keys)
    state = {}
    for index, (key, shape) in enumerate(keys.items()):
        generator = torch.Generator().manual_seed(seed0 + index)
        if len(shape) == 4 and key.endswith("weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=generator) * math.sqrt(1.0 / fan_in) * scale
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.01 + (1.0 if key in ones else 0.0)
    return state


def cli_overrides(overrides: list[str]) -> list[str]:
    """``["-o", item, ...]`` for a list composed as ``BASE + [tweaks]``: the command line refuses a key given
    twice, so only the last value of each key is passed (what ``jdrl.train`` itself would apply)."""
    keys = [item.partition("=")[0] for item in overrides]
    kept = [item for i, item in enumerate(overrides) if keys[i] not in keys[i + 1:]]
    return [word for item in kept for word in ("-o", item)]
