"""The ``jdrl`` command: one sub-command per module of this package.

Each sub-command module defines ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``; the registry :data:`COMMANDS` names them (the module is
imported when the parser is built). Heavy imports happen inside ``run`` so that
``jdrl --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jdrl._version import __version__
from jdrl.errors import USER_ERRORS
from jdrl.registry import Registry

#: the sub-commands by name, in the order ``jdrl --help`` lists them: each entry is its module (imported on lookup)
COMMANDS: Registry = Registry("command", sort=False, lazy={
    "demo": "jdrl.cli.demo",
    "synth": "jdrl.cli.synth",
    "prepare": "jdrl.cli.prepare",
    "data": "jdrl.cli.data",
    "train": "jdrl.cli.train",
    "eval": "jdrl.cli.evaluate",
    "deblur": "jdrl.cli.deblur",
    "plot": "jdrl.cli.plot",
    "export": "jdrl.cli.export",
    "nets": "jdrl.cli.nets",
    "flows": "jdrl.cli.flows",
    "presets": "jdrl.cli.presets",
})


class _Parser(argparse.ArgumentParser):
    """argparse, whose one error line also says when a word of the command line that starts with ``-`` is a file
    (``-photo.png`` reads as an option: "expected one argument" would otherwise be all the user sees)."""

    words: Sequence[str] = ()

    def error(self, message: str):  # noqa: ANN201 - argparse's signature (NoReturn)
        files = [word for word in self.words if word.startswith("-") and len(word) > 1 and os.path.lexists(word)]
        if files:
            message += (f" ({files[0]} is a file name that starts with '-', which reads as an option: write "
                        f"./{files[0]} instead)")
        super().error(message)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser of every command; ``argv`` (the words to parse) only improves its error messages."""

    parser = _Parser(
        prog="jdrl",
        description="Train and use defocus-deblurring networks on misaligned image pairs (JDRL).",
    )
    parser.words = tuple(argv)
    parser.add_argument("--version", action="version", version=f"jdrl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of any error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = COMMANDS.get(name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        command.words = parser.words
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in jdrl, not the user's input


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: one error boundary for every sub-command.

    Errors the user can cause (:data:`jdrl.errors.USER_ERRORS`, file-system errors such as
    a full disk or a read-only folder, running out of memory) end in one line and a
    non-zero status. Anything else is a bug: one line asking to report it, and the
    traceback with ``--debug``.
    """

    _escape_undecodable_names()
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    command = f"jdrl {args.command}"
    saved_limit = os.environ.get("JDRL_MAX_PIXELS")  # --max-pixels sets it for one command only
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt as interrupt:
        print(f"{command}: {interrupt or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the boundary: every error becomes one line
        if args.debug:
            raise
        return _report(command, error, USER_ERRORS)
    finally:
        if saved_limit is None:
            os.environ.pop("JDRL_MAX_PIXELS", None)
        else:
            os.environ["JDRL_MAX_PIXELS"] = saved_limit


def _escape_undecodable_names() -> None:
    """A file name that is not UTF-8 (Python keeps its bytes as surrogates) is printed escaped instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            reconfigure(errors="backslashreplace")


def _report(command: str, error: Exception, user_errors: tuple) -> int:
    if isinstance(error, user_errors):
        print(f"{command}: error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    if isinstance(error, MemoryError):
        print(f"{command}: error: out of memory (try smaller images, crops, tiles or batches)", file=sys.stderr)
        return 2
    if isinstance(error, OSError):  # the file system said no: permissions, a full disk, a missing folder
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        print(f"{command}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    print(f"{command}: internal error: {type(error).__name__}: {first_line}\n"
          f"This is a bug in jdrl; please report it with the output of `jdrl --debug {command[5:]} ...`.",
          file=sys.stderr)
    return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
