"""The ``jdrl`` command: one sub-command per module of this package.

Each sub-command module defines ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. Heavy imports happen inside ``run`` so that
``jdrl --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
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
}


def build_parser() -> argparse.ArgumentParser:
    from jdrl import __version__

    parser = argparse.ArgumentParser(
        prog="jdrl",
        description="Train and use defocus-deblurring networks on misaligned image pairs (JDRL).",
    )
    parser.add_argument("--version", action="version", version=f"jdrl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from jdrl.errors import USER_ERRORS

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as error:
        print(f"jdrl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"jdrl {args.command}: {interrupt or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
