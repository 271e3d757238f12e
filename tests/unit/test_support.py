"""The real support of numeric columns, and synthetic values put on it (no sockets)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from services.common.codec import OutputTyper, training_view
from services.common.errors import DataLoss
from services.common.schema import ColumnInfo, ColumnKind
from services.common.support import ColumnSupport, SupportRules

ADULT = Path(__file__).resolve().parents[2] / "data" / "adult.csv"
DAY = 86_400.0
N = 2_000


def _crafted() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    whole = rng.integers(0, 100, N).astype(np.float64)
    prices = rng.integers(100, 100_000, N) / 100
    special = rng.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], N, p=[0.8, 0.04, 0.04, 0.04, 0.04, 0.04])
    loss = np.where(rng.random(N) < 0.95, 0.0, rng.integers(155, 4357, N).astype(np.float64))
    loss[:2] = [155.0, 4356.0]  # the body's edges are real values
    days = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3_000, N), unit="D")
    fine = rng.uniform(0, 1, N).round(8)
    rare = np.repeat([1.0, 2.0, 3.0], [700, 700, N - 1_401])
    rare = np.append(rare, 4.0)  # one row only
    frame = pd.DataFrame(
        {
            "whole": whole,
            "price": prices,
            "special_day": special,
            "capital_loss": loss,
            "day": days,
            "fine": fine,
            "rare": rare,
            "city": rng.choice(["a", "b"], N),
        }
    )
    frame.loc[rng.random(N) < 0.1, ["whole", "price", "day"]] = None
    return frame


COLUMNS = [
    ColumnInfo("whole", ColumnKind.CONTINUOUS, 0, 100, integer=True, minimum=0.0, maximum=99.0),
    ColumnInfo("price", ColumnKind.CONTINUOUS, 0, N, minimum=1.0, maximum=999.99),
    ColumnInfo("special_day", ColumnKind.CONTINUOUS, 0, 6, minimum=0.0, maximum=1.0),
    ColumnInfo("capital_loss", ColumnKind.CONTINUOUS, 0, 100, integer=True, minimum=0.0, maximum=4356.0),
    ColumnInfo("day", ColumnKind.DATETIME, 0, N, datetime_format="%Y-%m-%d"),
    ColumnInfo("fine", ColumnKind.CONTINUOUS, 0, N, minimum=0.0, maximum=1.0),
    ColumnInfo("rare", ColumnKind.CONTINUOUS, 0, 4, integer=True, minimum=1.0, maximum=4.0),
    ColumnInfo("city", ColumnKind.CATEGORICAL, 0, 2, categories=["a", "b"]),
]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    frame, discrete = training_view(_crafted(), COLUMNS)
    assert discrete == ["city"]
    return frame


@pytest.fixture(scope="module")
def rules(table: pd.DataFrame) -> SupportRules:
    return SupportRules.fit(table, ["city"])


def _noisy(real: np.ndarray, spread: float, seed: int = 0) -> np.ndarray:
    """Synthetic-looking values: the real ones (missing kept) plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    return real + rng.normal(0, spread, real.size)


def test_whole_numbers_get_step_one(rules: SupportRules) -> None:
    whole = rules["whole"]
    assert whole.step == 1.0 and whole.values is None and whole.body == (0.0, 99.0)
    assert rules.apply("whole", np.array([3.4, 7.6, 50.5000001])).tolist() == [3.0, 8.0, 51.0]


def test_prices_with_two_decimals_get_step_a_hundredth(rules: SupportRules) -> None:
    assert rules["price"].step == 0.01
    # the nearest float to the decimal, exactly what parsing "16.77" gives
    assert rules.apply("price", np.array([16.773805985269888, 5.0])).tolist() == [16.77, 5.0]


def test_a_column_of_few_values_only_gives_observed_values(rules: SupportRules, table: pd.DataFrame) -> None:
    special = rules["special_day"]
    assert special.values == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    out = rules.apply("special_day", np.random.default_rng(1).uniform(-0.5, 1.5, 10_000))
    assert set(np.unique(out)) <= set(special.values)
    assert rules.apply("special_day", np.array([0.29, 0.31, 0.95, -3.0])).tolist() == [0.2, 0.4, 1.0, 0.0]


