"""``jdrl prepare``: cut full-size pairs into DPDNet-style training patches."""

from __future__ import annotations

import argparse

HELP = "cut full-size pairs into overlapping training patches, dropping the least sharp"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jdrl.cli.data import add_source_arguments
    from jdrl.data.prepare import PatchSpec

    defaults = PatchSpec()
    add_source_arguments(parser)
    parser.add_argument("-o", "--out", required=True, help="output folder (gets blur/ and gt/)")
    parser.add_argument("--patch", type=int, default=defaults.patch, help="patch side in px (default: %(default)s)")
    parser.add_argument("--overlap", type=float, default=defaults.overlap, help="overlap fraction (default: %(default)s)")
    parser.add_argument("--drop", type=float, default=defaults.drop, help="fraction of least sharp patches dropped (default: %(default)s)")
    parser.add_argument("--skip-bad", action="store_true", help="leave out bad pairs instead of stopping")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from jdrl.data.pairs import load_pairs
    from jdrl.data.prepare import PatchSpec, prepare_patches
    from jdrl.progress import bar

    spec = PatchSpec(args.patch, args.overlap, args.drop)
    pairs = load_pairs(args.path, args.layout, args.split, args.blur_dir, args.sharp_dir,
                       min_size=args.patch, skip_bad=args.skip_bad, progress=bar("checking", args.quiet))
    report = prepare_patches(pairs, args.out, spec, progress=bar("patches", args.quiet))
    print(f"{report.images} image pairs -> {report.candidates} patches of {spec.patch}px (stride {spec.stride}); "
          f"dropped the {report.dropped} least sharp (Laplacian variance <= {report.threshold:.3g}); "
          f"wrote {report.written} to {args.out}/{{blur,gt}}")
    return 0
