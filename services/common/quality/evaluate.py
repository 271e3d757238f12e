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
    measured: list[Measured] = _fidelity_measures(cols, fid)

    # ---- utility -----------------------------------------------------------------------------
    report_progress("utility", 0.2)
    measured += _utility_measures(inputs, cols, task, frames, report_progress)

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
    measures = _privacy_measures(priv_s, priv_b, priv_h, synth.rows, holdout.rows, sensitive, qis, cols)
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
    return _attack_measures(att_s, att_b, att_h, holdout.rows, cols)


# ---------------------------------------------------------------------------------------------
# Raw numbers -> Measured
# ---------------------------------------------------------------------------------------------


def _worst(values: dict[str, float]) -> tuple[str, float]:
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    if not finite:
        return "", math.nan
    k = min(finite, key=lambda x: finite[x])
    return k, finite[k]


def _fidelity_measures(cols: ColumnSet, fid: dict[str, fidelity.FidelityNumbers]) -> list[Measured]:
    s, b, h = fid["synthetic"], fid["baseline"], fid["holdout"]
    ks_worst, ks_worst_v = _worst(s.ks)
    tv_worst, tv_worst_v = _worst(s.tv)
    no_num = {"reason": "There are no numeric or date columns to compare."}
    no_cat = {"reason": "There are no categorical columns to compare."}
    out = [
        Measured(
            "ks_complement_mean",
            s.ks_mean,
            b.ks_mean,
            h.ks_mean,
            {"worst": ks_worst, "worst_value": ks_worst_v} if s.ks else no_num,
        ),
        Measured(
            "tv_complement_mean",
            s.tv_mean,
            b.tv_mean,
            h.tv_mean,
            {"worst": tv_worst, "worst_value": tv_worst_v} if s.tv else no_cat,
        ),
        Measured("kl_divergence_mean", s.kl_mean, b.kl_mean, h.kl_mean),
        Measured("summary_stats_mse", s.stats_mse_mean, b.stats_mse_mean, h.stats_mse_mean, {} if s.ks else no_num),
        Measured(
            "correlation_difference",
            s.correlation_difference,
            b.correlation_difference,
            h.correlation_difference,
            {"strength": s.real_association, "pairs": s.column_pairs}
            if math.isfinite(s.correlation_difference)
            else {"reason": "There is no pair of columns whose relation is defined in the real rows."},
        ),
        Measured(
            "fidelity_score",
            s.fidelity_score,
            b.fidelity_score,
            h.fidelity_score,
            {"shapes": s.column_shapes, "pairs": s.column_pairs},
        ),
    ]
    for col in cols.names:
        if col in s.ks:
            out.append(Measured(f"ks_complement[{col}]", s.ks[col], b.ks[col], h.ks[col], {"column": col}))
        else:
            out.append(Measured(f"tv_complement[{col}]", s.tv[col], b.tv[col], h.tv[col], {"column": col}))
    return out


