"""Schema inference (services.trainer.datasets.inference) on real and hand-made tables.

Real tables come from tests/fixtures/datasets (copies of the shared datasets),
the bundled data/adult.csv and tests/fixtures/ (always present); they go
through the whole intake and are read back as the store gives them. Overrides
and the inference rules are checked on small hand-made tables.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.common.dataset_store import DatasetRepository
from services.common.errors import InvalidArgument
from services.common.schema import ColumnInfo, ColumnKind, DatasetInfo
from services.common.store import ArtifactStore
from services.trainer.datasets import DEFAULT_MISSING_MARKERS, DatasetIntake
from tests.unit.dataset_helpers import ADULT, DATASETS, GOOD, KC_HOUSE_2000, good_rows, paths, refused, table, upload

# rows x columns, from the datasets' README.md (tests/fixtures/datasets)
EXPECTED_SHAPES = {
    "adult.csv": (32_561, 15),
    "kc_house_data.csv": (21_613, 21),
    "pima_diabetes.csv": (768, 9),
    "nyc_taxis.csv": (6_433, 14),
    "nycflights13/airlines.csv": (16, 2),
    "nycflights13/airports.csv": (1_458, 8),
    "nycflights13/planes.csv": (3_322, 9),
    "nycflights13/flights.csv": (25_000, 19),
    "kddcup99_10pct.csv.gz": (494_021, 42),
}

# A few columns per file: (kind, missing_count or None, datetime_format or None)
EXPECTED_COLUMNS: dict[str, dict[str, tuple[ColumnKind, int | None, str | None]]] = {
    "kc_house_data.csv": {
        "id": (ColumnKind.IDENTIFIER, 0, None),
        "date": (ColumnKind.DATETIME, 0, "%Y%m%dT%H%M%S"),
        "price": (ColumnKind.CONTINUOUS, 0, None),
        "waterfront": (ColumnKind.CATEGORICAL, 0, None),
        "view": (ColumnKind.CATEGORICAL, 0, None),
        "grade": (ColumnKind.CATEGORICAL, 0, None),  # 12 integer codes
        "zipcode": (ColumnKind.CATEGORICAL, 0, None),  # 70 codes, named as such
        "yr_built": (ColumnKind.CONTINUOUS, 0, None),  # 116 years
        "yr_renovated": (ColumnKind.CONTINUOUS, 0, None),  # 70 values, 96% zeros
        "lat": (ColumnKind.CONTINUOUS, 0, None),
    },
    "pima_diabetes.csv": {
        "Outcome": (ColumnKind.CATEGORICAL, 0, None),
        "BMI": (ColumnKind.CONTINUOUS, 0, None),
        "Glucose": (ColumnKind.CONTINUOUS, 0, None),
        "BloodPressure": (ColumnKind.CONTINUOUS, 0, None),
    },
    "nyc_taxis.csv": {
        "pickup": (ColumnKind.DATETIME, 0, "%Y-%m-%d %H:%M:%S"),
        "dropoff": (ColumnKind.DATETIME, 0, "%Y-%m-%d %H:%M:%S"),
        "total": (ColumnKind.CONTINUOUS, 0, None),
        "payment": (ColumnKind.CATEGORICAL, 44, None),
        "pickup_zone": (ColumnKind.CATEGORICAL, 26, None),
        "dropoff_borough": (ColumnKind.CATEGORICAL, 45, None),
    },
    "nycflights13/flights.csv": {
        "time_hour": (ColumnKind.DATETIME, 0, "%Y-%m-%dT%H:%M:%SZ"),
        "dep_time": (ColumnKind.CONTINUOUS, 364, None),
        "arr_delay": (ColumnKind.CONTINUOUS, 446, None),
        "carrier": (ColumnKind.CATEGORICAL, 0, None),
    },
    "nycflights13/planes.csv": {
        "tailnum": (ColumnKind.IDENTIFIER, 0, None),
        "year": (ColumnKind.CONTINUOUS, 70, None),
        "speed": (ColumnKind.CONTINUOUS, 3_299, None),
    },
    "nycflights13/airports.csv": {
        "faa": (ColumnKind.IDENTIFIER, 0, None),
        "tzone": (ColumnKind.CATEGORICAL, 3, None),
    },
    "kddcup99_10pct.csv.gz": {
        "protocol_type": (ColumnKind.CATEGORICAL, 0, None),
        "service": (ColumnKind.CATEGORICAL, 0, None),
        "label": (ColumnKind.CATEGORICAL, 0, None),
        "src_bytes": (ColumnKind.CONTINUOUS, 0, None),
        "serror_rate": (ColumnKind.CONTINUOUS, 0, None),
    },
}


def _dataset_files() -> list[str]:
    found = set(EXPECTED_SHAPES)
    if DATASETS.is_dir():
        for path in [*DATASETS.rglob("*.csv"), *DATASETS.rglob("*.csv.gz")]:
            found.add(path.relative_to(DATASETS).as_posix())
    return sorted(found)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


@pytest.fixture
def repo(store: ArtifactStore) -> DatasetRepository:
    return DatasetRepository(store)


@pytest.fixture(scope="module")
def adult(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetRepository, DatasetInfo]:
    repo = DatasetRepository(ArtifactStore(tmp_path_factory.mktemp("adult") / "store"))
    return repo, upload(repo, ADULT.read_bytes(), name="adult")


# ---------------------------------------------------------------------------
# real datasets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", _dataset_files())
def test_real_dataset_uploads_with_the_documented_shape(repo: DatasetRepository, relpath: str) -> None:
    path = DATASETS / relpath
    raw = path.read_bytes()
    info = upload(repo, raw, name=relpath)

    if relpath in EXPECTED_SHAPES:
        assert (info.row_count, info.column_count) == EXPECTED_SHAPES[relpath]
    else:  # a file the README table does not list yet: agree with pandas
        frame = pd.read_csv(path)
        assert (info.row_count, info.column_count) == frame.shape
    assert len(info.columns) == info.column_count
    assert info.display_name == relpath
    # Normalised UTF-8 without a BOM: the stored bytes are the (decompressed) upload.
    plain = gzip.decompress(raw) if relpath.endswith(".gz") else raw
    assert info.fingerprint == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert info.size_bytes == len(plain)
    for name, (kind, missing, fmt) in EXPECTED_COLUMNS.get(relpath, {}).items():
        col = info.column(name)
        assert col.kind is kind, name
        if missing is not None:
            assert col.missing_count == missing, name
        assert col.datetime_format == fmt, name
    assert repo.get(info.id) == info


def test_adult_kinds_and_missing_counts(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    _, info = adult
    assert (info.row_count, info.column_count) == (32_561, 15)
    kinds = {c.name: c.kind for c in info.columns}
    for name in ["age", "fnlwgt", "capital_gain", "capital_loss", "hours_per_week"]:
        assert kinds[name] is ColumnKind.CONTINUOUS, name
        assert info.column(name).integer, name
    for name in [
        "workclass",
        "education",
        "marital_status",
        "occupation",
        "relationship",
        "race",
        "sex",
        "native_country",
        "income",
    ]:
        assert kinds[name] is ColumnKind.CATEGORICAL, name
    assert kinds["education_num"] in {ColumnKind.CONTINUOUS, ColumnKind.CATEGORICAL}
    missing = {c.name: c.missing_count for c in info.columns}
    assert missing["workclass"] == 1_836
    assert missing["occupation"] == 1_843
    assert missing["native_country"] == 583
    assert sum(missing.values()) == 1_836 + 1_843 + 583
    income = info.column("income")
    assert income.categories == ["<=50K", ">50K"]  # most frequent first
    assert "?" not in info.column("workclass").categories
    age = info.column("age")
    assert (age.minimum, age.maximum) == (17.0, 90.0)
    assert info.missing_markers == list(DEFAULT_MISSING_MARKERS)
    assert info.source_encoding == "utf-8"


def test_adult_load_frame_dtypes(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    repo, info = adult
    frame = repo.load_frame(info.id)
    assert frame.shape == (32_561, 15)
    assert list(frame.columns) == [c.name for c in info.columns]
    for name in ["age", "fnlwgt", "capital_gain", "capital_loss", "hours_per_week"]:
        assert str(frame[name].dtype) == "Int64", name
    assert frame["workclass"].dtype == object
    assert frame["workclass"].isna().sum() == 1_836
    assert frame["workclass"].map(lambda v: v is None or isinstance(v, str)).all()
    assert frame["occupation"].isna().sum() == 1_843
    assert int(frame["age"].min()) == 17
    assert frame["income"].value_counts().to_dict() == {"<=50K": 24_720, ">50K": 7_841}


def test_adult_preview_shows_missing_cells_as_none(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    repo, info = adult
    names, rows, masked = repo.preview(info.id, rows=100)
    assert not any(any(row) for row in masked)  # Adult's values are all frequent
    assert names == [c.name for c in info.columns]
    assert len(rows) == 100
    assert all(len(r) == 15 for r in rows)
    raw = pd.read_csv(ADULT, dtype=str, keep_default_na=False, nrows=100)
    workclass = names.index("workclass")
    expected = [None if v == "?" else v for v in raw["workclass"]]
    assert [r[workclass] for r in rows] == expected
    assert None in expected
    assert rows[0][0] == "39"
    assert len(repo.preview(info.id, rows=5000)[1]) == 1000  # capped


def test_dataset_info_round_trips_through_json(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    _, info = adult
    data = json.loads(json.dumps(info.to_dict()))
    assert DatasetInfo.from_dict(data) == info
    col = info.columns[1]
    assert ColumnInfo.from_dict(col.to_dict()) == col
    assert data["columns"][1]["kind"] == "categorical"
    assert data["columns"][1]["kind_reason"] == "text with 8 distinct values"


# ---------------------------------------------------------------------------
# overrides
# ---------------------------------------------------------------------------


def test_override_of_an_unknown_column_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, GOOD, kind_overrides={"colour": "categorical", "nope": ColumnKind.CONTINUOUS})
    assert "'nope'" in err.message
    assert paths(err) == ['kind_overrides["nope"]']


def test_override_with_an_unknown_kind_is_refused(repo: DatasetRepository) -> None:
    with pytest.raises(InvalidArgument, match="unknown column kind"):
        DatasetIntake(repo).begin_upload("t", kind_overrides={"x": "numberish"})


def test_continuous_override_names_the_first_bad_row(repo: DatasetRepository, store: ArtifactStore) -> None:
    rows = good_rows(30)
    rows[17][2] = "n/a-ish"
    err = refused(repo, store, table(["n", "x", "colour"], rows), kind_overrides={"colour": "continuous"})
    assert "'colour'" in err.message
    assert "row 1 " in err.message and "'red'" in err.message  # the first non-number
    assert "line 2" in err.message
    assert 'columns["colour"]' in paths(err) and "rows[0].colour" in paths(err)


def test_datetime_override_names_the_first_bad_row(repo: DatasetRepository, store: ArtifactStore) -> None:
    rows = [[i, f"2024-01-{i + 1:02d}", "x"] for i in range(20)]
    rows[13][1] = "2024-13-45"
    data = table(["n", "when", "c"], rows)
    err = refused(repo, store, data, kind_overrides={"when": ColumnKind.DATETIME})
    assert "'when'" in err.message and "row 14" in err.message and "2024-13-45" in err.message
    assert "line 15" in err.message
    when = upload(repo, data).column("when")
    assert when.kind is ColumnKind.IDENTIFIER  # not inferred as datetime; 20 distinct texts in 20 rows
    assert when.kind_reason.startswith("near-unique text (20 distinct in 20 rows)")


def test_overrides_are_applied_and_flagged(repo: DatasetRepository) -> None:
    rows = [[i, i % 3, f"2024-01-{i + 1:02d}", f"c{i % 4}"] for i in range(20)]
    overrides = {"k": ColumnKind.CONTINUOUS, "n": "categorical", "day": ColumnKind.CATEGORICAL}
    info = upload(repo, table(["n", "k", "day", "c"], rows), kind_overrides=overrides)
    n, k, day, c = info.columns
    assert (k.kind, k.overridden, k.integer, k.maximum) == (ColumnKind.CONTINUOUS, True, True, 2.0)
    # 20 values seen once each: rare, so counted and never listed
    assert (n.kind, n.overridden, n.categories, n.withheld_categories) == (ColumnKind.CATEGORICAL, True, [], 20)
    assert (day.kind, day.overridden, day.datetime_format) == (ColumnKind.CATEGORICAL, True, None)
    assert (c.kind, c.overridden) == (ColumnKind.CATEGORICAL, False)
    frame = repo.load_frame(info.id)
    assert str(frame["k"].dtype) == "Int64" and frame["n"].dtype == object


def test_datetime_override_on_year_numbers(repo: DatasetRepository) -> None:
    rows = [[i, 1990 + i, "x"] for i in range(12)]
    info = upload(repo, table(["n", "year", "c"], rows), kind_overrides={"year": "datetime"})
    year = info.column("year")
    assert (year.kind, year.datetime_format) == (ColumnKind.DATETIME, "%Y")
    frame = repo.load_frame(info.id)
    assert frame["year"].dt.year.tolist() == list(range(1990, 2002))


# ---------------------------------------------------------------------------
# inference rules
# ---------------------------------------------------------------------------


def _infer(repo: DatasetRepository, values: Sequence[object], name: str = "v") -> ColumnInfo:
    rows = [[i, v] for i, v in enumerate(values)]
    return upload(repo, table(["row", name], rows)).column(name)


@pytest.mark.parametrize(
    ("values", "fmt"),
    [
        (["2013-01-01T10:00:00Z", "2013-06-30T23:59:59Z"], "%Y-%m-%dT%H:%M:%SZ"),
        (["2013-01-01T10:00:00.250Z", "2013-06-30T23:59:59.000Z"], "%Y-%m-%dT%H:%M:%S.%fZ"),
        (["2013-01-01T10:00:00", "2013-06-30T23:59:59"], "%Y-%m-%dT%H:%M:%S"),
        (["2013-01-01T10:00:00+02:00", "2013-06-30T23:59:59-05:00"], "%Y-%m-%dT%H:%M:%S%z"),
        (["2019-03-23 20:21:09", "2019-03-04 16:11:55"], "%Y-%m-%d %H:%M:%S"),
        (["2019-03-23", "2019-12-04"], "%Y-%m-%d"),
        (["20141013T000000", "20150227T120000"], "%Y%m%dT%H%M%S"),
        (["01/13/2014", "12/01/2014"], "%m/%d/%Y"),
        (["13/01/2014 10:30", "01/12/2014 08:00"], "%d/%m/%Y %H:%M"),
    ],
)
def test_datetime_formats_are_detected(repo: DatasetRepository, values: list[str], fmt: str) -> None:
    col = _infer(repo, values * 6, name="when")
    assert (col.kind, col.datetime_format) == (ColumnKind.DATETIME, fmt)
    assert col.minimum is not None and col.maximum is not None and col.minimum <= col.maximum


def test_datetime_bounds_are_epoch_seconds_and_frame_is_datetime64(repo: DatasetRepository) -> None:
    rows = [[i, f"2020-01-0{1 + i % 9} 00:00:00" if i != 5 else "NA"] for i in range(12)]
    info = upload(repo, table(["n", "t"], rows))
    col = info.column("t")
    assert col.minimum == 1_577_836_800.0  # 2020-01-01T00:00:00Z
    assert col.missing_count == 1
    frame = repo.load_frame(info.id)
    assert str(frame["t"].dtype) == "datetime64[ns]"
    assert frame["t"].isna().sum() == 1


def test_small_integer_codes_are_categorical(repo: DatasetRepository) -> None:
    col = _infer(repo, [i % 3 for i in range(30)])
    assert col.kind is ColumnKind.CATEGORICAL and col.integer
    assert col.categories == ["0", "1", "2"]


def test_many_integers_are_continuous_and_floats_not_integer(repo: DatasetRepository) -> None:
    assert _infer(repo, list(range(0, 300, 7))).kind is ColumnKind.CONTINUOUS
    col = _infer(repo, [i / 4 for i in range(40)])
    assert col.kind is ColumnKind.CONTINUOUS and not col.integer


def test_integer_ids_by_name(repo: DatasetRepository) -> None:
    ids = [1000 + i for i in range(30)]
    assert _infer(repo, ids, name="customer_id").kind is ColumnKind.IDENTIFIER
    assert _infer(repo, ids, name="CustomerID").kind is ColumnKind.IDENTIFIER
    assert _infer(repo, ids, name="paid").kind is ColumnKind.CONTINUOUS


def test_text_identifiers(repo: DatasetRepository) -> None:
    tokens = [hashlib.md5(str(i).encode()).hexdigest()[:12] for i in range(60)]
    assert _infer(repo, tokens, name="ref").kind is ColumnKind.IDENTIFIER
    assert _infer(repo, tokens[:20], name="ref").kind is ColumnKind.IDENTIFIER  # near-unique text
    assert _infer(repo, tokens[:19], name="ref").kind is ColumnKind.CATEGORICAL  # too few rows to tell
    assert _infer(repo, [f"u{i % 5}" for i in range(20)], name="user_key").kind is ColumnKind.CATEGORICAL
    assert _infer(repo, [f"u{i % 15}" for i in range(20)], name="user_key").kind is ColumnKind.IDENTIFIER


def test_free_text(repo: DatasetRepository) -> None:
    notes = [f"patient {i} reported mild symptoms after visit" for i in range(20)]
    assert _infer(repo, notes, name="notes").kind is ColumnKind.FREE_TEXT
    zones = ["Upper West Side", "Midtown East", "Lenox Hill"] * 7
    assert _infer(repo, zones, name="zone").kind is ColumnKind.CATEGORICAL


def test_infinite_values_are_not_numbers(repo: DatasetRepository) -> None:
    col = _infer(repo, ["1.5", "inf", "2.5"] * 5)
    assert col.kind is ColumnKind.CATEGORICAL


# ---------------------------------------------------------------------------
# inference on messy data: integer codes, near-unique text, kind reasons
# ---------------------------------------------------------------------------


def _skewed(levels: Sequence[object], rows: int, seed: int = 0) -> list[object]:
    """``rows`` draws from ``levels``, the first most frequent (as real codes
    are), every level present at least once."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(levels) + 1)
    drawn = rng.choice(len(levels), size=rows - len(levels), p=weights / weights.sum())
    order = [*range(len(levels)), *drawn.tolist()]
    rng.shuffle(order)
    return [levels[i] for i in order]


