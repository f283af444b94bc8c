"""The misalignment benchmark: which objective learns sharp, undeformed images from misaligned pairs.

    python benchmarks/misalignment.py --sources ../shared/data/kodak24 --out bench/kodak
    python benchmarks/misalignment.py --groups main masks --steps 400            # a subset, smaller
    python benchmarks/misalignment.py --groups flows --spynet-weights ../shared/weights/spynet_sintel_final.pth

Synthetic misaligned defocus pairs are made from a folder of sharp photos (the
last ``--held-out`` photos, sorted by name, are used for scoring only; default:
scikit-image's bundled photos with the demo's split). Every row trains the same
small UNet with the same seed, data and steps, and is scored on the held-out
pairs against the **true aligned** image: PSNR / SSIM / MAE and the geometric
error (mean optical flow from the output to the truth, px).

Groups (``--groups``):

``main``       the blurry input, the aligned oracle (pixel loss on perfectly aligned
               pairs: the upper bound), the pixel loss, JDRL
``ablations``  the paper's Table 4, #2-#6 (#1 is the pixel loss, "full" is JDRL)
``masks``      the calibration-mask modes paper and parametric (reference is JDRL's default: the main row)
``flows``      the training flow estimator spynet (needs ``--spynet-weights``; dis is the main row)
``strength``   pixel vs JDRL at misalignment none / DPDD-like / SDD-like

Results: ``OUT/results.md`` (one table per group) and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from jdrl.data.synthetic import MISALIGNMENT_LEVELS, folder_sources
from jdrl.demo import JDRL, ORACLE, PIXEL, DemoSettings, Variant, make_datasets, run_variants, truth_table

ABLATIONS = [
    Variant("#2 w/o deformation", overrides=("loss.deform=none",)),
    Variant("#3 w/o calibration mask", overrides=("loss.mask=none",)),
    Variant("#4 w/o reblurring", overrides=("loss.reblur=none",)),
    Variant("#5 w/o isotropic kernels", overrides=("loss.reblur=free", "loss.reblur_impl=direct")),
    Variant("#6 w/o WPN (one 15x15 kernel)", overrides=("loss.reblur=single",)),
]
# JDRL's defaults (mask reference, flow dis) are the main group's "jdrl" row; it is repeated in these tables
MASKS = [Variant(f"mask {mode}", overrides=(f"loss.mask={mode}",)) for mode in ("paper", "parametric")]


def flow_variants(spynet_weights: str | None) -> list[Variant]:
    if not spynet_weights:
        raise SystemExit("the flows group needs --spynet-weights PATH")
    return [Variant("flow spynet", overrides=("loss.flow=spynet", f"loss.flow_weights={spynet_weights}"))]


def table_markdown(title: str, table: dict, seconds: dict) -> str:
    lines = [f"### {title}", "", "| row | PSNR (dB) | SSIM | MAE | flow error (px) | train s |", "|---|---|---|---|---|---|"]
    for row, values in table.items():
        lines.append(f"| {row} | {values['psnr']:.2f} | {values['ssim']:.4f} | {values['mae']:.4f} | "
                     f"{values['flow_error']:.3f} | {seconds.get(row, '')} |")
    return "\n".join(lines) + "\n"


def run_group(title: str, settings: DemoSettings, variants: list[Variant], out: Path, datasets,
              extra: dict | None = None) -> tuple[dict, str]:
    """Train and score ``variants``; ``extra`` rows (already measured) are shown in the table too."""
    results = run_variants(settings, variants, out, datasets=datasets, quiet=True)
    seconds = results.pop("_seconds")
    table = truth_table(results)
    table = {"input": table.pop("input"), **(extra or {}), **table}
    text = table_markdown(title, table, seconds)
    print(text, flush=True)
    return table, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", help="folder of sharp photos (default: scikit-image's bundled photos)")
    parser.add_argument("--held-out", type=int, default=4, help="photos kept for scoring (with --sources)")
    parser.add_argument("--out", default="bench-misalignment")
    parser.add_argument("--groups", nargs="+", default=["main", "ablations", "masks", "flows", "strength"])
    parser.add_argument("--spynet-weights")
    defaults = DemoSettings()
    for name in ("steps", "batch", "crop", "train_pairs", "eval_pairs", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("width", "lr"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    parser.add_argument("--size", type=int, default=defaults.synth.size)
    for name in ("r_max", "shift", "zoom"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults.synth, name))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    settings = DemoSettings(**{k: getattr(args, k) for k in (
        "steps", "batch", "crop", "train_pairs", "eval_pairs", "seed", "width", "lr", "device")})
    settings = replace(settings, synth=replace(settings.synth, size=args.size, r_max=args.r_max, shift=args.shift,
                                               zoom=args.zoom))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_sources = eval_sources = None
    held_out = list(settings.held_out)
    if args.sources:
        sources = folder_sources(args.sources)
        train_sources, eval_sources = sources[: -args.held_out], sources[-args.held_out :]
        held_out = [name for name, _ in eval_sources]
    datasets = make_datasets(settings, train_sources, eval_sources)
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    shown = {k: v for k, v in asdict(settings).items() if k != "held_out"}
    header = (f"# Misalignment benchmark\n\n`python benchmarks/misalignment.py {' '.join(_argv())}`\n\n"
              f"{machine}; held-out photos: {', '.join(held_out)}; settings: {json.dumps(shown)}\n\n")
    texts, tables = [header], {}
    started = time.perf_counter()
    groups = {
        "main": ("Main: input, oracle, pixel loss, JDRL", [ORACLE, PIXEL, JDRL]),
        "ablations": ("Ablations (the paper's Table 4 numbering)", ABLATIONS),
        "masks": ("Calibration mask modes (JDRL)", MASKS),
        "flows": ("Training flow estimators (JDRL)", None),
    }
    for group in args.groups:
        if group in groups:
            title, variants = groups[group]
            variants = flow_variants(args.spynet_weights) if group == "flows" else variants
            defaults = {}
            if group in ("masks", "flows") and "main" in tables:
                defaults = {"jdrl (mask reference, flow dis)": tables["main"]["jdrl"]}
            tables[group], text = run_group(title, settings, variants, out / group, datasets, defaults)
            texts.append(text)
        elif group == "strength":
            for level, (shift, zoom) in MISALIGNMENT_LEVELS.items():
                if level == "severe":
                    continue
                level_settings = replace(settings, synth=replace(settings.synth, shift=shift, zoom=zoom))
                level_data = make_datasets(level_settings, train_sources, eval_sources)
                title = f"Misalignment {level} (±{shift:g} px, ±{zoom:.0%} zoom)"
                tables[f"strength_{level}"], text = run_group(title, level_settings, [PIXEL, JDRL],
                                                              out / f"strength_{level}", level_data)
                texts.append(text)
        else:
            raise SystemExit(f"unknown group {group!r}")
    texts.append(f"\ntotal {time.perf_counter() - started:.0f} s\n")
    (out / "results.md").write_text("\n".join(texts))
    (out / "results.json").write_text(json.dumps(tables, indent=2) + "\n")
    print(f"wrote {out / 'results.md'}")


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
