"""The evaluator's metrics (services.common.quality): known answers on hand-made and real tables.

Small tables keep the suite fast; the Adult checks use a 6,000-row slice of data/adult.csv.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from services.common.errors import InvalidArgument
from services.common.quality import (
    SPECS,
    EvaluationInputs,
    Report,
    check_schema,
    evaluate,
    naive_baseline,
)
from services.common.quality.encoding import ColumnSet, DistanceEncoder, prepare_frames
from services.common.quality.evaluate import next_steps
from services.common.quality.fidelity import association_matrix, cramers_v
from services.common.quality.neighbors import nearest_neighbours
from services.common.quality.privacy import closer_share, identifiability, neutral_share, nndr, size_adjusted
from services.common.quality.report import MetricResult
from services.common.quality.utility import macro_roc_auc
from services.common.quality.verdicts import verdict_of
from services.common.schema import ColumnInfo, ColumnKind

ROOT = Path(__file__).resolve().parents[2]
ADULT = ROOT / "data" / "adult.csv"
PRIVACY = (
    "dcr_share",
    "dcr_closer_than_holdout",
    "nndr_mean",
    "exact_copy_rate",
    "identifiability",
    "disclosure_risk",
)
FIDELITY = (
    "ks_complement_mean",
    "tv_complement_mean",
    "kl_divergence_mean",
    "summary_stats_mse",
    "correlation_difference",
    "fidelity_score",
)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def toy_schema() -> list[ColumnInfo]:
    return [
        ColumnInfo("id", ColumnKind.IDENTIFIER, 0, 0),
        ColumnInfo("x", ColumnKind.CONTINUOUS, 0, 0),
        ColumnInfo("y", ColumnKind.CONTINUOUS, 0, 0),
        ColumnInfo("colour", ColumnKind.CATEGORICAL, 0, 0),
        ColumnInfo("when", ColumnKind.DATETIME, 0, 0),
        ColumnInfo("note", ColumnKind.FREE_TEXT, 0, 0),
        ColumnInfo("label", ColumnKind.CATEGORICAL, 0, 0),
    ]


def toy_table(rows: int, seed: int) -> pd.DataFrame:
    """x ~ N(0,1); y = 2x + noise; colour depends on x; label depends on x and colour;
    a datetime drifting with y; some missing cells."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    y = 2 * x + rng.normal(scale=0.5, size=rows)
    colour = np.where(
        x + rng.normal(scale=0.7, size=rows) > 0, "red", np.where(rng.random(rows) < 0.5, "green", "blue")
    )
    logit = 1.5 * x + (colour == "red") - 0.5
    label = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.round(86400 * (30 * y + rng.normal(size=rows))), unit="s")
    frame = pd.DataFrame(
        {
            "id": [f"row-{seed}-{i}" for i in range(rows)],
            "x": x,
            "y": y,
            "colour": colour.astype(object),
            "when": when,
            "note": [f"free text number {i}" for i in range(rows)],
            "label": label.astype(object),
        }
    )
    frame.loc[rng.random(rows) < 0.03, "colour"] = None
    frame.loc[rng.random(rows) < 0.03, "y"] = np.nan
    return frame


def toy_inputs(synthetic: pd.DataFrame | None = None, *, rows: int = 600, **kw) -> EvaluationInputs:
    train, holdout = toy_table(rows, 1), toy_table(rows // 2, 2)
    kw.setdefault("forest_trees", 40)
    kw.setdefault("target", "label")
    return EvaluationInputs(
        real_train=train,
        real_holdout=holdout,
        synthetic=train.copy() if synthetic is None else synthetic,
        columns=toy_schema(),
        **kw,
    )


def load_adult() -> tuple[pd.DataFrame, list[ColumnInfo]]:
    """data/adult.csv typed as DatasetRepository.load_frame types it: ints as Int64, text as str/None."""
    frame = pd.read_csv(ADULT, na_values=["?"], keep_default_na=False)
    columns = []
    for name in frame.columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
            kind = ColumnKind.CATEGORICAL
            columns.append(ColumnInfo(name, kind, int(frame[name].isna().sum()), int(frame[name].nunique())))
        else:
            frame[name] = frame[name].astype("Int64")
            columns.append(ColumnInfo(name, ColumnKind.CONTINUOUS, 0, int(frame[name].nunique()), integer=True))
    return frame, columns


@pytest.fixture(scope="module")
def adult_slice() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[ColumnInfo]]:
    """4,000 training rows, 1,000 held out, and 1,000 further real rows as a "good synthetic" stand-in
    (a generator that samples fresh rows from the real distribution)."""
    frame, columns = load_adult()
    order = np.random.default_rng(7).permutation(len(frame))[:6000]
    rows = frame.iloc[order].reset_index(drop=True)
    return rows.iloc[:4000], rows.iloc[4000:5000], rows.iloc[5000:], columns


