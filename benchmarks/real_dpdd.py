"""Real-data check: the blurry input and a checkpoint on real DPDD pairs, vs GT and vs deformed GT.

    python benchmarks/real_dpdd.py --checkpoint jdrl-demo/runs/jdrl/last.pt --append docs/RESULTS.md
    python benchmarks/real_dpdd.py --data ../shared/data/dpdd1024 --checkpoint A.pt --checkpoint B.pt

``--data`` is any dataset ``jdrl eval`` reads (default: ``../shared/data/dpdd1024``,
12 real DPDD test pairs at 1024x1024). Prints one Markdown table (a row for the
input and one per checkpoint) and, with ``--append``, appends it with the
command and machine to a results file.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

COLUMNS = ("psnr", "ssim", "mae", "psnr_deformed", "ssim_deformed", "mae_deformed", "flow_error_input")


def main() -> None:
    from jdrl.nets import create_net
    from jdrl.data.datasets import PairedImageDataset
    from jdrl.data.pairs import load_pairs
    from jdrl.evaluation.protocol import evaluate
    from jdrl.flow import build_flow
    from jdrl.progress import bar

    default_data = Path(__file__).resolve().parents[2] / "shared" / "data" / "dpdd1024"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(default_data))
    parser.add_argument("--checkpoint", action="append", default=[])
    parser.add_argument("--flow", default="dis")
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--append", help="append the table to this Markdown file")
    args = parser.parse_args()

    pairs = load_pairs(args.data)
    dataset = PairedImageDataset(pairs.pairs, crop=None)
    flow = build_flow(args.flow)
    rows = {"input": evaluate(dataset, None, flow=flow, progress=bar("input")).means}
    for path in args.checkpoint:
        net = create_net(checkpoint=path)
        rows[Path(path).parent.name + "/" + Path(path).name] = evaluate(
            dataset, net, flow=flow, tile=args.tile, progress=bar(Path(path).name)).means
    header = "| model | " + " | ".join(COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS)
    lines = [header] + [f"| {name} | " + " | ".join(f"{means.get(c, float('nan')):.4g}" for c in COLUMNS) + " |"
                        for name, means in rows.items()]
    table = "\n".join(lines)
    print(table)
    if args.append:
        machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
        text = (f"\n### Real DPDD pairs ({len(dataset)} pairs of {args.data})\n\n"
                f"`python benchmarks/real_dpdd.py {' '.join(sys.argv[1:])}` — {machine}, "
                f"{time.strftime('%Y-%m-%d')}, flow {args.flow}. `flow_error_input` is the mean flow (px) from "
                f"the output to the blurry input: the geometric change the network made.\n\n{table}\n")
        with open(args.append, "a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
