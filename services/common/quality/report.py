"""The evaluation report: plain dataclasses mirroring ``synth.v1.Report`` field by field.

Enums are lower-case strings: ``category`` is "utility" | "fidelity" | "privacy"; ``verdict`` is
"pass" | "warn" | "fail" | "not_applicable"; ``task`` is "classification" | "regression" | ""
(no target). :meth:`Report.to_dict` is JSON-safe: non-finite floats become ``None`` (a metric
that could not be computed has ``value`` None) and :meth:`Report.from_dict` turns them back into NaN.

Fields outside the proto (so far): ``excluded_columns`` (identifier and free-text columns that no
metric looked at; the summary sentence names them too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CATEGORIES",
    "VERDICTS",
    "CorrelationCharts",
    "DistanceHistogram",
    "Histogram",
    "Matrix",
    "MetricResult",
    "Report",
]

CATEGORIES = ("utility", "fidelity", "privacy")
VERDICTS = ("pass", "warn", "fail", "not_applicable")


def _out(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _in(x: Any) -> float:
    return math.nan if x is None else float(x)


def _opt_in(x: Any) -> float | None:
    return None if x is None else float(x)


def _list_out(xs: list[float]) -> list[float | None]:
    return [_out(x) for x in xs]


def _list_in(xs: Any) -> list[float]:
    return [_in(x) for x in (xs or [])]


@dataclass
class MetricResult:
    name: str
    category: str
    # The synthetic set's value (NaN when not computable: verdict "not_applicable").
    value: float
    # The same metric for the naive baseline and the real holdout (None: not meaningful).
    baseline_value: float | None
    holdout_value: float | None
    # The boundary actually applied (for holdout-relative metrics: holdout value +- allowance).
    threshold: float
    higher_is_better: bool
    verdict: str
    # 0 (useless) .. 1 (as good as real data); NaN when not computable.
    score: float
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "value": _out(self.value),
            "baseline_value": _out(self.baseline_value),
            "holdout_value": _out(self.holdout_value),
            "threshold": _out(self.threshold),
            "higher_is_better": self.higher_is_better,
            "verdict": self.verdict,
            "score": _out(self.score),
            "explanation": self.explanation,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricResult:
        return cls(
            name=str(data["name"]),
            category=str(data["category"]),
            value=_in(data.get("value")),
            baseline_value=_opt_in(data.get("baseline_value")),
            holdout_value=_opt_in(data.get("holdout_value")),
            threshold=_in(data.get("threshold")),
            higher_is_better=bool(data["higher_is_better"]),
            verdict=str(data["verdict"]),
            score=_in(data.get("score")),
            explanation=str(data.get("explanation", "")),
        )


@dataclass
class Histogram:
    """Shares of rows per bin (each series sums to 1 over its non-missing values for numbers,
    over all rows for categories). Numbers: ``labels`` and ``bin_edges`` hold the edges
    (len = bins + 1); categories: ``labels`` are the categories, ``bin_edges`` is empty."""

    column: str
    labels: list[str]
    bin_edges: list[float]
    real: list[float]
    synthetic: list[float]
    baseline: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "labels": list(self.labels),
            "bin_edges": _list_out(self.bin_edges),
            "real": _list_out(self.real),
            "synthetic": _list_out(self.synthetic),
            "baseline": _list_out(self.baseline),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        return cls(
            column=str(data["column"]),
            labels=[str(x) for x in data.get("labels", [])],
            bin_edges=_list_in(data.get("bin_edges")),
            real=_list_in(data.get("real")),
            synthetic=_list_in(data.get("synthetic")),
            baseline=_list_in(data.get("baseline")),
        )


@dataclass
class Matrix:
    """Row-major ``len(columns)**2`` values; NaN where a pair's association is undefined."""

    columns: list[str]
    values: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "values": _list_out(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Matrix:
        return cls(columns=[str(c) for c in data.get("columns", [])], values=_list_in(data.get("values")))

    def at(self, a: str, b: str) -> float:
        n = len(self.columns)
        return self.values[self.columns.index(a) * n + self.columns.index(b)]


@dataclass
class CorrelationCharts:
    real: Matrix
    synthetic: Matrix
    # synthetic - real
    difference: Matrix

    def to_dict(self) -> dict[str, Any]:
        return {
            "real": self.real.to_dict(),
            "synthetic": self.synthetic.to_dict(),
            "difference": self.difference.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CorrelationCharts:
        return cls(
            real=Matrix.from_dict(data["real"]),
            synthetic=Matrix.from_dict(data["synthetic"]),
            difference=Matrix.from_dict(data["difference"]),
        )


@dataclass
class DistanceHistogram:
    """``name`` "dcr" or "nndr"; shares of rows per bin (len = len(bin_edges) - 1)."""

    name: str
    bin_edges: list[float]
    synthetic_to_train: list[float]
    holdout_to_train: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bin_edges": _list_out(self.bin_edges),
            "synthetic_to_train": _list_out(self.synthetic_to_train),
            "holdout_to_train": _list_out(self.holdout_to_train),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistanceHistogram:
        return cls(
            name=str(data["name"]),
            bin_edges=_list_in(data.get("bin_edges")),
            synthetic_to_train=_list_in(data.get("synthetic_to_train")),
            holdout_to_train=_list_in(data.get("holdout_to_train")),
        )


@dataclass
class Report:
    target_column: str
    task: str
    seed: int
    training_rows: int
    holdout_rows: int
    synthetic_rows: int
    metrics: list[MetricResult]
    # Category scores 0..1 (NaN when the category has nothing computable, e.g. no target).
    utility_score: float
    fidelity_score: float
    privacy_score: float
    verdict: str
    summary: str
    histograms: list[Histogram]
    correlations: CorrelationCharts
    distances: list[DistanceHistogram]
    seconds: float
    excluded_columns: list[str] = field(default_factory=list)
    # What to do about what failed, in plain words (empty when everything passed).
    next_steps: list[str] = field(default_factory=list)
    # Filled in by the service, not by the metrics.
    engine: str = ""  # the engine of the model evaluated ("" for an uploaded synthetic table)
    engine_reason: str = ""  # why the automatic choice picked it ("" when the engine was forced)
    id: str = ""
    dataset_id: str = ""
    model_id: str = ""
    synthetic_dataset_id: str = ""
    create_time: str | None = None

    def metric(self, name: str) -> MetricResult:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset_id": self.dataset_id,
            "model_id": self.model_id,
            "synthetic_dataset_id": self.synthetic_dataset_id,
            "target_column": self.target_column,
            "task": self.task,
            "seed": int(self.seed),
            "training_rows": int(self.training_rows),
            "holdout_rows": int(self.holdout_rows),
            "synthetic_rows": int(self.synthetic_rows),
            "metrics": [m.to_dict() for m in self.metrics],
            "utility_score": _out(self.utility_score),
            "fidelity_score": _out(self.fidelity_score),
            "privacy_score": _out(self.privacy_score),
            "verdict": self.verdict,
            "summary": self.summary,
            "histograms": [h.to_dict() for h in self.histograms],
            "correlations": self.correlations.to_dict(),
            "distances": [d.to_dict() for d in self.distances],
            "create_time": self.create_time,
            "seconds": _out(self.seconds),
            "excluded_columns": list(self.excluded_columns),
            "next_steps": list(self.next_steps),
            "engine": self.engine,
            "engine_reason": self.engine_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            id=str(data.get("id", "")),
            dataset_id=str(data.get("dataset_id", "")),
            model_id=str(data.get("model_id", "")),
            synthetic_dataset_id=str(data.get("synthetic_dataset_id", "")),
            target_column=str(data.get("target_column", "")),
            task=str(data.get("task", "")),
            seed=int(data.get("seed", 0)),
            training_rows=int(data.get("training_rows", 0)),
            holdout_rows=int(data.get("holdout_rows", 0)),
            synthetic_rows=int(data.get("synthetic_rows", 0)),
            metrics=[MetricResult.from_dict(m) for m in data.get("metrics", [])],
            utility_score=_in(data.get("utility_score")),
            fidelity_score=_in(data.get("fidelity_score")),
            privacy_score=_in(data.get("privacy_score")),
            verdict=str(data.get("verdict", "")),
            summary=str(data.get("summary", "")),
            histograms=[Histogram.from_dict(h) for h in data.get("histograms", [])],
            correlations=CorrelationCharts.from_dict(data["correlations"]),
            distances=[DistanceHistogram.from_dict(d) for d in data.get("distances", [])],
            create_time=data.get("create_time"),
            seconds=_in(data.get("seconds")),
            excluded_columns=[str(c) for c in data.get("excluded_columns", [])],
            next_steps=[str(s) for s in data.get("next_steps", [])],
            engine=str(data.get("engine", "")),
            engine_reason=str(data.get("engine_reason", "")),
        )
