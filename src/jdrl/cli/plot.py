"""``jdrl plot``: a training run's curves (losses, learning rate, validation metrics) as a PNG."""

from __future__ import annotations

import argparse

from jdrl.cli.arguments import int_in
from jdrl.errors import UsageError

HELP = "draw a run's training curves (RUN/log.csv, RUN/val.csv) into a PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="training run folder (holds log.csv, maybe val.csv)")
    parser.add_argument("-o", "--out", help="PNG to write (default: RUN/curves.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PNG (default: refuse)")
    parser.add_argument("--dpi", type=int_in(10, 1200), default=100, help="resolution (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jdrl.evaluation.plot import plot_run

    target = Path(args.out) if args.out else Path(args.run_dir) / "curves.png"
    if target.is_dir():
        raise UsageError(f"-o {target} is a folder; give the PNG file to write")
    if target.exists() and not args.overwrite:
        raise UsageError(f"{target} exists; choose another -o, or pass --overwrite to replace it")
    path = plot_run(args.run_dir, args.out, dpi=args.dpi)
    print(f"wrote {path}")
    return 0
