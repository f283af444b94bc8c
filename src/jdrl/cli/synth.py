"""``jdrl synth``: synthetic misaligned defocus pairs with their true alignment."""

from __future__ import annotations

import argparse
import time

HELP = "synthesize misaligned defocus pairs (blur/, gt/, aligned/, meta.jsonl)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jdrl.data.synthetic import MISALIGNMENT_LEVELS, SynthParams

    defaults = SynthParams()
    parser.add_argument("source", nargs="?", help="folder of sharp images (default: scikit-image's sample photos)")
    parser.add_argument("-n", type=int, default=16, help="number of pairs (default: %(default)s)")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--size", type=int, default=defaults.size, help="side of each pair in px (default: %(default)s)")
    parser.add_argument("--r-max", type=float, default=defaults.r_max, help="largest blur radius in px (default: %(default)s)")
    parser.add_argument(
        "--misalignment",
        choices=sorted(MISALIGNMENT_LEVELS),
        help="preset for --shift/--zoom: " + ", ".join(f"{k}=±{s:g}px/±{z:.0%}" for k, (s, z) in MISALIGNMENT_LEVELS.items()),
    )
    parser.add_argument("--shift", type=float, help=f"max |shift| in px (default: {defaults.shift:g})")
    parser.add_argument("--zoom", type=float, help=f"max |zoom - 1| (default: {defaults.zoom:g})")
    parser.add_argument("--exposure", type=float, default=defaults.exposure, help="max |gain - 1| (default: %(default)s)")
    parser.add_argument("--noise", type=float, default=defaults.noise, help="max noise sigma (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def params_from_args(args: argparse.Namespace):
    from jdrl.data.synthetic import MISALIGNMENT_LEVELS, SynthParams

    shift, zoom = MISALIGNMENT_LEVELS[args.misalignment] if args.misalignment else (SynthParams.shift, SynthParams.zoom)
    return SynthParams(
        size=args.size,
        r_max=args.r_max,
        shift=shift if args.shift is None else args.shift,
        zoom=zoom if args.zoom is None else args.zoom,
        exposure=args.exposure,
        noise=args.noise,
    )


def run(args: argparse.Namespace) -> int:
    from jdrl.data.synthetic import default_sources, folder_sources, usable_sources, write_synthetic
    from jdrl.progress import bar

    start = time.perf_counter()
    params = params_from_args(args)
    sources = usable_sources(folder_sources(args.source) if args.source else default_sources(), params)
    out = write_synthetic(args.out, args.n, params, args.seed, sources, progress=bar("synth", args.quiet))
    print(f"wrote {args.n} pairs from {len(sources)} source image(s) to {out} in {time.perf_counter() - start:.1f} s")
    print(f"  {out}/blur  {out}/gt (misaligned)  {out}/aligned (truth)  {out}/meta.jsonl")
    return 0