@pytest.fixture(scope="module")
def identical_report() -> Report:
    return evaluate(toy_inputs())


# ---------------------------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------------------------


def test_identical_tables_have_perfect_fidelity_and_fail_privacy(identical_report: Report) -> None:
    r = identical_report
    assert r.metric("ks_complement_mean").value == 1.0
    assert r.metric("tv_complement_mean").value == 1.0
    assert r.metric("kl_divergence_mean").value == 0.0
    assert r.metric("summary_stats_mse").value == 0.0
    assert r.metric("correlation_difference").value == 0.0
    assert r.metric("fidelity_score").value == 1.0
    assert r.fidelity_score == 1.0
    for name in FIDELITY:
        assert r.metric(name).verdict == "pass", name
        assert r.metric(name).score == pytest.approx(1.0), name
    assert r.metric("exact_copy_rate").value == 1.0
    assert r.metric("dcr_share").value == pytest.approx(1.0)
    assert r.metric("dcr_closer_than_holdout").value == pytest.approx(1.0)
    assert r.metric("nndr_mean").value == 0.0
    assert r.metric("identifiability").value == pytest.approx(1.0)
    # the attacker is always right on training people: best estimate 100%, low end of its 95% interval lower
    assert r.metric("disclosure_risk").value > 0.75
    assert "best estimate 100%" in r.metric("disclosure_risk").explanation
    for name in PRIVACY:
        assert r.metric(name).verdict == "fail", name
        assert r.metric(name).score < (0.25 if name == "disclosure_risk" else 0.05), name
    assert r.verdict == "fail"
    assert r.privacy_score < 0.1
    assert "dcr_share" in r.summary and "fail" in r.summary


def test_copy_rate_counts_every_copied_row() -> None:
    train = toy_table(600, 1)
    fresh = toy_table(600, 3)
    # Half copies of training rows (shuffled), half rows from the same distribution.
    synthetic = pd.concat([train.sample(300, random_state=0), fresh.iloc[:300]], ignore_index=True)
    r = evaluate(toy_inputs(synthetic))
    assert r.metric("exact_copy_rate").value == 0.5
    assert r.metric("exact_copy_rate").holdout_value == 0.0
    assert r.metric("exact_copy_rate").verdict == "fail"
    assert (
        "50.0%" in r.metric("exact_copy_rate").explanation and "300 of 600" in r.metric("exact_copy_rate").explanation
    )
    assert r.metric("dcr_share").verdict == "fail"
    assert r.verdict == "fail"