@pytest.mark.parametrize(
    ("name", "distinct"),
    [("Browser", 13), ("TrafficType", 20), ("grade", 12), ("Region", 9), ("level", 20)],
)
def test_integer_codes_up_to_twenty_are_categorical(repo: DatasetRepository, name: str, distinct: int) -> None:
    # UCI online shoppers: Browser has 13 codes, TrafficType 20, Region 9; King County grade 12.
    col = _infer(repo, _skewed(list(range(1, distinct + 1)), 600), name=name)
    assert (col.kind, col.integer, col.distinct_count) == (ColumnKind.CATEGORICAL, True, distinct)
    assert sorted(col.categories, key=int) == [str(v) for v in range(1, distinct + 1)]
    assert col.kind_reason == f"integer codes: {distinct} distinct values"


def test_integers_that_do_not_repeat_or_have_many_values_stay_continuous(repo: DatasetRepository) -> None:
    col = _infer(repo, _skewed(list(range(1, 22)), 600), name="level")  # 21 values, neutral name
    assert col.kind is ColumnKind.CONTINUOUS
    assert col.kind_reason == "whole numbers with 21 distinct values"
    # 13 values in 23 rows (nycflights planes.speed): measurements, not repeated codes.
    speeds = [90, 105, 108, 112, 126, 127, 136, 139, 142, 162, 167, 236, 432] + [105, 126] * 5
    assert _infer(repo, speeds, name="speed").kind is ColumnKind.CONTINUOUS


