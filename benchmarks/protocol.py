"""How much each difference between jdrl's protocol and the paper's released one moves the numbers.

    python benchmarks/protocol.py --data ../shared/data/dpdd1024 --spynet-weights ../shared/weights/spynet_sintel_final.pth

Scores the blurry input itself (no network: the differences are then the protocol's alone) on a
folder of real pairs, one protocol choice at a time: the warp of the deformed GT (exact vs the
authors' ``flow_resample``), the flow estimator (every one that runs offline here), 8-bit vs full
bit-depth reading, and the released border crop. Prints a Markdown table (PSNR/SSIM vs GT and vs
the deformed GT) and, with ``--append FILE``, appends it.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path


def rows(args) -> list[tuple[str, dict]]:
    """(label, evaluate() options + reading) for each protocol variant."""
    variants = [
        ("jdrl default: dis, exact warp, full depth", {"flow": "dis", "warp": "exact", "eight_bit": False}),
        ("released warp (flow_resample)", {"flow": "dis", "warp": "released", "eight_bit": False}),
        ("8-bit reading (as released)", {"flow": "dis", "warp": "exact", "eight_bit": True}),
        ("released border crop (unet: top-left x16)", {"flow": "dis", "warp": "exact", "eight_bit": False,
                                                       "border": "released-unet"}),
        ("all released choices, dis flow", {"flow": "dis", "warp": "released", "eight_bit": True,
                                            "border": "released-unet"}),
    ]
    if args.spynet_weights:
        variants += [
            ("spynet flow, exact warp", {"flow": "spynet", "warp": "exact", "eight_bit": False}),
            ("spynet flow, released warp", {"flow": "spynet", "warp": "released", "eight_bit": False}),
        ]
    if args.pwcnet_weights:
        variants += [("paper protocol: pwcnet, released warp, 8-bit, crop",
                      {"flow": "pwcnet", "warp": "released", "eight_bit": True, "border": "released-unet"})]
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/dpdd1024", help="a folder of pairs (jdrl data check layouts)")
    parser.add_argument("--spynet-weights", help="SpyNet weights (adds the SpyNet rows)")
    parser.add_argument("--pwcnet-weights", help="the authors' PWC-Net file (adds the paper-protocol row)")
    parser.add_argument("--limit", type=int, help="only the first N pairs")
    parser.add_argument("--append", help="append the table to this Markdown file")
    args = parser.parse_args()

    import torch

    from jdrl.data.datasets import PairedImageDataset
    from jdrl.data.pairs import load_pairs
    from jdrl.evaluation.protocol import EightBitReading, evaluate
    from jdrl.flow import build_flow

    found = load_pairs(args.data)
    pairs = found.pairs[: args.limit] if args.limit else found.pairs
    full = PairedImageDataset(pairs, crop=None)
    weights = {"spynet": args.spynet_weights, "pwcnet": args.pwcnet_weights}
    flows: dict = {}
    lines = [
        f"`python benchmarks/protocol.py --data {args.data}"
        + (" --spynet-weights ..." if args.spynet_weights else "") + "` — "
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}; the blurry input scored against the GT on {len(pairs)} pairs of {args.data}.",
        "",
        "| protocol choice | PSNR vs GT | SSIM vs GT | PSNR vs deformed GT | SSIM vs deformed GT | seconds |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for label, options in rows(args):
        start = time.perf_counter()
        name = options["flow"]
        if name not in flows:
            flows[name] = build_flow(name, weights.get(name))
        dataset = EightBitReading(full) if options["eight_bit"] else full
        means = evaluate(dataset, None, flow=flows[name], warp=options["warp"],
                         border=options.get("border", "reflect")).means
        line = (f"| {label} | {means['psnr']:.2f} | {means['ssim']:.4f} | {means['psnr_deformed']:.2f} | "
                f"{means['ssim_deformed']:.4f} | {time.perf_counter() - start:.0f} |")
        lines.append(line)
        print(line, flush=True)
    if args.append:
        with open(Path(args.append), "a") as handle:
            handle.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
