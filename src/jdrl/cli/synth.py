"""``jdrl synth``: synthetic misaligned defocus pairs with their true alignment."""

from __future__ import annotations

import argparse
import time

from jdrl.cli.arguments import int_in
from jdrl.errors import UsageError
from jdrl.files import real_path
from jdrl.progress import bar

MAX_SYNTH_PAIRS = 10_000_000  # ~20 days of writing at 256 px on 2 cores: a bound a user reaches only on purpose
HELP = "synthesize misaligned defocus pairs (blur/, gt/, aligned/, flow/, occlusion/, meta.jsonl)"

#: the misalignment options: (flag, SynthParams field, type, help)
MISALIGNMENT_OPTIONS = (
    ("--shift", "shift", float, "max |shift| in px"),
    ("--zoom", "zoom", float, "max |zoom - 1|"),
    ("--breathing", "breathing", float, "focus breathing: zoom x (1 + B (focus - 0.5)), focus in [0, 1]"),
    ("--warp-amplitude", "warp_amplitude", float, "largest smooth non-rigid displacement in px"),
    ("--warp-scale", "warp_scale", float, "correlation length of that displacement in px"),
    ("--local-regions", "local_regions", int, "number of ellipses moving on their own (occlusions)"),
    ("--local-shift", "local_shift", float, "max |shift| of each ellipse in px"),
    ("--gt-exposure", "gt_exposure", float, "max |gain - 1| of the ground truth"),
    ("--white-balance", "white_balance", float, "max |gain - 1| per colour channel of the ground truth"),
    ("--gamma", "gamma", float, "max |gamma - 1| of the ground truth's tone curve"),
    ("--vignetting", "vignetting", float, "max darkening of the ground truth's corners"),
)


#: options whose values SynthParams' declared ranges check (every violation at once, named by its field)
CHECKED_BY_SYNTHPARAMS = ("--r-max", "--local-size", "--exposure", "--noise", *(flag for flag, *_ in MISALIGNMENT_OPTIONS))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jdrl.data.synthetic import MISALIGNMENT_PRESETS, SynthParams

    defaults = SynthParams()
    parser.add_argument("source", nargs="?", help="folder of sharp images (default: scikit-image's sample photos)")
    parser.add_argument("-n", type=int_in(1, MAX_SYNTH_PAIRS), default=16,
                        help=f"number of pairs, at most {MAX_SYNTH_PAIRS:,} (default: %(default)s)")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--size", type=int_in(16, 8192), default=defaults.size, help="side of each pair in px (default: %(default)s)")
    parser.add_argument("--r-max", type=float, default=defaults.r_max, help="largest blur radius in px (default: %(default)s)")
    parser.add_argument(
        "--misalignment",
        choices=list(MISALIGNMENT_PRESETS),
        help="preset of the options below (jdrl.data.synthetic.MISALIGNMENT_PRESETS): none; global (zoom + shift "
        "only, the old sdd level); dpdd, sdd, hard (also smooth/local motion, occlusions, photometry); severe "
        "(the old zoom + shift level). The options below override it",
    )
    for flag, name, kind, text in MISALIGNMENT_OPTIONS:
        off = "" if name == "warp_scale" else "; 0 = off"
        parser.add_argument(flag, type=kind, help=f"{text} (default: {getattr(defaults, name):g}{off})")
    parser.add_argument("--local-size", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="ellipse diameters as a fraction of --size (default: {:g} {:g})".format(*defaults.local_size))
    parser.add_argument("--exposure", type=float, default=defaults.exposure, help="max |gain - 1| (default: %(default)s)")
    parser.add_argument("--noise", type=float, default=defaults.noise, help="max noise sigma (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an output folder that already holds a data set, replacing its files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def params_from_args(args: argparse.Namespace):
    from jdrl.config import validate
    from jdrl.data.synthetic import MISALIGNMENT_PRESETS, SynthParams

    chosen = dict(MISALIGNMENT_PRESETS[args.misalignment]) if args.misalignment else {}
    for _, name, _, _ in MISALIGNMENT_OPTIONS:
        if getattr(args, name, None) is not None:
            chosen[name] = getattr(args, name)
    if getattr(args, "local_size", None) is not None:
        chosen["local_size"] = tuple(args.local_size)
    return validate(SynthParams(size=args.size, r_max=args.r_max, exposure=args.exposure, noise=args.noise, **chosen))


def run(args: argparse.Namespace) -> int:
    from jdrl.data.synthetic import (
        default_sources,
        folder_sources,
        usable_sources,
        write_synthetic,
    )

    start = time.perf_counter()
    params = params_from_args(args)
    if args.source:
        from pathlib import Path


        out, source = real_path(Path(args.out).expanduser()), real_path(Path(args.source).expanduser())
        if out == source or out.is_relative_to(source) or source.is_relative_to(out):
            raise UsageError(f"-o {args.out}: the output must lie outside the source folder {args.source} "
                             "(and not hold it)")
    sources = usable_sources(folder_sources(args.source) if args.source else default_sources(), params)
    out = write_synthetic(args.out, args.n, params, args.seed, sources, progress=bar("synth", args.quiet),
                          overwrite=args.overwrite)
    print(f"wrote {args.n} pairs from {len(sources)} source image(s) to {out} in {time.perf_counter() - start:.1f} s")
    print(f"  {out}/blur  {out}/gt (misaligned)  {out}/aligned (truth)  {out}/flow (true flow, .npy)  "
          f"{out}/occlusion  {out}/meta.jsonl")
    return 0
