"""Thresholds, verdicts, 0-1 scores and plain-language explanations for every metric.

A metric's verdict compares its value with its threshold: for a higher-is-better metric, *pass*
at or above the threshold, *warn* within ``warn_margin`` below it, *fail* further below (mirrored
for lower-is-better metrics); *not_applicable* when the value could not be computed.
Holdout-relative metrics (``exact_copy_rate``, ``nndr_mean``) take the real holdout's own value
plus (or minus) the configured threshold as the boundary (widened to twice the sampling noise when
that is larger), because what is "close" depends on the data; the report's ``threshold`` field
always holds the boundary actually applied.

Overrides: ``thresholds={"dcr_share": 0.6, "dcr_share.warn_margin": 0.1}``; per-column metrics
(``ks_complement[age]``) fall back to their mean's setting (``ks_complement_mean``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import FieldViolation, InvalidArgument
from services.common.quality.report import MetricResult

__all__ = ["SPECS", "MetricSpec", "Measured", "judge", "overall", "resolve_thresholds"]

_WARN = ".warn_margin"


def _clip(x: float) -> float:
    return float(min(1.0, max(0.0, x))) if math.isfinite(x) else float("nan")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    category: str
    higher_is_better: bool
    threshold: float
    warn_margin: float
    # Counts toward the category score and the overall verdict (the others are informational).
    headline: bool
    # 0..1 score from (value, context)
    score: Callable[[float, Mapping[str, Any]], float]
    # The threshold is an allowance around the holdout's own value, not an absolute boundary.
    holdout_relative: bool = False
    # The value an unrelated table scores (an attack's coin toss): the threshold is never closer
    # to it than the sampling noise in the context ("noise", twice the standard error).
    neutral: float | None = None


@dataclass
class Measured:
    """A metric's raw numbers, before judging; ``context`` feeds its score and explanation."""

    name: str
    value: float
    baseline_value: float | None = None
    holdout_value: float | None = None
    context: dict[str, Any] = field(default_factory=dict)


def _auc_score(v: float, _c: Mapping[str, Any]) -> float:
    return _clip(2.0 * (v - 0.5))


def _ratio_score(v: float, c: Mapping[str, Any]) -> float:
    if c.get("task") == "classification":
        tstr, trtr = c.get("tstr", math.nan), c.get("trtr", math.nan)
        return _clip((tstr - 0.5) / (trtr - 0.5)) if trtr > 0.5 else math.nan
    return _clip(v)


def _identity(v: float, _c: Mapping[str, Any]) -> float:
    return _clip(v)


def _one_minus(v: float, _c: Mapping[str, Any]) -> float:
    return _clip(1.0 - v)


def _half_share(v: float, _c: Mapping[str, Any]) -> float:
    return _clip(2.0 * (1.0 - v))


def _kl_score(v: float, _c: Mapping[str, Any]) -> float:
    return _clip(math.exp(-v)) if math.isfinite(v) else math.nan


def _mse_score(v: float, _c: Mapping[str, Any]) -> float:
    return _clip(1.0 - math.sqrt(v)) if math.isfinite(v) and v >= 0 else math.nan


def _corr_score(v: float, c: Mapping[str, Any]) -> float:
    return _clip(c.get("pairs", math.nan))


def _copy_score(v: float, c: Mapping[str, Any]) -> float:
    h = c.get("holdout", 0.0)
    h = h if math.isfinite(h) else 0.0
    return _clip(1.0 - max(0.0, v - h) / (1.0 - h)) if h < 1.0 else 1.0


def _nndr_score(v: float, c: Mapping[str, Any]) -> float:
    h = c.get("holdout", math.nan)
    return _clip(v / h) if math.isfinite(h) and h > 0 else _clip(v)


