"""Training curves of a run folder as one PNG (``jdrl plot``).

Reads ``RUN/log.csv`` (``step, epoch, lr, loss`` and any loss-part columns such
as ``deblur``, ``reblur``, ``mask_fwd``) and, when present, ``RUN/val.csv``
(``step, epoch`` and metric columns such as ``psnr``, ``psnr_deformed``,
``flow_error``). Panels: the losses against the step on a log scale, the
learning rate, other numeric log columns (timings, memory, ...) if any, and
one panel per validation metric. Empty or non-numeric cells are skipped.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from jdrl.atomic import atomic_write
from jdrl.errors import DatasetError
from jdrl.files import real_path

__all__ = ["plot_run", "plot_validation", "read_numeric_csv"]

#: log.csv columns that are neither the x axis, nor the lr, nor losses
INDEX_COLUMNS = ("step", "epoch")
NOT_LOSSES = ("time", "elapsed", "wall", "seconds", "per_s", "speed", "throughput", "mem", "grad_norm", "skipped",
              "batch", "images")


def _number(text: str | None) -> float | None:
    """``text`` as a finite float, or ``None`` (empty, non-numeric, nan)."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_numeric_csv(path: str | os.PathLike) -> dict[str, list[tuple[float, float]]]:
    """``{column: [(step, value), ...]}`` for every column with at least one number (besides ``step``)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return _numeric_series(path, csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(str(path), [f"not a CSV text file ({type(error).__name__})"]) from None


def _numeric_series(path: str | os.PathLike, reader: csv.DictReader) -> dict[str, list[tuple[float, float]]]:
    if not reader.fieldnames or "step" not in reader.fieldnames:
        raise DatasetError(str(path), [f"expected a CSV with a 'step' column, got columns {reader.fieldnames}"])
    series: dict[str, list[tuple[float, float]]] = {name: [] for name in reader.fieldnames if name != "step"}
    for row in reader:
        step = _number(row.get("step"))
        if step is None:
            continue
        for name in series:
            value = _number(row.get(name))
            if value is not None:
                series[name].append((step, value))
    return {name: points for name, points in series.items() if points}


def _is_mask(name: str) -> bool:
    """The calibration mask's kept fraction (``mask_fwd``, ``mask_bwd``): a share in [0, 1], not a loss."""
    return name.lower().startswith("mask")


def _is_loss(name: str) -> bool:
    lowered = name.lower()
    return (name not in (*INDEX_COLUMNS, "lr") and not _is_mask(name)
            and not any(word in lowered for word in NOT_LOSSES))


def _draw(axis, series: dict[str, list[tuple[float, float]]], title: str, log: bool = False,
          legend: bool = False) -> None:
    """One panel: every series against the step; on a log scale only the positive values are drawn."""
    for name, points in series.items():
        if log:
            points = [(s, v) for s, v in points if v > 0]
        if points:
            steps, values = zip(*points)
            axis.plot(steps, values, label=name, linewidth=2.0 if name == "loss" else 1.2,
                      marker="o" if len(points) < 20 else None, markersize=3)
    if log and any(v > 0 for points in series.values() for _, v in points):
        axis.set_yscale("log")
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.grid(True, alpha=0.3)
    if (legend or len(series) > 1) and axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=7)


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, dpi: int = 100) -> Path:
    """Draw ``RUN/log.csv`` (and ``RUN/val.csv`` if there) into a PNG; return its path (default ``RUN/curves.png``)."""
    run = Path(run_dir)
    log_path = run / "log.csv"
    if not log_path.is_file():
        raise FileNotFoundError(f"{run}: no log.csv (is this a training run folder? `jdrl train` writes RUN/log.csv)")
    log = read_numeric_csv(log_path)
    if not log:
        raise DatasetError(str(log_path), ["holds no numbers to plot (no row with a numeric step and value)"])
    val = read_numeric_csv(run / "val.csv") if (run / "val.csv").is_file() else {}
    losses = {k: v for k, v in log.items() if _is_loss(k)}
    masks = {k: v for k, v in log.items() if _is_mask(k)}
    others = {k: v for k, v in log.items() if k not in losses and k not in masks and k not in (*INDEX_COLUMNS, "lr")}
    metrics = {k: v for k, v in val.items() if k not in INDEX_COLUMNS}

    panels = [("losses", losses, True, True), ("learning rate", {"lr": log.get("lr", [])}, False, False)]
    if masks:
        panels.append(("calibration mask: kept fraction", masks, False, True))
    if others:
        panels.append(("other", others, False, True))
    panels += [(f"validation: {name}", {name: points}, False, False) for name, points in metrics.items()]

    # A Figure with its own Agg canvas: no pyplot, so no global backend or figure state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(5 * columns, 3.6 * rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, (title, series, log_scale, legend) in zip(axes.flat, panels):
        _draw(axis, series, title, log_scale, legend)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.suptitle(f"{real_path(run).name}" + ("" if val else "  (no val.csv)"))
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / figure.get_figheight()))  # room for the title
    target = Path(out) if out is not None else run / "curves.png"
    if not 1 <= dpi <= 2400:
        raise DatasetError(str(target), [f"dpi {dpi} is outside 1..2400"])
    _save_atomically(figure, target, dpi)
    return target


def _save_atomically(figure, target: Path, dpi: int) -> None:
    """Render to memory, then write the PNG whole (a failure leaves any previous file as it was)."""
    import io


    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    with atomic_write(target) as handle:
        handle.write(buffer.getvalue())


def plot_validation(runs: dict[str, str | os.PathLike], out: str | os.PathLike,
                    columns: tuple[str, ...] = ("psnr_aligned", "flow_error"), baseline: dict | None = None,
                    title: str = "held-out validation", dpi: int = 100) -> Path:
    """One panel per ``columns`` of every run's ``RUN/val.csv`` against the step, runs as labelled lines.

    ``runs``: ``{label: run folder}`` (folders without ``val.csv`` are skipped); ``baseline``:
    ``{column: value}`` drawn as a dashed horizontal line (e.g. the blurry input's score).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = {label: read_numeric_csv(Path(run) / "val.csv") for label, run in runs.items()
              if (Path(run) / "val.csv").is_file()}
    figure = Figure(figsize=(5.5 * len(columns), 3.8))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    for axis, column in zip(axes, columns):
        for label, values in series.items():
            points = values.get(column, [])
            if points:
                steps, numbers = zip(*points)
                axis.plot(steps, numbers, label=label, marker="o" if len(points) < 30 else None, markersize=3)
        if baseline and baseline.get(column) is not None:
            axis.axhline(baseline[column], color="gray", linestyle="--", linewidth=1, label="input")
        axis.set_title(column)
        axis.set_xlabel("step")
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=dpi)
    return target
