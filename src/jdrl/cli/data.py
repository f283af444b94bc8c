"""``jdrl data check``: what a dataset folder holds and everything wrong with it."""

from __future__ import annotations

import argparse
from collections import Counter

from jdrl.cli.arguments import add_max_pixels, apply_max_pixels, side_in_px

HELP = "inspect datasets (jdrl data check PATH)"


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that name a dataset (and the pixel limit), shared by every command that reads one."""
    parser.add_argument("path", help="dataset folder or CSV of pairs")
    parser.add_argument("--layout", default="auto",
                        choices=["auto", "sdd", "dpdd", "realdof", "synthetic", "folders", "csv"],
                        help="folder layout (default: detect)")
    parser.add_argument("--split", default="train", choices=["train", "val", "test"], help="DPDD split (default: %(default)s)")
    parser.add_argument("--blur-dir", help="folder of blurry images (layout 'folders')")
    parser.add_argument("--sharp-dir", help="folder of sharp images (layout 'folders')")
    add_max_pixels(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="print the layout, pair count, sizes and every problem; exit 1 if any")
    check.words = getattr(parser, "words", ())  # type: ignore[attr-defined]  # the command line, for error hints
    add_source_arguments(check)
    check.add_argument("--min-size", type=side_in_px, help="flag images smaller than this (e.g. the crop size)")
    check.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from jdrl.data.pairs import discover_pairs, validate
    from jdrl.progress import bar

    apply_max_pixels(args)
    # every image is decoded once (a truncated body is only found by decoding); the pixel limit is checked
    # from the header first, so a decompression bomb is refused before any decoding
    found = discover_pairs(args.path, args.layout, args.split, args.blur_dir, args.sharp_dir)
    checked = validate(found, min_size=args.min_size, progress=bar("checking", args.quiet))
    print(f"layout:   {checked.layout}" + (f" (split {args.split})" if checked.layout == "dpdd" else ""))
    print(f"pairs:    {len(checked.pairs)} usable of {len(found.pairs)} found")
    sizes = Counter(f"{w}x{h}" for h, w in checked.sizes.values())
    print("sizes:    " + (", ".join(f"{size} ({count})" for size, count in sizes.most_common()) or "-"))
    print(f"problems: {len(checked.problems)}")
    for problem in checked.problems:
        print(f"  {problem}")
    return 1 if checked.problems else 0
