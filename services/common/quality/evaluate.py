"""One evaluation: inputs in, :class:`~services.common.quality.report.Report` out."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from services.common.errors import FieldViolation, InvalidArgument
from services.common.quality import attacks, fidelity, privacy, utility
from services.common.quality.baseline import naive_baseline
from services.common.quality.encoding import EXCLUDED_KINDS, ColumnSet, DistanceEncoder, prepare_frames
from services.common.quality.measures import attack_measures, fidelity_measures, privacy_measures, utility_measures
from services.common.quality.report import CorrelationCharts, MetricResult, Report
from services.common.quality.verdicts import Measured, judge, overall, resolve_thresholds
from services.common.schema import ColumnInfo, ColumnKind

__all__ = ["MIN_ROWS", "TASKS", "EvaluationInputs", "check_schema", "evaluate"]

TASKS = ("auto", "classification", "regression")
# Fewest rows per table that give numbers worth reading.
MIN_ROWS = {"real_train": 20, "real_holdout": 10, "synthetic": 10}
# A continuous target treated as classes may have at most this many distinct values.
MAX_NUMERIC_CLASSES = 50
# The naive baseline's attacks only place the scale: this share of the attacks is enough.
BASELINE_ATTACK_SHARE = 0.4

Progress = Callable[[str, float], None]


@dataclass
class EvaluationInputs:
    """What to evaluate. ``columns`` is the real dataset's schema (``DatasetInfo.columns``); the
    frames hold its columns, typed as ``DatasetRepository.load_frame`` gives them (the synthetic
    table may be looser: numbers as text, dates as text, codes as numbers are accepted).

    ``privacy_rows`` caps the sampled query rows of each privacy estimate (see METRICS.md).
    ``sensitive_column`` (default: the target) and ``quasi_identifiers`` (default: every other
    evaluated column) set up the disclosure-risk attack."""

    real_train: pd.DataFrame
    real_holdout: pd.DataFrame
    synthetic: pd.DataFrame
    columns: list[ColumnInfo]
    target: str | None = None
    task: str = "auto"
    seed: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)
    sensitive_column: str | None = None
    quasi_identifiers: list[str] | None = None
    privacy_rows: int = privacy.DEFAULT_ROWS
    forest_trees: int = utility.FOREST_TREES
    n_jobs: int | None = -1


def check_schema(real_columns: Sequence[ColumnInfo], synthetic: pd.DataFrame, *, table: str = "synthetic") -> None:
    """Raise InvalidArgument (reason SCHEMA_MISMATCH) when ``synthetic``'s columns differ from the real
    schema: every missing and every extra column is a FieldViolation ``<table>.columns["name"]``.
    Identifier and free-text columns may be absent (no metric reads them); column order is free."""
    names = [str(c) for c in synthetic.columns]
    expected = {c.name for c in real_columns}
    duplicated = sorted({n for n in names if names.count(n) > 1})
    missing = [c for c in real_columns if c.name not in names and c.kind not in EXCLUDED_KINDS]
    extra = [n for n in dict.fromkeys(names) if n not in expected]
    violations = (
        [FieldViolation(f'{table}.columns["{n}"]', "appears more than once") for n in duplicated]
        + [
            FieldViolation(f'{table}.columns["{c.name}"]', f"missing: the real table has this {c.kind.value} column")
            for c in missing
        ]
        + [FieldViolation(f'{table}.columns["{n}"]', "extra: not a column of the real table") for n in extra]
    )
    if violations:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(repr(c.name) for c in missing))
        if extra:
            parts.append("extra " + ", ".join(repr(n) for n in extra))
        if duplicated:
            parts.append("repeated " + ", ".join(repr(n) for n in duplicated))
        raise InvalidArgument(
            f"the {table} table's columns do not match the real schema: " + "; ".join(parts),
            reason="SCHEMA_MISMATCH",
            violations=violations,
        )


def _resolve_task(inputs: EvaluationInputs, kinds: dict[str, ColumnKind], names: list[str]) -> str:
    if inputs.task not in TASKS:
        raise InvalidArgument(
            f"task must be one of {', '.join(TASKS)}, got {inputs.task!r}",
            reason="INVALID_TASK",
            violations=[FieldViolation("task", f"must be one of {', '.join(TASKS)}")],
        )
    target = inputs.target
    if not target:
        return ""
    if target not in kinds:
        raise InvalidArgument(
            f"target column {target!r} is not a column of the dataset (columns: {', '.join(names)})",
            reason="TARGET_NOT_FOUND",
            violations=[FieldViolation("target_column", f"{target!r} is not a column of the dataset")],
        )
    kind = kinds[target]
    if kind in EXCLUDED_KINDS:
        raise InvalidArgument(
            f"target column {target!r} is an {kind.value} column, which no model can learn; pick a "
            "categorical, continuous or datetime column",
            reason="INVALID_TARGET",
            violations=[FieldViolation("target_column", f"{target!r} is a {kind.value} column")],
        )
    if inputs.task == "auto":
        return utility.CLASSIFICATION if kind is ColumnKind.CATEGORICAL else utility.REGRESSION
    if inputs.task == utility.REGRESSION and kind is ColumnKind.CATEGORICAL:
        raise InvalidArgument(
            f"target column {target!r} is categorical: regression needs a continuous or datetime target",
            reason="INVALID_TARGET",
            violations=[FieldViolation("task", "regression needs a continuous or datetime target")],
        )
    return inputs.task


def _check_inputs(inputs: EvaluationInputs) -> tuple[ColumnSet, str, dict[str, float]]:
    cols = ColumnSet.from_schema(inputs.columns)
    names = [c.name for c in inputs.columns]
    check_schema(inputs.columns, inputs.synthetic)
    for table, frame in (("real_train", inputs.real_train), ("real_holdout", inputs.real_holdout)):
        check_schema(inputs.columns, frame, table=table)
    if not cols.names:
        raise InvalidArgument(
            "no column can be evaluated: every column is an identifier or free text",
            reason="NOTHING_TO_EVALUATE",
            violations=[FieldViolation("columns", "only identifier / free-text columns")],
        )
    short = [
        FieldViolation(table, f"has {len(frame)} rows, at least {MIN_ROWS[table]} are needed")
        for table, frame in (
            ("real_train", inputs.real_train),
            ("real_holdout", inputs.real_holdout),
            ("synthetic", inputs.synthetic),
        )
        if len(frame) < MIN_ROWS[table]
    ]
    if short:
        raise InvalidArgument(
            "too few rows to evaluate: " + "; ".join(f"{v.field} {v.description}" for v in short),
            reason="TOO_FEW_ROWS",
            violations=short,
        )
    task = _resolve_task(inputs, {c.name: c.kind for c in inputs.columns}, names)
    thresholds = resolve_thresholds(inputs.thresholds, cols.names)
    bad = []
    if inputs.sensitive_column is not None and inputs.sensitive_column not in cols.kinds:
        bad.append(FieldViolation("sensitive_column", f"{inputs.sensitive_column!r} is not an evaluated column"))
    for q in inputs.quasi_identifiers or []:
        if q not in cols.kinds:
            bad.append(FieldViolation("quasi_identifiers", f"{q!r} is not an evaluated column"))
    if bad:
        raise InvalidArgument("; ".join(v.description for v in bad), reason="INVALID_PRIVACY_SETTINGS", violations=bad)
    return cols, task, thresholds


def evaluate(inputs: EvaluationInputs, progress: Progress | None = None) -> Report:
    """Score ``inputs.synthetic`` (and, beside it, the naive baseline and the real holdout) against
    the real training rows. ``progress(stage, fraction)`` is called as work advances (fraction 0..1
    over the whole evaluation). Raises InvalidArgument for bad inputs, before any heavy work."""
    start = time.perf_counter()
    report_progress = progress or (lambda _s, _f: None)
    report_progress("checking inputs", 0.0)
    cols, task, overrides = _check_inputs(inputs)
    target = inputs.target or ""
    names = cols.names

    report_progress("preparing tables", 0.02)
    baseline_df = naive_baseline(inputs.real_train[names], len(inputs.synthetic), inputs.seed)
    frames_in = {
        "train": inputs.real_train[names],
        "holdout": inputs.real_holdout[names],
        "synthetic": inputs.synthetic[names],
        "baseline": baseline_df,
    }
    vocabulary, frames = prepare_frames(cols, frames_in, reference="train")
    train, holdout, synth, base = frames["train"], frames["holdout"], frames["synthetic"], frames["baseline"]
    if task == utility.CLASSIFICATION and target in train.numeric:
        distinct = np.unique(train.numeric[target][~np.isnan(train.numeric[target])])
        if len(distinct) > MAX_NUMERIC_CLASSES:
            raise InvalidArgument(
                f"target column {target!r} has {len(distinct)} distinct numbers, too many classes for "
                f"classification (at most {MAX_NUMERIC_CLASSES}); use task 'regression' or 'auto'",
                reason="INVALID_TARGET",
                violations=[FieldViolation("task", "too many classes for classification")],
            )

    # ---- fidelity ----------------------------------------------------------------------------
    report_progress("fidelity", 0.05)
    real_assoc = fidelity.association_matrix(cols, train)
    fid = {
        name: fidelity.compare(cols, train, frames[name], real_assoc) for name in ("synthetic", "baseline", "holdout")
    }
    measured: list[Measured] = fidelity_measures(cols, fid)

    # ---- utility -----------------------------------------------------------------------------
    report_progress("utility", 0.2)
    measured += utility_measures(inputs, cols, task, frames, report_progress)

    # ---- privacy -----------------------------------------------------------------------------
    encoder = DistanceEncoder.fit(cols, train, [holdout, synth, base])
    run, priv_s, privacy_measured = _run_privacy(inputs, cols, encoder, frames, report_progress)
    measured += privacy_measured

    # ---- attacks -----------------------------------------------------------------------------
    measured += _run_attacks(inputs, cols, encoder, run, frames, report_progress)

    # ---- report ------------------------------------------------------------------------------
    report_progress("report", 0.97)
    results = [judge(m, overrides) for m in measured]
    verdict, scores = overall(results)
    real_m, synth_m, diff_m = fidelity.correlation_matrices(cols, real_assoc, fid["synthetic"].associations)
    report = Report(
        target_column=target,
        task=task,
        seed=int(inputs.seed),
        training_rows=train.rows,
        holdout_rows=holdout.rows,
        synthetic_rows=synth.rows,
        metrics=results,
        utility_score=scores["utility"],
        fidelity_score=scores["fidelity"],
        privacy_score=scores["privacy"],
        verdict=verdict,
        summary=_summary(verdict, scores, results, cols.excluded),
        histograms=fidelity.histograms(cols, vocabulary, frames),
        correlations=CorrelationCharts(real_m, synth_m, diff_m),
        distances=run.distance_histograms(priv_s),
        seconds=0.0,
        excluded_columns=list(cols.excluded),
        next_steps=next_steps(results),
    )
    report.seconds = time.perf_counter() - start
    report_progress("done", 1.0)
    return report


def _run_privacy(
    inputs: EvaluationInputs,
    cols: ColumnSet,
    encoder: DistanceEncoder,
    frames: dict[str, Any],
    report_progress: Progress,
) -> tuple[privacy.PrivacyRun, Any, list[Measured]]:
    """Distances (DCR, NNDR) and exact copies of the synthetic rows, the naive
    baseline and the real holdout: the run (the attacks reuse its encodings),
    the synthetic rows' numbers (for the distance charts) and the measures."""
    train, holdout, synth, base = frames["train"], frames["holdout"], frames["synthetic"], frames["baseline"]
    report_progress("privacy", 0.45)
    target = inputs.target or ""
    sensitive = inputs.sensitive_column or (target or None)
    qis = inputs.quasi_identifiers
    if qis is None:
        qis = [c for c in cols.names if c != sensitive]
    qis = [q for q in qis if q != sensitive]
    run = privacy.PrivacyRun(
        cols,
        encoder,
        train,
        holdout,
        seed=inputs.seed,
        rows=inputs.privacy_rows,
        sensitive=sensitive,
        quasi_identifiers=qis,
    )
    report_progress("privacy: synthetic rows", 0.5)
    priv_s = run.evaluate(synth, progress=lambda f: report_progress("privacy: synthetic rows", 0.5 + 0.2 * f))
    report_progress("privacy: naive baseline", 0.7)
    priv_b = run.evaluate(base, rows=privacy.BASELINE_ROWS)
    report_progress("privacy: real holdout", 0.75)
    priv_h = run.evaluate_holdout()
    measures = privacy_measures(priv_s, priv_b, priv_h, synth.rows, holdout.rows, sensitive, qis, cols)
    return run, priv_s, measures