@pytest.mark.parametrize("name", ["zipcode", "zip", "ZipCode", "postal_code", "PostCode", "region", "property_type"])
def test_integers_named_as_codes_are_categorical_up_to_200_values(repo: DatasetRepository, name: str) -> None:
    zips = list(range(98001, 98200, 2))[:70]  # 70 values from 98001, like King County zipcode
    col = _infer(repo, _skewed(zips, 2000), name=name)
    assert (col.kind, col.distinct_count) == (ColumnKind.CATEGORICAL, 70)
    assert col.kind_reason.startswith("integer codes named like a code (")
    assert col.kind_reason.endswith("): 70 distinct values")
    # The same numbers under a name that does not say "code" are continuous.
    assert _infer(repo, _skewed(zips, 2000), name="amount").kind is ColumnKind.CONTINUOUS
    # Codes must repeat: 70 codes in 100 rows are not learnable categories.
    assert _infer(repo, _skewed(zips, 100), name=name).kind is ColumnKind.CONTINUOUS


def test_named_codes_stop_at_200_values(repo: DatasetRepository) -> None:
    codes = list(range(1000, 1201))  # 201 values
    assert _infer(repo, _skewed(codes, 3000), name="product_code").kind is ColumnKind.CONTINUOUS
    assert _infer(repo, _skewed(codes[:200], 3000), name="product_code").kind is ColumnKind.CATEGORICAL


