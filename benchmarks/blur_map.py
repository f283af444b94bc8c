"""Blur map vs the true circle of confusion: rank correlation on held-out synthetic pairs.

    python benchmarks/blur_map.py --append docs/RESULTS.md          # trains a small JDRL model first (demo settings)
    python benchmarks/blur_map.py --checkpoint RUN/last.pt --pairs 24

The blur map (``jdrl deblur --blur-map``, :mod:`jdrl.reblur.blur_map`) is read off a trained reblurring module. On
``jdrl synth``-style pairs the true circle-of-confusion radius of every blurry pixel is known (``SyntheticPair.coc``,
``OUT/coc/*.npy``), so the map can be scored: Spearman's rank correlation between the predicted and the true radius,
pooled over every pixel of the held-out pairs and per pair (mean, sd, min). A border of ``--border`` px is left out
(the reblurring network pads with zeros, the synthetic blur reflects).

Without ``--checkpoint`` it trains the demo's JDRL model (``jdrl.demo``: narrow NAFNet, 128 px pairs with the ``sdd``
misalignment, blur up to 8 px, reblurring width 16) for ``--steps`` steps and uses its ``last.pt``. Rows: each map
``METHOD`` of the trained module; the same module untrained (its initial weights: a control that should score ~0); and
a cue that needs no network, the negative local gradient energy of the blurry image (``-G_s * |grad I|^2``, s = 4 px),
for context.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def gradient_cue(blurry: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    import cv2

    grey = blurry @ np.array([0.299, 0.587, 0.114], np.float32)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    return -cv2.GaussianBlur(gx * gx + gy * gy, (0, 0), sigma)


def train_model(steps: int, out: Path, quiet: bool, device: str) -> Path:
    from jdrl.demo import JDRL, DemoSettings, make_datasets, variant_config
    from jdrl.training import train

    settings = DemoSettings(steps=steps, val_every=0, warmup=max(1, steps // 8), device=device)
    train_set, _ = make_datasets(settings)
    folder = train(variant_config(settings, JDRL), run_dir=out, datasets=(train_set, None), quiet=quiet,
                   overwrite=True)
    return folder / "last.pt"


def held_out_pairs(count: int, seed: int):
    from jdrl.data.synthetic import default_sources, make_pair, usable_sources
    from jdrl.demo import HELD_OUT, DemoSettings

    params = DemoSettings().synth
    sources = usable_sources(default_sources(HELD_OUT), params)
    return [make_pair(sources[i % len(sources)][1], params, seed, i, sources[i % len(sources)][0])
            for i in range(count)]


def score(maps: dict[str, list[np.ndarray]], truths: list[np.ndarray], border: int) -> dict[str, dict]:
    inner = (slice(border, -border or None), slice(border, -border or None))
    truth_all = np.concatenate([t[inner].ravel() for t in truths])
    rows = {}
    for name, predicted in maps.items():
        per_pair = [spearman(p[inner], t[inner]) for p, t in zip(predicted, truths)]
        rows[name] = {"pooled": spearman(np.concatenate([p[inner].ravel() for p in predicted]), truth_all),
                      "mean": float(np.mean(per_pair)), "sd": float(np.std(per_pair)), "min": float(np.min(per_pair)),
                      "per_pair": per_pair}
    return rows


def main() -> None:
    from jdrl.inference import deblur_image
    from jdrl.nets import create_net
    from jdrl.reblur.blur_map import METHODS, blur_map_image, load_reblur

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a JDRL training checkpoint (default: train one)")
    parser.add_argument("--steps", type=int, default=300, help="training steps without --checkpoint")
    parser.add_argument("--pairs", type=int, default=12, help="held-out pairs scored")
    parser.add_argument("--seed", type=int, default=1, help="seed of the held-out pairs (training uses 0)")
    parser.add_argument("--border", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--run-dir", help="where the trained model goes (default: a temporary folder)")
    parser.add_argument("--json", help="write the numbers to this file")
    parser.add_argument("--append", help="append the table to this Markdown file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(args.checkpoint) if args.checkpoint else train_model(
            args.steps, Path(args.run_dir or scratch) / "run", args.quiet, args.device)
        train_seconds = time.perf_counter() - start
        net = create_net(checkpoint=checkpoint, map_location=args.device).eval()
        reblur = load_reblur(checkpoint).to(args.device)
        torch.manual_seed(0)
        untrained = type(reblur)(reblur.kernel, reblur.support, features=reblur.kpn.conv_first.out_channels).eval()
        pairs = held_out_pairs(args.pairs, args.seed)
        maps: dict[str, list[np.ndarray]] = {f"trained R, {m}": [] for m in METHODS}
        maps.update({f"untrained R, {m}": [] for m in METHODS})
        maps["no network: -local gradient energy"] = []
        for pair in pairs:
            restored = deblur_image(net, pair.blur)
            for method in METHODS:
                maps[f"trained R, {method}"].append(blur_map_image(reblur, restored, pair.blur, method))
                maps[f"untrained R, {method}"].append(blur_map_image(untrained, restored, pair.blur, method))
            maps["no network: -local gradient energy"].append(gradient_cue(pair.blur))
        rows = score(maps, [pair.coc for pair in pairs], args.border)
    lines = ["| blur map | Spearman, pooled | per pair: mean ± sd | per pair: min |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {r['pooled']:.3f} | {r['mean']:.3f} ± {r['sd']:.3f} | {r['min']:.3f} |"
              for name, r in rows.items()]
    table = "\n".join(lines)
    source = f"`{args.checkpoint}`" if args.checkpoint else f"the demo's JDRL model trained {args.steps} steps here"
    print(table)
    print(f"({len(pairs)} held-out pairs, {source}; {time.perf_counter() - start:.0f} s, training "
          f"{train_seconds:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "pairs": len(pairs), "checkpoint": args.checkpoint,
                                               "steps": None if args.checkpoint else args.steps}, indent=2))
    if args.append:
        machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
        text = (f"\n### Blur map vs the true circle of confusion ({len(pairs)} held-out synthetic pairs)\n\n"
                f"`python benchmarks/blur_map.py {' '.join(sys.argv[1:])}` — {machine}, {time.strftime('%Y-%m-%d')}, "
                f"{source}, {time.perf_counter() - start:.0f} s.\n\n{table}\n")
        with open(args.append, "a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