_SPEC_LIST = [
    # utility
    MetricSpec("tstr_roc_auc", "utility", True, 0.7, 0.05, False, _auc_score),
    MetricSpec("trtr_roc_auc", "utility", True, 0.7, 0.05, False, _auc_score),
    MetricSpec("tstr_r2", "utility", True, 0.5, 0.1, False, _identity),
    MetricSpec("trtr_r2", "utility", True, 0.5, 0.1, False, _identity),
    MetricSpec("tstr_relative_mae", "utility", False, 0.6, 0.1, False, _one_minus),
    MetricSpec("trtr_relative_mae", "utility", False, 0.6, 0.1, False, _one_minus),
    MetricSpec("tstr_trtr_ratio", "utility", True, 0.9, 0.1, True, _ratio_score),
    # fidelity
    MetricSpec("ks_complement_mean", "fidelity", True, 0.85, 0.1, True, _identity),
    MetricSpec("tv_complement_mean", "fidelity", True, 0.85, 0.1, True, _identity),
    MetricSpec("kl_divergence_mean", "fidelity", False, 0.05, 0.1, True, _kl_score),
    MetricSpec("summary_stats_mse", "fidelity", False, 0.01, 0.03, True, _mse_score),
    MetricSpec("correlation_difference", "fidelity", False, 0.05, 0.05, True, _corr_score),
    MetricSpec("fidelity_score", "fidelity", True, 0.75, 0.1, True, _identity),
    # per column (informational; thresholds from the means unless overridden by full name)
    MetricSpec("ks_complement", "fidelity", True, 0.85, 0.1, False, _identity),
    MetricSpec("tv_complement", "fidelity", True, 0.85, 0.1, False, _identity),
    # privacy
    MetricSpec("dcr_share", "privacy", False, 0.55, 0.05, True, _half_share),
    MetricSpec("dcr_closer_than_holdout", "privacy", False, 0.55, 0.05, True, _half_share),
    MetricSpec("nndr_mean", "privacy", True, 0.1, 0.1, True, _nndr_score, holdout_relative=True),
    MetricSpec("exact_copy_rate", "privacy", False, 0.01, 0.02, True, _copy_score, holdout_relative=True),
    MetricSpec("identifiability", "privacy", False, 0.55, 0.05, True, _half_share),
    MetricSpec("disclosure_risk", "privacy", False, 0.1, 0.1, True, _one_minus),
    # privacy attacks (services.common.quality.attacks)
    MetricSpec("membership_inference_auc", "privacy", False, 0.55, 0.0, True, _half_share, neutral=0.5),
    MetricSpec("singling_out_risk", "privacy", False, 0.1, 0.0, True, _one_minus),
    MetricSpec("linkability_risk", "privacy", False, 0.1, 0.0, True, _one_minus),
    MetricSpec("inference_risk", "privacy", False, 0.1, 0.0, True, _one_minus),
    MetricSpec("rare_value_leakage", "privacy", False, 0.01, 0.0, True, _copy_score, holdout_relative=True),
]
SPECS: dict[str, MetricSpec] = {s.name: s for s in _SPEC_LIST}
_PER_COLUMN_FALLBACK = {"ks_complement": "ks_complement_mean", "tv_complement": "tv_complement_mean"}


def base_name(name: str) -> str:
    """``ks_complement[age]`` -> ``ks_complement``."""
    return name.split("[", 1)[0]


def resolve_thresholds(overrides: Mapping[str, float], column_names: list[str]) -> dict[str, float]:
    """Validated overrides. Keys: a metric name, ``<name>.warn_margin``, or a per-column name such as
    ``ks_complement[age]``; values finite numbers (margins >= 0). Raises InvalidArgument listing
    every bad key."""
    violations = []
    out: dict[str, float] = {}
    for key, raw in (overrides or {}).items():
        name = key[: -len(_WARN)] if key.endswith(_WARN) else key
        base = base_name(name)
        column_ok = base == name or (
            base in _PER_COLUMN_FALLBACK and name.endswith("]") and name[len(base) + 1 : -1] in column_names
        )
        if base not in SPECS or not column_ok or (base == name and base in _PER_COLUMN_FALLBACK):
            violations.append(FieldViolation(f'thresholds["{key}"]', "not a metric name; see METRICS.md for the list"))
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or (key.endswith(_WARN) and value < 0):
            violations.append(FieldViolation(f'thresholds["{key}"]', f"must be a finite number, got {raw!r}"))
            continue
        out[key] = value
    if violations:
        raise InvalidArgument(
            "bad threshold overrides: " + ", ".join(v.field for v in violations),
            reason="INVALID_THRESHOLD",
            violations=violations,
        )
    return out


