"""``jdrl presets``: the training presets shipped with jdrl."""

from __future__ import annotations

import argparse

HELP = "list the training presets (or print one with --show NAME)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--show", metavar="NAME", help="print the fully resolved preset")


def run(args: argparse.Namespace) -> int:
    from jdrl.config import load_yaml_tree, preset_names

    if args.show:
        import yaml

        print(yaml.safe_dump(load_yaml_tree(args.show), sort_keys=False), end="")
        return 0
    for name in preset_names():
        print(name)
    return 0