def _utility_measures(
    inputs: EvaluationInputs, cols: ColumnSet, task: str, frames: dict, report_progress: Progress
) -> list[Measured]:
    target = inputs.target or ""
    if not task:
        return [
            Measured(
                "tstr_trtr_ratio",
                math.nan,
                context={"reason": "No target column was given, so machine-learning utility was not measured."},
            )
        ]
    train, holdout = frames["train"], frames["holdout"]
    mean_ref = math.nan
    if task == utility.REGRESSION:
        y = train.numeric[target]
        mean_ref = float(np.nanmean(y)) if (~np.isnan(y)).any() else math.nan
    scores = {}
    for i, name in enumerate(("synthetic", "train", "baseline")):
        report_progress(f"utility: model on {name} rows", 0.2 + 0.08 * i)
        scores[name] = utility.fit_and_score(
            cols,
            frames[name],
            holdout,
            target,
            task,
            inputs.seed,
            mean_reference=mean_ref,
            trees=inputs.forest_trees,
            n_jobs=inputs.n_jobs,
        )
    s, r, b = scores["synthetic"], scores["train"], scores["baseline"]
    base_ctx: dict = {"target": target, "task": task}
    reason = None
    if len(cols.names) < 2:
        reason = "The target is the only evaluated column: there is nothing to predict it from."
    elif s.train_rows == 0:
        reason = f"No synthetic row has a value for '{target}'."
    elif holdout.rows == 0 or not (~holdout.missing(target)).any():
        reason = f"No held-out real row has a value for '{target}'."
    if task == utility.CLASSIFICATION:
        if reason is None and not math.isfinite(r.roc_auc):
            reason = f"The held-out real rows hold a single class of '{target}', so ROC-AUC is undefined."
        ctx = {**base_ctx, "reason": reason} if reason else base_ctx
        ratio = s.roc_auc / r.roc_auc if r.roc_auc > 0 else math.nan
        return [
            Measured("tstr_roc_auc", s.roc_auc, b.roc_auc, r.roc_auc, ctx),
            Measured("trtr_roc_auc", r.roc_auc, None, None, ctx),
            Measured(
                "tstr_trtr_ratio",
                ratio,
                b.roc_auc / r.roc_auc if r.roc_auc > 0 else None,
                1.0 if math.isfinite(ratio) else None,
                {**ctx, "tstr": s.roc_auc, "trtr": r.roc_auc},
            ),
        ]
    if reason is None and not (r.r2 > 0):
        reason = (
            f"A model trained on the real rows cannot predict '{target}' (R² {r.r2:.3f}), so the ratio is undefined."
        )
    ctx = {**base_ctx, "reason": reason} if reason else base_ctx
    ratio = s.r2 / r.r2 if r.r2 > 0 else math.nan
    return [
        Measured("tstr_r2", s.r2, b.r2, r.r2, ctx),
        Measured("trtr_r2", r.r2, None, None, ctx),
        Measured("tstr_relative_mae", s.relative_mae, b.relative_mae, r.relative_mae, {**ctx, "mae": s.mae}),
        Measured("trtr_relative_mae", r.relative_mae, None, None, {**ctx, "mae": r.mae}),
        Measured(
            "tstr_trtr_ratio",
            ratio,
            b.r2 / r.r2 if r.r2 > 0 else None,
            1.0 if math.isfinite(ratio) else None,
            {**ctx, "tstr": s.r2, "trtr": r.r2},
        ),
    ]


def _privacy_measures(
    s: privacy.PrivacyNumbers,
    b: privacy.PrivacyNumbers,
    h: privacy.PrivacyNumbers,
    synthetic_rows: int,
    holdout_rows: int,
    sensitive: str | None,
    qis: list[str],
    cols: ColumnSet,
) -> list[Measured]:
    def risk(p: privacy.PrivacyNumbers) -> float:
        return p.disclosure.risk if p.disclosure else math.nan

    # sampling noise of (synthetic copy rate - holdout copy rate)
    p_h = h.exact_copy_rate if math.isfinite(h.exact_copy_rate) else 0.0
    copy_noise = 2.0 * math.sqrt(p_h * (1 - p_h) * (1 / max(synthetic_rows, 1) + 1 / max(holdout_rows, 1)))

    if s.disclosure is None:
        why = (
            "No sensitive column was named (and no target column), so attribute disclosure was not measured."
            if not sensitive
            else "No quasi-identifier column is left to attack with."
        )
        disclosure_ctx: dict = {"reason": why}
    else:
        known = ", ".join(f"'{q}'" for q in qis[:4]) + (f" and {len(qis) - 4} more columns" if len(qis) > 4 else "")
        disclosure_ctx = {
            "known": known,
            "sensitive": sensitive,
            "member_rate": s.disclosure.member_rate,
            "control_rate": s.disclosure.control_rate,
            "naive_rate": s.disclosure.naive_rate,
            "point": s.disclosure.risk_point,
        }
    copies = int(round(s.exact_copy_rate * synthetic_rows)) if math.isfinite(s.exact_copy_rate) else 0
    return [
        Measured("dcr_share", s.dcr_share, b.dcr_share, h.dcr_share),
        Measured(
            "dcr_closer_than_holdout", s.dcr_closer_than_holdout, b.dcr_closer_than_holdout, h.dcr_closer_than_holdout
        ),
        Measured("nndr_mean", s.nndr_mean, b.nndr_mean, h.nndr_mean),
        Measured(
            "exact_copy_rate",
            s.exact_copy_rate,
            b.exact_copy_rate,
            h.exact_copy_rate,
            {"copies": copies, "rows": synthetic_rows, "noise": copy_noise},
        ),
        Measured("identifiability", s.identifiability, b.identifiability, h.identifiability),
        Measured("disclosure_risk", risk(s), risk(b), risk(h), disclosure_ctx),
    ]