def _setting(name: str, overrides: Mapping[str, float]) -> tuple[float, float]:
    spec = SPECS[base_name(name)]
    threshold, margin = spec.threshold, spec.warn_margin
    fallback = _PER_COLUMN_FALLBACK.get(spec.name)
    for key in ([fallback] if fallback else []) + [name]:
        threshold = overrides.get(key, threshold)
        margin = overrides.get(key + _WARN, margin)
    return threshold, margin


def verdict_of(value: float, threshold: float, margin: float, higher_is_better: bool) -> str:
    if not math.isfinite(value):
        return "not_applicable"
    gap = value - threshold if higher_is_better else threshold - value
    if gap >= -1e-12:
        return "pass"
    return "warn" if gap >= -margin - 1e-12 else "fail"


def judge(m: Measured, overrides: Mapping[str, float]) -> MetricResult:
    spec = SPECS[base_name(m.name)]
    threshold, margin = _setting(m.name, overrides)
    context = dict(m.context)
    if spec.holdout_relative:
        h = m.holdout_value if m.holdout_value is not None and math.isfinite(m.holdout_value) else 0.0
        # never tighter than sampling noise (twice the standard error of the difference)
        allowance = max(threshold, float(context.get("noise", 0.0)))
        context["holdout"] = h
        context["allowance"] = allowance
        threshold = h - allowance if spec.higher_is_better else h + allowance
    elif spec.neutral is not None:
        noise = float(context.get("noise", 0.0))
        threshold = (
            min(threshold, spec.neutral - noise) if spec.higher_is_better else max(threshold, spec.neutral + noise)
        )
    verdict = verdict_of(m.value, threshold, margin, spec.higher_is_better)
    score = spec.score(m.value, context) if math.isfinite(m.value) else math.nan
    text = _EXPLAIN[spec.name](m, context)
    return MetricResult(
        name=m.name,
        category=spec.category,
        value=float(m.value),
        baseline_value=m.baseline_value,
        holdout_value=m.holdout_value,
        threshold=float(threshold),
        higher_is_better=spec.higher_is_better,
        verdict=verdict,
        score=float(score),
        explanation=(text + " " + _verdict_phrase(verdict, threshold, margin, spec)).strip()
        if verdict != "not_applicable"
        else text,
    )


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _verdict_phrase(verdict: str, threshold: float, margin: float, spec: MetricSpec) -> str:
    side = "at least" if spec.higher_is_better else "at most"
    if verdict == "pass":
        return f"Pass: the threshold is {side} {_fmt(threshold)}."
    if verdict == "warn":
        return f"Warning: just outside the threshold of {side} {_fmt(threshold)}."
    return f"Fail: the threshold is {side} {_fmt(threshold)}."


# ---------------------------------------------------------------------------------------------
# Overall verdict and category scores
# ---------------------------------------------------------------------------------------------


def overall(results: list[MetricResult]) -> tuple[str, dict[str, float]]:
    """(overall verdict, category -> 0..1 score) from the headline metrics. The utility score is the
    TSTR/TRTR score, the fidelity score the ``fidelity_score`` metric, the privacy score the mean
    score of the privacy metrics."""
    headline = [r for r in results if SPECS[base_name(r.name)].headline and r.verdict != "not_applicable"]
    verdict = "not_applicable"
    for level in ("pass", "warn", "fail"):
        if any(r.verdict == level for r in headline):
            verdict = level
    scores: dict[str, float] = {}
    for category in ("utility", "fidelity", "privacy"):
        if category == "fidelity":
            picked = [r.score for r in headline if r.name == "fidelity_score"]
        else:
            picked = [r.score for r in headline if r.category == category]
        finite = [s for s in picked if math.isfinite(s)]
        scores[category] = float(sum(finite) / len(finite)) if finite else math.nan
    return verdict, scores