def test_age_like_integers_stay_continuous(repo: DatasetRepository) -> None:
    ages = _skewed(list(range(17, 90)), 3000)  # 73 values, like Adult age
    col = _infer(repo, ages, name="age")
    assert (col.kind, col.integer, col.minimum, col.maximum) == (ColumnKind.CONTINUOUS, True, 17.0, 89.0)
    assert col.kind_reason == "whole numbers with 73 distinct values"
    assert _infer(repo, _skewed(list(range(1900, 2016)), 3000), name="yr_built").kind is ColumnKind.CONTINUOUS


@pytest.mark.parametrize("name", ["capital_gain", "yr_renovated", "loss_class", "claim_status"])
def test_zero_inflated_integers_stay_continuous(repo: DatasetRepository, name: str) -> None:
    # Like Adult capital_gain (119 values, 92% zeros) or yr_renovated (70 values, 96% zeros):
    # an amount, even when its name ends in a code-like word.
    amounts = [0] * 2700 + _skewed(list(range(100, 10_000, 100)), 300)  # 100 distinct, 90% zeros
    col = _infer(repo, amounts, name=name)
    assert (col.kind, col.distinct_count) == (ColumnKind.CONTINUOUS, 100)
    if name.endswith(("class", "status")):
        assert (
            col.kind_reason
            == "whole numbers with 100 distinct values, mostly 0 (an amount, not codes, despite the name)"
        )
    else:
        assert col.kind_reason == "whole numbers with 100 distinct values"
    # Without the zeros, the code-like names are codes.
    nonzero = _skewed(list(range(100, 10_000, 100)), 3000)
    expected = ColumnKind.CATEGORICAL if name.endswith(("class", "status")) else ColumnKind.CONTINUOUS
    assert _infer(repo, nonzero, name=name).kind is expected


