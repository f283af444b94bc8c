"""Blur map vs the true circle of confusion: rank correlation on held-out synthetic pairs.

    python benchmarks/blur_map.py --append docs/RESULTS.md          # trains a small JDRL model first (demo settings)
    python benchmarks/blur_map.py --checkpoint RUN/last.pt --pairs 24

The blur map (``jdrl deblur --blur-map``, :mod:`jdrl.reblur.blur_map`) is read off a trained reblurring module. On
``jdrl synth``-style pairs the true circle-of-confusion radius of every blurry pixel is known (``SyntheticPair.coc``,
``OUT/coc/*.npy``), so the map can be scored: Spearman's rank correlation between the predicted and the true radius,
pooled over every pixel of the held-out pairs and per pair (mean, sd, min). A border of ``--border`` px is left out
(the reblurring network pads with zeros, the synthetic blur reflects).

Without ``--checkpoint`` it trains the demo's JDRL model (``jdrl.demo``: narrow NAFNet, 128 px pairs with the ``sdd``
misalignment, blur up to 8 px, reblurring width 16) for ``--steps`` steps and uses its ``last.pt``. Rows:

* each map ``METHOD`` of the trained module on the network's output: the blur map as ``jdrl deblur --blur-map``
  writes it;
* the same module given the true aligned sharp image instead of the network's output (is the module's reading of
  the blur limited by what the network restored?);
* the same module untrained (its initial weights: a control that should score ~0);
* a module of the same width trained alone for ``--control-steps`` steps to reblur the *true aligned sharp* image
  of training pairs into the blurry one (what the reblurring term teaches when the deblurring is perfect), given the
  true sharp image: the blur map's ceiling at this scale;
* a cue that needs no network, the negative local gradient energy of the blurry image (``-G_s * |grad I|^2``,
  s = 4 px), for context.

Every network's map is scored as ``jdrl deblur --blur-map`` writes it, in steps of 1/4096 px (the 16-bit PNG); a map
that is then constant over a pair has no rank correlation: the per-pair columns average the pairs where it is
defined and say how many those are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho; NaN when either map is constant (no ranking to compare)."""
    from scipy.stats import spearmanr

    a, b = a.ravel(), b.ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def gradient_cue(blurry: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    import cv2

    grey = blurry @ np.array([0.299, 0.587, 0.114], np.float32)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    return -cv2.GaussianBlur(gx * gx + gy * gy, (0, 0), sigma)


def train_model(steps: int, out: Path, quiet: bool, device: str) -> Path:
    from dataclasses import replace

    from jdrl.demo import JDRL, DemoSettings, from_scratch, make_datasets, variant_config
    from jdrl.training import train

    # from random weights: the demo's from-scratch schedule and blur (jdrl.demo.FROM_SCRATCH), a shorter warm-up
    settings = replace(from_scratch(DemoSettings(steps=steps, val_every=0, device=device)), warmup=max(1, steps // 8))
    train_set, _ = make_datasets(settings)
    folder = train(variant_config(settings, JDRL), run_dir=out, datasets=(train_set, None), quiet=quiet,
                   overwrite=True)
    return folder / "last.pt"


def train_control(steps: int, features: int, seed: int = 0, pairs: int = 48, crop: int = 96, batch: int = 8):
    """A fresh reblurring module trained alone: ``R(true aligned sharp, blurry) ~ blurry`` (Charbonnier, Adam 1e-3),
    random crops of ``pairs`` training pairs (the demo's synthetic settings and training photos)."""
    from jdrl.data.synthetic import DEFAULT_SOURCE_NAMES, default_sources, make_pair, usable_sources
    from jdrl.demo import HELD_OUT, DemoSettings, from_scratch
    from jdrl.losses import charbonnier
    from jdrl.reblur.module import ReblurModule

    params = from_scratch(DemoSettings()).synth  # the blur <= 8 px the documented numbers used
    sources = usable_sources(default_sources([n for n in DEFAULT_SOURCE_NAMES if n not in HELD_OUT]), params)
    data = [make_pair(sources[i % len(sources)][1], params, seed, i, sources[i % len(sources)][0])
            for i in range(pairs)]
    sharp = torch.from_numpy(np.stack([p.aligned for p in data]).transpose(0, 3, 1, 2).copy())
    blurry = torch.from_numpy(np.stack([p.blur for p in data]).transpose(0, 3, 1, 2).copy())
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module = ReblurModule(features=features)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    side = sharp.shape[-1]
    for _ in range(steps):
        index = torch.randint(0, len(data), (batch,), generator=generator)
        top, left = (int(v) for v in torch.randint(0, side - crop + 1, (2,), generator=generator))
        a, b = sharp[index, :, top:top + crop, left:left + crop], blurry[index, :, top:top + crop, left:left + crop]
        loss = charbonnier(module(a, b), b)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.eval()


def held_out_pairs(count: int, seed: int):
    from jdrl.data.synthetic import default_sources, make_pair, usable_sources
    from jdrl.demo import HELD_OUT, DemoSettings, from_scratch

    params = from_scratch(DemoSettings()).synth  # the blur <= 8 px the documented numbers used
    sources = usable_sources(default_sources(HELD_OUT), params)
    return [make_pair(sources[i % len(sources)][1], params, seed, i, sources[i % len(sources)][0])
            for i in range(count)]


def finite_or_none(value):
    """JSON without NaN (strict readers refuse it): an undefined correlation is ``null``."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return None if isinstance(value, float) and not np.isfinite(value) else value


def score(maps: dict[str, list[np.ndarray]], truths: list[np.ndarray], border: int) -> dict[str, dict]:
    inner = (slice(border, -border or None), slice(border, -border or None))
    truth_all = np.concatenate([t[inner].ravel() for t in truths])
    rows = {}
    for name, predicted in maps.items():
        per_pair = [spearman(p[inner], t[inner]) for p, t in zip(predicted, truths)]
        defined = [r for r in per_pair if np.isfinite(r)]
        values = np.concatenate([p[inner].ravel() for p in predicted])
        rows[name] = {"pooled": spearman(values, truth_all),
                      "mean": float(np.mean(defined)) if defined else float("nan"),
                      "sd": float(np.std(defined)) if defined else float("nan"),
                      "min": float(np.min(defined)) if defined else float("nan"),
                      "defined": len(defined), "per_pair": per_pair,
                      "range_px": [float(values.min()), float(values.max())]}
    return rows


def main() -> None:
    from jdrl.inference import deblur_image
    from jdrl.nets import create_net
    from jdrl.reblur.blur_map import METHODS, blur_map_image, decode, encode, load_reblur

    def written(radius: np.ndarray) -> np.ndarray:  # what the 16-bit PNG holds
        return decode(encode(radius))

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a JDRL training checkpoint (default: train one)")
    parser.add_argument("--steps", type=int, default=300, help="training steps without --checkpoint")
    parser.add_argument("--pairs", type=int, default=12, help="held-out pairs scored")
    parser.add_argument("--seed", type=int, default=1, help="seed of the held-out pairs (training uses 0)")
    parser.add_argument("--border", type=int, default=8)
    parser.add_argument("--control-steps", type=int, default=300, help="steps of the reblurring-only control (0: none)")
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
        features = reblur.kpn.conv_first.out_channels
        torch.manual_seed(0)
        untrained = type(reblur)(reblur.kernel, reblur.support, features=features).eval()
        control_start = time.perf_counter()
        control = train_control(args.control_steps, features) if args.control_steps else None
        control_seconds = time.perf_counter() - control_start
        pairs = held_out_pairs(args.pairs, args.seed)
        maps: dict[str, list[np.ndarray]] = {}
        for pair in pairs:
            restored = deblur_image(net, pair.blur)
            for method in METHODS:
                maps.setdefault(f"trained R on the network's output, {method}", []).append(
                    written(blur_map_image(reblur, restored, pair.blur, method)))
            for method in METHODS:
                maps.setdefault(f"trained R on the true sharp image, {method}", []).append(
                    written(blur_map_image(reblur, pair.aligned, pair.blur, method)))
            for method in METHODS:
                maps.setdefault(f"untrained R, {method}", []).append(
                    written(blur_map_image(untrained, restored, pair.blur, method)))
            if control is not None:
                for method in METHODS:
                    maps.setdefault(f"control: R trained alone on true sharp images ({args.control_steps} steps), "
                                    f"{method}", []).append(written(blur_map_image(control, pair.aligned, pair.blur, method)))
            maps.setdefault("no network: -local gradient energy", []).append(gradient_cue(pair.blur))
        rows = score(maps, [pair.coc for pair in pairs], args.border)
    def number(value: float) -> str:
        return f"{value:.3f}" if np.isfinite(value) else "—"

    lines = ["| blur map | values (px) | Spearman, pooled | per pair: mean ± sd | per pair: min | pairs defined |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        values = "(not px)" if name.startswith("no network") else f"{r['range_px'][0]:.3g} … {r['range_px'][1]:.3g}"
        spread = f"{number(r['mean'])} ± {number(r['sd'])}" if r["defined"] else "—"
        lines.append(f"| {name} | {values} | {number(r['pooled'])} | {spread} | {number(r['min'])} | "
                     f"{r['defined']} of {len(pairs)} |")
    table = "\n".join(lines)
    source = f"`{args.checkpoint}`" if args.checkpoint else f"the demo's JDRL model trained {args.steps} steps here"
    print(table)
    print(f"({len(pairs)} held-out pairs, {source}; {time.perf_counter() - start:.0f} s, training "
          f"{train_seconds:.0f} s, control {control_seconds:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": finite_or_none(rows), "pairs": len(pairs), "checkpoint": args.checkpoint,
                                               "steps": None if args.checkpoint else args.steps,
                                               "control_steps": args.control_steps,
                                               "seconds": time.perf_counter() - start}, indent=2, allow_nan=False) + "\n")
    if args.append:
        machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}")
        text = (f"\n### Blur map vs the true circle of confusion ({len(pairs)} held-out synthetic pairs)\n\n"
                f"`python benchmarks/blur_map.py {' '.join(sys.argv[1:])}` — {machine}, {time.strftime('%Y-%m-%d')}, "
                f"{source}, {time.perf_counter() - start:.0f} s.\n\n{table}\n")
        with open(args.append, "a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