# ---------------------------------------------------------------------------------------------
# Explanations: one plain sentence (or two) with the numbers in it
# ---------------------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 0) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:.{digits}f}%"


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}f}"


def _na(m: Measured, c: Mapping[str, Any]) -> str | None:
    if math.isfinite(m.value):
        return None
    return str(c.get("reason") or "This metric could not be computed for this data.")


def _x_tstr_auc(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"A model trained on the synthetic rows predicts '{c['target']}' for real rows it never saw with "
        f"ROC-AUC {_num(m.value)} (0.5 is guessing, 1 is perfect); trained on the real rows it reaches "
        f"{_num(m.holdout_value)}, trained on the naive baseline {_num(m.baseline_value)}."
    )


def _x_trtr_auc(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"Trained on the real training rows, the same model predicts '{c['target']}' for the held-out real rows "
        f"with ROC-AUC {_num(m.value)}: the most synthetic data can be expected to reach (this verdict says "
        f"whether '{c['target']}' is predictable at all and does not count toward the overall verdict)."
    )


def _x_tstr_r2(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"A model trained on the synthetic rows explains {_pct(m.value)} of the variation of '{c['target']}' in "
        f"real rows it never saw (R² {_num(m.value)}); trained on the real rows it explains {_pct(m.holdout_value)}, "
        f"trained on the naive baseline {_pct(m.baseline_value)}."
    )


def _x_trtr_r2(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"Trained on the real training rows, the same model explains {_pct(m.value)} of the variation of "
        f"'{c['target']}' in the held-out real rows (R² {_num(m.value)}): the most synthetic data can be "
        f"expected to reach (informational, not part of the overall verdict)."
    )


def _x_tstr_mae(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"A model trained on the synthetic rows misses '{c['target']}' by {_fmt(c['mae'])} on average on real rows "
        f"(mean absolute error), {_pct(m.value)} of the error of always guessing the average; the real-trained "
        f"model's is {_pct(m.holdout_value)}, the naive baseline's {_pct(m.baseline_value)}."
    )


def _x_trtr_mae(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"Trained on the real training rows, the model misses '{c['target']}' by {_fmt(c['mae'])} on average, "
        f"{_pct(m.value)} of the error of always guessing the average (informational)."
    )


def _x_ratio(m: Measured, c: Mapping[str, Any]) -> str:
    if _na(m, c):
        return str(_na(m, c))
    what = "ROC-AUC" if c.get("task") == "classification" else "R²"
    return (
        f"The model trained on synthetic rows keeps {_pct(m.value)} of the real-trained model's {what} "
        f"({_num(c['tstr'])} vs {_num(c['trtr'])}); trained on the naive baseline it keeps {_pct(m.baseline_value)}."
    )


def _x_ks_mean(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"The numeric and date columns' distributions agree with the real ones to {_pct(m.value)} on average "
        f"(1 minus the largest gap between the cumulative distributions; worst: '{c['worst']}' at "
        f"{_pct(c['worst_value'])}); real held-out rows reach {_pct(m.holdout_value)}, the naive baseline "
        f"{_pct(m.baseline_value)}."
    )


def _x_tv_mean(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"The categorical columns' category frequencies agree with the real ones to {_pct(m.value)} on average "
        f"(1 minus the share of rows that would have to change category; worst: '{c['worst']}' at "
        f"{_pct(c['worst_value'])}); real held-out rows reach {_pct(m.holdout_value)}, the naive baseline "
        f"{_pct(m.baseline_value)}."
    )


def _x_ks(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"At any cut-off, the share of synthetic rows below it differs from the real share by at most "
        f"{_pct(1 - m.value)} for '{c['column']}' (real held-out rows: {_pct(1 - (m.holdout_value or math.nan))})."
    )


def _x_tv(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"{_pct(1 - m.value)} of the synthetic rows would have to change their '{c['column']}' category to match "
        f"the real frequencies (real held-out rows: {_pct(1 - (m.holdout_value or math.nan))})."
    )


