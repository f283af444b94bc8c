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

from jdrl.errors import DatasetError

__all__ = ["plot_run", "read_numeric_csv"]

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
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
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


def _is_loss(name: str) -> bool:
    lowered = name.lower()
    return name not in (*INDEX_COLUMNS, "lr") and not any(word in lowered for word in NOT_LOSSES)


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
    val = read_numeric_csv(run / "val.csv") if (run / "val.csv").is_file() else {}
    losses = {k: v for k, v in log.items() if _is_loss(k)}
    others = {k: v for k, v in log.items() if k not in losses and k not in (*INDEX_COLUMNS, "lr")}
    metrics = {k: v for k, v in val.items() if k not in INDEX_COLUMNS}

    panels = [("losses", losses, True, True), ("learning rate", {"lr": log.get("lr", [])}, False, False)]
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
    figure.suptitle(f"{run.resolve().name}" + ("" if val else "  (no val.csv)"))
    figure.tight_layout()
    target = Path(out) if out is not None else run / "curves.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=dpi)
    return target
