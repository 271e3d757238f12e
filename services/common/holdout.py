"""The split of real rows into training rows and held-out rows.

The trainer records the held-out rows with each model; the evaluator recomputes
the same kind of split for an uploaded synthetic table, which has none."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# A numeric target with more distinct values than this is stratified on quantile bins.
_MAX_CLASSES = 20
_QUANTILE_BINS = 10


def split_holdout(target: Any, rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of row numbers into (training, holdout), stratified on
    ``target`` (a Series) when given: each class keeps its share in both parts.
    Classes too small to split stay whole in training. A numeric target with
    many values (a price) is stratified on its deciles instead: as classes, its
    rare values would never be held out, and the holdout would be short of them."""
    rng = np.random.default_rng(seed)
    if fraction <= 0:
        return np.arange(rows), np.empty(0, dtype=np.int64)
    if target is None:
        order = rng.permutation(rows)
        cut = int(round(rows * fraction))
        return np.sort(order[cut:]), np.sort(order[:cut])
    codes = _strata(target)
    holdout: list[np.ndarray] = []
    for code in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == code))
        take = int(round(len(members) * fraction))
        if len(members) >= 2:
            holdout.append(members[:take])
    held = np.sort(np.concatenate(holdout)) if holdout else np.empty(0, dtype=np.int64)
    mask = np.ones(rows, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held


def _strata(target: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(target, errors="coerce")
    present = target.notna()
    if numbers[present].notna().all() and numbers.nunique() > _MAX_CLASSES:
        bins = pd.qcut(numbers.rank(method="first"), _QUANTILE_BINS, labels=False)
        return np.asarray(bins.fillna(-1), dtype=np.int64)
    return np.asarray(target.astype("string").fillna("\x00missing").factorize()[0])
