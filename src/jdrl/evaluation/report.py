"""Writing evaluation results: ``metrics.csv``, ``summary.json``, ``summary.md`` and an HTML report.

The three result files hold the same numbers: the CSV has every per-image value
at full precision, the JSON the means (full precision) and how they were
measured, the Markdown the means rounded for reading (PSNR 2 decimals, SSIM and
LPIPS 3, MAE 4, flow errors 2). Non-finite values (an infinite PSNR for
identical images) are written ``inf`` in the CSV and as the string ``"inf"`` in
the JSON (strict JSON has no infinity); ``float()`` reads both back.

The HTML report (``index.html``) is self-contained: inline CSS, no script, no
external resource, images by relative path. Strips (input, output, GT,
deformed GT, calibration mask, flow colour coding) are written one PNG per image,
either while evaluating (:class:`StripWriter` as ``evaluate``'s ``on_image``,
so memory stays bounded) or afterwards from kept thumbnails.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch

from jdrl.evaluation.panels import PANEL_SIDE, thumbnail
from jdrl.evaluation.protocol import METRIC_COLUMNS, EvalResult
from jdrl.files import WRITE_ERRORS, write_text
from jdrl.runtime import versions as package_versions

__all__ = [
    "StripWriter",
    "make_strip",
    "markdown_table",
    "read_metrics_csv",
    "write_report",
    "write_results",
]

#: digits shown in Markdown/HTML per metric kind
DIGITS = {"psnr": 2, "ssim": 3, "mae": 4, "lpips": 3, "flow_error": 2}
SECTION_TITLES = {"": "GT", "_deformed": "deformed GT", "_aligned": "aligned truth"}
ARROWS = {"psnr": "↑", "ssim": "↑", "mae": "↓", "lpips": "↓"}
STRIPS_DIR = "strips"


# ----------------------------------------------------------------------------- formatting


def _as_results(results: EvalResult | Sequence[EvalResult]) -> list[EvalResult]:
    results = [results] if isinstance(results, EvalResult) else list(results)
    if not results:
        raise ValueError("no evaluation results to write")
    return results


def union_columns(results: Sequence[EvalResult]) -> list[str]:
    """The metric columns of any of ``results``, in the canonical order."""
    present = {c for r in results for c in r.columns}
    return [c for c in METRIC_COLUMNS if c in present]


def _digits(column: str) -> int:
    return DIGITS["flow_error"] if column.startswith("flow_error") else DIGITS[column.split("_")[0]]


def column_title(column: str) -> str:
    """A readable header: ``psnr_deformed`` -> ``deformed GT PSNR↑``."""
    if column == "flow_error":
        return "flow error to truth (px)↓"
    if column == "flow_error_input":
        return "flow error to input (px)"
    metric, _, rest = column.partition("_")
    section = SECTION_TITLES["_" + rest if rest else ""]
    return f"{section} {metric.upper()}{ARROWS[metric]}"


def format_value(value: float | None, column: str) -> str:
    """A mean rounded for reading; ``n/a`` where the metric was not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{_digits(column)}f}"


def _csv_value(value: Any) -> str:
    """Full precision (``repr``), ``inf``/``-inf``/``nan`` as such, empty when missing."""
    if value is None:
        return ""
    return repr(float(value)) if math.isfinite(float(value)) else str(float(value))