def _run_attacks(
    inputs: EvaluationInputs,
    cols: ColumnSet,
    encoder: DistanceEncoder,
    run: privacy.PrivacyRun,
    frames: dict[str, Any],
    report_progress: Progress,
) -> list[Measured]:
    """The privacy attacks on the synthetic rows, the naive baseline and the real holdout."""
    train, holdout, synth, base = frames["train"], frames["holdout"], frames["synthetic"], frames["baseline"]
    report_progress("privacy attacks: synthetic rows", 0.8)
    texts = {
        "train": attacks.raw_texts(inputs.real_train, cols.excluded),
        "holdout": attacks.raw_texts(inputs.real_holdout, cols.excluded),
    }
    attack_run = attacks.AttackRun(
        cols, encoder, train, holdout, seed=inputs.seed, texts=texts, train_x=run.train_x, holdout_x=run.holdout_x
    )
    att_s = attack_run.evaluate(synth, attacks.raw_texts(inputs.synthetic, cols.excluded))
    report_progress("privacy attacks: naive baseline", 0.88)
    # the naive baseline draws identifier and free-text cells like the others: each column on its own
    base_raw = {
        col: cells[np.random.default_rng([inputs.seed, 0xBA5E, i]).integers(0, len(cells), size=base.rows)]
        for i, (col, cells) in enumerate(texts["train"].items())
        if len(cells)
    }
    att_b = attack_run.evaluate(base, base_raw, scale=BASELINE_ATTACK_SHARE, inference=False)
    report_progress("privacy attacks: real holdout", 0.92)
    att_h = attack_run.evaluate_holdout()
    return attack_measures(att_s, att_b, att_h, holdout.rows, cols)


