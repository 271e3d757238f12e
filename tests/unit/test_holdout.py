"""The real-row split behind every model's holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.common.holdout import split_holdout


def test_class_targets_keep_their_shares_and_the_split_is_seeded() -> None:
    target = pd.Series(["a"] * 800 + ["b"] * 200)
    train, held = split_holdout(target, 1000, 0.2, seed=3)
    assert len(held) == 200 and sorted(np.concatenate([train, held])) == list(range(1000))
    assert (target.iloc[held] == "b").sum() == 40
    again = split_holdout(target, 1000, 0.2, seed=3)
    assert np.array_equal(held, again[1]) and not np.array_equal(held, split_holdout(target, 1000, 0.2, seed=4)[1])


def test_numeric_targets_are_stratified_on_deciles_not_on_each_value() -> None:
    # a price: almost every value unique, a long right tail
    prices = pd.Series(np.round(np.random.default_rng(0).lognormal(13, 0.5, 5000), -2))
    train, held = split_holdout(prices, 5000, 0.2, seed=1)
    assert len(held) == 1000  # as classes, every single-row price stayed in training
    top = prices.quantile(0.9)
    assert 80 <= (prices.iloc[held] > top).sum() <= 120  # the tail is held out at its share
    with_missing = prices.copy()
    with_missing.iloc[:50] = np.nan
    _, held = split_holdout(with_missing, 5000, 0.2, seed=1)
    assert len(held) == 1000 and with_missing.iloc[held].isna().sum() == 10
