"""Pretrain the bundled model: a network trained from scratch on synthetic defocus pairs of the demo's photos.

    python benchmarks/pretrain.py --out bench-out/pretrain                       # the recipe (defaults below)
    python benchmarks/pretrain.py --out bench-out/pretrain --export src/jdrl/models/demo-nafnet
    python benchmarks/pretrain.py --steps 1500 --val-every 250 --r-max 12 --out bench-out/try-r12   # a short try

The training pairs are made only from the bundled scikit-image photos the demo trains on
(``jdrl.data.synthetic.DEFAULT_SOURCE_NAMES`` minus ``jdrl.demo.HELD_OUT``); the held-out photos
are only scored. By default the pairs are **aligned** (misalignment preset ``none``, and the target
is the true aligned image): pretraining is the project making the clean supervision that real
captures lack; learning from misaligned pairs is what the demo then shows JDRL doing.

Every ``--val-every`` steps the run scores the demo's own held-out pairs (the 12 pairs ``jdrl demo``
scores at its defaults: ``sdd`` misalignment, blur <= 8 px, against the true aligned image), so the
curve is comparable to every demo table; nothing is selected on it (the model is the last step's).
At the end it scores the last model on held-out pairs at several blur levels (``--score-r-max``).

Writes ``OUT/run/`` (the training run: ``train.log``, ``log.csv``, ``val.csv``, ``model/``),
``OUT/settings.json`` (every setting, versions, seconds), ``OUT/curve.md`` (the curve and the
final scores). ``--export DIR`` copies ``OUT/run/model/`` (``config.json`` + ``model.safetensors``)
to ``DIR``, which must not exist unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

#: the recipe: what bundled the shipped model (docs/MODEL_CARD.md); the short tries that chose it are in
#: docs/RESULTS.md ("Pretraining the bundled model")
RECIPE = dict(steps=12000, batch=8, crop=96, lr=2e-3, pairs=1536, size=128, r_max=8.0, misalignment="none",
              seed=100, val_every=1000, threads=2)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out/pretrain", help="output folder (default: %(default)s)")
    parser.add_argument("--net", default="nafnet_w32", help="registered network name (default: %(default)s)")
    parser.add_argument("--net-options", type=json.loads, default=None,
                        help="its options as JSON (default: the demo's, jdrl.demo.DEMO_NAFNET)")
    for name in ("steps", "batch", "crop", "pairs", "size", "seed", "val_every", "threads"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=RECIPE[name],
                            help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=RECIPE["lr"], help="peak learning rate, cosine decay to 0 "
                        "(default: %(default)s)")
    parser.add_argument("--r-max", type=float, default=RECIPE["r_max"],
                        help="largest circle-of-confusion radius of the training pairs, px (default: %(default)s)")
    parser.add_argument("--misalignment", default=RECIPE["misalignment"],
                        help="misalignment preset of the training pairs (default: %(default)s = aligned)")
    parser.add_argument("--misaligned-targets", action="store_true",
                        help="train on the misaligned ground truth (default: the true aligned image)")
    parser.add_argument("--score-r-max", type=float, nargs="*", default=[4.0, 8.0, 12.0],
                        help="blur levels of the final held-out scores (default: %(default)s)")
    parser.add_argument("--export", help="copy the run's model folder here (config.json + model.safetensors)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT/run or --export folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT/run from its newest checkpoint (an interrupted run; same settings)")
    return parser.parse_args(argv)


def held_out_set(r_max: float, seed: int = 0):
    """The demo's held-out pairs (its defaults, only the blur level changed): 12 pairs of 128 px, sdd."""
    from jdrl.demo import DemoSettings, make_datasets

    defaults = DemoSettings()
    settings = replace(defaults, seed=seed, synth=replace(defaults.synth, r_max=r_max))
    return make_datasets(settings)[1]