def test_a_zero_inflated_column_keeps_its_gap(rules: SupportRules) -> None:
    loss = rules["capital_loss"]
    assert loss.masses == (0.0,) and loss.body == (155.0, 4356.0) and loss.step == 1.0
    out = rules.apply("capital_loss", np.array([1.0, 100.0, 3000.0, -20.0, 9000.0, 154.7, 155.4]))
    assert out.tolist() == [0.0, 155.0, 3000.0, 0.0, 4356.0, 155.0, 155.0]


def test_dates_at_midnight_stay_at_midnight(rules: SupportRules, table: pd.DataFrame) -> None:
    assert rules["day"].step == DAY
    real = table["day"].to_numpy()
    out = rules.apply("day", _noisy(real, 5 * 3_600.0))
    present = ~np.isnan(out)
    assert np.array_equal(present, ~np.isnan(real))
    assert np.all(out[present] % DAY == 0)


def test_dates_with_whole_hours_get_step_an_hour() -> None:
    hours = pd.Timestamp("2020-03-01") + pd.to_timedelta(np.arange(0, 500 * 7, 7), unit="h")
    frame, _ = training_view(pd.DataFrame({"at": hours}), [ColumnInfo("at", ColumnKind.DATETIME, 0, 500)])
    assert SupportRules.fit(frame, [])["at"].step == 3_600.0


def test_small_multiples_of_sixty_are_not_taken_for_times() -> None:
    frame = pd.DataFrame({"minutes": np.arange(0.0, 6_000.0, 60.0)})
    assert SupportRules.fit(frame, [])["minutes"].step == 1.0


def test_seven_decimals_have_no_step(rules: SupportRules, table: pd.DataFrame) -> None:
    assert rules["fine"].step is None and rules["fine"].values is None
    inside = np.array([0.123456789, 0.5])
    assert rules.apply("fine", inside).tolist() == inside.tolist()


def test_missing_values_stay_missing(rules: SupportRules) -> None:
    for name in ("whole", "price", "special_day", "capital_loss", "day", "fine", "rare"):
        out = rules.apply(name, np.array([np.nan, 1.0, np.nan]))
        assert np.isnan(out[0]) and np.isnan(out[2]) and not np.isnan(out[1])
        assert not rules.off_support(name, np.array([np.nan])).any()


def test_a_rare_value_is_not_listed_and_not_emitted(rules: SupportRules, table: pd.DataFrame) -> None:
    assert rules["rare"].values == (1.0, 2.0, 3.0)
    assert rules.apply("rare", np.array([4.0, 3.9])).tolist() == [3.0, 3.0]
    # on the real column, only the rare row (left out of the listed values) is off the support
    off = rules.off_support("rare", table["rare"].to_numpy())
    assert off.sum() == 1 and table["rare"][off].tolist() == [4.0]


def test_a_column_without_rules_is_left_as_it_is() -> None:
    rules = SupportRules.fit(pd.DataFrame({"empty": [np.nan, np.nan], "city": [0.0, 1.0]}), ["city"])
    assert "empty" not in rules and "city" not in rules and len(rules) == 0
    values = np.array([0.123, np.nan])
    assert np.array_equal(rules.apply("empty", values), values, equal_nan=True)
    assert not rules.off_support("empty", values).any()


def test_apply_returns_a_new_array(rules: SupportRules) -> None:
    values = np.array([1.4, 2.6])
    out = rules.apply("whole", values)
    assert values.tolist() == [1.4, 2.6] and out is not values and out.dtype == np.float64


# ------------------------------------------------------------------ off support


CRAFTED = ["whole", "price", "special_day", "capital_loss", "day", "fine", "rare"]


@pytest.mark.parametrize("name", [n for n in CRAFTED if n != "rare"])
def test_the_real_column_is_on_its_support(rules: SupportRules, table: pd.DataFrame, name: str) -> None:
    assert not rules.off_support(name, table[name].to_numpy()).any()


