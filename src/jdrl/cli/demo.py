"""``jdrl demo``: pixel loss vs JDRL on synthetic misaligned pairs, scored against the truth."""

from __future__ import annotations

import argparse

HELP = "train pixel-loss and JDRL models on bundled photos and compare them (offline, CPU-sized)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jdrl.demo import DemoSettings

    defaults = DemoSettings()
    parser.add_argument("--out", default="jdrl-demo", help="report folder (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="training steps per model (default: %(default)s)")
    parser.add_argument("--width", type=float, default=defaults.width, help="UNet width multiplier (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="batch size (default: %(default)s)")
    parser.add_argument("--device", default=defaults.device, help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--oracle", action="store_true", help="also train on perfectly aligned pairs (the upper bound)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import time

    from jdrl.demo import DemoSettings, markdown, run_demo

    start = time.perf_counter()
    settings = DemoSettings(steps=args.steps, width=args.width, batch=args.batch, device=args.device,
                            oracle=args.oracle, seed=args.seed)
    table = run_demo(args.out, settings, quiet=args.quiet)
    print()
    print(markdown(table))
    print(f"\nreport: {args.out}/index.html  ({time.perf_counter() - start:.0f} s)")
    return 0
