"""``jdrl plot``: a training run's curves (losses, learning rate, validation metrics) as a PNG."""

from __future__ import annotations

import argparse

HELP = "draw a run's training curves (RUN/log.csv, RUN/val.csv) into a PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="training run folder (holds log.csv, maybe val.csv)")
    parser.add_argument("-o", "--out", help="PNG to write (default: RUN/curves.png)")
    parser.add_argument("--dpi", type=int, default=100, help="resolution (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from jdrl.evaluation.plot import plot_run

    path = plot_run(args.run_dir, args.out, dpi=args.dpi)
    print(f"wrote {path}")
    return 0