@pytest.mark.parametrize(
    ("name", "perturbed"),
    [
        ("whole", [3.5, 120.0, -1.0]),
        ("price", [16.773, 0.5, 1_000.5]),
        ("special_day", [0.3, 0.21, 1.2]),
        ("capital_loss", [1.0, 100.0, 154.0, 3000.5]),
        ("day", [pd.Timestamp("2016-05-05 10:00").timestamp(), 0.0]),
        ("fine", [-0.1, 1.5, np.inf]),
    ],
)
def test_perturbed_values_are_flagged(rules: SupportRules, name: str, perturbed: list[float]) -> None:
    assert rules.off_support(name, np.array(perturbed)).all()


@pytest.mark.parametrize("name", CRAFTED)
def test_applied_values_are_on_the_support(rules: SupportRules, table: pd.DataFrame, name: str) -> None:
    real = table[name].to_numpy()
    spread = float(np.nanstd(real)) or 1.0
    noisy = np.concatenate([_noisy(real, spread / 3), [np.inf, -np.inf, 1e300]])
    assert rules.off_support(name, noisy).any()
    out = rules.apply(name, noisy)
    assert not rules.off_support(name, out).any()
    assert np.array_equal(np.isnan(out), np.isnan(noisy))
    # and values already on the support are untouched
    kept = real[~rules.off_support(name, real)]
    assert np.array_equal(rules.apply(name, kept), kept, equal_nan=True)


# ------------------------------------------------------------------------ state


def test_state_round_trips_exactly_through_json(rules: SupportRules) -> None:
    state = rules.to_state()
    assert state["format"] == "synth.support-rules" and state["version"] == 1
    back = SupportRules.from_state(json.loads(json.dumps(state, allow_nan=False)))
    assert back.to_state() == state
    for name in CRAFTED:
        assert back[name] == rules[name]
        noisy = np.random.default_rng(3).normal(0, 1_000, 500)
        assert np.array_equal(back.apply(name, noisy), rules.apply(name, noisy))


def _broken(state: dict[str, Any], column: int, key: str, value: object) -> dict[str, Any]:
    damaged = copy.deepcopy(state)
    damaged["columns"][column][key] = value
    return damaged


def test_malformed_state_is_refused(rules: SupportRules) -> None:
    state = rules.to_state()
    loss = [c["name"] for c in state["columns"]].index("capital_loss")
    bad: list[object] = [
        [],
        {**state, "format": "synth.something-else"},
        {**state, "version": 2},
        {**state, "columns": {"a": 1}},
        {**state, "columns": [*state["columns"], state["columns"][0]]},  # a name twice
        {**state, "columns": [{"step": 1.0}]},  # no name
        _broken(state, loss, "step", -1.0),
        _broken(state, loss, "step", "1"),
        _broken(state, loss, "body", [4356.0, 155.0]),
        _broken(state, loss, "body", [155.0]),
        _broken(state, loss, "masses", [0.0, float("nan")]),
        _broken(state, loss, "masses", [5.0, 0.0]),
        _broken(state, loss, "masses", None),
        _broken(state, loss, "values", []),
        _broken(state, loss, "values", [True]),
        _broken(state, loss, "tolerance", None),
        _broken(state, loss, "tolerance", -1e-6),
        _broken(_broken(state, loss, "body", None), loss, "masses", []),  # no support at all
    ]
    for damaged in bad:
        with pytest.raises(DataLoss):
            SupportRules.from_state(damaged)  # type: ignore[arg-type]


# ------------------------------------------------------------------ OutputTyper


