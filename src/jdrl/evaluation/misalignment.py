"""Writing a misalignment report (:class:`jdrl.data.alignment.MisalignmentReport`): table, histograms, HTML.

``OUT/misalignment.csv``   one row per pair, every number at full precision (``repr``)
``OUT/misalignment.json``  the same rows, the summary (verdict counts, medians), the recommendation, the thresholds
                           and how it was measured
``OUT/histograms.png``     the distribution of each measurement over the pairs, with the verdict thresholds
``OUT/pairs/NAME.png``     the worst pairs: blurry, GT, their overlay before and after the flow's alignment, the flow,
                           the calibration mask and the non-rigid residual
``OUT/index.html``         all of it on one self-contained page (inline CSS, no script), in the style of ``jdrl eval``

Existing outputs are refused (one error naming them) unless ``overwrite``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from jdrl.errors import UsageError
from jdrl.evaluation.report import (
    _csv_value,
    _html_table,
    _json_safe,
    figure_html,
    html_page,
    make_strip,
    safe_file_name,
    versions,
)
from jdrl.files import WRITE_ERRORS, real_path, write_text

if TYPE_CHECKING:
    from jdrl.data.alignment import MisalignmentReport, PairAlignment

FILES = ("misalignment.csv", "misalignment.json", "histograms.png", "index.html")
PAIRS_DIR = "pairs"
FORMAT = "jdrl.misalignment"
FORMAT_VERSION = 1

#: the table's columns, their headers and digits (the CSV has every column of PairAlignment.row())
SHOWN = (
    ("zoom", "zoom", 4),
    ("shift_x", "shift x (px)", 2),
    ("shift_y", "shift y (px)", 2),
    ("rotation_deg", "rotation (deg)", 3),
    ("global_max_px", "global max (px)", 2),
    ("residual_median_px", "residual median (px)", 2),
    ("residual_p95_px", "residual p95 (px)", 2),
    ("displacement_p95_px", "displacement p95 (px)", 2),
    ("outlier_share", "outliers", 3),
    ("exposure", "exposure", 3),
    ("match", "match", 3),
)

#: the histograms: (column, title, thresholds attribute drawn as a line or None)
HISTOGRAMS = (
    ("displacement_p95_px", "displacement p95 (px)", None),
    ("global_max_px", "global motion, max (px)", "aligned_px"),
    ("residual_median_px", "non-rigid residual, median (px)", "residual_px"),
    ("zoom", "zoom", None),
    ("shift", "|shift| (px)", None),
    ("rotation_deg", "rotation (deg)", None),
    ("outlier_share", "share fitting no global motion", "max_outliers"),
    ("exposure", "exposure GT/blurry", None),
    ("match", "correlation after global alignment", "min_match"),
)


def _cell(value: Any, digits: int | None) -> str:
    if digits is None or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}"


def existing_outputs(out: Path) -> list[Path]:
    found = [out / name for name in FILES if (out / name).exists()]
    pairs = out / PAIRS_DIR
    if pairs.is_dir():
        found += sorted(p for p in pairs.iterdir())
    return found


def check_output(out_dir: str | os.PathLike, inputs: Sequence[Path] = (), overwrite: bool = False) -> Path:
    """``out_dir`` as a Path, or a :class:`~jdrl.errors.UsageError` when it is a file, lies inside a folder of the
    data's images (``inputs``), or holds an earlier report and ``overwrite`` is not set. Nothing is written."""

    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder")
    where = real_path(out)  # links followed; a symlink loop stays as it is (Path.resolve raises on one)
    for parent in dict.fromkeys(real_path(p.parent) for p in inputs):  # each folder once, in order
        if where == parent or where.is_relative_to(parent):
            raise UsageError(f"-o {out}: the report would be written among the images of {parent}; choose a folder "
                             "outside the data's image folders")
    existing = existing_outputs(out)
    if existing and not overwrite:
        raise UsageError(f"{out} already holds a misalignment report ({len(existing)} file(s), e.g. {existing[0]}); "
                         "choose a new folder, or pass --overwrite to replace it")
    return out


