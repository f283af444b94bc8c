"""Exceptions that mean "the user's input is wrong" (or the machine's state is: a full disk).

Every one derives from :class:`JDRLError`; the CLI reports them in one line (or one
list) without a traceback and exits with their ``exit_code``. Anything else is a bug:
one line asking to report it, and the traceback with ``jdrl --debug``.
"""

from __future__ import annotations

from collections.abc import Sequence


class JDRLError(Exception):
    """Base of the errors a user can cause and fix."""

    exit_code = 2


class ConfigError(JDRLError, ValueError):
    """A config value or key is invalid; the message names the dotted key."""


class UsageError(JDRLError, ValueError):
    """A command's arguments do not go together; the message says what to give instead."""


class MissingDependencyError(JDRLError, ModuleNotFoundError):
    """An optional package is needed; the message names the ``pip install`` extra."""


class ImageReadError(JDRLError, OSError):
    """An image file could not be decoded; the message names the path."""


class WeightsError(JDRLError, ValueError):
    """A weight file is missing or does not fit the model; the message says which keys/shapes."""


class UntrustedCodeError(JDRLError, ValueError):
    """A file (checkpoint, model folder, Hub repository, config) names code to import (``package.module:Class``)
    and the user did not pass the explicit trust flag; nothing was imported or called."""


class UnknownNameError(JDRLError, KeyError, ValueError):
    """A registry lookup failed; the message lists the valid names. A ``KeyError`` (a name not in a mapping)
    and a ``ValueError`` (a value outside its choices, as a bad mask mode or reblurring kernel always was)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DatasetError(JDRLError, ValueError):
    """The data has problems; ``problems`` lists every one of them (objects with a path and a message)."""

    def __init__(self, source: str, problems: Sequence, hint: str = ""):
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) in {source}:"]
        lines += [f"  {p}" for p in self.problems]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class VerificationError(JDRLError, RuntimeError):
    """A result failed its own check (e.g. an exported model disagrees with PyTorch); nothing was written."""

    exit_code = 1


class TrainingError(JDRLError, RuntimeError):
    """Training cannot go on (e.g. too many non-finite losses in a row); the message says why and what was saved."""

    exit_code = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM during training: the state was saved; the message says where."""


USER_ERRORS: tuple[type[BaseException], ...] = (JDRLError, FileNotFoundError)
