"""``jdrl demo``: pixel loss vs JDRL on synthetic misaligned pairs, scored against the truth."""

from __future__ import annotations

import argparse

from jdrl.cli.arguments import float_in, int_in
from jdrl.errors import UsageError

HELP = "fine-tune the bundled model with the pixel loss and with JDRL on misaligned pairs and compare them (offline, CPU-sized)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jdrl.demo import FROM_SCRATCH, DemoSettings

    defaults = DemoSettings()
    parser.add_argument("--out", default="jdrl-demo", help="report folder (default: %(default)s)")
    parser.add_argument("--steps", type=int_in(1, 10**7), default=defaults.steps, help="training steps per model (default: %(default)s)")
    parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                        help=f"where every model starts: any --checkpoint source (default: the bundled model {defaults.init}, "
                             "with the demo's network; with another --net: random weights)")
    parser.add_argument("--from-scratch", action="store_true", help="start every model from random weights")
    parser.add_argument("--net", default=defaults.net, help="the network, any of `jdrl nets` (default: %(default)s)")
    parser.add_argument("--net-options", type=_json_dict, default=None, metavar="JSON",
                        help="the network's options as JSON (default: the demo's for its network)")
    parser.add_argument("--width", type=float_in(0.001, 16), default=None,
                        help=f"UNet width multiplier, with --net unet (default: {defaults.width})")
    parser.add_argument("--lr", type=float_in(1e-9, 10), default=None,
                        help=f"learning rate (default: {defaults.lr} fine-tuning, {FROM_SCRATCH['lr']} from scratch)")
    parser.add_argument("--val-every", type=int_in(0, 10**7), default=defaults.val_every,
                        help="score the held-out pairs every N steps, for the report's curves; 0: only at the end "
                             "(default: %(default)s)")
    parser.add_argument("--batch", type=int_in(1, 4096), default=defaults.batch, help="batch size (default: %(default)s)")
    parser.add_argument("--device", default=defaults.device, help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--oracle", action="store_true", help="also train on perfectly aligned pairs (the upper bound)")
    parser.add_argument("--seed", type=int_in(0, 2**32 - 1), default=defaults.seed)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _json_dict(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    from jdrl.demo import DemoSettings, from_scratch, markdown, run_demo

    if args.from_scratch and args.init is not None:
        raise UsageError("--from-scratch and --init name two different starts; give one of them")
    if args.width is not None and args.net != "unet":
        raise UsageError(f"--width is the UNet's width multiplier; the network is {args.net} "
                         "(add --net unet, or give its options with --net-options)")
    start = time.perf_counter()
    defaults = DemoSettings()
    width = defaults.width if args.width is None else args.width
    chosen = dict(steps=args.steps, width=width, batch=args.batch, device=args.device, oracle=args.oracle,
                  seed=args.seed, val_every=args.val_every)
    if args.net != defaults.net or args.net_options is not None:
        # another network starts from its own defaults (net_options={}) unless options are given, and from random
        # weights unless --init names its start (the bundled model is the default network's)
        chosen.update(net=args.net, net_options=args.net_options or {}, init=None)
    if args.init is not None:
        chosen["init"] = args.init
    if args.from_scratch:
        chosen["init"] = None
    settings = DemoSettings(**chosen)
    if settings.init is None:  # random weights: the schedule and blur chosen for training from scratch
        settings = from_scratch(settings)
    if args.lr is not None:
        settings = replace(settings, lr=args.lr)
    table = run_demo(args.out, settings, quiet=args.quiet)
    print()
    print(markdown(table))
    print(f"\nreport: {args.out}/index.html  ({time.perf_counter() - start:.0f} s)")
    return 0