def test_independently_shuffled_columns_lose_relations_and_utility() -> None:
    train = toy_table(3000, 1)
    rng = np.random.default_rng(5)
    synthetic = train.copy()
    for col in synthetic.columns:
        synthetic[col] = synthetic[col].to_numpy()[rng.permutation(len(synthetic))]
    r = evaluate(toy_inputs(synthetic, rows=3000))
    # Every column keeps its distribution...
    assert r.metric("ks_complement_mean").value == 1.0
    assert r.metric("tv_complement_mean").value == 1.0
    # ...but the relations are gone, as for the naive baseline.
    corr = r.metric("correlation_difference")
    assert corr.verdict == "fail"
    assert corr.value == pytest.approx(corr.baseline_value, abs=0.03)
    assert corr.value > 5 * corr.holdout_value
    assert r.correlations.real.at("x", "y") > 0.9
    assert abs(r.correlations.synthetic.at("x", "y")) < 0.1
    assert r.metric("fidelity_score").verdict == "fail"
    # A model trained on it guesses. (A forest fitted to noise still ranks the real rows by its noise,
    # and here one column nearly decides the label, so over shuffles its AUC spreads about +-0.1
    # around 0.5 at this size.)
    assert r.metric("tstr_roc_auc").value == pytest.approx(0.5, abs=0.15)
    assert r.metric("trtr_roc_auc").value > 0.75
    assert r.metric("tstr_trtr_ratio").verdict == "fail"
    assert r.utility_score < 0.4


