"""argparse ``type=`` validators shared by the sub-commands: a bad number is an argument error (one line,
status 2) before any work, naming the option and the value; never a traceback or a silently wrong run."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def int_in(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A validator for whole numbers in ``[low, high]`` (either bound may be open)."""

    def check(text: str) -> int:
        value = _integer(text)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"<= {high}" if low is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    check.__name__ = "integer"  # argparse names the type in "invalid <name> value" messages
    return check


def float_in(low: float | None = None, high: float | None = None, high_open: bool = False) -> Callable[[str], float]:
    """A validator for finite numbers in ``[low, high]`` (``[low, high)`` with ``high_open``)."""

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        too_high = high is not None and (value >= high if high_open else value > high)
        if (low is not None and value < low) or too_high:
            upper = "" if high is None else f" and {'<' if high_open else '<='} {high:g}"
            raise argparse.ArgumentTypeError(f"must be >= {low:g}{upper}, got {value:g}")
        return value

    check.__name__ = "number"
    return check


positive_int = int_in(1)
non_negative_int = int_in(0)
positive_float = float_in(low=0.0)


def positive_finite(text: str) -> float:
    value = float_in(0.0)(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels N``: the pixel limit of every image the command reads (default: $JDRL_MAX_PIXELS or 268 MP)."""
    parser.add_argument("--max-pixels", type=int_in(1, 2**40), metavar="N",
                        help="refuse images of more than N pixels before decoding them (default: $JDRL_MAX_PIXELS, "
                             "else 16384x16384)")


def apply_max_pixels(args: argparse.Namespace) -> None:
    """Make ``--max-pixels`` the limit of every read in this process (it sets ``$JDRL_MAX_PIXELS``)."""
    import os

    from jdrl.images import MAX_PIXELS_ENV

    if getattr(args, "max_pixels", None) is not None:
        os.environ[MAX_PIXELS_ENV] = str(args.max_pixels)


TRUST_CODE_HELP = ("let the weight file (checkpoint, model folder, Hub repository) name its network as code "
                   "(package.module:Class) to import and call; without it such a file is refused, and nothing "
                   "it names is imported")


def add_trust_code(parser: argparse.ArgumentParser, help_text: str = TRUST_CODE_HELP) -> None:
    """``--trust-code``: the explicit consent to import a network named by a file (Hugging Face's
    ``trust_remote_code``); never a config value, so no file can give it to itself."""
    parser.add_argument("--trust-code", action="store_true", help=help_text)


#: the largest image side, tile or crop an argument accepts (px), and the largest count
MAX_SIDE = 65_536
MAX_COUNT = 10**9
side_in_px = int_in(1, MAX_SIDE)
count = int_in(1, MAX_COUNT)

