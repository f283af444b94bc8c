"""``jdrl prepare``: cut full-size pairs into DPDNet-style training patches."""

from __future__ import annotations

import argparse

from jdrl.cli.arguments import apply_max_pixels, float_in, int_in
from jdrl.cli.data import add_source_arguments
from jdrl.progress import bar

HELP = "cut full-size pairs into overlapping training patches, dropping the least sharp"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jdrl.data.prepare import PatchSpec

    defaults = PatchSpec()
    add_source_arguments(parser)
    parser.add_argument("-o", "--out", required=True, help="output folder (gets blur/ and gt/)")
    parser.add_argument("--patch", type=int_in(8, 65_536), default=defaults.patch, help="patch side in px (default: %(default)s)")
    parser.add_argument("--overlap", type=float_in(0, 1, high_open=True), default=defaults.overlap, help="overlap fraction (default: %(default)s)")
    parser.add_argument("--drop", type=float_in(0, 1, high_open=True), default=defaults.drop, help="fraction of least sharp patches dropped (default: %(default)s)")
    parser.add_argument("--skip-bad", action="store_true", help="leave out bad pairs instead of stopping")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an OUT whose blur/ or gt/ already holds files (same names are replaced)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from jdrl.data.pairs import discover_pairs, load_pairs
    from jdrl.data.prepare import PatchSpec, check_output, prepare_patches

    spec = PatchSpec(args.patch, args.overlap, args.drop)
    apply_max_pixels(args)
    # the output is checked against the dataset before any image is read
    check_output(discover_pairs(args.path, args.layout, args.split, args.blur_dir, args.sharp_dir), args.out,
                 args.overwrite)
    pairs = load_pairs(args.path, args.layout, args.split, args.blur_dir, args.sharp_dir,
                       min_size=args.patch, skip_bad=args.skip_bad, progress=bar("checking", args.quiet))
    report = prepare_patches(pairs, args.out, spec, progress=bar("patches", args.quiet), overwrite=args.overwrite)
    print(f"{report.images} image pairs -> {report.candidates} patches of {spec.patch}px (stride {spec.stride}); "
          f"dropped the {report.dropped} least sharp (Laplacian variance <= {report.threshold:.3g}); "
          f"wrote {report.written} to {args.out}/{{blur,gt}}")
    return 0