def _x_kl(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"Binned column by column, the synthetic distributions diverge from the real ones by {_num(m.value)} "
        f"on average (Kullback-Leibler divergence in nats; 0 means identical; real held-out rows: "
        f"{_num(m.holdout_value)}, naive baseline: {_num(m.baseline_value)})."
    )


def _x_mse(m: Measured, c: Mapping[str, Any]) -> str:
    def sd(x: float | None) -> str:
        return _num(math.sqrt(x), 2) if x is not None and math.isfinite(x) and x >= 0 else "n/a"

    return _na(m, c) or (
        f"The means, spreads and percentiles of the numeric columns are off by {sd(m.value)} standard deviations "
        f"(root mean square; real held-out rows: {sd(m.holdout_value)}, naive baseline: {sd(m.baseline_value)})."
    )


def _x_corr(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"Relations between pairs of columns (correlations, associations) differ from the real ones by "
        f"{_num(m.value)} on average, against an average real strength of {_num(c['strength'])}: "
        f"{_pct(c['pairs'])} of the relations are kept; real held-out rows differ by {_num(m.holdout_value)}, "
        f"the naive baseline, which keeps no relation, by {_num(m.baseline_value)}."
    )


def _x_fidelity(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"Overall fidelity is {_num(m.value, 2)} out of 1, half for the columns' own distributions "
        f"({_num(c['shapes'], 2)}) and half for the relations between columns ({_num(c['pairs'], 2)}); "
        f"real held-out rows score {_num(m.holdout_value, 2)}, the naive baseline {_num(m.baseline_value, 2)}."
    )


def _x_dcr_share(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"{_pct(m.value)} of the synthetic rows are closer to a training row than to an equally large set of "
        f"real rows the model never saw; about 50% means the model did not memorise its training rows "
        f"(real held-out rows: {_pct(m.holdout_value)})."
    )


def _x_dcr_closer(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"Compared pair by pair, a synthetic row lies closer to its nearest training row than a real row the "
        f"model never saw does in {_pct(m.value)} of the comparisons; about 50% means synthetic rows keep the "
        f"same distance from the training rows as new real people (real held-out rows: {_pct(m.holdout_value)})."
    )


def _x_nndr(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"For a synthetic row, the closest training row is on average {_num(m.value, 2)} times as far as the "
        f"second closest (real held-out rows: {_num(m.holdout_value, 2)}); near 0, rows sit on top of one "
        f"particular training record."
    )


def _x_copies(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"{_pct(m.value, 1)} of the synthetic rows ({c['copies']:,} of {c['rows']:,}) are exact copies of a "
        f"training row; among real held-out rows, {_pct(m.holdout_value, 1)} happen to equal a training row."
    )


def _x_ident(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"For {_pct(m.value)} of the training rows, some synthetic row is closer to them than any other real "
        f"person's row; about 50% is what fresh real data gives (real held-out rows: {_pct(m.holdout_value)})."
    )


def _x_disclosure(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"An attacker who knows {c['known']} of a person and copies '{c['sensitive']}' from the nearest synthetic "
        f"row guesses right for {_pct(c['member_rate'])} of the people in the training data and "
        f"{_pct(c['control_rate'])} of people who were not (always guessing the most common value: "
        f"{_pct(c['naive_rate'])}); so the synthetic data gives away at least {_pct(m.value)} (best estimate "
        f"{_pct(c['point'])}) of what was left to learn about the training people in particular."
    )


def _interval(c: Mapping[str, Any]) -> str:
    return f"a risk of {_pct(c['point'])} (95% interval {_pct(c['low'])} to {_pct(c['high'])}; the low end is judged)"


def _x_membership(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"An attacker who compares each person's distance to the nearest synthetic row with their distance to "
        f"other real people tells the training people from people the model never saw with ROC-AUC "
        f"{_num(m.value, 2)} (0.5 is a coin toss, 1 is certainty; {c['members']:,} people on each side; the plain "
        f"nearest-distance attack: {_num(c['distance_auc'], 2)}); with real held-out rows in place of the synthetic "
        f"ones it reaches {_num(m.holdout_value, 2)}."
    )


