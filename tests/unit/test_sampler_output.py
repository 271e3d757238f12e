"""Typed synthetic rows, their conditions, and their CSV / Arrow bytes (no sockets)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from services.common.codec import OutputTyper
from services.common.schema import DATETIME_FORMATS, ColumnInfo, ColumnKind
from services.sampler.conditions import MAX_CONDITIONS, Compare, Equals, InSet, Range, compile_conditions
from services.sampler.encoders import ArrowEncoder, CsvEncoder, datetime_format_for_arrow
from services.sampler.sampling import hopeless

DAY = 86_400.0
COLUMNS = [
    ColumnInfo("id", ColumnKind.IDENTIFIER, 0, 100, integer=False),
    ColumnInfo("age", ColumnKind.CONTINUOUS, 0, 50, integer=True, minimum=17.0, maximum=90.0),
    ColumnInfo("city", ColumnKind.CATEGORICAL, 3, 3, categories=["Paris", 'Say "hi"', "a,b"]),
    ColumnInfo("rate", ColumnKind.CONTINUOUS, 2, 90, minimum=0.0, maximum=1.0),
    ColumnInfo("seen", ColumnKind.DATETIME, 0, 99, datetime_format="%d/%m/%Y %H:%M", minimum=0.0, maximum=400 * DAY),
    ColumnInfo("note", ColumnKind.FREE_TEXT, 0, 99),
    ColumnInfo("size", ColumnKind.CONTINUOUS, 0, 3, integer=True, minimum=1.0, maximum=3.0),
]
LEARNED = ["age", "city", "rate", "seen", "size"]  # the engine's order: no id, no note
CATEGORIES = {"city": ["Paris", 'Say "hi"', "a,b", None], "size": ["1", "3", None]}


@pytest.fixture
def typer() -> OutputTyper:
    return OutputTyper(COLUMNS, LEARNED, CATEGORIES)


def decoded() -> list[np.ndarray]:
    return [
        np.array([16.2, 17.5, 44.49, 95.0, np.nan]),  # age: clipped to 17..90, rounded half to even
        np.array([0, 1, 2, 3, 0]),  # city codes; 3 is the missing category
        np.array([-0.5, 0.25, np.nan, 1.5, 0.1]),  # rate
        np.array([-5.0, 1.4, DAY + 0.6, 500 * DAY, np.nan]),  # seen, epoch seconds
        np.array([0, 1, 2, 0, 1]),  # size learned as discrete: "1", "3", missing
    ]


def test_typed_rows_keep_ranges_integers_categories_and_missing_values(typer: OutputTyper) -> None:
    batch = typer.complete(typer.learned_batch(decoded()), first_row=10)
    assert batch.schema.names == [c.name for c in COLUMNS]  # upload order
    rows = batch.to_pydict()
    assert rows["id"] == [f"syn-{i:09d}" for i in range(11, 16)]
    assert rows["age"] == [17, 18, 44, 90, None] and batch.schema.field("age").type == pa.int64()
    assert rows["city"] == ["Paris", 'Say "hi"', "a,b", None, "Paris"]
    assert rows["rate"] == [0.0, 0.25, None, 1.0, 0.1]
    assert rows["seen"] == [
        dt.datetime(1970, 1, 1),
        dt.datetime(1970, 1, 1, 0, 0, 1),
        dt.datetime(1970, 1, 2, 0, 0, 1),
        dt.datetime(1971, 2, 5),  # the maximum, 400 days
        None,
    ]
    assert rows["note"] == [None] * 5
    assert rows["size"] == [1, 3, None, 1, 3]


def test_integer_identifiers_count_on_across_chunks() -> None:
    columns = [ColumnInfo("n", ColumnKind.IDENTIFIER, 0, 9, integer=True), COLUMNS[1]]
    typer = OutputTyper(columns, ["age"], {})
    batch = typer.complete(typer.learned_batch([np.array([20.0, 30.0])]), first_row=5000)
    assert batch.column("n").to_pylist() == [5001, 5002]


def test_conditions_filter_the_typed_rows(typer: OutputTyper) -> None:
    batch = typer.learned_batch(decoded())
    both = compile_conditions([InSet("city", ("Paris", "a,b")), Range("age", minimum="18")], COLUMNS)
    assert both.filter(batch).column("age").to_pylist() == [44]
    equal = compile_conditions([Equals("city", "Paris")], COLUMNS)
    assert equal.steer == ("city", "Paris") and equal.filter(batch).num_rows == 2
    open_range = compile_conditions([Range("rate", maximum="1", maximum_exclusive=True)], COLUMNS)
    assert open_range.filter(batch).column("rate").to_pylist() == [0.0, 0.25, 0.1]  # missing never matches
    dates = compile_conditions([Range("seen", minimum="02/01/1970 00:00")], COLUMNS)
    assert dates.filter(batch).num_rows == 2  # 1970-01-02 00:00:01 and the 1971 maximum
    assert compile_conditions([], COLUMNS).filter(batch) is batch


def test_two_columns_of_a_row_compare(typer: OutputTyper) -> None:
    batch = typer.learned_batch(decoded())  # age 17 18 44 90 -, size 1 3 - 1 3
    # ages 17, 18, 44, 90 vs sizes 1, 3, missing, 1: a missing value never satisfies
    assert compile_conditions([Compare("size", "<", "age")], COLUMNS).filter(batch).column("age").to_pylist() == [
        17,
        18,
        90,
    ]
    # rates 0, 0.25, missing, 1, 0.1 against sizes 1, 3, missing, 1, 3: a float and an integer column
    assert compile_conditions([Compare("rate", "<", "size")], COLUMNS).filter(batch).num_rows == 3
    assert compile_conditions([Compare("rate", "<=", "size")], COLUMNS).filter(batch).num_rows == 4
    assert compile_conditions([Compare("age", "!=", "size")], COLUMNS).filter(batch).num_rows == 3
    both = compile_conditions([Compare("size", "<", "age"), Range("age", maximum="40")], COLUMNS)
    assert both.filter(batch).column("age").to_pylist() == [17, 18] and both.steer is None


@pytest.mark.parametrize(
    ("condition", "field", "says"),
    [
        (Compare("age", "<", "height"), "conditions[0].compare.other_column", "unknown column 'height'"),
        (Compare("age", "<", "age"), "conditions[0].compare.other_column", "compared with itself"),
        (Compare("age", "<", "note"), "conditions[0].compare.other_column", "free_text and is not learned"),
        (Compare("age", "<", "seen"), "conditions[0]", "continuous and 'seen' is datetime: not comparable"),
        (Compare("city", "<", "city2"), "conditions[0].compare.op", "compare only with = and !="),
        (Compare("age", "~", "size"), "conditions[0].compare.op", "unknown comparison"),
        # every age (17..90) is above every size (1..3)
        (Compare("age", "<=", "size"), "conditions[0]", "no row can satisfy age <= size"),
    ],
)
def test_column_comparisons_that_cannot_work_are_refused(condition, field, says) -> None:  # type: ignore[no-untyped-def]
    from services.common.errors import InvalidArgument

    columns = [*COLUMNS, ColumnInfo("city2", ColumnKind.CATEGORICAL, 0, 3, categories=["Paris"])]
    with pytest.raises(InvalidArgument) as caught:
        compile_conditions([condition], columns)
    (violation,) = caught.value.violations
    assert violation.field == field and says in violation.description


def test_too_many_conditions_are_refused_before_any_work() -> None:
    from services.common.errors import InvalidArgument

    assert compile_conditions([Range("age", minimum="18")] * MAX_CONDITIONS, COLUMNS)
    with pytest.raises(InvalidArgument) as caught:
        compile_conditions([Range("age", minimum="18")] * 100_000, COLUMNS)
    assert [v.field for v in caught.value.violations] == ["conditions"]


def test_csv_is_what_pythons_csv_module_writes(typer: OutputTyper) -> None:
    batch = typer.complete(typer.learned_batch(decoded()), first_row=0)
    encoder = CsvEncoder(COLUMNS)
    text = (
        encoder.encode(batch.slice(0, 2), first=True, last=False)
        + encoder.encode(batch.slice(2), first=False, last=True)
    ).decode()
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow([c.name for c in COLUMNS])
    for row in batch.to_pylist():
        seen = row["seen"].strftime("%d/%m/%Y %H:%M") if row["seen"] else None
        rate = None if row["rate"] is None else _shortest(row["rate"])
        writer.writerow([row["id"], row["age"], row["city"], rate, seen, row["note"], row["size"]])
    assert text == expected.getvalue()
    back = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    assert back["city"].tolist()[:3] == ["Paris", 'Say "hi"', "a,b"] and len(back) == 5


def _shortest(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def test_a_category_that_needs_no_quotes_is_written_as_is() -> None:
    columns = [ColumnInfo("sex", ColumnKind.CATEGORICAL, 0, 2, categories=["Male", "Female"])]
    typer = OutputTyper(columns, ["sex"], {"sex": ["Male", "Female"]})
    batch = typer.complete(typer.learned_batch([np.array([0, 1, 1])]), first_row=0)
    assert CsvEncoder(columns).encode(batch, first=True, last=True) == b"sex\nMale\nFemale\nFemale\n"


@pytest.mark.parametrize("python_format", DATETIME_FORMATS)
def test_every_detected_datetime_format_prints_as_python_does(python_format: str) -> None:
    stamps = [dt.datetime(2021, 3, 4, 5, 6, 7), dt.datetime(1999, 12, 31, 23, 59, 59), dt.datetime(2024, 2, 29)]
    arrow_format = datetime_format_for_arrow(python_format)
    printed = pa.compute.strftime(pa.array(stamps, pa.timestamp("s")), format=arrow_format).to_pylist()
    naive_utc = python_format.replace("%z", "+0000").replace("%f", "000000")
    assert printed == [s.strftime(naive_utc) for s in stamps]


def test_arrow_stream_has_the_schema_first_and_the_end_marker_last(typer: OutputTyper) -> None:
    batch = typer.complete(typer.learned_batch(decoded()), first_row=0)
    encoder = ArrowEncoder(typer.schema)
    data = encoder.encode(batch.slice(0, 3), first=True, last=False) + encoder.encode(
        batch.slice(3), first=False, last=True
    )
    table = pa.ipc.open_stream(data).read_all()
    assert table.schema == typer.schema and table.num_rows == 5
    assert table.column("age").to_pylist() == [17, 18, 44, 90, None]


def test_a_datetime_learned_as_discrete_keeps_fractional_and_whole_seconds() -> None:
    col = ColumnInfo("at", ColumnKind.DATETIME, 1, 3, datetime_format="%Y-%m-%d %H:%M:%S.%f")
    categories = {"at": ["2020-01-01 00:00:00", "2020-01-01 00:00:01.500000", None]}
    typer = OutputTyper([col, COLUMNS[1]], ["at", "age"], categories)
    batch = typer.learned_batch([np.array([0, 1, 2]), np.array([20.0, 30.0, 40.0])])
    # whole seconds, as every synthetic datetime (1.5 s rounds half to even)
    assert batch.column("at").to_pylist() == [dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, 0, 0, 2), None]


def test_the_pilot_refuses_only_hopeless_conditions() -> None:
    assert not hopeless(accepted=0, generated=5_000, budget=200_500, n=5)  # rare but reachable: keep going
    assert hopeless(accepted=0, generated=5_000, budget=200_000, n=5_000)
    assert hopeless(accepted=10, generated=10_000, budget=100_000, n=5_000)
    assert not hopeless(accepted=500, generated=10_000, budget=100_000, n=5_000)


def test_the_client_reads_every_condition_syntax() -> None:
    from synth.v1 import sampling_pb2

    from synth_client.client import parse_condition
    from synth_client.errors import SynthError

    assert parse_condition("sex=Female") == sampling_pb2.Condition(column="sex", equals="Female")
    assert parse_condition("age >= 18").range == sampling_pb2.Range(minimum="18")
    assert parse_condition("age<65").range == sampling_pb2.Range(maximum="65", maximum_exclusive=True)
    assert list(parse_condition("race in White, Black").in_set.values) == ["White", "Black"]
    compare = parse_condition("dropoff > @pickup")
    assert compare.column == "dropoff" and compare.compare == sampling_pb2.ColumnComparison(
        op=sampling_pb2.COMPARISON_GREATER, other_column="pickup"
    )
    assert parse_condition("a<=@b").compare.op == sampling_pb2.COMPARISON_LESS_EQUAL
    assert parse_condition("a!=@b").compare.op == sampling_pb2.COMPARISON_NOT_EQUAL
    assert parse_condition("a=@b").compare.op == sampling_pb2.COMPARISON_EQUAL
    assert parse_condition("handle=@@bob") == sampling_pb2.Condition(column="handle", equals="@bob")
    with pytest.raises(SynthError, match="COL<=@OTHER_COL"):
        parse_condition("age!=18")


def test_an_integer_column_compares_with_a_float_column_past_two_to_the_53() -> None:
    columns = [
        ColumnInfo("big", ColumnKind.CONTINUOUS, 0, 3, integer=True, minimum=0.0, maximum=2.0**60),
        ColumnInfo("x", ColumnKind.CONTINUOUS, 0, 3, minimum=0.0, maximum=2.0**60),
    ]
    batch = pa.record_batch(
        [pa.array([2**55 + 1, 5, None], pa.int64()), pa.array([1.0, 10.0, 3.0], pa.float64())], names=["big", "x"]
    )
    assert compile_conditions([Compare("big", ">", "x")], columns).filter(batch).num_rows == 1


def test_orderings_that_rounding_can_meet_are_not_refused() -> None:
    """Datetimes come out in whole seconds and integers whole: a bound a fraction
    away can still be met, so only a gap of more than one step is impossible."""
    columns = [
        ColumnInfo("p", ColumnKind.DATETIME, 0, 9, datetime_format="%Y", minimum=100.4, maximum=200.0),
        ColumnInfo("d", ColumnKind.DATETIME, 0, 9, datetime_format="%Y", minimum=50.0, maximum=100.3),
        ColumnInfo("i", ColumnKind.CONTINUOUS, 0, 9, integer=True, minimum=10.0, maximum=20.0),
        ColumnInfo("j", ColumnKind.CONTINUOUS, 0, 9, integer=True, minimum=0.0, maximum=9.6),
    ]
    compile_conditions([Compare("p", "<=", "d"), Compare("i", "<=", "j")], columns)  # not refused
    from services.common.errors import InvalidArgument

    low_j = dataclasses.replace(columns[3], maximum=5.0)  # every i (10..20) is above every j (0..5) by more than 1
    with pytest.raises(InvalidArgument, match="no row can satisfy i < j"):
        compile_conditions([Compare("i", "<", "j")], [columns[2], low_j])
