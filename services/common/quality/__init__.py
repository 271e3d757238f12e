"""Quality metrics: utility, fidelity and privacy of a synthetic table.

Shared (not the evaluator's alone) because the trainer's automatic engine choice scores its
candidates with the same metrics the evaluator reports.

Pure Python over pandas / numpy / scikit-learn / scipy; no gRPC, no protobuf. The servicer builds
:class:`EvaluationInputs`, calls :func:`evaluate` and maps the :class:`Report` (whose fields mirror
``synth.v1.Report``) onto the proto. Every metric's formula, threshold and reason: METRICS.md.
"""

from services.common.quality.baseline import naive_baseline
from services.common.quality.evaluate import TASKS, EvaluationInputs, check_schema, evaluate
from services.common.quality.report import (
    CorrelationCharts,
    DistanceHistogram,
    Histogram,
    Matrix,
    MetricResult,
    Report,
)
from services.common.quality.verdicts import SPECS

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