_SHORTFALL = {"fail", "warn"}
_WORST_COLUMNS = 3


def next_steps(results: list[MetricResult]) -> list[str]:
    """Plain advice for what fell short: train longer or another engine, and the columns furthest off."""
    short = {r.name: r for r in results if r.verdict in _SHORTFALL}
    if not short:
        return []
    steps: list[str] = []
    utility_short = [r for r in short.values() if r.category == "utility" and not r.name.startswith("trtr")]
    if utility_short:
        steps.append(
            "Predictions learned from the synthetic rows fall short of those learned from real ones: train longer "
            "(preset best, or more epochs) or try another engine (synthesizer auto picks by measurement; "
            "tvae often keeps relations between columns better than ctgan in a short run)."
        )
    columns = sorted(
        (r for r in results if "[" in r.name and r.verdict in _SHORTFALL and math.isfinite(r.value)),
        key=lambda r: r.value,
    )[:_WORST_COLUMNS]
    if columns:
        listed = ", ".join(f"{r.name.split('[', 1)[1][:-1]} ({r.value:.2f})" for r in columns)
        steps.append(f"The columns furthest from the real ones: {listed}. Compare their charts below.")
    if "correlation_difference" in short:
        steps.append(
            "Relations between columns are off: train longer, or try tvae or the Gaussian copula, which keep "
            "pairwise relations well in short runs."
        )
    if any(r.category == "fidelity" for r in short.values()) and not columns and not steps:
        steps.append("Distributions differ from the real ones: train longer or try another engine.")
    if "rare_value_leakage" in short:
        steps.append(
            "Synthetic rows repeat values that only one real person has: keep rare-value protection on (the "
            "default; allow_rare_values off), and give identifier-like columns the policy fake or drop."
        )
    if any(r.category == "privacy" for r in short.values()):
        steps.append(
            "Synthetic rows sit closer to training rows than real unseen rows do: train fewer epochs, or use the "
            "Gaussian copula, which cannot copy rows; do not share this set as it is."
        )
    return steps


def _summary(verdict: str, scores: dict[str, float], results: list[MetricResult], excluded: list[str]) -> str:
    def score(x: float) -> str:
        return f"{x:.2f}" if math.isfinite(x) else "n/a"

    failing = [r.name for r in results if r.verdict == "fail" and "[" not in r.name]
    warning = [r.name for r in results if r.verdict == "warn" and "[" not in r.name]
    text = (
        f"Overall verdict: {verdict.replace('_', ' ')}. Scores from 0 (useless) to 1 (as good as real data): "
        f"utility {score(scores['utility'])}, fidelity {score(scores['fidelity'])}, privacy {score(scores['privacy'])}."
    )
    if failing:
        text += " Failed: " + ", ".join(failing) + "."
    if warning:
        text += " Warnings: " + ", ".join(warning) + "."
    if excluded:
        text += " Not evaluated (identifier or free-text columns): " + ", ".join(excluded) + "."
    return text