def test_zero_inflated_integers_with_an_unambiguous_code_name_are_codes(repo: DatasetRepository) -> None:
    codes = [0] * 2000 + _skewed(list(range(100, 160)), 1000)  # "0 = no error", then 60 error codes
    col = _infer(repo, codes, name="error_code")
    assert col.kind is ColumnKind.CATEGORICAL
    assert col.kind_reason == "integer codes named like a code ('code'): 61 distinct values"


def _tickets(rng: np.random.Generator, n: int) -> list[str]:
    prefixes = ["A/5 ", "PC ", "STON/O2. ", "", "", "", "", "", "", "", "", ""]  # about 1 in 4, as in Titanic
    return [
        f"{prefixes[i % len(prefixes)]}{v}"
        for i, v in enumerate((1000 + rng.choice(3_200_000, n, replace=False)).tolist())
    ]


def test_near_unique_ticket_text_is_an_identifier(repo: DatasetRepository) -> None:
    # Kaggle Titanic Ticket: 681 distinct in 891 rows (families share a ticket).
    rng = np.random.default_rng(11)
    distinct = _tickets(rng, 681)
    values = distinct + rng.choice(distinct[:120], 891 - 681).tolist()
    assert len(set(values)) == 681
    col = _infer(repo, values, name="Ticket")
    assert col.kind is ColumnKind.IDENTIFIER
    assert col.categories == []  # nothing real is kept to be learned or re-emitted
    assert col.kind_reason == (
        "near-unique text (681 distinct in 891 rows): treated as an identifier and not learned, "
        "so no real value is copied"
    )