def _json_safe(value: Any) -> Any:
    """Plain JSON data: non-finite floats as strings, paths and tuples converted."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def versions() -> dict[str, str]:
    """Versions of what produced the numbers."""

    return package_versions("scikit-image", "numpy", "opencv-python-headless", "lpips")


# ----------------------------------------------------------------------------- tables


def markdown_table(results: EvalResult | Sequence[EvalResult]) -> str:
    """One Markdown row per result: its label, image count and every mean (rounded)."""
    results = _as_results(results)
    columns = union_columns(results)
    header = ["result", "images", *(column_title(c) for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for result in results:
        cells = [result.label.replace("|", "\\|"), str(len(result.rows))]
        cells += [format_value(result.means.get(c), c) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(results: Sequence[EvalResult]) -> list[str]:
    """One line per result on how it was measured (flow, borders, LPIPS)."""
    lines = []
    for r in results:
        o = r.options
        lines.append(f"- **{r.label}**: flow `{o.get('flow')}`, border `{o.get('border')}` "
                     f"({o.get('border_detail', '')}), tile {o.get('tile')}, LPIPS: {o.get('lpips')}")
    return lines


def summary_markdown(results: EvalResult | Sequence[EvalResult]) -> str:
    """The content of ``summary.md``: the table and how it was measured."""
    results = _as_results(results)
    parts = ["# Evaluation", "", markdown_table(results), "", *_notes(results), ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- result files


def write_results(results: EvalResult | Sequence[EvalResult], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``metrics.csv``, ``summary.json`` and ``summary.md`` into ``out_dir``; return their paths.

    ``metrics.csv`` has one row per (result, image): ``name``, ``result`` (the
    result's label) and every metric column (empty where not measured, e.g.
    LPIPS without its weights).
    """
    results = _as_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = union_columns(results)
    paths = {"csv": out / "metrics.csv", "json": out / "summary.json", "md": out / "summary.md"}
    with open(paths["csv"], "w", newline="", encoding="utf-8", errors=WRITE_ERRORS) as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "result", *columns])
        for result in results:
            for row in result.rows:
                writer.writerow([row["name"], result.label, *(_csv_value(row.get(c)) for c in columns)])
    summary = {
        "format": "jdrl.eval",
        "format_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "columns": columns,
        "results": [{**r.summary(), "means": {c: r.means.get(c) for c in columns}} for r in results],
        "versions": versions(),
    }
    paths["json"].write_text(json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n")
    write_text(paths["md"], summary_markdown(results))
    return paths


def read_metrics_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """``metrics.csv`` back as dicts: metric cells as floats, empty cells as ``None``."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: (v if k in ("name", "result") else (float(v) if v != "" else None)) for k, v in row.items()}
            for row in rows]


# ----------------------------------------------------------------------------- strips


def _label_band(text: str, width: int, height: int = 22) -> np.ndarray:
    """A black ``height x width`` band with ``text`` in white, shrunk or cut to fit."""
    import cv2

    band = np.zeros((height, width, 3), np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    while text:
        (w, _), _ = cv2.getTextSize(text, font, scale, 1)
        if w <= width - 6:
            break
        if scale > 0.35:
            scale -= 0.05
        else:
            text = text[:-1]
    cv2.putText(band, text, (3, height - 7), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return band


def make_strip(panels: Mapping[str, torch.Tensor], max_side: int = PANEL_SIDE, gap: int = 4) -> np.ndarray:
    """Labelled panels side by side as one uint8 RGB ``(H, W, 3)`` array.

    ``panels`` maps labels to ``(3, H, W)`` images (float in [0, 1] or uint8);
    each is downscaled so its longer side is at most ``max_side`` px.
    """
    tiles = []
    for label, image in panels.items():
        small = image if image.dtype == torch.uint8 and max(image.shape[-2:]) <= max_side else thumbnail(
            image.float() / (255.0 if image.dtype == torch.uint8 else 1.0), max_side)
        array = small.permute(1, 2, 0).cpu().numpy()
        tiles.append(np.concatenate([_label_band(label, array.shape[1]), array], axis=0))
    height = max(t.shape[0] for t in tiles)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    pieces = [p for tile in padded for p in (tile, spacer)][:-1]
    return np.ascontiguousarray(np.concatenate(pieces, axis=1))


def safe_file_name(name: str, taken: set[str]) -> str:
    """``name`` reduced to ``[A-Za-z0-9._-]`` and made unique among ``taken`` (which it joins)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
    candidate, n = base, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate.lower())
    return candidate


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from jdrl.images import write_image

    write_image(path, rgb.astype(np.float32) / 255.0)


