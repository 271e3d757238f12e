"""The evaluator's metrics domain: utility, fidelity and privacy of a synthetic table.

Pure Python over pandas / numpy / scikit-learn / scipy; no gRPC, no protobuf. The servicer builds
:class:`EvaluationInputs`, calls :func:`evaluate` and maps the :class:`Report` (whose fields mirror
``synth.v1.Report``) onto the proto. Every metric's formula, threshold and reason: METRICS.md.
"""

from services.evaluator.metrics.baseline import naive_baseline
from services.evaluator.metrics.evaluate import TASKS, EvaluationInputs, check_schema, evaluate
from services.evaluator.metrics.report import (
    CorrelationCharts,
    DistanceHistogram,
    Histogram,
    Matrix,
    MetricResult,
    Report,
)
from services.evaluator.metrics.verdicts import SPECS

__all__ = [
    "SPECS",
    "TASKS",
    "CorrelationCharts",
    "DistanceHistogram",
    "EvaluationInputs",
    "Histogram",
    "Matrix",
    "MetricResult",
    "Report",
    "check_schema",
    "evaluate",
    "naive_baseline",
]
