"""Learning curves against the truth: demo settings x variants, one process per run (for a GPU box).

    python benchmarks/curves.py --device cuda --steps 3000 --out bench/curves
    python benchmarks/curves.py --device cuda --configs 'demo={}' 'fast={"lr": 0.001}' --groups main
    python benchmarks/curves.py --configs 'demo={}' --groups ablations masks --deadline 600
    python benchmarks/curves.py --init --steps 400 --val-every 50 --configs 'demo={}'   # from the bundled model

The same experiment as ``jdrl demo`` and ``benchmarks/misalignment.py`` (synthetic
misaligned pairs from the bundled photos, held-out photos scored against the true
aligned image), but every run validates every ``--val-every`` steps, so one run
gives PSNR / flow error as a function of the step count; that is what chooses the
demo's defaults (how many steps does each variant need to separate?). Runs start
all at once as separate processes (``--parallel``); on one GPU that is how small
networks fill it. After ``--deadline`` seconds the unfinished runs are stopped and
reported as far as they got.

Configs are ``NAME=JSON`` overrides of :class:`jdrl.demo.DemoSettings`, the network included
(``'naf={"net": "nafnet_w32", "net_options": {"width": 16, ...}, "lr": 0.001}'``). Groups:
``main`` (oracle, pixel, JDRL) for every config; ``ablations``, ``masks`` and
``flows`` (needs ``--spynet-weights``) for the first config only.
Results: ``OUT/curves.json`` and ``OUT/curves.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def job_list(args) -> list[tuple[str, dict, object]]:
    from jdrl.demo import JDRL, ORACLE, PIXEL
    from misalignment import ABLATIONS, MASKS, flow_variants

    configs = [(name, json.loads(text)) for name, text in (item.split("=", 1) for item in args.configs)]
    main = [v for v in (ORACLE, PIXEL, JDRL) if v.name in args.variants]
    jobs = [(name, settings, variant) for name, settings in configs
            for variant in main if "main" in args.groups]
    first_name, first = configs[0]
    extra = {"ablations": ABLATIONS, "masks": MASKS}
    for group in args.groups:
        if group in extra:
            jobs += [(first_name, first, variant) for variant in extra[group]]
        elif group == "flows":
            jobs += [(first_name, first, variant) for variant in flow_variants(args.spynet_weights)]
    return jobs


def demo_settings(overrides: dict, **more):
    """The demo's settings with ``overrides``; the synthetic-data keys (size, r_max, shift, ...) go to ``synth``."""
    from dataclasses import fields, replace

    from jdrl.demo import DemoSettings, from_scratch
    from jdrl.data.synthetic import SynthParams

    merged = {**overrides, **more}
    synth_keys = {f.name for f in fields(SynthParams)}
    # without a start: the demo's from-scratch schedule and blur (jdrl.demo.FROM_SCRATCH) under the overrides
    base = DemoSettings() if merged.get("init") else from_scratch(DemoSettings())
    settings = replace(base, **{k: v for k, v in merged.items() if k not in synth_keys})
    return replace(settings, synth=replace(settings.synth, **{k: v for k, v in merged.items() if k in synth_keys}))


def source_split(args) -> tuple[list | None, list | None]:
    """``(train, held-out)`` photos of ``--sources``; ``(None, None)``: the demo's bundled split."""
    from jdrl.data.synthetic import folder_sources

    if not args.sources:
        return None, None
    sources = folder_sources(args.sources)
    return sources[: -args.held_out], sources[-args.held_out:]


