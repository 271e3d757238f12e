"""Where our definitions coincide with sdmetrics', the numbers are the same.

sdmetrics is a test-only dependency (requirements-dev.txt); the module is skipped without it.
Coinciding definitions: KSComplement (per numeric/datetime column), TVComplement (per categorical
column) and CorrelationSimilarity (Pearson, per numeric pair = 1 - |r_real - r_synthetic| / 2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.common.quality import EvaluationInputs, evaluate
from services.common.quality.encoding import ColumnSet, prepare_frames
from services.common.quality.fidelity import association_matrix
from tests.unit.test_metrics import load_adult, toy_schema, toy_table

sdmetrics = pytest.importorskip("sdmetrics", reason="sdmetrics (a test-only dependency) is not installed")
from sdmetrics.column_pairs import CorrelationSimilarity  # noqa: E402
from sdmetrics.single_column import KSComplement, TVComplement  # noqa: E402


@pytest.fixture(scope="module")
def tables() -> list[tuple[pd.DataFrame, pd.DataFrame, list]]:
    """(real, synthetic, schema): an Adult slice against a naive-baseline-like shuffle of other rows,
    and the toy table (missing values, a datetime column) against a differently seeded draw."""
    frame, columns = load_adult()
    rows = frame.iloc[np.random.default_rng(3).permutation(len(frame))[:4000]].reset_index(drop=True)
    real, other = rows.iloc[:2000].reset_index(drop=True), rows.iloc[2000:].reset_index(drop=True)
    rng = np.random.default_rng(4)
    for col in ("age", "workclass", "hours_per_week"):  # break a few relations
        other[col] = other[col].to_numpy()[rng.permutation(len(other))]
    return [(real, other, columns), (toy_table(800, 1), toy_table(600, 2), toy_schema())]


@pytest.fixture(scope="module")
def reports(tables) -> list:
    out = []
    for real, synthetic, schema in tables:
        inputs = EvaluationInputs(
            real, real.iloc[: len(real) // 4], synthetic, schema, forest_trees=10, privacy_rows=500
        )
        out.append(evaluate(inputs))
    return out


def test_ks_complement_equals_sdmetrics(tables, reports) -> None:
    checked = 0
    for (real, synthetic, _), report in zip(tables, reports, strict=True):
        for m in report.metrics:
            if m.name.startswith("ks_complement["):
                col = m.name[len("ks_complement[") : -1]
                expected = KSComplement.compute(_numbers(real[col]), _numbers(synthetic[col]))
                assert m.value == pytest.approx(expected, abs=1e-12), col
                checked += 1
    assert checked == 6 + 3


def test_tv_complement_equals_sdmetrics(tables, reports) -> None:
    checked = 0
    for (real, synthetic, _), report in zip(tables, reports, strict=True):
        for m in report.metrics:
            if m.name.startswith("tv_complement["):
                col = m.name[len("tv_complement[") : -1]
                expected = TVComplement.compute(real[col], synthetic[col])
                # sdmetrics adds 1e-6 to the real count of a category only the synthetic rows have
                assert m.value == pytest.approx(expected, abs=1e-6), col
                checked += 1
    assert checked == 9 + 2


def test_correlation_similarity_equals_sdmetrics(tables) -> None:
    checked = 0
    for real, synthetic, schema in tables:
        cols = ColumnSet.from_schema(schema)
        _, frames = prepare_frames(cols, {"real": real, "synthetic": synthetic}, reference="real")
        ours_real = association_matrix(cols, frames["real"])
        ours_synth = association_matrix(cols, frames["synthetic"])
        numeric = cols.numeric
        for i, a in enumerate(numeric):
            for b in numeric[i + 1 :]:
                ia, ib = cols.names.index(a), cols.names.index(b)
                ours = 1 - abs(ours_real[ia, ib] - ours_synth[ia, ib]) / 2
                pair_real = pd.DataFrame({a: _numbers(real[a]), b: _numbers(real[b])})
                pair_synth = pd.DataFrame({a: _numbers(synthetic[a]), b: _numbers(synthetic[b])})
                expected = CorrelationSimilarity.compute(pair_real, pair_synth, coefficient="Pearson")
                assert ours == pytest.approx(expected, abs=1e-9), (a, b)
                checked += 1
    assert checked == 15 + 3


def _numbers(series: pd.Series) -> pd.Series:
    """What sdmetrics expects: float (not the nullable Int64) or datetime64 columns."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    return series.astype("float64")