def _risk_context(r: attacks.Risk) -> dict:
    if not math.isfinite(r.value):
        return {"reason": r.detail or "There are too few evaluated columns or rows for this attack."}
    return {
        "point": r.point,
        "low": r.low,
        "high": r.high,
        "attack_rate": r.attack_rate,
        "control_rate": r.control_rate,
        "baseline_rate": r.baseline_rate,
        "attacks": r.attacks,
        "column": r.detail,
    }


def _attack_measures(
    s: attacks.AttackNumbers, b: attacks.AttackNumbers, h: attacks.AttackNumbers, holdout_rows: int, cols: ColumnSet
) -> list[Measured]:
    names = cols.names
    halves = (names[0::2], names[1::2])
    mia_ctx: dict = {
        "distance_auc": s.membership.distance_auc,
        "members": s.membership.members,
        "noise": s.membership.noise if math.isfinite(s.membership.noise) else 0.0,
    }
    if not math.isfinite(s.membership.auc):
        mia_ctx = {"reason": "There are too few held-out rows to attack membership."}
    link_ctx = _risk_context(s.linkability)
    if "reason" not in link_ctx:
        link_ctx["halves"] = halves
    leak = s.leakage.shares
    measured = [
        Measured("membership_inference_auc", s.membership.auc, b.membership.auc, h.membership.auc, mia_ctx),
        Measured(
            "singling_out_risk",
            s.singling_out.value,
            b.singling_out.value,
            h.singling_out.value,
            _risk_context(s.singling_out),
        ),
        Measured("linkability_risk", s.linkability.value, b.linkability.value, h.linkability.value, link_ctx),
        Measured("inference_risk", s.inference.value, b.inference.value, h.inference.value, _risk_context(s.inference)),
    ]
    if not leak or s.leakage.rows == 0:
        measured.append(
            Measured("rare_value_leakage", math.nan, context={"reason": "No column could be compared value by value."})
        )
        return measured
    # the leaking column furthest above the holdout's own share (a column with no leak cannot fail);
    # when nothing leaks, the column where fresh real rows match the most
    holdout_share = {c: h.leakage.shares.get(c, 0.0) for c in leak}
    leaking = [c for c, v in leak.items() if math.isfinite(v) and v > 0]
    if leaking:
        worst = max(leaking, key=lambda c: (leak[c] - holdout_share[c], leak[c]))
    else:
        worst = max(leak, key=lambda c: holdout_share[c] if math.isfinite(holdout_share[c]) else -1.0)
    p_h = h.leakage.shares.get(worst, 0.0)
    p_h = p_h if math.isfinite(p_h) else 0.0
    # twice the standard error of (synthetic share - holdout share) if both came from one rate (pooled)
    m_rows, h_rows = max(s.leakage.rows, 1), max(h.leakage.rows, 1)
    pooled = (leak[worst] * m_rows + p_h * h_rows) / (m_rows + h_rows)
    noise = 2.0 * math.sqrt(pooled * (1 - pooled) * (1 / m_rows + 1 / h_rows))
    measured.append(
        Measured(
            "rare_value_leakage",
            leak[worst],
            b.leakage.shares.get(worst),
            h.leakage.shares.get(worst),
            {
                "column": worst,
                "rows": s.leakage.rows,
                "copies": int(round(leak[worst] * s.leakage.rows)),
                "noise": noise,
                "columns": len(leak),
                "leaking": len(leaking),
            },
        )
    )
    return measured


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