def run_one(args, index: int) -> None:
    import cv2
    import torch

    from jdrl.demo import make_datasets, variant_config
    from jdrl.training import train
    from jdrl.training.data import AlignedTargets

    torch.set_num_threads(1)  # many runs share the machine
    cv2.setNumThreads(1)
    _, overrides, variant = job_list(args)[index]
    settings = demo_settings({"init": args.init, **overrides}, steps=args.steps, device=args.device, seed=args.seed)
    train_set, eval_set = make_datasets(settings, *source_split(args))
    data = AlignedTargets(train_set) if variant.aligned_targets else train_set
    run_dir = Path(args.out) / "runs" / f"{index:02d}"
    start = time.perf_counter()
    train(variant_config(settings, variant), [f"schedule.val_every={args.val_every}"],
          run_dir=run_dir, datasets=(data, eval_set), quiet=True, overwrite=True)
    (run_dir / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")


def collect(args, jobs) -> list[dict]:
    rows = []
    for index, (name, overrides, variant) in enumerate(jobs):
        run_dir = Path(args.out) / "runs" / f"{index:02d}"
        curve = []
        if (run_dir / "val.csv").is_file():
            with open(run_dir / "val.csv", newline="") as handle:
                curve = [{"step": int(r["step"]), "psnr": float(r["psnr_aligned"]), "ssim": float(r["ssim_aligned"]),
                          "flow_error": float(r["flow_error"])} for r in csv.DictReader(handle)]
        seconds = (run_dir / "seconds.txt").read_text().strip() if (run_dir / "seconds.txt").is_file() else None
        rows.append({"config": name, "settings": overrides, "variant": variant.name, "curve": curve,
                     "seconds": seconds})
    return rows


def markdown(args, rows: list[dict], inputs: dict, starts: dict | None = None) -> str:
    steps = list(range(args.val_every, args.steps + 1, args.val_every))
    starts = starts or {}
    lines = ["PSNR (dB) against the true aligned image after N steps; (flow error px) at the last point; "
             "'-': the run did not get there before the deadline." + (" Step 0: the start checkpoint, untouched."
                                                                      if starts else ""), "",
             "| config | variant | input | " + ("0 | " if starts else "") + " | ".join(str(s) for s in steps) + " |",
             "|---|---|---|" + ("---|" if starts else "") + "---|" * len(steps)]
    for row in rows:
        by_step = {point["step"]: point for point in row["curve"]}
        cells = [f"{by_step[s]['psnr']:.2f}" if s in by_step else "-" for s in steps]
        if row["curve"]:
            cells[len(row["curve"]) - 1] += f" ({row['curve'][-1]['flow_error']:.2f})"
        if starts:
            cells.insert(0, f"{starts[row['config']]:.2f}" if row["config"] in starts else "-")
        lines.append(f"| {row['config']} {json.dumps(row['settings'])} | {row['variant']} | "
                     f"{inputs[row['config']]:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def input_psnr(args, jobs) -> tuple[dict, dict]:
    """Per config, the held-out PSNR of the blurry input and (with a start checkpoint) of the start, untouched."""
    from jdrl.demo import make_datasets
    from jdrl.evaluation.protocol import evaluate
    from jdrl.nets import create_net

    found, start, split = {}, {}, source_split(args)
    for name, overrides, _ in jobs:
        if name not in found:
            settings = demo_settings({"init": args.init, **overrides}, seed=args.seed)
            held_out = make_datasets(settings, *split)[1]
            found[name] = evaluate(held_out, None).means["psnr_aligned"]
            if settings.init is not None:
                start[name] = evaluate(held_out, create_net(checkpoint=settings.init)).means["psnr_aligned"]
    return found, start


def main() -> None:
    from jdrl.demo import START

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=[
        "demo={}", 'A={"batch": 4, "lr": 0.001, "r_max": 5.0}', 'C={"lr": 0.001, "r_max": 5.0}',
        'D={"lr": 0.002, "r_max": 5.0}', 'E={"lr": 0.001}', 'F={"lr": 0.001, "width": 0.125}'],
        help="NAME=JSON overrides of the demo's settings (default: the demo, and the runs that chose it)")
    parser.add_argument("--groups", nargs="+", default=["main"], choices=["main", "ablations", "masks", "flows"])
    parser.add_argument("--variants", nargs="+", default=["oracle", "pixel", "jdrl"],
                        choices=["oracle", "pixel", "jdrl"], help="the main group's rows (default: all three)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", help="folder of sharp photos (default: scikit-image's bundled photos)")
    parser.add_argument("--held-out", type=int, default=4)
    parser.add_argument("--spynet-weights")
    parser.add_argument("--init", nargs="?", const=START, default=None, metavar="CHECKPOINT",
                        help=f"start every run from this checkpoint; --init alone: the bundled model {START} "
                             "(the demo's network); default: random weights (a config's \"init\" wins)")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="runs at once")
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds before unfinished runs stop")
    parser.add_argument("--out", default="bench-curves")
    parser.add_argument("--run-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one is not None:
        return run_one(args, args.run_one)

    jobs = job_list(args)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    argv = [a for a in sys.argv[1:]]
    waiting, running, start = list(range(len(jobs))), [], time.time()
    while (waiting or running) and time.time() - start < args.deadline:
        running = [p for p in running if p.poll() is None]
        while waiting and len(running) < args.parallel:
            index = waiting.pop(0)
            log = open(out / "runs" / f"{index:02d}.log", "w")
            running.append(subprocess.Popen([sys.executable, __file__, *argv, "--run-one", str(index)],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "OMP_NUM_THREADS": "1"}))
        time.sleep(2)
    for process in running:
        process.kill()
    rows = collect(args, jobs)
    (out / "curves.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = f"`python benchmarks/curves.py {' '.join(argv)}` ({time.time() - start:.0f} s)\n\n" + \
        markdown(args, rows, *input_psnr(args, jobs))
    (out / "curves.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
