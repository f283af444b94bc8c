"""The misalignment benchmark: which objective learns sharp, undeformed images from misaligned pairs.

    python benchmarks/misalignment.py --sources ../shared/data/kodak24 --out bench/kodak --seeds 3
    python benchmarks/misalignment.py --groups main ablations --steps 400 --seeds 2 --jobs 2   # smaller
    python benchmarks/misalignment.py --groups kinds --misalignment hard --seeds 2 --jobs 2
    python benchmarks/misalignment.py --groups flows --spynet-weights ../shared/weights/spynet_sintel_final.pth
    python benchmarks/misalignment.py --groups kinds --init --steps 200 --seeds 3 --jobs 2   # from the bundled model

Synthetic misaligned defocus pairs are made from a folder of sharp photos (the
last ``--held-out`` photos, sorted by name, are used for scoring only; default:
scikit-image's bundled photos with the demo's split) with the misalignment
preset ``--misalignment`` (``jdrl.data.synthetic.MISALIGNMENT_PRESETS``, default
``sdd``: zoom + shift, focus breathing, a smooth warp, moving occluding regions,
photometric differences). Every row trains the same network with the same data
and steps, and is scored on the held-out pairs against the **true aligned**
image: PSNR / SSIM / MAE and the geometric error (mean optical flow from the
output to the truth, px); and the calibration mask against the known
occlusions: on the held-out pairs, the flow from the trained model's output to
the ground truth (the training direction), ``calibration_mask(flow, mode)``,
dropped = mask 0, precision = |dropped & occluded| / |dropped|, recall =
|dropped & occluded| / |occluded| (``mode``: the row's own mask; ``reference``
for rows that train without one; ``#3`` drops nothing).

**Seeds.** ``--seeds N`` repeats every row with seeds ``--seed`` ... ``--seed + N - 1``
(each seed draws other pairs from the same photos and other initial weights) and
reports mean ± standard deviation; ``results.json`` keeps every per-seed number.
A row *differs* from JDRL only when the mean of its paired per-seed difference
exceeds that difference's standard deviation (``*`` in the Δ columns; never
with one seed).

Groups (``--groups``):

``main``       the blurry input, the aligned oracle (pixel loss on perfectly aligned
               pairs: the upper bound), the pixel loss, JDRL
``ablations``  the paper's Table 4, #2-#6 (#1 is the pixel loss, "full" is JDRL)
``masks``      the calibration-mask modes paper and parametric (reference is JDRL's default)
``flows``      the training flow estimator spynet (needs ``--spynet-weights``; dis is JDRL's)
``cobi``       the CoBi objective (``loss.objective=cobi``, ``jdrl.cobi``)
``ema``        JDRL with an exponential moving average of the weights (``run.ema_decay=0.999``) vs without
``kinds``      pixel, JDRL and #2-#6 (``--kind-ablations``) under each kind of the preset's misalignment alone
               (breathing, smooth warp, local motion + occlusion, photometric) and all combined
``strength``   pixel vs JDRL at the presets none / dpdd / sdd / hard

Every group's table repeats the input and the pixel and JDRL rows it is compared with. ``--init``
starts every trained row from a checkpoint (alone: the bundled model) instead of random weights, and adds
the row ``start``: that checkpoint, untouched.
Results: ``OUT/results.md`` (one table per group / kind) and ``OUT/results.json``.
``--jobs N`` trains N runs at once (one thread each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from jdrl.data.synthetic import MISALIGNMENT_PRESETS, SynthParams
from jdrl.demo import JDRL, ORACLE, PIXEL, START, DemoSettings, Variant, from_scratch

ABLATIONS = [
    Variant("#2 w/o deformation", overrides=("loss.deform=none",)),
    Variant("#3 w/o calibration mask", overrides=("loss.mask=none",)),
    Variant("#4 w/o reblurring", overrides=("loss.reblur=none",)),
    Variant("#5 w/o isotropic kernels", overrides=("loss.reblur=free", "loss.reblur_impl=direct")),
    Variant("#6 w/o WPN (one 15x15 kernel)", overrides=("loss.reblur=single",)),
]
MASKS = [Variant(f"mask {mode}", overrides=(f"loss.mask={mode}",)) for mode in ("paper", "parametric")]
COBI = Variant("cobi", "cobi")
EMA = Variant("jdrl + EMA 0.999", overrides=("run.ema_decay=0.999",))  # weight averaging (run.ema_decay)
#: the SynthParams fields of each kind of misalignment (module docstring of jdrl.data.synthetic, 4-8)
KINDS = {  # in the order they run: a stopped benchmark has the combined and the local kinds first
    "combined": None,  # every field of the preset
    "local": ("local_regions", "local_shift", "local_size"),
    "photometric": ("gt_exposure", "white_balance", "gamma", "vignetting"),
    "warp": ("warp_amplitude", "warp_scale"),
    "breathing": ("breathing",),
}
KIND_TITLES = {"breathing": "focus breathing alone", "warp": "smooth non-rigid warp alone",
               "local": "local motion + occlusion alone", "photometric": "photometric differences alone",
               "combined": "all kinds combined (the preset)"}
#: the row of the start checkpoint (``--init``), scored untouched
START_ROW = Variant("start", "none")
METRICS = ("psnr", "ssim", "mae", "flow_error", "mask_precision", "mask_recall")
FORMATS = {"psnr": ".2f", "ssim": ".4f", "mae": ".4f", "flow_error": ".3f", "mask_precision": ".2f",
           "mask_recall": ".2f"}


def flow_variants(spynet_weights: str | None) -> list[Variant]:
    if not spynet_weights:
        raise SystemExit("the flows group needs --spynet-weights PATH")
    return [Variant("flow spynet", overrides=("loss.flow=spynet", f"loss.flow_weights={spynet_weights}"))]


def kind_params(preset: str, kind: str, base: SynthParams) -> SynthParams:
    """``base`` with the misalignment of ``preset`` limited to ``kind`` (every other kind off)."""
    fields = MISALIGNMENT_PRESETS[preset]
    chosen = fields if KINDS[kind] is None else {k: v for k, v in fields.items() if k in KINDS[kind]}
    return replace(base, **{**MISALIGNMENT_PRESETS["none"], **chosen})


def _mask_mode(variant: Variant) -> str:
    for override in variant.overrides:
        if override.startswith("loss.mask="):
            return override.split("=", 1)[1]
    return "reference"


# ----------------------------------------------------------------------------- one run (a worker process)


_DATA: dict = {}


def _datasets(settings: DemoSettings, sources: str | None, held_out: int):
    from jdrl.data.synthetic import folder_sources
    from jdrl.demo import make_datasets

    key = (json.dumps(asdict(settings.synth), sort_keys=True, default=str), settings.seed, settings.train_pairs,
           settings.eval_pairs, settings.crop, sources, held_out)
    if key not in _DATA:
        train_sources = eval_sources = None
        if sources:
            found = folder_sources(sources)
            train_sources, eval_sources = found[:-held_out], found[-held_out:]
        _DATA.clear()
        _DATA[key] = make_datasets(settings, train_sources, eval_sources)
    return _DATA[key]


def run_one(task: dict) -> dict:
    """Train (or, for the input row, only score) one row at one seed; its numbers."""
    import torch

    from jdrl.demo import mask_scores, train_variant
    from jdrl.evaluation.protocol import evaluate
    from jdrl.flow import build_flow

    if task["threads"]:
        torch.set_num_threads(task["threads"])
    settings, variant = task["settings"], task["variant"]
    train_set, eval_set = _datasets(settings, task["sources"], task["held_out"])
    flow = build_flow(settings.score_flow)
    start = time.perf_counter()
    net = None
    if variant == START_ROW:  # the start checkpoint, untouched (== : tasks reach workers pickled)
        from jdrl.nets import create_net

        net = create_net(checkpoint=settings.init, map_location=settings.device)
    elif variant is not None:
        net = train_variant(settings, variant, train_set, Path(task["run_dir"]), quiet=True)
    seconds = round(time.perf_counter() - start, 1)
    means = evaluate(eval_set, net, flow=flow, device=settings.device).means
    trained = variant is not None and variant != START_ROW
    masks = mask_scores(net, eval_set, _mask_mode(variant) if trained else "reference", flow, settings.device)
    return {"group": task["group"], "row": task["row"], "seed": settings.seed, "seconds": seconds,
            "psnr": means["psnr_aligned"], "ssim": means["ssim_aligned"], "mae": means["mae_aligned"],
            "flow_error": means["flow_error"], "mask_precision": masks["precision"], "mask_recall": masks["recall"],
            "mask_precision_view": masks["precision_view"], "mask_recall_view": masks["recall_view"],
            "mask_dropped": masks["dropped"], "occluded": masks["occluded"]}


# ----------------------------------------------------------------------------- tables


def _mean_sd(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def _cell(values: list[float], spec: str) -> str:
    mean, sd = _mean_sd(values)
    if math.isnan(mean):
        return "–"
    return f"{mean:{spec}}" + ("" if math.isnan(sd) else f" ± {sd:{spec}}")


def paired_difference(rows: list[dict], reference: list[dict], metric: str) -> tuple[float, float, bool]:
    """Mean and sd over seeds of ``row - reference`` (same seed); ``differs``: |mean| > sd (needs 2 seeds)."""
    by_seed = {r["seed"]: r[metric] for r in reference}
    deltas = [r[metric] - by_seed[r["seed"]] for r in rows if r["seed"] in by_seed]
    mean, sd = _mean_sd(deltas)
    return mean, sd, len(deltas) > 1 and not math.isnan(sd) and abs(mean) > sd


def summarise(runs: list[dict]) -> dict:
    """``{row: {metric: {"mean", "sd", "seeds": [...]}, ...}}`` of one group's runs."""
    table: dict = {}
    for run in runs:
        table.setdefault(run["row"], []).append(run)
    out = {}
    for row, rows in table.items():
        out[row] = {metric: dict(zip(("mean", "sd"), _mean_sd([r[metric] for r in rows])),
                                 seeds=[r[metric] for r in rows]) for metric in METRICS}
        out[row]["seeds"] = [r["seed"] for r in rows]
        out[row]["seconds"] = [r["seconds"] for r in rows]
    return out