def test_near_unique_text_with_missing_cells_is_an_identifier(repo: DatasetRepository) -> None:
    # Kaggle Titanic Cabin: 147 distinct in 204 non-missing of 891 rows, some with several cabins.
    decks = "ABCDEFG"
    cabins = [f"{decks[i % 7]}{i + 2}" for i in range(140)]
    cabins += [f"C{i} C{i + 2} C{i + 4}" for i in (23, 62, 22)] + ["F G73", "F G63", "B57 B59 B63 B66", "T"]
    values: list[str] = cabins + [cabins[i] for i in range(57)] + [""] * (891 - 204)
    col = _infer(repo, values, name="Cabin")
    assert (col.kind, col.missing_count, col.distinct_count) == (ColumnKind.IDENTIFIER, 687, 147)
    assert col.kind_reason.startswith("near-unique text (147 distinct in 204 non-missing rows)")


def test_ordinary_text_categories_are_unaffected(repo: DatasetRepository) -> None:
    countries = [f"Country-{i}" for i in range(41)]  # Adult native_country: 41 values, 32k rows
    col = _infer(repo, _skewed(countries, 5000), name="native_country")
    assert (col.kind, len(col.categories)) == (ColumnKind.CATEGORICAL, 41)
    assert col.kind_reason == "text with 41 distinct values"
    # Many distinct values that still repeat (ratio 0.2) stay categories.
    zones = [f"zone {i}" for i in range(200)]
    assert _infer(repo, _skewed(zones, 1000), name="pickup_zone").kind is ColumnKind.CATEGORICAL


