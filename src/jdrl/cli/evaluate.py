"""``jdrl eval``: score a checkpoint (and/or the blurry input) with the paper's protocol (paper, Experiments; Table 4 for the ablations).

Writes ``OUT/metrics.csv`` (per image), ``OUT/summary.json`` (means, options,
versions) and ``OUT/summary.md`` (the table, also printed); with ``--report``
an HTML page with per-image strips. ``DATA`` may be the word ``synthetic``: an
in-memory synthetic set with the true aligned images, so everything runs offline.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from jdrl.cli.arguments import add_trust_code, apply_max_pixels, count, int_in
from jdrl.cli.data import add_source_arguments
from jdrl.errors import UsageError
from jdrl.files import real_path
from jdrl.progress import bar
from jdrl.runtime import choose_device
from jdrl.vocabulary import BORDER_MODES, MASK_MODES, PROTOCOLS, WARP_CONVENTIONS

if TYPE_CHECKING:  # annotations only: `jdrl --help` imports no torch
    from jdrl.evaluation.protocol_record import Protocol

HELP = "score a checkpoint or the blurry input: metrics vs GT, deformed GT (and truth on synthetic data)"

SYNTHETIC = "synthetic"
BORDER_CHOICES = BORDER_MODES  # defined once, in jdrl.vocabulary (torch-free: `jdrl --help` stays fast)
MASK_CHOICES = MASK_MODES


MAX_SYNTHETIC_N = 100_000  # pairs made in memory before scoring: a bound a user reaches only on purpose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jdrl.data.synthetic import MISALIGNMENT_PRESETS

    add_source_arguments(parser)  # with --max-pixels
    parser.set_defaults(split="test")
    for action in parser._actions:  # the shared 'path' argument also takes the word 'synthetic' here
        if action.dest == "path":
            action.metavar = "DATA"
            action.help = "dataset folder, CSV of pairs, or the word 'synthetic' (in-memory synthetic pairs)"
    what = parser.add_argument_group("what to score")
    what.add_argument("--checkpoint", help="jdrl checkpoint or the authors' released file")
    what.add_argument("--net", help="network name for a released checkpoint (unet, mprnet), if not recognised")
    add_trust_code(what)
    what.add_argument("--baseline", choices=["input"], help="also (or only) score the blurry input itself")
    how = parser.add_argument_group("how")
    how.add_argument("--protocol", default="jdrl", choices=PROTOCOLS,
                     help="jdrl (default): exact warp, reflect padding, full bit depth, the chosen flow; paper: the "
                          "released pipeline (PWC-Net flow from --flow-weights, released warp and crops, 8-bit "
                          "reading), for numbers that sit beside the paper's tables")
    how.add_argument("--warp", choices=WARP_CONVENTIONS,
                     help="warp of the deformed GT: exact (jdrl) or released (the authors' flow_resample; paper)")
    how.add_argument("--flow", help="flow estimator for the deformed GT (default: dis; paper: pwcnet)")
    how.add_argument("--flow-weights", help="weight file of a learned flow estimator")
    how.add_argument("--border", choices=BORDER_CHOICES,
                     help="reflect-pad to the net's multiple and crop back (default), or the released code's "
                          "crops (unet: top-left to x16, mprnet: centre to x8; the paper protocol's default)")
    how.add_argument("--mask", default="reference", choices=MASK_CHOICES,
                     help="calibration-mask rule drawn in the report strips (default: %(default)s, as released)")
    how.add_argument("--tile", type=int_in(16, 65_536), help="tile size for tiled inference (large images, little memory)")
    how.add_argument("--overlap", type=int_in(0, 65_536), default=None,
                     help="pixels neighbouring tiles share (default: the network's, as in jdrl deblur; jdrl nets)")
    how.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision inference on CUDA")
    how.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default: %(default)s)")
    how.add_argument("--no-lpips", action="store_true", help="skip LPIPS (it is skipped anyway without its weights)")
    how.add_argument("--limit", type=count, help="score only the first N images")
    how.add_argument("--skip-bad", action="store_true",
                     help="leave out pairs with a missing, unreadable or mismatched file (default: stop and list them)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", help="results folder (default: CHECKPOINT_DIR/eval-DATA, or eval-DATA-input)")
    out.add_argument("--overwrite", action="store_true",
                     help="replace the results (metrics.csv, summary.*, the report's index.html) of an earlier run "
                          "(default: refuse)")
    out.add_argument("--report", help="also write an HTML report (index.html + strips) into this folder")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    synth = parser.add_argument_group("synthetic data (DATA = synthetic)")
    synth.add_argument("--synthetic-n", type=int_in(1, MAX_SYNTHETIC_N), default=8,
                       help=f"number of pairs, made in memory: at most {MAX_SYNTHETIC_N:,} (default: %(default)s)")
    synth.add_argument("--synthetic-size", type=int_in(16, 8192), default=128, help="side in px (default: %(default)s)")
    synth.add_argument("--misalignment", choices=list(MISALIGNMENT_PRESETS),
                       help="misalignment preset (default: jdrl synth's)")
    synth.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="seed of the synthetic pairs (default: %(default)s)")


# ----------------------------------------------------------------------------- pieces


def load_dataset(args: argparse.Namespace) -> tuple[object, dict]:
    """The dataset to score and a description of it for the summary."""

    if args.path == SYNTHETIC:
        from jdrl.data.datasets import SyntheticPairs
        from jdrl.data.synthetic import SynthParams

        base = SynthParams.with_misalignment(args.misalignment, size=args.synthetic_size) if args.misalignment \
            else SynthParams(size=args.synthetic_size)
        n = args.synthetic_n if args.limit is None else min(args.synthetic_n, args.limit)
        from jdrl.config import validate

        dataset = SyntheticPairs(n, validate(base), seed=args.seed)
        return dataset, {"data": SYNTHETIC, "images": n, "seed": args.seed, "synthetic_size": args.synthetic_size,
                         "misalignment": args.misalignment or "default"}
    from jdrl.data.datasets import PairedImageDataset
    from jdrl.data.pairs import MIN_SCORED_SIDE, load_pairs

    found = load_pairs(args.path, args.layout, args.split, args.blur_dir, args.sharp_dir,
                       skip_bad=args.skip_bad, progress=bar("checking data", args.quiet),
                       min_size=MIN_SCORED_SIDE, min_what="minimum that can be scored (SSIM's 7x7 window)")
    pairs = found.pairs[: args.limit] if args.limit is not None else found.pairs
    description = {"data": str(args.path), "layout": found.layout, "images": len(pairs)}
    if found.layout == "dpdd":
        description["split"] = args.split
    return PairedImageDataset(pairs, crop=None), description


def resolve_protocol(args: argparse.Namespace) -> Protocol:
    """``--protocol`` as a :class:`~jdrl.evaluation.protocol_record.Protocol`; the explicit options win.

    ``--flow``, ``--warp``, ``--border`` and ``--no-lpips`` replace the named protocol's fields (an explicit
    ``--border released`` without ``--checkpoint`` is then an error: name the crop).
    """
    from jdrl.evaluation.protocol_record import Protocol

    protocol = Protocol.named(args.protocol, flow_weights=args.flow_weights)
    changes: dict = {"lpips": not args.no_lpips}
    if args.flow:
        changes["flow"] = args.flow
    if args.warp:
        changes["warp"] = args.warp
    if args.border:
        changes.update(border=args.border, baseline_border=None)
    protocol = protocol.replace(**changes)
    if protocol.name == "paper" and protocol.flow == "pwcnet" and not protocol.flow_weights:
        raise UsageError(
            "--protocol paper scores with PWC-Net, as the paper did: give --flow-weights PATH, the PWC-Net file the "
            "JDRL release uses (network-default.pytorch of sniklaus/pytorch-pwc, in the authors' JDRL download); "
            "jdrl never downloads it. Or choose another estimator with --flow (then it is not the paper's protocol)")
    return protocol


def data_name(args: argparse.Namespace) -> str:
    """A short name for default output folders: ``synthetic``, ``DPDD-test``, ``RealDOF``..."""
    if args.path == SYNTHETIC:
        return SYNTHETIC
    path = Path(args.path)
    name = (path.stem if path.is_file() else real_path(path).name) or "data"
    return f"{name}-{args.split}" if args.layout in ("auto", "dpdd") and (path / f"{args.split}_c").is_dir() else name


def default_out(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    if args.checkpoint:
        return Path(args.checkpoint).expanduser().parent / f"eval-{data_name(args)}"
    return Path(f"eval-{data_name(args)}-input")


def refuse_existing_results(args: argparse.Namespace) -> None:
    """Results of an earlier evaluation are never replaced without ``--overwrite`` (checked before any work)."""

    out = default_out(args)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    found = [out / name for name in ("metrics.csv", "summary.json", "summary.md") if (out / name).exists()]
    if args.report and (Path(args.report) / "index.html").exists():
        found.append(Path(args.report) / "index.html")
    if found and not args.overwrite:
        raise UsageError(f"{found[0]} exists (results of an earlier evaluation); choose another --out/--report, "
                         "or pass --overwrite to replace them")


def load_lpips_for(args: argparse.Namespace, device) -> tuple[object | None, str]:
    """The LPIPS metric or ``None``, with the line the summary records about it (loaded once for every result)."""
    if args.no_lpips:
        return None, "LPIPS off (--no-lpips)"
    from jdrl.evaluation.metrics import load_lpips
    from jdrl.evaluation.protocol import LPIPS_NOTE

    metric, reason = load_lpips(device)
    return metric, reason or LPIPS_NOTE


# ----------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    from jdrl.evaluation.panels import PANEL_SIDE, Display
    from jdrl.evaluation.protocol import evaluate
    from jdrl.evaluation.report import (
        StripWriter,
        markdown_table,
        write_report,
        write_results,
    )
    from jdrl.flow import build_flow

    if not args.checkpoint and not args.baseline:
        raise UsageError("give --checkpoint CKPT, --baseline input, or both")
    if args.net and not args.checkpoint:
        raise UsageError("--net names the network of --checkpoint; give a checkpoint")
    if args.overlap is not None and args.tile is not None:  # a bad pair fails before anything loads
        from jdrl.inference import resolve_overlap

        resolve_overlap(args.tile, args.overlap)
    protocol = resolve_protocol(args)
    apply_max_pixels(args)
    refuse_existing_results(args)
    device = choose_device(args.device)
    net, net_info = None, {}
    if args.checkpoint:
        from jdrl.nets import create_net, describe

        net = create_net(args.net, checkpoint=args.checkpoint, trust_code=args.trust_code)
        net_info = describe(net).as_dict()
        net.to(device)
    protocol = protocol.for_net(net)  # the network's released crop; the input, scored beside it, cropped alike
    dataset, data_info = load_dataset(args)
    flow = build_flow(protocol.flow, protocol.flow_weights, device=device)  # built once for every result
    lpips, lpips_note = load_lpips_for(args, device)
    protocol = protocol.replace(lpips=lpips is not None)  # the metric loaded once, or none to be had
    report_dir = Path(args.report) if args.report else None
    strips = StripWriter(report_dir) if report_dir is not None else None
    common = dict(protocol=protocol, flow=flow, lpips=lpips, tile=args.tile, overlap=args.overlap, amp=args.amp,
                  device=device)
    info = {**data_info, "protocol": protocol.name, "flow": protocol.flow, "flow_weights": protocol.flow_weights,
            "lpips": lpips_note, "reading": protocol.reading}

    results = []
    if net is not None:
        label = f"{net_info['name']} ({Path(args.checkpoint).name})"
        checkpoint = {"path": str(args.checkpoint), **{k: v for k, v in net_info.items() if k != "path"}}
        results.append(evaluate(dataset, net, **common, label=label, progress=bar(f"eval {label}", args.quiet),
                                display=Display(on_image=strips, panel_size=PANEL_SIDE, mask_mode=args.mask),
                                info={**info, "checkpoint": checkpoint}))
    if args.baseline == "input":
        first = strips if net is None else None  # strips show the first result
        results.append(evaluate(dataset, None, **common, label="input", progress=bar("eval input", args.quiet),
                                display=Display(on_image=first, panel_size=PANEL_SIDE, mask_mode=args.mask),
                                info=info))

    out = default_out(args)
    paths = write_results(results, out)
    print(markdown_table(results))
    print(f"\nwrote {paths['csv']}, {paths['json'].name}, {paths['md'].name}")
    if lpips is None:
        print(f"note: {lpips_note}")
    if report_dir is not None:
        page = write_report(results, report_dir, strips=strips.paths)
        print(f"report: {page}")
    return 0
