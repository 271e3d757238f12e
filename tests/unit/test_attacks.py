"""Privacy attacks (services.common.quality.attacks) in the report: each flags a generator that
copies real training rows, and each passes fresh real rows (never trained on) in their place."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from services.common.quality import EvaluationInputs, evaluate
from services.common.quality.attacks import auc, residual_risk, wilson
from services.common.schema import ColumnInfo, ColumnKind
from tests.conftest import BUNDLED_ADULT

ATTACKS = ("membership_inference_auc", "singling_out_risk", "linkability_risk", "inference_risk", "rare_value_leakage")
ROWS = 2000


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[ColumnInfo]]:
    real = pd.read_csv(BUNDLED_ADULT, na_values="?")
    idx = np.random.default_rng(0).permutation(len(real))
    real["person"] = [f"P{100000 + i}" for i in range(len(real))]  # an identifier: in no distance, but in leakage
    parts = [
        real.iloc[idx[a:b]].reset_index(drop=True) for a, b in ((0, ROWS), (ROWS, ROWS + 800), (5000, 5000 + ROWS))
    ]
    text = [c for c in real.columns if not pd.api.types.is_numeric_dtype(real[c])]
    columns = [
        ColumnInfo(c, ColumnKind.IDENTIFIER if c == "person" else ColumnKind.CATEGORICAL, 0, 0)
        if c in text
        else ColumnInfo(c, ColumnKind.CONTINUOUS, 0, 0, integer=True)
        for c in real.columns
    ]
    return parts[0], parts[1], parts[2], columns


def _report(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, columns: list[ColumnInfo]):
    inputs = EvaluationInputs(
        train, holdout, synthetic, columns, target="income", seed=5, forest_trees=10, n_jobs=1, privacy_rows=2000
    )
    return {m.name: m for m in evaluate(inputs).metrics}


def test_every_attack_flags_a_generator_that_copies_training_rows(adult) -> None:  # type: ignore[no-untyped-def]
    train, holdout, _, columns = adult
    metrics = _report(train, holdout, train.copy(), columns)
    for name in ATTACKS:
        m = metrics[name]
        assert m.verdict == "fail", (name, m.value, m.threshold, m.explanation)
        assert m.category == "privacy" and m.explanation.endswith(f"the threshold is at most {m.threshold:.3g}.")
    assert metrics["membership_inference_auc"].value > 0.95
    leak = metrics["rare_value_leakage"]
    assert "value of 'person'" in leak.explanation and leak.value == 1.0  # every copied id is a real one


def test_fresh_real_rows_pass_every_attack(adult) -> None:  # type: ignore[no-untyped-def]
    train, holdout, fresh, columns = adult
    metrics = _report(train, holdout, fresh, columns)
    for name in ATTACKS:
        m = metrics[name]
        assert m.verdict == "pass", (name, m.value, m.threshold, m.explanation)
        assert m.holdout_value is not None and math.isfinite(m.holdout_value)
    assert abs(metrics["membership_inference_auc"].value - 0.5) < 0.05
    # the real holdout itself in place of the synthetic rows (its own reference value) is no member either
    assert abs(metrics["membership_inference_auc"].holdout_value - 0.5) < 0.06


def test_the_statistics() -> None:
    assert auc(np.array([2.0, 3.0]), np.array([1.0, 0.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    rate, error = wilson(50, 100)
    assert rate == pytest.approx(0.5) and error == pytest.approx(0.0962, abs=1e-3)  # Anonymeter's numbers
    risk, _ = residual_risk((0.6, 0.01), (0.2, 0.01))
    assert risk == pytest.approx(0.5)