def test_small_tables_are_judged_by_the_same_ratio(repo: DatasetRepository) -> None:
    # 30 rows with 20 distinct categories: most values are seen once, so a model could
    # only copy them; flagged (a user who knows better overrides the kind).
    cats = [f"cat{i}" for i in range(20)]
    assert _infer(repo, cats + cats[:10], name="c").kind is ColumnKind.IDENTIFIER
    # 30 rows with 12 distinct (ratio 0.4): categories.
    assert _infer(repo, (cats[:12] * 3)[:30], name="c").kind is ColumnKind.CATEGORICAL
    # Fewer than 20 values: too few to conclude anything.
    assert _infer(repo, cats[:19], name="c").kind is ColumnKind.CATEGORICAL
    info = upload(
        repo, table(["row", "c"], [[i, v] for i, v in enumerate(cats + cats[:10])]), kind_overrides={"c": "categorical"}
    )
    col = info.column("c")
    assert (col.kind, col.overridden, col.kind_reason) == (ColumnKind.CATEGORICAL, True, "user override")


def test_free_text_keeps_its_rule_and_says_why(repo: DatasetRepository) -> None:
    notes = [f"patient {i} reported mild symptoms after visit" for i in range(40)]
    col = _infer(repo, notes, name="notes")
    assert col.kind is ColumnKind.FREE_TEXT
    assert col.kind_reason.startswith("free text (100% of values have several words")
    names = [f"Passenger, Mr. Number{i}" for i in range(40)]  # Titanic Name: multi-word, near-unique
    assert _infer(repo, names, name="Name").kind is ColumnKind.FREE_TEXT


