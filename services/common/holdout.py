"""The split of real rows into training rows and held-out rows.

The trainer records the held-out rows with each model; the evaluator recomputes
the same kind of split for an uploaded synthetic table, which has none."""

from __future__ import annotations

from typing import Any

import numpy as np


def split_holdout(target: Any, rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of row numbers into (training, holdout), stratified on
    ``target`` (a Series) when given: each class keeps its share in both parts.
    Classes too small to split stay whole in training."""
    rng = np.random.default_rng(seed)
    if fraction <= 0:
        return np.arange(rows), np.empty(0, dtype=np.int64)
    if target is None:
        order = rng.permutation(rows)
        cut = int(round(rows * fraction))
        return np.sort(order[cut:]), np.sort(order[:cut])
    codes = np.asarray(target.astype("string").fillna("\x00missing").factorize()[0])
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