def _x_singling_out(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"Predicates on 3 columns built from synthetic rows single out exactly one training person in "
        f"{_pct(c['attack_rate'])} of {c['attacks']:,} tries, against {_pct(c['control_rate'])} for an equally "
        f"large set of people the model never saw (random predicates: {_pct(c['baseline_rate'])}): {_interval(c)}; "
        f"real held-out rows in place of the synthetic ones: {_pct(m.holdout_value)}."
    )


def _x_linkability(m: Measured, c: Mapping[str, Any]) -> str:
    def cols(names: Sequence[str]) -> str:
        shown = ", ".join(f"'{n}'" for n in names[:3])
        return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    a, b = c["halves"]
    return _na(m, c) or (
        f"An attacker holding two halves of a person's record ({cols(a)}; {cols(b)}) links them through the same "
        f"nearest synthetic row for {_pct(c['attack_rate'])} of {c['attacks']:,} training people and "
        f"{_pct(c['control_rate'])} of people the model never saw (random: {_pct(c['baseline_rate'], 1)}): "
        f"{_interval(c)}."
    )


def _x_inference(m: Measured, c: Mapping[str, Any]) -> str:
    return _na(m, c) or (
        f"Guessing each column from all the others by copying it from the nearest synthetic row, the worst column "
        f"is '{c['column']}': right for {_pct(c['attack_rate'])} of {c['attacks']:,} training people and "
        f"{_pct(c['control_rate'])} of people the model never saw (a random synthetic value: "
        f"{_pct(c['baseline_rate'])}): {_interval(c)}."
    )


def _x_leakage(m: Measured, c: Mapping[str, Any]) -> str:
    if math.isfinite(m.value) and m.value == 0 and not c.get("leaking"):
        return (
            f"No synthetic row carries a value that exactly one training row holds, in any of {c['columns']} "
            f"columns; real held-out rows carry one in {_pct(m.holdout_value, 1)} of rows (worst column "
            f"'{c['column']}'), the naive baseline in {_pct(m.baseline_value, 1)}."
        )
    return _na(m, c) or (
        f"{_pct(m.value, 1)} of the synthetic rows ({c['copies']:,} of {c['rows']:,}) carry a value of '{c['column']}' "
        f"that exactly one training row holds (the worst of {c['columns']} columns); real held-out rows carry one in "
        f"{_pct(m.holdout_value, 1)} of rows, the naive baseline in {_pct(m.baseline_value, 1)}."
    )


_EXPLAIN: dict[str, Callable[[Measured, Mapping[str, Any]], str]] = {
    "tstr_roc_auc": _x_tstr_auc,
    "trtr_roc_auc": _x_trtr_auc,
    "tstr_r2": _x_tstr_r2,
    "trtr_r2": _x_trtr_r2,
    "tstr_relative_mae": _x_tstr_mae,
    "trtr_relative_mae": _x_trtr_mae,
    "tstr_trtr_ratio": _x_ratio,
    "ks_complement_mean": _x_ks_mean,
    "tv_complement_mean": _x_tv_mean,
    "ks_complement": _x_ks,
    "tv_complement": _x_tv,
    "kl_divergence_mean": _x_kl,
    "summary_stats_mse": _x_mse,
    "correlation_difference": _x_corr,
    "fidelity_score": _x_fidelity,
    "dcr_share": _x_dcr_share,
    "dcr_closer_than_holdout": _x_dcr_closer,
    "nndr_mean": _x_nndr,
    "exact_copy_rate": _x_copies,
    "identifiability": _x_ident,
    "disclosure_risk": _x_disclosure,
    "membership_inference_auc": _x_membership,
    "singling_out_risk": _x_singling_out,
    "linkability_risk": _x_linkability,
    "inference_risk": _x_inference,
    "rare_value_leakage": _x_leakage,
}
