"""``jdrl deblur``: deblur photos of any size with a trained checkpoint (arguments only; the work is
:func:`jdrl.deblurring.deblur_files`)."""

from __future__ import annotations

import argparse
import sys
import time

from jdrl.cli.arguments import MAX_SIDE, add_max_pixels, add_trust_code, apply_max_pixels
from jdrl.errors import UsageError
from jdrl.models import DEFAULT_MODEL, MODELS, model_id
from jdrl.runtime import AMP_CHOICES, DEVICE_HELP, choose_device

HELP = "deblur images of any size with a trained checkpoint or the bundled model (tiled, 8/16-bit PNG out)"


def tile_argument(text: str) -> int | str:
    """``--tile``: a positive number of pixels or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or 'auto', got {text!r}") from None
    if not 0 < value <= MAX_SIDE:
        raise argparse.ArgumentTypeError(f"tile must be between 1 and {MAX_SIDE} px, got {value}")
    return value


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if not 0 <= value <= MAX_SIDE:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SIDE} px, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (not recursive) or glob patterns")
    parser.add_argument("-o", "--out", required=True, help="output folder (gets <input stem>.png)")
    parser.add_argument("--checkpoint", help="a jdrl checkpoint, model folder, jdrl:NAME (a bundled model, jdrl nets), "
                        "hf:ORG/NAME or an authors' released file (default: the bundled model jdrl:synth-nafnet16, "
                        "trained on synthetic defocus only: docs/MODEL_CARD.md)")
    parser.add_argument("--net", help="network name, to check the checkpoint or pick one in a released file")
    add_trust_code(parser)
    parser.add_argument(
        "--tile",
        type=tile_argument,
        default="auto",
        help="run in overlapping tiles of this side (bounded memory); 'auto' (default): sized to the network "
        "(jdrl nets lists it; e.g. the paper's UNet runs whole up to 2 MP, else in tiles of 512 on the CPU / "
        "1024 on CUDA)",
    )
    parser.add_argument(
        "--overlap",
        type=non_negative,
        help="pixels shared by neighbouring tiles; smaller is faster but can leave faint seams (default: the "
        "network's, at most half the tile: what reproduces its whole-image output, e.g. 256 for the paper's UNet; "
        "256 for a network that states none)",
    )
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), help="output bit depth (default: that of each input)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")
    parser.add_argument("--blur-map", nargs="?", const="wpn", choices=("wpn", "kernel"), metavar="METHOD",
                        help="also write each image's defocus map from the checkpoint's reblurring module: "
                             "OUT/blur_map/<stem>.png (16-bit, radius in px = value / 4096) and a colour preview in "
                             "OUT/blur_map_preview/; METHOD wpn (default: the expected kernel radius of its size "
                             "mixture) or kernel (the radius of the equal-moment disk)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--amp", choices=AMP_CHOICES, help="mixed precision on CUDA (ignored on the CPU)")
    add_max_pixels(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def default_checkpoint(net: str | None) -> str:
    """Without ``--checkpoint``: the bundled model, said in one line (also with --quiet: it decides the result)."""

    model = MODELS[DEFAULT_MODEL]
    if net is not None and net != model.net:  # random weights of another network deblur nothing
        raise UsageError(f"--net {net} without --checkpoint: give the weights to run (the bundled model, used "
                         f"without --checkpoint, is a {model.net})")
    checkpoint = model_id(DEFAULT_MODEL)
    print(f"no --checkpoint: using the bundled model {checkpoint} ({model.summary})")
    return checkpoint


def run(args: argparse.Namespace) -> int:
    import torch

    from jdrl.deblurring import deblur_files
    from jdrl.inference import resolve_overlap
    from jdrl.nets import create_net

    start = time.perf_counter()
    apply_max_pixels(args)  # an image over the limit is listed as not deblurred; the others still run
    device = choose_device(args.device)
    if args.tile != "auto":  # a bad --overlap fails before the network loads (with 'auto' the network sizes the tile)
        resolve_overlap(args.tile, args.overlap, device.type)
    checkpoint = args.checkpoint if args.checkpoint is not None else default_checkpoint(args.net)
    net = create_net(args.net, checkpoint=checkpoint, trust_code=args.trust_code).to(device)
    reblur = None
    if args.blur_map:  # a checkpoint without a reblurring module is refused before any image runs
        from jdrl.reblur.blur_map import load_reblur

        reblur = load_reblur(checkpoint).to(device)
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    report = deblur_files(args.inputs, args.out, net, tile=args.tile, overlap=args.overlap, amp=args.amp,
                          bit_depth=args.bit_depth, overwrite=args.overwrite, quiet=args.quiet, reblur=reblur,
                          blur_map_method=args.blur_map or "wpn")
    total = len(report.written) + len(report.failures)
    seconds = time.perf_counter() - start
    print(f"deblurred {len(report.written)} of {total} input(s) into {args.out} in {seconds:.1f} s on {device}")
    if reblur is not None:
        print(f"  blur maps ({args.blur_map}): {len(report.blur_maps)} in {args.out}/blur_map (16-bit, px = value / "
              f"4096), previews in {args.out}/blur_map_preview")
    if report.failures:
        print(f"jdrl deblur: {len(report.failures)} input(s) not deblurred:", file=sys.stderr)
        for failure in report.failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0
