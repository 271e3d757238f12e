"""Machine-learning utility: train on one table, test on the real holdout.

TSTR (train on synthetic, test on real) fits a seeded random forest on the synthetic rows and
scores it on the real holdout rows; TRTR fits the same forest on the real training rows. The same
forest on the naive baseline places the "useless" end. Features are every evaluated column but the
target: numbers as they are (missing = NaN, which the forest handles), categories as integer codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import mean_absolute_error, r2_score, roc_auc_score

from services.common.quality.encoding import ColumnSet, Prepared

__all__ = ["CLASSIFICATION", "REGRESSION", "UtilityNumbers", "fit_and_score", "macro_roc_auc"]

CLASSIFICATION = "classification"
REGRESSION = "regression"

FOREST_TREES = 100
FOREST_MIN_LEAF = 5
# Each tree sees a bootstrap sample of at most this many rows (keeps large tables fast).
FOREST_MAX_SAMPLES = 10_000


@dataclass(frozen=True)
class UtilityNumbers:
    """Scores on the real holdout of a forest trained on one table (NaN when not computable)."""

    roc_auc: float = float("nan")
    r2: float = float("nan")
    mae: float = float("nan")
    relative_mae: float = float("nan")  # MAE / MAE of always predicting the real training mean
    train_rows: int = 0


def _features(columns: ColumnSet, frame: Prepared, target: str) -> np.ndarray:
    cols = []
    for name in columns.names:
        if name == target:
            continue
        if name in frame.numeric:
            cols.append(frame.numeric[name])
        else:
            codes = frame.codes[name].astype(np.float64)
            codes[codes < 0] = np.nan
            cols.append(codes)
    return np.column_stack(cols) if cols else np.empty((frame.rows, 0))


def _labels(columns: ColumnSet, frame: Prepared, target: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(label values, rows where the target is present)."""
    if target in frame.numeric:
        y = frame.numeric[target]
        return y, ~np.isnan(y)
    codes = frame.codes[target]
    return codes.astype(np.float64), codes >= 0


def macro_roc_auc(y_true: np.ndarray, classes: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest ROC-AUC over the classes present in ``y_true`` (for two classes: the usual
    binary AUC). ``proba[:, j]`` scores class ``classes[j]``; a class the model never saw scores 0."""
    aucs = []
    for c in np.unique(y_true):
        positive = y_true == c
        if positive.all():
            continue
        hit = np.flatnonzero(classes == c)
        score = proba[:, hit[0]] if len(hit) else np.zeros(len(y_true))
        aucs.append(roc_auc_score(positive, score))
    return float(np.mean(aucs)) if aucs else float("nan")


def fit_and_score(
    columns: ColumnSet,
    train: Prepared,
    evaluation: Prepared,
    target: str,
    task: str,
    seed: int,
    *,
    mean_reference: float = float("nan"),
    trees: int = FOREST_TREES,
    n_jobs: int | None = -1,
) -> UtilityNumbers:
    """Fit the forest on ``train`` and score it on ``evaluation``. ``mean_reference`` is the real
    training target mean, the naive predictor behind ``relative_mae``."""
    x_train, x_eval = _features(columns, train, target), _features(columns, evaluation, target)
    y_train, keep_train = _labels(columns, train, target, task)
    y_eval, keep_eval = _labels(columns, evaluation, target, task)
    x_train, y_train = x_train[keep_train], y_train[keep_train]
    x_eval, y_eval = x_eval[keep_eval], y_eval[keep_eval]
    if len(y_train) == 0 or len(y_eval) == 0 or x_train.shape[1] == 0:
        return UtilityNumbers(train_rows=len(y_train))
    params = dict(
        n_estimators=trees,
        min_samples_leaf=FOREST_MIN_LEAF,
        max_samples=min(len(y_train), FOREST_MAX_SAMPLES),
        random_state=seed,
        n_jobs=n_jobs,
    )
    if task == CLASSIFICATION:
        clf = RandomForestClassifier(**params).fit(x_train, y_train)
        proba = clf.predict_proba(x_eval)
        return UtilityNumbers(roc_auc=macro_roc_auc(y_eval, clf.classes_, proba), train_rows=len(y_train))
    reg = RandomForestRegressor(**params).fit(x_train, y_train)
    pred = reg.predict(x_eval)
    mae = float(mean_absolute_error(y_eval, pred))
    naive = float(np.mean(np.abs(y_eval - mean_reference))) if np.isfinite(mean_reference) else float("nan")
    r2 = float(r2_score(y_eval, pred)) if len(y_eval) >= 2 else float("nan")
    return UtilityNumbers(
        r2=r2,
        mae=mae,
        relative_mae=mae / naive if naive > 0 else float("nan"),
        train_rows=len(y_train),
    )