def main(argv=None) -> int:
    args = parse_args(argv)
    import cv2
    import torch

    from jdrl.data.datasets import SyntheticPairs
    from jdrl.data.synthetic import DEFAULT_SOURCE_NAMES, SynthParams, default_sources
    from jdrl.demo import DEMO_NAFNET, HELD_OUT
    from jdrl.evaluation.protocol import evaluate
    from jdrl.flow import build_flow
    from jdrl.losses import JDRLConfig
    from jdrl.nets import count_parameters, create_net
    from jdrl.runtime import versions
    from jdrl.training import train
    from jdrl.training.config import DataConfig, NetConfig, OptimConfig, RunConfig, ScheduleConfig, TrainConfig
    from jdrl.training.data import AlignedTargets

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    out = Path(args.out)
    run_dir = out / "run"
    if args.export and Path(args.export).exists() and not args.overwrite:
        raise SystemExit(f"{args.export} exists; pass --overwrite to replace it")
    if run_dir.exists() and not (args.overwrite or args.resume):
        raise SystemExit(f"{run_dir} exists; pass --resume to continue it or --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    options = dict(DEMO_NAFNET) if args.net_options is None else args.net_options

    names = [n for n in DEFAULT_SOURCE_NAMES if n not in HELD_OUT]
    params = SynthParams.with_misalignment(args.misalignment, size=args.size, r_max=args.r_max, exposure=0.02,
                                           noise=0.005)
    pairs = SyntheticPairs(args.pairs, params, args.seed, default_sources(names), crop=args.crop, augment=True)
    data = pairs if args.misaligned_targets else AlignedTargets(pairs)
    val = held_out_set(8.0)
    config = TrainConfig(
        net=NetConfig(args.net, options),
        data=DataConfig(crop=args.crop, batch_size=args.batch),
        loss=JDRLConfig(objective="pixel"),
        optim=OptimConfig(lr=args.lr, decay="cosine", decay_every=10**9),
        schedule=ScheduleConfig(unit="step", total=args.steps, warmup=0, save_every=args.val_every,
                                val_every=args.val_every, log_every=50),
        run=RunConfig(seed=args.seed, device="cpu", loggers=[]),
    )
    settings = {**vars(args), "net_options": options, "train_photos": names, "held_out_photos": list(HELD_OUT),
                "synth": asdict(params), "targets": "misaligned GT" if args.misaligned_targets else "aligned truth",
                "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "versions": versions(),
                "command": "python benchmarks/pretrain.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if args.resume and (out / "settings.json").is_file():
        settings["command"] = json.loads((out / "settings.json").read_text())["command"]
        settings["resumed"] = True
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
    start = time.perf_counter()
    train(config, run_dir=run_dir, datasets=(data, val), overwrite=args.overwrite,
          resume="auto" if args.resume else None)
    seconds = time.perf_counter() - start
    net = create_net(checkpoint=run_dir / "model")

    flow = build_flow("dis")
    scores = {}
    for r_max in args.score_r_max:
        held = held_out_set(r_max)
        scores[r_max] = {"input": evaluate(held, None, flow=flow).means, "model": evaluate(held, net, flow=flow).means}
    settings.update(train_seconds=round(seconds, 1), parameters=count_parameters(net),
                    scores={str(k): {row: {m: v[m] for m in ("psnr_aligned", "ssim_aligned", "flow_error")}
                                     for row, v in s.items()} for k, s in scores.items()})
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
    text = curve_markdown(run_dir, scores, settings, seconds)
    (out / "curve.md").write_text(text)
    print(text)
    if args.export:
        target = Path(args.export)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(run_dir / "model", target)
        print(f"exported {run_dir / 'model'} -> {target}")
    return 0


def curve_markdown(run_dir: Path, scores: dict, settings: dict, seconds: float) -> str:
    with open(run_dir / "val.csv", newline="") as handle:
        curve = [(int(r["step"]), float(r["psnr_aligned"]), float(r["flow_error"])) for r in csv.DictReader(handle)]
    lines = [f"`{settings['command']}` ({seconds / 60:.1f} min of training, {settings['machine']})", "",
             "Held-out PSNR against the true aligned image (the demo's 12 held-out pairs, blur <= 8 px; "
             f"input {scores.get(8.0, {}).get('input', {}).get('psnr_aligned', float('nan')):.2f} dB):", "",
             "| step | " + " | ".join(str(s) for s, _, _ in curve) + " |",
             "|---|" + "---|" * len(curve),
             "| PSNR (dB) | " + " | ".join(f"{p:.2f}" for _, p, _ in curve) + " |",
             "| flow error (px) | " + " | ".join(f"{f:.3f}" for _, _, f in curve) + " |", "",
             "The last model on held-out pairs (the demo's photos and misalignment) at other blur levels:", "",
             "| blur <= (px) | input PSNR | model PSNR | gain | input SSIM | model SSIM | model flow error (px) |",
             "|---|---|---|---|---|---|---|"]
    for r_max, rows in scores.items():
        inp, model = rows["input"], rows["model"]
        lines.append(f"| {r_max:g} | {inp['psnr_aligned']:.2f} | {model['psnr_aligned']:.2f} | "
                     f"{model['psnr_aligned'] - inp['psnr_aligned']:+.2f} | {inp['ssim_aligned']:.4f} | "
                     f"{model['ssim_aligned']:.4f} | {model['flow_error']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
