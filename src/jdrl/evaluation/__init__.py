"""Evaluation with the paper's protocol: metrics, dataset scoring, reports.

``evaluate`` (the scoring, :mod:`jdrl.evaluation.protocol`), ``EvalResult``, ``Protocol`` (what is
scored how, as one value: ``Protocol.paper()``, :mod:`jdrl.evaluation.protocol_record`) and ``Display``
(what is only shown: :mod:`jdrl.evaluation.panels`) are imported here; reports
(:mod:`jdrl.evaluation.report`) and training curves (:mod:`jdrl.evaluation.plot`, matplotlib
imported only when drawing) are imported lazily by name.
"""

from __future__ import annotations

from jdrl.evaluation.panels import Display
from jdrl.evaluation.protocol import EvalResult, evaluate
from jdrl.evaluation.protocol_record import Protocol
from jdrl.registry import lazy_exports

_LAZY = {
    "write_results": "jdrl.evaluation.report",
    "write_report": "jdrl.evaluation.report",
    "markdown_table": "jdrl.evaluation.report",
    "read_metrics_csv": "jdrl.evaluation.report",
    "StripWriter": "jdrl.evaluation.report",
    "plot_run": "jdrl.evaluation.plot",
}

__all__ = ["Display", "EvalResult", "Protocol", "evaluate", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, eager=["Display", "EvalResult", "Protocol", "evaluate"])