class StripWriter:
    """``on_image`` callback for :func:`~jdrl.evaluation.protocol.evaluate`: one strip PNG per image.

    Writes ``REPORT/strips/NAME.png`` as images are scored, so a large test set
    needs no memory for pictures; ``paths`` maps image names to the strips'
    paths relative to ``REPORT`` (pass it to :func:`write_report`).
    """

    def __init__(self, report_dir: str | os.PathLike, max_side: int = PANEL_SIDE):
        self.report_dir = Path(report_dir)
        self.max_side = max_side
        self.paths: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, name: str, panels: Mapping[str, torch.Tensor]) -> None:
        relative = f"{STRIPS_DIR}/{safe_file_name(name, self._taken)}.png"
        _write_png(self.report_dir / relative, make_strip(panels, self.max_side))
        self.paths[name] = relative


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 7px;font-size:13px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f2f2f2}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px;margin-bottom:4px}
code{background:#f4f4f4;padding:0 3px}
""".strip()


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>' if i >= numeric_from else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _means_table(results: Sequence[EvalResult]) -> str:
    columns = union_columns(results)
    rows = [[r.label, str(len(r.rows)), *(format_value(r.means.get(c), c) for c in columns)] for r in results]
    return _html_table(["result", "images", *(column_title(c) for c in columns)], rows, numeric_from=1)


def _per_image_table(result: EvalResult) -> str:
    columns = result.columns
    rows = [[str(row["name"]), *(format_value(row.get(c), c) for c in columns)] for row in result.rows]
    return _html_table(["image", *(column_title(c) for c in columns)], rows, numeric_from=1)


def _options_list(results: Sequence[EvalResult]) -> str:
    items = []
    for r in results:
        details = ", ".join(f"{k}: {html.escape(str(v))}" for k, v in r.options.items() if v is not None)
        items.append(f"<li><b>{html.escape(r.label)}</b> - {details}</li>")
    return f"<ul>{''.join(items)}</ul>"


def _strips_from_images(result: EvalResult, report_dir: Path, max_side: int) -> dict[str, str]:
    """Write strips for the thumbnails kept in ``result.images``."""
    writer = StripWriter(report_dir, max_side)
    for name, panels in (result.images or {}).items():
        writer(name, panels)
    return writer.paths


STRIP_NOTE = ("input, output, GT, GT warped onto the output (deformed GT), calibration mask (released rule, "
              "white = kept), flow output->GT in the standard colour coding.")


def figure_html(caption: str, relative: str, alt: str | None = None) -> str:
    """An ``<figure>`` of the image at ``relative`` (a path inside the report folder) with its caption."""
    return (f'<figure><figcaption>{html.escape(caption)}</figcaption>'
            f'<img src="{html.escape(quote(relative))}" alt="{html.escape(caption if alt is None else alt)}"></figure>')


def html_page(title: str, body: list[str]) -> str:
    """A whole report page: the shared style, ``title`` and the ``body`` parts in order."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(
    results: EvalResult | Sequence[EvalResult],
    report_dir: str | os.PathLike,
    strips: Mapping[str, str] | None = None,
    title: str = "jdrl evaluation",
    max_side: int = PANEL_SIDE,
    *,
    intro: str | None = None,
    strip_note: str = STRIP_NOTE,
    figures: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write ``report_dir/index.html``: the means table, per-image metrics and strips.

    The strips shown are those of the first result: ``strips`` (image name ->
    path relative to ``report_dir``, e.g. a :class:`StripWriter`'s ``paths``),
    or, when not given, strips written now from ``results[0].images``. ``intro`` is a
    paragraph under the title, ``strip_note`` says what the strips show, and
    ``figures`` adds ``(caption, relative path)`` pictures at the end (e.g. curves).
    """
    results = _as_results(results)
    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    if strips is None:
        strips = _strips_from_images(results[0], report, max_side) if results[0].images else {}
    missing = [rel for rel in strips.values() if not (report / rel).is_file()]
    if missing:
        raise FileNotFoundError(f"report strips missing under {report}: {', '.join(missing[:5])}")
    strip_figures = []
    for row in results[0].rows:
        relative = strips.get(row["name"])
        if relative is None:
            continue
        caption = f"{row['name']}: PSNR {format_value(row.get('psnr'), 'psnr')} dB (GT), " \
                  f"{format_value(row.get('psnr_deformed'), 'psnr')} dB (deformed GT)"
        strip_figures.append(f'<figure><figcaption>{html.escape(caption)}</figcaption>'
                       f'<img src="{html.escape(quote(relative))}" alt="{html.escape(str(row["name"]))}"></figure>')
    body = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        body.append(f"<p>{html.escape(intro)}</p>")
    body += [
        "<h2>Means</h2>", _means_table(results),
        "<h2>How it was measured</h2>", _options_list(results),
    ]
    for result in results:
        body += [f"<h2>Per image: {html.escape(result.label)}</h2>", _per_image_table(result)]
    if strip_figures:
        body += [f"<h2>Images: {html.escape(results[0].label)}</h2>", f"<p>{html.escape(strip_note)}</p>",
                 *strip_figures]
    body += [figure_html(caption, relative) for caption, relative in figures]
    page = html_page(title, body)
    path = report / "index.html"
    write_text(path, page)
    return path
