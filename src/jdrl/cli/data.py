"""``jdrl data check``: what a dataset folder holds and everything wrong with it."""

from __future__ import annotations

import argparse
from collections import Counter

from jdrl.cli.arguments import add_max_pixels, apply_max_pixels, float_in, int_in, side_in_px
from jdrl.errors import UsageError
from jdrl.progress import bar
from jdrl.runtime import choose_device
from jdrl.vocabulary import MASK_MODES

HELP = "inspect datasets (jdrl data check PATH [--misalignment -o REPORT])"


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
    add_misalignment_arguments(check)


def add_misalignment_arguments(parser: argparse.ArgumentParser) -> None:
    """``--misalignment`` and its options (jdrl.data.alignment; README, "jdrl data check --misalignment")."""

    group = parser.add_argument_group("misalignment report (--misalignment)")
    group.add_argument("--misalignment", action="store_true",
                       help="also measure how misaligned each pair is (global zoom/shift/rotation, non-rigid residual, "
                            "calibration-mask loss, exposure) and recommend pixel loss, JDRL or pairs to drop")
    group.add_argument("-o", "--out", help="folder for the report (misalignment.csv/.json, histograms.png, index.html)")
    group.add_argument("--flow", default="dis", help="flow estimator (jdrl flows; default: %(default)s)")
    group.add_argument("--flow-weights", help="weight file of a learned flow estimator")
    group.add_argument("--lowpass", type=float_in(0.0, 64.0), default=1.0,
                       help="Gaussian sigma in px applied to both images before the flow (default: %(default)s)")
    group.add_argument("--max-side", type=int_in(32, 16384), default=1024,
                       help="images are shrunk to this longer side for the flow (default: %(default)s)")
    group.add_argument("--model", choices=("similarity", "affine"), default="similarity",
                       help="global motion model (default: %(default)s)")
    group.add_argument("--mask", action="append", choices=[m for m in MASK_MODES if m != "none"], dest="masks",
                       help="calibration mask whose dropped share is reported (repeatable; default: reference and "
                            "parametric)")
    group.add_argument("--worst", type=int_in(0, 1000), default=6,
                       help="pairs shown as pictures in the report, worst first (default: %(default)s)")
    group.add_argument("--aligned-px", type=float_in(0.0, 1000.0), default=1.0,
                       help="a pair is aligned when its global motion moves no pixel more than this and the median "
                            "non-rigid residual is at most --residual-px (default: %(default)s)")
    group.add_argument("--residual-px", type=float_in(0.0, 1000.0), default=0.75,
                       help="see --aligned-px (default: %(default)s)")
    group.add_argument("--min-match", type=float_in(-1.0, 1.0), default=0.3,
                       help="a pair is dropped when the correlation of its images after global alignment is below "
                            "this (default: %(default)s)")
    group.add_argument("--device", default="auto", help="device of a learned flow estimator (default: %(default)s)")
    group.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")


def run(args: argparse.Namespace) -> int:
    from jdrl.data.pairs import discover_pairs, validate

    apply_max_pixels(args)
    report_options = misalignment_options(args)  # a bad combination fails before any image is read
    estimator = None
    if report_options is not None:  # ... and so does an unknown flow estimator or a missing weight file
        from jdrl.flow import build_flow

        device = choose_device(args.device) if report_options.flow != "dis" else None
        estimator = build_flow(report_options.flow, report_options.flow_weights, device)
    # every image is decoded once (a truncated body is only found by decoding); the pixel limit is checked
    # from the header first, so a decompression bomb is refused before any decoding
    found = discover_pairs(args.path, args.layout, args.split, args.blur_dir, args.sharp_dir)
    if report_options is not None:
        from jdrl.evaluation.misalignment import check_output

        check_output(args.out, [p for pair in found.pairs for p in (pair.blur, pair.sharp)], args.overwrite)
    min_size, min_what = args.min_size, "crop"
    if report_options is not None:
        from jdrl.data.alignment import MIN_SIDE

        if (min_size or 0) < MIN_SIDE:
            min_size, min_what = MIN_SIDE, "side the misalignment report measures"
    checked = validate(found, min_size=min_size, progress=bar("checking", args.quiet), min_what=min_what)
    print(f"layout:   {checked.layout}" + (f" (split {args.split})" if checked.layout == "dpdd" else ""))
    print(f"pairs:    {len(checked.pairs)} usable of {len(found.pairs)} found")
    sizes = Counter(f"{w}x{h}" for h, w in checked.sizes.values())
    print("sizes:    " + (", ".join(f"{size} ({count})" for size, count in sizes.most_common()) or "-"))
    print(f"problems: {len(checked.problems)}")
    for problem in checked.problems:
        print(f"  {problem}")
    if report_options is None:
        return 1 if checked.problems else 0
    if not checked.pairs:
        print("misalignment: no usable pair to measure")
        return 1
    dropped = run_misalignment(args, checked, report_options, estimator)
    return 1 if checked.problems or dropped else 0