def table_markdown(title: str, runs: list[dict], reference: str = "jdrl") -> str:
    by_row: dict[str, list[dict]] = {}
    for run in runs:
        by_row.setdefault(run["row"], []).append(run)
    ref = by_row.get(reference, [])
    lines = [f"### {title}", "",
             "| row | PSNR (dB) | SSIM | MAE | flow error (px) | mask precision | mask recall | "
             f"Δ PSNR vs {reference} | Δ flow error vs {reference} | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row, rows in by_row.items():
        cells = [_cell([r[m] for r in rows], FORMATS[m]) for m in METRICS]
        deltas = []
        for metric, spec in (("psnr", "+.2f"), ("flow_error", "+.3f")):
            if row == reference or not ref:
                deltas.append("")
                continue
            mean, sd, differs = paired_difference(rows, ref, metric)
            text = f"{mean:{spec}}" + ("" if math.isnan(sd) else f" ± {sd:.{spec[-2]}f}")
            deltas.append(f"**{text}** *" if differs else text)
        seconds = _cell([r["seconds"] for r in rows], ".0f") if row not in ("input", "start") else ""
        lines.append(f"| {row} | " + " | ".join(cells + deltas) + f" | {seconds} |")
    seeds = sorted({r["seed"] for r in runs})
    lines += ["", f"mean ± sd over seeds {', '.join(map(str, seeds))}; `*` (bold): the paired per-seed "
                  f"difference to {reference} exceeds its own sd."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def _groups(args) -> list[tuple[str, str, SynthParams, list]]:
    """``(key, title, synth params, rows)``; rows are ``None`` (the input) or variants."""
    base = args.settings.synth
    main_rows = [None, ORACLE, PIXEL, JDRL]
    out = []
    for group in args.groups:
        if group == "main":
            out.append(("main", "Main: input, oracle, pixel loss, JDRL", base, main_rows))
        elif group == "ablations":
            out.append(("ablations", "Ablations (the paper's Table 4 numbering)", base, [None, PIXEL, JDRL, *ABLATIONS]))
        elif group == "masks":
            out.append(("masks", "Calibration mask modes (JDRL; reference is its default)", base, [None, JDRL, *MASKS]))
        elif group == "flows":
            out.append(("flows", "Training flow estimators (JDRL; dis is its default)", base,
                        [None, JDRL, *flow_variants(args.spynet_weights)]))
        elif group == "cobi":
            out.append(("cobi", "CoBi objective vs pixel loss and JDRL", base, [None, PIXEL, JDRL, COBI]))
        elif group == "ema":
            out.append(("ema", "Weight averaging (EMA of the weights) vs plain JDRL", base, [None, JDRL, EMA]))
        elif group == "kinds":
            kind_rows = [None, PIXEL, JDRL, *[v for v in ABLATIONS if v.name.split()[0] in args.kind_ablations]]
            for kind in args.kinds:
                out.append((f"kind_{kind}", f"{args.misalignment}: {KIND_TITLES[kind]}",
                            kind_params(args.misalignment, kind, base), kind_rows))
        elif group == "strength":
            for level in ("none", "dpdd", "sdd", "hard"):
                params = replace(base, **{**MISALIGNMENT_PRESETS["none"], **MISALIGNMENT_PRESETS[level]})
                out.append((f"strength_{level}", f"Misalignment preset {level}", params, [None, PIXEL, JDRL]))
        else:
            raise SystemExit(f"unknown group {group!r}")
    return out


def main() -> None:
    from jdrl.demo import _slug

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", help="folder of sharp photos (default: scikit-image's bundled photos)")
    parser.add_argument("--held-out", type=int, default=4, help="photos kept for scoring (with --sources)")
    parser.add_argument("--out", default="bench-misalignment")
    parser.add_argument("--groups", nargs="+", default=["main", "ablations", "masks", "cobi", "kinds"])
    parser.add_argument("--misalignment", default="sdd", choices=list(MISALIGNMENT_PRESETS),
                        help="the misalignment preset (default: %(default)s)")
    parser.add_argument("--kind-ablations", nargs="*", default=["#2", "#3", "#4", "#5", "#6"],
                        help="the ablations the kinds group runs (default: all; #5 is the slowest)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS),
                        help="the kinds group's kinds (default: all)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per row: mean ± sd (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each (default: 1)")
    parser.add_argument("--spynet-weights")
    parser.add_argument("--init", nargs="?", const=START, default=None, metavar="CHECKPOINT",
                        help=f"start every row from this checkpoint; --init alone: the bundled model {START} (the "
                             "demo's network, pretrained on aligned synthetic pairs); default: random weights")
    parser.add_argument("--net", help="network name (default: the demo's)")
    parser.add_argument("--net-options", type=json.loads, help="its options as JSON (default: the demo's)")
    defaults = DemoSettings()
    for name in ("steps", "batch", "crop", "train_pairs", "eval_pairs", "seed", "reblur_features"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    # default None: the demo's fine-tuning values with --init, its from-scratch ones without (jdrl.demo.FROM_SCRATCH)
    for name in ("warmup", "reblur_only"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    parser.add_argument("--width", type=float, default=defaults.width)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--size", type=int, default=defaults.synth.size)
    parser.add_argument("--r-max", type=float, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--collect", action="store_true",
                        help="only write the tables from OUT/runs.jsonl (a stopped benchmark's finished runs)")
    args = parser.parse_args()

    base = DemoSettings(init=args.init) if args.init else from_scratch(DemoSettings())
    chosen = {k: getattr(args, k) for k in ("steps", "batch", "crop", "train_pairs", "eval_pairs", "seed", "width",
                                            "device", "reblur_features")}
    chosen.update(init=base.init, **{k: getattr(base, k) if getattr(args, k) is None else getattr(args, k)
                                      for k in ("lr", "warmup", "reblur_only")})
    r_max = base.synth.r_max if args.r_max is None else args.r_max
    if args.net:
        chosen.update(net=args.net, net_options=args.net_options or {})
    elif args.net_options is not None:
        chosen["net_options"] = args.net_options
    settings = DemoSettings(**chosen)
    settings = replace(settings, synth=SynthParams.with_misalignment(
        args.misalignment, size=args.size, r_max=r_max, exposure=settings.synth.exposure,
        noise=settings.synth.noise))
    args.settings = settings
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    groups = _groups(args)
    threads = 1 if args.jobs > 1 else 0
    tasks = []
    for offset in range(args.seeds):  # seed-major: a stopped run has every group at its first seeds
        for key, _, params, rows in groups:
            if settings.init is not None:  # the start, untouched, after the input
                rows = [rows[0], START_ROW, *rows[1:]]
            seeded = replace(settings, seed=args.seed + offset, synth=params)
            for variant in rows:
                name = "input" if variant is None else variant.name
                tasks.append({"group": key, "row": name, "settings": seeded, "variant": variant,
                              "run_dir": str(out / key / f"seed{seeded.seed}" / _slug(name)),
                              "sources": args.sources, "held_out": args.held_out, "threads": threads})
    if args.collect:
        runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
        return write_results(args, settings, groups, tasks, runs, out, sum(r["seconds"] for r in runs))
    started = time.perf_counter()
    runs: list[dict] = []
    partial = out / "runs.jsonl"  # every finished run at once: a stopped benchmark keeps what it measured
    partial.write_text("")

    def done(run: dict) -> None:
        runs.append(run)
        with open(partial, "a") as handle:
            handle.write(json.dumps(run) + "\n")
        print(f"[{len(runs)}/{len(tasks)}] {run['group']} {run['row']} seed {run['seed']}: "
              f"{run['psnr']:.2f} dB ({run['seconds']} s)", flush=True)

    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=8) as pool:
            for run in pool.imap_unordered(run_one, tasks):
                done(run)
    else:
        for task in tasks:
            done(run_one(task))
    write_results(args, settings, groups, tasks, runs, out, time.perf_counter() - started)


def write_results(args, settings, groups, tasks, runs, out: Path, seconds: float) -> None:
    """``OUT/results.md`` and ``OUT/results.json`` of ``runs`` (all, or those a stopped benchmark finished)."""
    order = {(t["group"], t["row"], t["settings"].seed): i for i, t in enumerate(tasks)}
    runs = sorted(runs, key=lambda r: order.get((r["group"], r["row"], r["seed"]), len(order)))

    import torch

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {args.jobs} job(s), torch {torch.__version__}"
    shown = {k: v for k, v in asdict(settings).items() if k not in ("held_out", "synth", "seed")}
    header = (f"# Misalignment benchmark\n\n`python benchmarks/misalignment.py {' '.join(sys.argv[1:])}`\n\n"
              f"{machine}; misalignment preset {args.misalignment}; seeds {args.seed}..{args.seed + args.seeds - 1}; "
              f"settings: {json.dumps(shown)}\n\n")
    texts, tables = [header], {}
    for key, title, params, _ in groups:
        group_runs = [r for r in runs if r["group"] == key]
        if not group_runs:
            continue
        text = table_markdown(title, group_runs)
        print(text, flush=True)
        texts.append(text)
        tables[key] = {"title": title, "synth": asdict(params), "rows": summarise(group_runs), "runs": group_runs}
    texts.append(f"\n{len(runs)} of {len(tasks)} runs, total {seconds:.0f} s\n")
    (out / "results.md").write_text("\n".join(texts))
    (out / "results.json").write_text(json.dumps(tables, indent=2, default=str) + "\n")
    print(f"wrote {out / 'results.md'}")


if __name__ == "__main__":
    main()
