"""The misalignment report (``jdrl data check --misalignment``) against the truth of ``jdrl synth`` pairs.

    python benchmarks/alignment.py --no-real     # 6 pairs x 3 seeds a preset, 192 px: 330 s on 2 shared CPU cores
    python benchmarks/alignment.py --no-synthetic                      # the 12 real DPDD pairs: 46 s
    python benchmarks/alignment.py --pairs 24 --json out.json --append docs/RESULTS.md   # 72 pairs a preset

Two tables on pairs written by :func:`jdrl.data.synthetic.write_synthetic` (what ``jdrl synth`` writes), and one
on real pairs:

1. **per preset** (none / global / dpdd / sdd / hard): the verdicts, the median p95 displacement and non-rigid
   residual the report measures, and the error of its global fit against the zoom and shift stored in
   ``meta.jsonl`` (median / 90th percentile / max over the pairs), with whether the fit stays within
   :data:`jdrl.data.alignment.FIT_TOLERANCES`: the check of the thresholds (``none`` must come out aligned, the
   misaligned presets misaligned, none dropped) and of the tolerances;
2. **per low-pass sigma** (``MisalignmentConfig.lowpass``, sdd preset): the end-point error of the report's flow
   (blurry -> GT, both images low-passed) against the true flow ``flow/NNNNN.npy``, median over the pixels that
   are inside the measured border, in view and not occluded, then the median over the pairs; and the global
   fit's zoom/shift errors at that sigma. This chose the default sigma;
3. **real pairs** (``--real``, default ``../shared/data/dpdd1024``: 12 DPDD pairs; ``--no-real`` skips it): the
   report with the default :class:`~jdrl.data.alignment.MisalignmentConfig`, one row per pair, the medians and the
   recommendation. Only names and numbers are kept (``--json``), never the images.

The preset table ranks the presets by the median p95 displacement the report measures: the order
``none < dpdd < sdd < hard`` is what ``jdrl synth`` puts in (``global``, a global shift and zoom only, +-6 px and
+-3 %, has no place in it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

PRESETS = ("none", "global", "dpdd", "sdd", "hard")
EXPECTED_ORDER = ("none", "dpdd", "sdd", "hard")  # how misaligned jdrl synth makes them, least first
LOWPASS = (0.0, 0.5, 1.0, 2.0, 4.0)
DEFAULT_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "dpdd1024"


def write_sets(root: Path, preset: str, pairs: int, seeds: list[int], size: int) -> list[Path]:
    from jdrl.data.synthetic import SynthParams, write_synthetic

    params = SynthParams.with_misalignment(preset, size=size)
    return [write_synthetic(root / f"{preset}-{seed}", pairs, params, seed=seed, warn=lambda _: None)
            for seed in seeds]


def fit_errors(folders: list[Path], config) -> tuple[list, list[float], list[float]]:
    """``(pairs, |zoom error|s, shift errors in px)`` of the report on ``folders`` against their meta.jsonl."""
    from jdrl.data.alignment import misalignment_report
    from jdrl.data.synthetic import read_meta

    measured, zooms, shifts = [], [], []
    for folder in folders:
        meta = read_meta(folder)
        for pair in misalignment_report(folder, config).pairs:
            truth = meta[pair.name]
            measured.append(pair)
            zooms.append(abs(pair.zoom - truth["zoom"]))
            shifts.append(math.hypot(pair.shift_x - truth["shift"][0], pair.shift_y - truth["shift"][1]))
    return measured, zooms, shifts


def flow_error(folders: list[Path], sigma: float, border: float) -> float:
    """Median over the pairs of the median end-point error (px) of DIS on the low-passed pair vs the true flow."""
    import cv2
    import torch

    from jdrl.data.synthetic import read_flow, read_occlusion
    from jdrl.flow import build_flow
    from jdrl.images import read_image

    estimator = build_flow("dis")

    def tensor(image: np.ndarray) -> torch.Tensor:
        low = image if sigma <= 0 else cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        return torch.from_numpy(np.ascontiguousarray(low.transpose(2, 0, 1)))[None]

    errors = []
    for folder in folders:
        for path in sorted((folder / "blur").glob("*.png")):
            blur, sharp = read_image(path), read_image(folder / "gt" / path.name)
            flow = estimator(tensor(blur), tensor(sharp))[0].numpy().transpose(1, 2, 0)
            truth = read_flow(folder / "flow" / f"{path.stem}.npy")
            height, width = truth.shape[:2]
            ys, xs = np.mgrid[0:height, 0:width]
            qx, qy = xs + truth[..., 0], ys + truth[..., 1]
            keep = ~read_occlusion(folder / "occlusion" / path.name)
            keep &= (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)
            by, bx = round(height * border), round(width * border)
            inner = np.zeros_like(keep)
            inner[by : height - by, bx : width - bx] = True
            errors.append(float(np.median(np.linalg.norm(flow - truth, axis=2)[keep & inner])))
    return float(np.median(errors))


def stats(values: list[float], digits: int) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in (np.median(values), np.percentile(values, 90), max(values)))


def real_rows(folder: Path, config) -> tuple[list[str], dict]:
    """The report on a real dataset: Markdown lines (per pair, worst first; medians; recommendation) and the JSON."""
    from jdrl.data.alignment import misalignment_report

    report = misalignment_report(folder, config)
    summary = report.summary()
    lines = [
        "| pair | verdict | zoom | shift x, y px | rotation deg | global max px | residual median px | "
        "disp. p95 px | outliers | reliable | drop reference | drop parametric | exposure | match |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report.worst():
        lines.append(f"| {p.name} | {p.verdict} | {p.zoom:.4f} | {p.shift_x:+.2f}, {p.shift_y:+.2f} | "
                     f"{p.rotation_deg:+.3f} | {p.global_max_px:.2f} | {p.residual_median_px:.2f} | "
                     f"{p.displacement_p95_px:.2f} | {p.outlier_share:.3f} | {p.reliable_share:.3f} | "
                     f"{p.mask_drop.get('reference', float('nan')):.3f} | "
                     f"{p.mask_drop.get('parametric', float('nan')):.3f} | {p.exposure:.3f} | {p.match:.3f} |")
    m = summary["medians"]
    lines += ["", f"Verdicts: {', '.join(f'{n} {v}' for v, n in summary['verdicts'].items())}. Medians: zoom "
              f"{m['zoom']:.4f}, global max {m['global_max_px']:.2f} px, non-rigid residual "
              f"{m['residual_median_px']:.2f} px, displacement p95 {m['displacement_p95_px']:.2f} px, exposure "
              f"{m['exposure']:.3f}, match {m['match']:.3f}. Recommendation: {report.recommendation}. "
              f"({report.seconds:.0f} s for {len(report.pairs)} pairs.)"]
    keep = ("blur", "sharp", "panels")  # names and numbers only: no path, no picture of the data
    data = {"summary": summary, "recommendation": str(report.recommendation), "seconds": report.seconds,
            "pairs": [{k: v for k, v in p.row().items() if k not in keep} for p in report.worst()]}
    return lines, data


def ranking(medians: dict[str, float]) -> list[str]:
    """The presets ranked by the measured median p95 displacement, and whether that is the order put in."""
    ranked = sorted(medians, key=medians.get)
    measured = [p for p in ranked if p in EXPECTED_ORDER]
    verdict = "the order jdrl synth puts in" if tuple(measured) == EXPECTED_ORDER else "**not** the order put in"
    return [f"Ranked by the median p95 displacement: {' < '.join(f'{p} ({medians[p]:.2f} px)' for p in ranked)} — "
            f"{' < '.join(measured)}: {verdict} ({' < '.join(EXPECTED_ORDER)})."]


def main() -> None:
    from jdrl.data.alignment import FIT_TOLERANCES, VERDICTS, MisalignmentConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6, help="pairs a preset and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 7, 11])
    parser.add_argument("--size", type=int, default=192, help="side of the pairs in px (FIT_TOLERANCES: 192)")
    parser.add_argument("--no-synthetic", action="store_true", help="only the real pairs")
    parser.add_argument("--no-lowpass", action="store_true", help="skip the low-pass table")
    parser.add_argument("--real", default=str(DEFAULT_REAL), help="real pairs (any dataset jdrl data check reads)")
    parser.add_argument("--no-real", action="store_true", help="skip the real pairs")
    parser.add_argument("--json", help="write the numbers to this file")
    parser.add_argument("--append", help="append the tables to this Markdown file")
    args = parser.parse_args()

    start = time.perf_counter()
    config = MisalignmentConfig(worst=0)
    results: dict = {"presets": {}, "lowpass": {}, "real": None}
    sections = []
    n = args.pairs * len(args.seeds)
    if not args.no_synthetic:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            folders = {preset: write_sets(root, preset, args.pairs, args.seeds, args.size) for preset in PRESETS}
            preset_rows, medians = [], {}
            for preset in PRESETS:
                pairs, zooms, shifts = fit_errors(folders[preset], config)
                counts = {v: sum(p.verdict == v for p in pairs) for v in VERDICTS}
                tolerance = FIT_TOLERANCES.get(preset)
                within = "-"
                if tolerance:
                    ok = (np.median(zooms) <= tolerance["zoom"][0] and max(zooms) <= tolerance["zoom"][1]
                          and np.median(shifts) <= tolerance["shift"][0] and max(shifts) <= tolerance["shift"][1])
                    within = ("yes" if ok else "**no**") + (f" ({tolerance['zoom'][0]:g}/{tolerance['zoom'][1]:g}, "
                                                            f"{tolerance['shift'][0]:g}/{tolerance['shift'][1]:g} px)")
                medians[preset] = float(np.median([p.displacement_p95_px for p in pairs]))
                results["presets"][preset] = {"verdicts": counts, "zoom_errors": zooms, "shift_errors": shifts,
                                              "displacement_p95": [p.displacement_p95_px for p in pairs],
                                              "residual_median": [p.residual_median_px for p in pairs]}
                preset_rows.append(
                    f"| {preset} | {len(pairs)} | {counts['aligned']} / {counts['misaligned']} / {counts['drop']} | "
                    f"{medians[preset]:.2f} | {np.median([p.residual_median_px for p in pairs]):.2f} | "
                    f"{stats(zooms, 4)} | {stats(shifts, 2)} | {within} |")
                print(preset_rows[-1], flush=True)
            order = ranking(medians)
            results["ranking"] = sorted(medians, key=medians.get)
            print(order[0], flush=True)
            sections += [
                f"Per preset ({n} pairs of {args.size} px each, seeds {', '.join(map(str, args.seeds))}; errors "
                "against meta.jsonl as median / p90 / max):",
                "",
                "| preset | pairs | aligned / misaligned / drop | median disp. p95 px | median residual px | "
                "\\|zoom error\\| | shift error px | within FIT_TOLERANCES (median/max) |",
                "|---|---:|---:|---:|---:|---:|---:|---|",
                *preset_rows,
                "",
                *order,
            ]
            if not args.no_lowpass:
                lowpass_rows = []
                for sigma in LOWPASS:
                    _, zooms, shifts = fit_errors(folders["sdd"], replace(config, lowpass=sigma))
                    epe = flow_error(folders["sdd"], sigma, config.border)
                    results["lowpass"][sigma] = {"flow_epe_median": epe, "zoom_errors": zooms, "shift_errors": shifts}
                    lowpass_rows.append(f"| {sigma:g}{' (default)' if sigma == config.lowpass else ''} | {epe:.3f} | "
                                        f"{stats(zooms, 4)} | {stats(shifts, 2)} |")
                    print(lowpass_rows[-1], flush=True)
                sections += [
                    "",
                    f"Low-pass sigma of both images before the flow (sdd preset, the same {n} pairs):",
                    "",
                    "| lowpass px | flow EPE px (median) | \\|zoom error\\| | shift error px |",
                    "|---|---:|---:|---:|",
                    *lowpass_rows,
                ]
    if not args.no_real:
        real = Path(args.real)
        lines, results["real"] = real_rows(real, replace(config, worst=0))
        print("\n".join(lines), flush=True)
        sections += ["" if sections else None,
                     f"Real pairs: {len(results['real']['pairs'])} pairs of {os.path.relpath(real)} (default settings, "
                     "worst first):", "", *lines]
    seconds = time.perf_counter() - start
    results["seconds"] = seconds
    table = "\n".join(line for line in sections if line is not None)
    print(f"({seconds:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.append:
        import torch

        machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads, "
                   f"Python {platform.python_version()}")
        text = (f"\n### Misalignment report vs the synthetic truth\n\n`python benchmarks/alignment.py "
                f"{' '.join(sys.argv[1:])}` — {machine}, {time.strftime('%Y-%m-%d')}, {seconds:.0f} s.\n\n{table}\n")
        with open(args.append, "a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
