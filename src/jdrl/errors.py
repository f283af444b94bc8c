"""Exceptions that mean "the user's input is wrong".

The CLI reports these in one line (or one list) without a traceback; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the dotted key."""


class ImageReadError(OSError):
    """An image file could not be decoded; the message names the path."""


class WeightsError(ValueError):
    """A weight file is missing or does not fit the model; the message says which keys/shapes."""


class UnknownNameError(KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DatasetError(ValueError):
    """The data has problems; ``problems`` lists every one of them (objects with a path and a message)."""

    def __init__(self, source: str, problems: Sequence, hint: str = ""):
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) in {source}:"]
        lines += [f"  {p}" for p in self.problems]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many non-finite losses in a row); the message says why and what was saved."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM during training: the state was saved; the message says where."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DatasetError,
    ImageReadError,
    UnknownNameError,
    WeightsError,
    TrainingError,
    FileNotFoundError,
)