def write_table(report: MisalignmentReport, out: Path) -> dict[str, Path]:
    """``misalignment.csv`` and ``misalignment.json``."""
    rows = [p.row() for p in report.pairs]
    columns = list(rows[0]) if rows else ["name"]
    paths = {"csv": out / "misalignment.csv", "json": out / "misalignment.json"}
    with open(paths["csv"], "w", newline="", encoding="utf-8", errors=WRITE_ERRORS) as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(v) if isinstance(v, float) else v for v in (row[c] for c in columns)])
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "root": report.root,
        "layout": report.layout,
        "config": asdict(report.config),
        "summary": report.summary(),
        "recommendation": asdict(report.recommendation),
        "problems": list(report.problems),
        "seconds": report.seconds,
        "pairs": rows,
        "versions": versions(),
    }
    write_text(paths["json"], json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")
    return paths


def _values(report: MisalignmentReport, column: str) -> np.ndarray:
    if column == "shift":
        return np.array([np.hypot(p.shift_x, p.shift_y) for p in report.pairs])
    return np.array([getattr(p, column) for p in report.pairs], dtype=np.float64)


def histogram_figure(report: MisalignmentReport, path: Path | None = None, dpi: int = 80) -> bytes:
    """The histograms as PNG bytes (also written to ``path`` when given)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, 3).ravel()
    thresholds = report.config.thresholds
    for axis, (column, title, limit) in zip(axes, HISTOGRAMS):
        values = _values(report, column)
        values = values[np.isfinite(values)]
        if values.size:
            axis.hist(values, bins=min(30, max(5, values.size)), color="#4c72b0")
        if limit is not None:
            axis.axvline(getattr(thresholds, limit), color="#c44e52", linestyle="--", label="threshold")
            axis.legend(fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("pairs", fontsize=9)
        axis.tick_params(labelsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def _strip_of(pair: PairAlignment) -> np.ndarray:
    panels = {label: torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)).clamp(0, 1)
              for label, image in (pair.panels or {}).items()}
    return make_strip(panels, max_side=256)


def write_strips(report: MisalignmentReport, out: Path) -> dict[str, str]:
    """``pairs/NAME.png`` for every pair that kept its pictures; ``{name: relative path}``, worst first."""
    from jdrl.images import write_image

    taken: set[str] = set()
    paths = {}
    for pair in report.worst():
        if pair.panels is None:
            continue
        relative = f"{PAIRS_DIR}/{safe_file_name(pair.name, taken)}.png"
        (out / PAIRS_DIR).mkdir(parents=True, exist_ok=True)
        write_image(out / relative, _strip_of(pair).astype(np.float32) / 255.0)
        paths[pair.name] = relative
    return paths


STRIP_NOTE = ("Each strip: the blurry image, the GT, the two as an overlay (red: blurry, cyan: GT; grey where they "
              "agree, coloured fringes where they do not) before and after the GT is warped by the flow, the flow "
              "blurry->GT in the standard colour coding, the calibration mask (white: kept) and the part of the flow "
              "no global motion explains.")


def _thresholds_list(report: MisalignmentReport) -> str:
    t = report.config.thresholds
    items = [
        f"<b>drop</b>: correlation after global alignment below {t.min_match:g}, or more than "
        f"{t.max_outliers:.0%} of the pixels fitting no global motion",
        f"<b>aligned</b>: the global motion moves no pixel more than {t.aligned_px:g} px and the median non-rigid "
        f"residual is at most {t.residual_px:g} px",
        "<b>misaligned</b>: otherwise (JDRL needed)",
        f"<b>pixel loss is fine</b> while at most {t.pixel_share:.0%} of the kept pairs are misaligned",
        f"notes: exposure differing by more than {t.exposure:.0%}, a channel by more than {t.colour:.0%}",
    ]
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _how_measured(report: MisalignmentReport) -> str:
    c = report.config
    items = [f"flow <code>{html.escape(c.flow)}</code> blurry->GT on both images shrunk to at most {c.max_side} px and "
             f"low-passed by a Gaussian of sigma {c.lowpass:g} px",
             f"global model <code>{c.model}</code> (reweighted least squares), border {c.border:.0%} left out",
             f"calibration masks: {', '.join(c.masks) or 'none'}",
             f"{len(report.pairs)} pair(s) in {report.seconds:.1f} s"]
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def write_html(report: MisalignmentReport, out: Path, strips: dict[str, str]) -> Path:
    recommendation = report.recommendation
    summary = report.summary()
    counts = ", ".join(f"{n} {v}" for v, n in summary["verdicts"].items())
    header = ["pair", "verdict", "reasons", *(title for _, title, _ in SHOWN),
              *(f"dropped by mask {m}" for m in report.config.masks)]
    rows = [[p.name, p.verdict, "; ".join(p.reasons), *(_cell(getattr(p, k), d) for k, _, d in SHOWN),
             *(f"{p.mask_drop[m]:.3f}" for m in report.config.masks)] for p in report.worst()]
    body = [
        f"<h1>Misalignment of {html.escape(report.root or 'the pairs')}</h1>",
        f"<p><b>Recommendation: {html.escape(str(recommendation))}</b></p>",
        *(f"<p>{html.escape(note)}</p>" for note in recommendation.notes),
        f"<p>{len(report.pairs)} pair(s): {html.escape(counts)}.</p>",
        "<h2>Verdicts</h2>", _thresholds_list(report),
        "<h2>How it was measured</h2>", _how_measured(report),
        "<h2>Distributions</h2>",
        '<figure><img src="histograms.png" alt="histograms of the measurements"></figure>',
        "<h2>Every pair, worst first</h2>",
        _html_table(header, rows, numeric_from=3) if rows else "<p>no pairs</p>",
    ]
    if report.problems:
        body += ["<h2>File problems</h2>",
                 "<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in report.problems) + "</ul>"]
    if strips:
        body += ["<h2>The worst pairs</h2>", f"<p>{html.escape(STRIP_NOTE)}</p>"]
        by_name = {p.name: p for p in report.pairs}
        for name, relative in strips.items():
            pair = by_name[name]
            caption = (f"{name}: {pair.verdict}, displacement p95 {pair.displacement_p95_px:.2f} px, zoom "
                       f"{pair.zoom:.4f}, shift {pair.shift_x:+.2f}, {pair.shift_y:+.2f} px"
                       + (f" - {'; '.join(pair.reasons)}" if pair.reasons else ""))
            body.append(figure_html(caption, relative, alt=name))
    path = out / "index.html"
    write_text(path, html_page("jdrl misalignment report", body))
    return path


def write_misalignment_report(report: MisalignmentReport, out_dir: str | os.PathLike,
                              overwrite: bool = False) -> dict[str, Path]:
    """Every file of the module docstring into ``out_dir``; returns their paths by kind."""
    inputs = [Path(p) for pair in report.pairs for p in (pair.blur, pair.sharp) if p]
    out = check_output(out_dir, inputs, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    if overwrite and (out / PAIRS_DIR).is_dir():
        for old in (out / PAIRS_DIR).glob("*.png"):
            old.unlink()
    paths = write_table(report, out)
    histogram_figure(report, out / "histograms.png")
    strips = write_strips(report, out)
    paths["histograms"] = out / "histograms.png"
    paths["html"] = write_html(report, out, strips)
    return paths
