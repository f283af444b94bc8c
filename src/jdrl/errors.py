"""The exceptions that mean "the user's input is wrong" (reported in one line, no traceback)."""

from __future__ import annotations

from jdrl.config import ConfigError
from jdrl.data.pairs import DatasetError
from jdrl.images import ImageReadError
from jdrl.registry import UnknownNameError


class WeightsError(ValueError):
    """A weight file is missing or does not fit the model; the message says which keys/shapes."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DatasetError,
    ImageReadError,
    UnknownNameError,
    WeightsError,
    FileNotFoundError,
)