def test_typed_output_is_on_the_support(rules: SupportRules, table: pd.DataFrame) -> None:
    learned = [c.name for c in COLUMNS]
    typer = OutputTyper(COLUMNS, learned, {"city": ["a", "b"]}, support=rules)
    rng = np.random.default_rng(5)
    decoded = []
    for name in learned:
        if name == "city":
            decoded.append(rng.integers(0, 2, N))
            continue
        real = table[name].to_numpy()
        decoded.append(_noisy(real, (float(np.nanstd(real)) or 1.0) / 3, seed=len(decoded)))
    batch = typer.learned_batch(decoded)
    rows = batch.to_pydict()

    assert rows["special_day"] and set(rows["special_day"]) - {None} <= {0.0, 0.2, 0.4, 0.6, 0.8, 1.0}
    assert set(rows["rare"]) - {None} <= {1, 2, 3}
    assert all(v == 0 or 155 <= v <= 4356 for v in rows["capital_loss"])
    assert all(v is None or round(v, 2) == v for v in rows["price"])
    assert all(d is None or d.time() == dt.time(0) for d in rows["day"])
    assert sum(d is None for d in rows["day"]) == table["day"].isna().sum()
    for name in CRAFTED:
        column = batch.column(name)
        if name == "day":  # microseconds -> epoch seconds
            column = pc.divide(pc.cast(pc.cast(column, pa.int64()), pa.float64()), 1e6)
        typed = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)  # nulls -> NaN
        assert not rules.off_support(name, typed).any(), name


def test_without_support_the_typer_only_clips_and_rounds(rules: SupportRules) -> None:
    columns = [COLUMNS[3]]
    values = np.array([1.0, 100.0, 5000.0])
    plain = OutputTyper(columns, ["capital_loss"], {}).learned_batch([values])
    snapped = OutputTyper(columns, ["capital_loss"], {}, support=rules).learned_batch([values])
    assert plain.column("capital_loss").to_pylist() == [1, 100, 4356]
    assert snapped.column("capital_loss").to_pylist() == [0, 155, 4356]


def test_a_numeric_column_learned_as_discrete_is_not_snapped() -> None:
    support = SupportRules.fit(pd.DataFrame({"size": [1.0, 1.0, 1.0, 3.0, 3.0, 3.0]}), [])
    col = ColumnInfo("size", ColumnKind.CONTINUOUS, 0, 2, integer=True, minimum=1.0, maximum=3.0)
    typer = OutputTyper([col], ["size"], {"size": ["1", "3", None]}, support=support)
    assert typer.learned_batch([np.array([0, 1, 2])]).column("size").to_pylist() == [1, 3, None]


# ---------------------------------------------------------------------- real data


ADULT_NUMBERS = ["capital_gain", "capital_loss", "age", "hours_per_week"]


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return pd.read_csv(ADULT, na_values="?")[ADULT_NUMBERS].astype(np.float64)


def test_adult_support_finds_the_mass_at_zero_and_the_grid(adult: pd.DataFrame) -> None:
    rules = SupportRules.fit(adult, [])
    assert 0.0 in rules["capital_gain"].masses and 0.0 in rules["capital_loss"].masses
    assert rules["capital_loss"].body == (155.0, 4356.0) and rules["capital_gain"].body == (114.0, 99999.0)
    assert 40.0 in rules["hours_per_week"].masses
    assert all(rules[name].step == 1.0 for name in ADULT_NUMBERS)
    for name in ADULT_NUMBERS:
        assert not rules.off_support(name, adult[name].to_numpy()).any(), name


@pytest.mark.parametrize("name", ADULT_NUMBERS)
def test_adult_noisy_values_come_back_on_the_support(adult: pd.DataFrame, name: str) -> None:
    rules = SupportRules.fit(adult, [])
    real = adult[name].to_numpy()
    rng = np.random.default_rng(11)
    low, high = float(real.min()), float(real.max())
    synthetic = np.concatenate(
        [
            _noisy(real, float(real.std()) / 4),
            rng.uniform(low - 10, high + 10, 20_000),  # random values, gaps included
            rng.normal(0, 3, 5_000),  # CTGAN's blur around a zero mass
        ]
    )
    assert rules.off_support(name, synthetic).mean() > 0.2
    out = rules.apply(name, synthetic)
    assert not rules.off_support(name, out).any()
    if name in ("capital_gain", "capital_loss"):
        low_body = rules[name].body[0]  # type: ignore[index]
        assert not np.any((out > 0) & (out < low_body))  # nothing in the gap next to the zeros
        assert np.mean(out == 0) > 0.05


def test_column_support_is_a_plain_value() -> None:
    support = ColumnSupport(step=1.0, values=None, masses=(0.0,), body=(155.0, 4356.0), tolerance=1e-6)
    rules = SupportRules({"loss": support})
    assert SupportRules.from_state(rules.to_state())["loss"] == support