def misalignment_options(args: argparse.Namespace):
    """The :class:`~jdrl.data.alignment.MisalignmentConfig` of the arguments, or ``None`` without
    ``--misalignment``; options of the report without ``--misalignment``, or no ``--out``, are usage errors."""

    if not args.misalignment:
        given = [flag for flag, value in (("-o/--out", args.out), ("--flow-weights", args.flow_weights),
                                          ("--mask", args.masks), ("--overwrite", args.overwrite)) if value]
        if given:
            raise UsageError(f"{', '.join(given)} belong(s) to the misalignment report: add --misalignment")
        return None
    if not args.out:
        raise UsageError("--misalignment writes a report: give its folder with -o DIR")
    from jdrl.data.alignment import MisalignmentConfig, Thresholds

    thresholds = Thresholds(aligned_px=args.aligned_px, residual_px=args.residual_px, min_match=args.min_match)
    return MisalignmentConfig(flow=args.flow, flow_weights=args.flow_weights, lowpass=args.lowpass,
                              max_side=args.max_side, model=args.model,
                              masks=tuple(dict.fromkeys(args.masks)) if args.masks else ("reference", "parametric"),
                              worst=args.worst, thresholds=thresholds)


PRINTED_ROWS = 20  # pairs listed on the terminal (all of them are in the report)


def run_misalignment(args: argparse.Namespace, checked, config, estimator) -> int:
    """Measure, print the summary, write the report; returns how many pairs are to be dropped."""
    from jdrl.data.alignment import misalignment_report

    report = misalignment_report(checked, config, estimator=estimator, progress=bar("misalignment", args.quiet))
    paths = report.write(args.out, overwrite=args.overwrite)
    print(summary_text(report))
    print(f"report:   {paths['html']} (table: {paths['csv']}, {paths['json']})")
    return len(report.recommendation.drop)


def summary_text(report) -> str:
    """The printed summary: a line per pair (worst first, at most PRINTED_ROWS), the medians, the recommendation."""
    lines = ["", f"misalignment (flow {report.config.flow}, {report.seconds:.1f} s):",
             f"  {'pair':24s} {'verdict':10s} {'zoom':>7s} {'shift x':>8s} {'shift y':>8s} {'rot deg':>8s} "
             f"{'resid px':>8s} {'disp95':>7s} {'drop ref':>8s} {'expo':>6s} {'match':>6s}"]
    mask = report.config.masks[0] if report.config.masks else None
    worst = report.worst()
    for p in worst[:PRINTED_ROWS]:
        drop = f"{p.mask_drop[mask]:8.3f}" if mask else f"{'-':>8s}"
        lines.append(f"  {p.name[:24]:24s} {p.verdict:10s} {p.zoom:7.4f} {p.shift_x:+8.2f} {p.shift_y:+8.2f} "
                     f"{p.rotation_deg:+8.3f} {p.residual_median_px:8.2f} {p.displacement_p95_px:7.2f} {drop} "
                     f"{p.exposure:6.3f} {p.match:6.3f}")
    if len(worst) > PRINTED_ROWS:
        lines.append(f"  ... and {len(worst) - PRINTED_ROWS} more (all in the report)")
    summary = report.summary()
    medians = summary["medians"]
    lines.append("  verdicts: " + ", ".join(f"{n} {v}" for v, n in summary["verdicts"].items()))
    lines.append(f"  medians:  zoom {medians['zoom']:.4f}, |shift| {_median_shift(report):.2f} px, global max "
                 f"{medians['global_max_px']:.2f} px, residual {medians['residual_median_px']:.2f} px, "
                 f"displacement p95 {medians['displacement_p95_px']:.2f} px, exposure {medians['exposure']:.3f}")
    lines.append(f"recommendation: {report.recommendation}")
    lines += [f"  note: {note}" for note in report.recommendation.notes]
    return "\n".join(lines)


def _median_shift(report) -> float:
    import math
    import statistics

    return statistics.median(math.hypot(p.shift_x, p.shift_y) for p in report.pairs)
