"""A dataset's misalignment report (:func:`misalignment_report`): every pair measured, the recommendation, and
the report's files (:meth:`MisalignmentReport.write`)."""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jdrl.config import validate
from jdrl.data.alignment.measure import MIN_SIDE, MisalignmentConfig, analyse_pair
from jdrl.data.alignment.verdict import VERDICTS, PairAlignment, Recommendation, recommend
from jdrl.errors import DatasetError, UsageError
from jdrl.vocabulary import MASK_MODES

if TYPE_CHECKING:
    import torch

    from jdrl.data.pairs import ImagePair, PairSet


@dataclass
class MisalignmentReport:
    """Every pair's measurements, the recommendation, how it was measured and the dataset's file problems."""

    root: str
    layout: str
    config: MisalignmentConfig
    pairs: list[PairAlignment]
    recommendation: Recommendation
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Counts per verdict and the median of each measurement (JSON-ready)."""
        counts = {v: sum(p.verdict == v for p in self.pairs) for v in VERDICTS}
        rows = [p.row() for p in self.pairs]
        numeric = [k for k, v in (rows[0].items() if rows else ()) if isinstance(v, float)]
        medians = {k: float(np.median([r[k] for r in rows])) for k in numeric}
        return {"pairs": len(self.pairs), "verdicts": counts, "medians": medians}

    def worst(self, count: int | None = None) -> list[PairAlignment]:
        ranked = sorted(self.pairs, key=lambda p: p.severity, reverse=True)
        return ranked if count is None else ranked[:count]

    def write(self, out_dir: str | os.PathLike, overwrite: bool = False) -> dict[str, Path]:
        """``misalignment.csv``, ``misalignment.json``, ``histograms.png``, ``pairs/*.png`` and ``index.html``."""
        from jdrl.evaluation.misalignment import write_misalignment_report

        return write_misalignment_report(self, out_dir, overwrite=overwrite)


def _pairs_of(pairs: PairSet | Sequence[ImagePair] | str | os.PathLike) -> tuple[str, str, list[ImagePair], list[str]]:
    from jdrl.data.pairs import PairSet, load_pairs

    if isinstance(pairs, (str, os.PathLike)):
        pairs = load_pairs(pairs)
    if isinstance(pairs, PairSet):
        return str(pairs.root), pairs.layout, list(pairs.pairs), [str(p) for p in pairs.problems]
    return "", "pairs", list(pairs), []


def misalignment_report(
    pairs: PairSet | Sequence[ImagePair] | str | os.PathLike,
    config: MisalignmentConfig | None = None,
    *,
    flow: str | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    estimator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> MisalignmentReport:
    """Measure every pair (a dataset folder, a :class:`~jdrl.data.pairs.PairSet` or a list of
    :class:`~jdrl.data.pairs.ImagePair`) and recommend an objective (package docstring).

    ``flow`` overrides ``config.flow``; ``estimator`` (a flow estimator already built, e.g. by
    :func:`jdrl.flow.build_flow` to refuse a bad name or weight file before any image is read) replaces both, and
    ``config.flow`` only names it in the report. A folder is checked first (every problem raised together,
    :func:`jdrl.data.pairs.load_pairs`); an image that cannot be read later, or a pair whose two images differ in
    size, raises :class:`~jdrl.errors.DatasetError` naming every such pair after the others are measured.
    """

    from jdrl.flow import build_flow
    from jdrl.images import read_image

    config = config or MisalignmentConfig()
    config = validate(replace(config, flow=flow) if flow else config)
    unknown = [m for m in config.masks if m not in MASK_MODES]
    if unknown:
        raise UsageError(f"calibration mask {', '.join(map(repr, unknown))} unknown; choose from {', '.join(MASK_MODES)}")
    root, layout, items, problems = _pairs_of(pairs)
    if not items:
        raise DatasetError(root or "the pairs", problems or ["no pairs to measure"])
    if estimator is None:
        estimator = build_flow(config.flow, config.flow_weights, device)
    start = time.perf_counter()
    results: list[PairAlignment] = []
    failures: list[str] = []
    worst: list[tuple[tuple[int, float], int, PairAlignment]] = []  # a heap of the worst pairs, with their panels
    for index, pair in enumerate(progress(items) if progress else items):
        try:
            blur, sharp = read_image(pair.blur), read_image(pair.sharp)
        except OSError as error:
            failures.append(str(error))
            continue
        if min(blur.shape[:2]) < MIN_SIDE:
            failures.append(f"{pair.blur}: {blur.shape[1]}x{blur.shape[0]} is smaller than the {MIN_SIDE}px the "
                            "misalignment report needs")
            continue
        if blur.shape != sharp.shape:
            failures.append(f"{pair.blur}: size mismatch within the pair ({blur.shape[1]}x{blur.shape[0]} vs "
                            f"{sharp.shape[1]}x{sharp.shape[0]})")
            continue
        result = analyse_pair(blur, sharp, estimator, config, pair.name, (str(pair.blur), str(pair.sharp)),
                              panels=config.worst > 0)
        results.append(result)
        if result.panels is not None:
            heapq.heappush(worst, (result.severity, -index, result))
            if len(worst) > config.worst:
                heapq.heappop(worst)[2].panels = None  # the least bad of the kept ones gives its pictures up
    if failures:
        raise DatasetError(root or "the pairs", failures, hint="fix or remove these files ('jdrl data check' lists "
                           "every problem)")
    return MisalignmentReport(root, layout, config, results, recommend(results, config.thresholds), problems,
                              time.perf_counter() - start)