def test_every_inferred_column_has_a_reason(repo: DatasetRepository) -> None:
    rows = [
        [f"{10 + i}", f"{i * 0.5}", i % 2, f"2021-05-{i + 1:02d}", f"a note number {i} with words"] for i in range(25)
    ]
    info = upload(repo, table(["row_id", "x", "flag", "day", "notes"], rows))
    assert [c.kind_reason for c in info.columns] == [
        "whole numbers named like an identifier (25 distinct in 25 rows): treated as an identifier and not "
        "learned, so no real value is copied",
        "numbers with 25 distinct values",
        "integer codes: 2 distinct values",
        "dates/times in the format %Y-%m-%d",
        "free text (100% of values have several words, mean length 27 characters): not learned",
    ]


def test_kind_reason_round_trips_and_old_dicts_load(repo: DatasetRepository) -> None:
    col = _infer(repo, [i % 3 for i in range(30)])
    data = json.loads(json.dumps(col.to_dict()))
    assert data["kind_reason"] == "integer codes: 3 distinct values"
    assert ColumnInfo.from_dict(data) == col
    del data["kind_reason"]  # a dataset.json stored before the field existed
    old = ColumnInfo.from_dict(data)
    assert old.kind_reason == "" and old.kind is ColumnKind.CATEGORICAL
    assert ColumnInfo.from_dict({**data, "kind_reason": None}).kind_reason == ""


def test_kind_reason_is_in_the_contract(repo: DatasetRepository) -> None:
    from services.common.convert import dataset_to_proto, schema_to_proto

    info = upload(repo, GOOD)
    schema = schema_to_proto(info.columns)
    assert [c.kind_reason for c in schema.columns] == [c.kind_reason for c in info.columns]
    assert all(c.kind_reason for c in schema.columns)
    assert dataset_to_proto(info).schema == schema
    old = ColumnInfo(name="x", kind=ColumnKind.CONTINUOUS, missing_count=0, distinct_count=3)
    assert schema_to_proto([old]).columns[0].kind_reason == ""


def test_adult_kind_reasons(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    _, info = adult
    reasons = {c.name: c.kind_reason for c in info.columns}
    assert reasons["age"] == "whole numbers with 73 distinct values"
    assert reasons["capital_gain"] == "whole numbers with 119 distinct values"
    assert reasons["hours_per_week"] == "whole numbers with 94 distinct values"
    assert reasons["native_country"] == "text with 41 distinct values"  # 42 with "?", which is missing
    assert reasons["income"] == "text with 2 distinct values"
    assert all(reasons.values())


@pytest.fixture(scope="module")
def kc_house(tmp_path_factory: pytest.TempPathFactory) -> DatasetInfo:
    repo = DatasetRepository(ArtifactStore(tmp_path_factory.mktemp("kc") / "store"))
    return upload(repo, KC_HOUSE_2000.read_bytes(), name="kc_house_2000")


def test_kc_house_fixture_kinds(kc_house: DatasetInfo) -> None:
    info = kc_house
    assert (info.row_count, info.column_count) == (2000, 21)
    kinds = {c.name: c.kind for c in info.columns}
    for name in ["zipcode", "grade", "waterfront", "view", "condition"]:
        assert kinds[name] is ColumnKind.CATEGORICAL, name
    for name in ["price", "sqft_living", "yr_built", "yr_renovated", "lat", "long"]:
        assert kinds[name] is ColumnKind.CONTINUOUS, name
    assert kinds["id"] is ColumnKind.IDENTIFIER
    assert kinds["date"] is ColumnKind.DATETIME
    zipcode = info.column("zipcode")
    assert zipcode.kind_reason == "integer codes named like a code ('zipcode'): 69 distinct values"
    assert all(c.startswith("98") and len(c) == 5 for c in zipcode.categories)
    assert info.column("id").kind_reason.startswith("whole numbers named like an identifier (1984 distinct")
