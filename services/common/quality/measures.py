"""Raw numbers -> Measured: the evaluation's per-family numbers turned into ``Measured`` rows
(split out of ``services.common.quality.evaluate``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from services.common.quality import attacks, fidelity, privacy, utility
from services.common.quality.encoding import ColumnSet
from services.common.quality.verdicts import Measured

if TYPE_CHECKING:
    from services.common.quality.evaluate import EvaluationInputs, Progress


def _worst(values: dict[str, float]) -> tuple[str, float]:
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    if not finite:
        return "", math.nan
    k = min(finite, key=lambda x: finite[x])
    return k, finite[k]


def fidelity_measures(cols: ColumnSet, fid: dict[str, fidelity.FidelityNumbers]) -> list[Measured]:
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


def utility_measures(
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


def privacy_measures(
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


def attack_measures(
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