def test_nndr_and_identifiability_by_hand() -> None:
    train = np.array([[0.0], [1.0], [3.0], [10.0]])
    synthetic = np.array([[0.5], [6.0], [20.0], [1.0]])
    near = nearest_neighbours(synthetic, train, k=2)
    # 0.5: 0.5 (to 0; tie with 1 -> lower index) and 0.5; 6: 3 and 4; 20: 10 and 17; 1: 0 and 1
    np.testing.assert_allclose(near.distances, [[0.5, 0.5], [3, 4], [10, 17], [0, 1]])
    np.testing.assert_array_equal(near.indices, [[0, 1], [2, 3], [3, 2], [1, 0]])
    np.testing.assert_allclose(nndr(near.distances), [1.0, 0.75, 10 / 17, 0.0])
    # Identifiability: each real row's nearest synthetic row vs its nearest other real row.
    to_synth = nearest_neighbours(train, synthetic).distances[:, 0]  # [0.5, 0, 2, 4]
    to_other = nearest_neighbours(train, train, exclude=np.arange(4)).distances[:, 0]  # [1, 1, 2, 7]
    np.testing.assert_allclose(to_synth, [0.5, 0.0, 2.0, 4.0])
    np.testing.assert_allclose(to_other, [1.0, 1.0, 2.0, 7.0])
    # rows 0, 1, 3 are closer to a synthetic row; row 2 is a tie (counts one half)
    assert identifiability(to_synth, to_other) == pytest.approx(3.5 / 4)
    assert closer_share(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    # size adjustment: 80% against a 4x larger first set is what unrelated rows give -> 50%
    assert size_adjusted(0.8, 4, 1) == pytest.approx(0.5)
    assert size_adjusted(1.0, 4, 1) == 1.0
    assert size_adjusted(0.5, 1, 1) == 0.5
    # ties (e.g. a duplicate held by both sets) count what unrelated rows would score: neutral
    zeros = np.zeros(10)
    assert neutral_share(zeros, zeros, 4, 1) == pytest.approx(0.5)
    assert neutral_share(np.array([0.0, 1.0]), np.array([1.0, 0.0]), 4, 1) == pytest.approx(0.2)


def test_distance_encoding_means_what_the_docs_say() -> None:
    schema = [
        ColumnInfo("n", ColumnKind.CONTINUOUS, 0, 0),
        ColumnInfo("c", ColumnKind.CATEGORICAL, 0, 0),
    ]
    cols = ColumnSet.from_schema(schema)
    real = pd.DataFrame({"n": np.arange(101, dtype=float), "c": ["a", "b"] * 50 + [None]})
    _, frames = prepare_frames(cols, {"train": real}, reference="train")
    enc = DistanceEncoder.fit(cols, frames["train"])
    assert enc.scales["n"] == pytest.approx(90.0)  # 95th - 5th percentile of 0..100
    x = enc.encode(frames["train"]).astype(np.float64)
    d = cdist(x, x)
    assert d[0, 2] == pytest.approx(2 / 90)  # same category, numbers 2 apart
    assert d[0, 1] == pytest.approx(math.sqrt(1 + (1 / 90) ** 2))  # categories differ: +1 squared
    assert d[0, 100] == pytest.approx(math.sqrt(1 + (100 / 90) ** 2))  # a category vs missing: +1
    with_gap = pd.DataFrame({"n": [1.0, np.nan, np.nan], "c": ["a", "a", "a"]})
    _, f2 = prepare_frames(cols, {"train": real, "other": with_gap}, reference="train")
    enc2 = DistanceEncoder.fit(cols, f2["train"], [f2["other"]])
    y = enc2.encode(f2["other"]).astype(np.float64)
    assert np.linalg.norm(y[1] - y[2]) == 0.0  # missing equals missing


def test_blockwise_neighbours_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    for data in (rng.normal(size=(700, 6)), rng.integers(0, 3, size=(700, 4)).astype(float)):
        queries, reference = data[:250], data[150:]
        for k in (1, 2):
            near = nearest_neighbours(queries, reference, k=k, block_queries=37, block_reference=61)
            full = cdist(queries, reference)
            order = np.lexsort((np.broadcast_to(np.arange(full.shape[1]), full.shape), full), axis=1)[:, :k]
            np.testing.assert_allclose(near.distances, np.take_along_axis(full, order, axis=1), atol=1e-6)
            np.testing.assert_array_equal(near.indices, order)
        # a query that is itself in the reference, excluded
        exclude = np.arange(250) - 150
        near = nearest_neighbours(queries, reference, k=1, exclude=exclude, block_queries=50, block_reference=64)
        full = cdist(queries, reference)
        rows = np.flatnonzero(exclude >= 0)
        full[rows, exclude[rows]] = np.inf
        np.testing.assert_allclose(near.distances[:, 0], full.min(axis=1), atol=1e-6)
        assert not (near.indices[rows, 0] == exclude[rows]).any()


def test_neighbour_search_memory_is_bounded_by_the_block() -> None:
    import tracemalloc

    rng = np.random.default_rng(4)
    queries, reference = rng.normal(size=(2000, 8)), rng.normal(size=(3000, 8))
    tracemalloc.start()
    try:
        nearest_neighbours(queries, reference, k=2, block_queries=500, block_reference=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_matrix = 2000 * 3000 * 4  # what a non-blockwise float32 distance matrix would take: 24 MB
    assert peak < full_matrix / 4  # one 500 x 1000 block (2 MB) plus small change


def test_scale_invariance() -> None:
    base = toy_inputs(toy_table(400, 9), rows=600, target=None)
    scaled = toy_inputs(toy_table(400, 9), rows=600, target=None)
    for frame in (scaled.real_train, scaled.real_holdout, scaled.synthetic):
        frame["x"] = frame["x"] * 1e6
    a, b = evaluate(base), evaluate(scaled)
    fidelity = [m for m in a.metrics if m.category == "fidelity"]
    assert len(fidelity) > len(FIDELITY)  # per-column metrics too
    for m in fidelity:
        other = b.metric(m.name)
        for field in ("value", "baseline_value", "holdout_value", "score"):
            assert getattr(other, field) == pytest.approx(getattr(m, field), rel=1e-9, abs=1e-12), (m.name, field)
    for name in ("dcr_closer_than_holdout", "nndr_mean", "identifiability", "dcr_share"):
        assert b.metric(name).value == pytest.approx(a.metric(name).value, rel=1e-6)


def test_regression_target() -> None:
    r = evaluate(toy_inputs(toy_table(600, 4), target="y"))
    assert r.task == "regression"
    names = {m.name for m in r.metrics if m.category == "utility"}
    assert names == {"tstr_r2", "trtr_r2", "tstr_relative_mae", "trtr_relative_mae", "tstr_trtr_ratio"}
    assert r.metric("trtr_r2").value > 0.8
    assert r.metric("tstr_r2").value > 0.7
    assert r.metric("tstr_relative_mae").value < 0.5
    assert r.metric("tstr_r2").baseline_value < 0.1
    assert "tstr_roc_auc" not in names


def test_macro_roc_auc_matches_sklearn_ovr() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=300)
    proba = rng.dirichlet([1, 1, 1], size=300)
    proba[np.arange(300), y] += 0.3
    proba /= proba.sum(axis=1, keepdims=True)
    expected = roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert macro_roc_auc(y, np.array([0, 1, 2]), proba) == pytest.approx(expected)
    # binary: the usual AUC
    yb = rng.integers(0, 2, size=200)
    p1 = rng.random(200) + 0.3 * yb
    both = np.column_stack([1 - p1, p1])
    assert macro_roc_auc(yb, np.array([0, 1]), both) == pytest.approx(roc_auc_score(yb, p1))


def test_no_target_leaves_utility_and_disclosure_not_applicable() -> None:
    r = evaluate(toy_inputs(toy_table(400, 4), target=None))
    assert r.task == ""
    ratio = r.metric("tstr_trtr_ratio")
    assert ratio.verdict == "not_applicable" and math.isnan(ratio.value) and "No target" in ratio.explanation
    assert math.isnan(r.utility_score)
    assert r.metric("disclosure_risk").verdict == "not_applicable"
    # naming a sensitive column brings the attack back
    r2 = evaluate(toy_inputs(toy_table(400, 4), target=None, sensitive_column="colour", quasi_identifiers=["x"]))
    risk = r2.metric("disclosure_risk")
    assert risk.verdict != "not_applicable" and "'x'" in risk.explanation and "'colour'" in risk.explanation


def test_excluded_columns_are_left_out_everywhere(identical_report: Report) -> None:
    r = identical_report
    assert r.excluded_columns == ["id", "note"]
    everywhere = [m.name for m in r.metrics] + [h.column for h in r.histograms] + r.correlations.real.columns
    assert not [x for x in everywhere if "id" in re.findall(r"\w+", x) or "note" in x]
    assert "id, note" in r.summary
    assert [h.column for h in r.histograms] == ["x", "y", "colour", "when", "label"]


def test_report_charts_and_round_trip(identical_report: Report) -> None:
    r = identical_report
    for h in r.histograms:
        for series in (h.real, h.synthetic, h.baseline):
            assert sum(series) == pytest.approx(1.0)
        if h.bin_edges:
            assert len(h.bin_edges) == len(h.real) + 1 == len(h.labels)
        else:
            assert len(h.labels) == len(h.real)
    when = next(h for h in r.histograms if h.column == "when")
    assert when.labels[0].startswith("20")  # dates as dates
    colour = next(h for h in r.histograms if h.column == "colour")
    assert colour.labels[-1] == "(missing)"
    k = len(r.correlations.real.columns)
    assert len(r.correlations.difference.values) == k * k
    assert {d.name for d in r.distances} == {"dcr", "nndr"}
    for d in r.distances:
        assert sum(d.synthetic_to_train) == pytest.approx(1.0)
        assert sum(d.holdout_to_train) == pytest.approx(1.0)
    data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    back = Report.from_dict(data)
    assert back.to_dict() == r.to_dict()
    assert r.training_rows == 600 and r.holdout_rows == 300 and r.synthetic_rows == 600
    assert r.seconds > 0


def test_every_metric_has_a_verdict_score_and_sentence(identical_report: Report) -> None:
    for m in identical_report.metrics:
        assert m.verdict in ("pass", "warn", "fail", "not_applicable")
        assert m.category in ("utility", "fidelity", "privacy")
        assert m.explanation.endswith(".") and len(m.explanation) > 40
        if m.verdict != "not_applicable":
            assert 0.0 <= m.score <= 1.0, m.name
            assert re.search(r"\d", m.explanation), m.name  # the numbers are in the sentence
    assert {m.name for m in identical_report.metrics if "[" not in m.name} <= set(SPECS)


def test_report_fields_follow_the_proto() -> None:
    proto = (ROOT / "protos" / "synth" / "v1" / "evaluation.proto").read_text()

    def fields(message: str) -> set[str]:
        body = re.search(r"message " + message + r" \{(.*?)\n\}", proto, re.S)
        assert body, message
        return set(re.findall(r"^\s*(?:optional |repeated )?[\w.]+ (\w+) = \d+;", body.group(1), re.M))

    from dataclasses import fields as dc_fields

    from services.common.quality import report as rep

    for message, cls in (
        ("MetricResult", rep.MetricResult),
        ("Histogram", rep.Histogram),
        ("Matrix", rep.Matrix),
        ("CorrelationCharts", rep.CorrelationCharts),
        ("DistanceHistogram", rep.DistanceHistogram),
    ):
        assert {f.name for f in dc_fields(cls)} == fields(message), message
    assert {f.name for f in dc_fields(rep.Report)} - {"excluded_columns"} == fields("Report")


def test_same_seed_same_report() -> None:
    a = evaluate(toy_inputs(toy_table(300, 8), rows=300, seed=11))
    b = evaluate(toy_inputs(toy_table(300, 8), rows=300, seed=11))
    da, db = a.to_dict(), b.to_dict()
    da.pop("seconds"), db.pop("seconds")
    assert da == db


def test_progress_reports_advance_to_done() -> None:
    seen: list[tuple[str, float]] = []
    evaluate(toy_inputs(toy_table(200, 8), rows=200), progress=lambda stage, f: seen.append((stage, f)))
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions)
    assert seen[0][1] == 0.0 and seen[-1] == ("done", 1.0)
    assert {"fidelity", "utility", "privacy"} <= {s for s, _ in seen}


def test_naive_baseline_keeps_marginals_and_is_seeded() -> None:
    real = toy_table(500, 1)
    a, b = naive_baseline(real, 800, seed=3), naive_baseline(real, 800, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == list(real.columns) and len(a) == 800
    assert set(a["colour"].dropna()) <= set(real["colour"].dropna())
    assert abs(np.corrcoef(a["x"], a["y"].fillna(0))[0, 1]) < 0.15
    assert not naive_baseline(real, 800, seed=4).equals(a)


def test_association_measures() -> None:
    a = np.array([0, 0, 1, 1, 2, 2] * 20)
    assert cramers_v(a, a) == pytest.approx(1.0)
    assert cramers_v(a, np.array([0, 1] * 60)) == pytest.approx(0.0, abs=1e-12)
    schema = [ColumnInfo("n", ColumnKind.CONTINUOUS, 0, 0), ColumnInfo("c", ColumnKind.CATEGORICAL, 0, 0)]
    cols = ColumnSet.from_schema(schema)
    frame = pd.DataFrame({"n": [1.0, 1.0, 5.0, 5.0], "c": ["a", "a", "b", "b"]})
    _, prepared = prepare_frames(cols, {"train": frame}, reference="train")
    # the number is fully determined by the category: correlation ratio 1
    assert association_matrix(cols, prepared["train"])[0, 1] == pytest.approx(1.0)


def test_duplicate_heavy_data_fresh_rows_pass_and_copies_fail() -> None:
    """Like kddcup99: 70% of rows repeat a few patterns, so unseen real rows often equal a training row;
    ties and exact matches must not read as memorisation, while a copy of the training rows (whose
    unique rows then have twins) still fails."""
    schema = [ColumnInfo(c, ColumnKind.CATEGORICAL, 0, 0) for c in ("a", "b", "c")]
    schema.append(ColumnInfo("n", ColumnKind.CONTINUOUS, 0, 0))
    rng = np.random.default_rng(2)
    patterns = rng.integers(0, 3, size=(40, 3))

    def draw(rows: int) -> pd.DataFrame:
        repeated = rng.random(rows) < 0.7
        picked = np.where(repeated[:, None], patterns[rng.integers(0, 40, size=rows)], rng.integers(0, 3, (rows, 3)))
        frame = pd.DataFrame({c: [f"v{x}" for x in picked[:, i]] for i, c in enumerate("abc")})
        frame["n"] = np.where(repeated, 0.0, rng.normal(size=rows))
        return frame

    train, holdout, fresh = draw(2000), draw(500), draw(2000)
    common = {"columns": schema, "target": "c", "forest_trees": 20}
    r = evaluate(EvaluationInputs(train, holdout, fresh, **common))
    assert r.metric("exact_copy_rate").holdout_value > 0.6  # most unseen rows equal some training row
    for name in PRIVACY:
        assert r.metric(name).verdict == "pass", (name, r.metric(name).value, r.metric(name).threshold)
    copied = evaluate(EvaluationInputs(train, holdout, train.copy(), **common))
    for name in PRIVACY:
        # NNDR has little room here: duplicates already put the holdout's mean near 0
        expected = ("warn", "fail") if name == "nndr_mean" else ("fail",)
        assert copied.metric(name).verdict in expected, (name, copied.metric(name).value)
    assert copied.verdict == "fail"


# ---------------------------------------------------------------------------------------------
# Thresholds and verdicts
# ---------------------------------------------------------------------------------------------


def test_verdict_bands() -> None:
    assert verdict_of(0.9, 0.85, 0.1, True) == "pass"
    assert verdict_of(0.85, 0.85, 0.1, True) == "pass"
    assert verdict_of(0.8, 0.85, 0.1, True) == "warn"
    assert verdict_of(0.7, 0.85, 0.1, True) == "fail"
    assert verdict_of(0.56, 0.55, 0.05, False) == "warn"
    assert verdict_of(0.7, 0.55, 0.05, False) == "fail"
    assert verdict_of(float("nan"), 0.55, 0.05, False) == "not_applicable"


def test_threshold_overrides() -> None:
    r = evaluate(
        toy_inputs(
            toy_table(300, 8),
            rows=300,
            thresholds={
                "fidelity_score": 0.999,
                "fidelity_score.warn_margin": 0.0,
                "ks_complement_mean": 0.5,
                "ks_complement[x]": 0.9999,
            },
        )
    )
    fs = r.metric("fidelity_score")
    assert fs.threshold == 0.999 and fs.verdict == "fail"
    assert r.metric("ks_complement[y]").threshold == 0.5  # falls back to the mean's setting
    assert r.metric("ks_complement[x]").threshold == 0.9999
    # holdout-relative: the boundary is the holdout's value plus the allowance
    copies = r.metric("exact_copy_rate")
    assert copies.threshold == pytest.approx(copies.holdout_value + SPECS["exact_copy_rate"].threshold)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_missing_target_is_named() -> None:
    with pytest.raises(InvalidArgument) as err:
        evaluate(toy_inputs(target="salary"))
    assert "'salary'" in str(err.value)
    assert err.value.reason == "TARGET_NOT_FOUND"
    assert [v.field for v in err.value.violations] == ["target_column"]


def test_mismatched_synthetic_columns_are_listed() -> None:
    synthetic = toy_table(100, 5).drop(columns=["x", "colour"]).assign(extra=1, more="a")
    with pytest.raises(InvalidArgument) as err:
        evaluate(toy_inputs(synthetic))
    fields = {v.field for v in err.value.violations}
    assert fields == {
        'synthetic.columns["x"]',
        'synthetic.columns["colour"]',
        'synthetic.columns["extra"]',
        'synthetic.columns["more"]',
    }
    assert err.value.reason == "SCHEMA_MISMATCH"
    assert "missing 'x', 'colour'" in str(err.value) and "extra 'extra', 'more'" in str(err.value)
    # identifier and free-text columns may be absent; column order does not matter
    ok = toy_table(100, 5).drop(columns=["id", "note"])
    check_schema(toy_schema(), ok[list(reversed(ok.columns))])


def test_other_bad_inputs() -> None:
    def reason(**kw) -> str:
        with pytest.raises(InvalidArgument) as err:
            evaluate(toy_inputs(**kw))
        return err.value.reason

    bad_values = toy_table(100, 5).astype({"x": object})
    bad_values.loc[3, "x"] = "lots"
    with pytest.raises(InvalidArgument) as err:
        evaluate(toy_inputs(bad_values))
    assert err.value.reason == "INVALID_VALUES" and "'lots'" in str(err.value)
    assert [v.field for v in err.value.violations] == ['synthetic.columns["x"]']
    assert reason(target="id") == "INVALID_TARGET"
    assert reason(task="clustering") == "INVALID_TASK"
    assert reason(target="colour", task="regression") == "INVALID_TARGET"
    assert reason(thresholds={"no_such_metric": 1.0}) == "INVALID_THRESHOLD"
    assert reason(thresholds={"ks_complement[nope]": 1.0}) == "INVALID_THRESHOLD"
    assert reason(thresholds={"dcr_share": float("nan")}) == "INVALID_THRESHOLD"
    assert reason(synthetic=toy_table(5, 5)) == "TOO_FEW_ROWS"
    assert reason(sensitive_column="nope") == "INVALID_PRIVACY_SETTINGS"


def test_synthetic_types_may_be_looser() -> None:
    """Numbers and dates as text, category codes as numbers: a CSV upload's synthetic table."""
    synthetic = toy_table(300, 6)
    synthetic["x"] = synthetic["x"].map(repr)
    synthetic["when"] = synthetic["when"].dt.strftime("%Y-%m-%d %H:%M:%S")
    r = evaluate(toy_inputs(synthetic, rows=300))
    assert r.metric("ks_complement[x]").value > 0.8
    assert r.metric("ks_complement[when]").value > 0.8


# ---------------------------------------------------------------------------------------------
# Real data: a slice of Adult
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adult_report(adult_slice) -> Report:
    train, holdout, fresh, columns = adult_slice
    return evaluate(EvaluationInputs(train, holdout, fresh, columns, target="income", seed=1, forest_trees=50))


def test_adult_fresh_rows_beat_the_naive_baseline(adult_report: Report) -> None:
    r = adult_report
    corr = r.metric("correlation_difference")
    assert corr.baseline_value > 3 * corr.value
    assert corr.verdict == "pass"
    assert r.metric("fidelity_score").baseline_value < r.metric("fidelity_score").value - 0.2
    assert r.metric("tstr_trtr_ratio").verdict == "pass"
    assert r.metric("tstr_roc_auc").baseline_value < 0.65 < 0.8 < r.metric("tstr_roc_auc").value
    assert r.verdict == "pass", r.summary


def test_adult_real_rows_pass_privacy(adult_report: Report) -> None:
    r = adult_report
    for name in PRIVACY:
        m = r.metric(name)
        assert m.verdict == "pass", (name, m.value, m.explanation)
        # the holdout's own reference numbers pass the same thresholds
        assert verdict_of(m.holdout_value, m.threshold, 0.0, m.higher_is_better) == "pass", (name, m.holdout_value)
    assert r.metric("dcr_share").value == pytest.approx(0.5, abs=0.05)
    assert r.metric("identifiability").value == pytest.approx(0.5, abs=0.05)
    assert r.privacy_score > 0.85


def _result(name: str, category: str, value: float, verdict: str) -> MetricResult:
    return MetricResult(name, category, value, None, None, 0.85, True, verdict, value, "")


def test_next_steps_say_what_to_do_and_name_the_worst_columns() -> None:
    passing = [
        _result("tstr_trtr_ratio", "utility", 0.97, "pass"),
        _result("ks_complement[age]", "fidelity", 0.9, "pass"),
    ]
    assert next_steps(passing) == []
    failing = [
        _result("tstr_trtr_ratio", "utility", 0.6, "fail"),
        _result("ks_complement[age]", "fidelity", 0.71, "fail"),
        _result("ks_complement[fnlwgt]", "fidelity", 0.95, "pass"),
        _result("tv_complement[race]", "fidelity", 0.8, "warn"),
        _result("correlation_difference", "fidelity", 0.2, "fail"),
        _result("dcr_share", "privacy", 0.7, "fail"),
    ]
    steps = next_steps(failing)
    assert "train longer" in steps[0] and "another engine" in steps[0]
    assert "age (0.71), race (0.80)" in steps[1] and "fnlwgt" not in steps[1]
    assert any("Relations between columns" in s for s in steps)
    assert "closer to training rows" in steps[-1]
