"""Conditions on synthetic rows: parsed and checked against the model's schema
once, then applied to each generated piece (typed Arrow rows) as a filter.

Every delivered row satisfies every condition; a missing value satisfies none.
Besides tests of one column against values there are comparisons of two
columns of the same row (``Compare``: a drop-off after its pick-up), which
CTGAN has no way to learn as a rule and SDV handles with constraint classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.common.errors import FieldViolation, InvalidArgument
from services.common.schema import ColumnInfo, ColumnKind

_MAX_LISTED = 10


@dataclass(frozen=True)
class Equals:
    column: str
    value: str


@dataclass(frozen=True)
class InSet:
    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    column: str
    minimum: str | None = None
    maximum: str | None = None
    minimum_exclusive: bool = False
    maximum_exclusive: bool = False


# The operators of ``Compare``, as Arrow compute functions.
COMPARISONS = {
    "<": "less",
    "<=": "less_equal",
    ">": "greater",
    ">=": "greater_equal",
    "=": "equal",
    "!=": "not_equal",
}


@dataclass(frozen=True)
class Compare:
    """``column`` ``op`` ``other`` on each row; ``op`` is a key of ``COMPARISONS``."""

    column: str
    op: str
    other: str


Condition = Equals | InSet | Range | Compare


@dataclass(frozen=True)
class _ComparedColumns:
    column: str
    function: str
    other: str

    def mask(self, batch: pa.RecordBatch) -> pa.BooleanArray:
        left, right = batch.column(self.column), batch.column(self.other)
        if left.type != right.type and pa.types.is_integer(left.type) != pa.types.is_integer(right.type):
            # An integer against a float column: compare as floats (Arrow's own cast refuses integers past 2**53).
            left, right = left.cast(pa.float64(), safe=False), right.cast(pa.float64(), safe=False)
        return pc.fill_null(pc.call_function(self.function, [left, right]), False)


@dataclass(frozen=True)
class _Compiled:
    column: str
    kind: ColumnKind
    values: frozenset[str] | None = None
    low: float | pd.Timestamp | None = None
    high: float | pd.Timestamp | None = None
    low_open: bool = False
    high_open: bool = False

    def mask(self, batch: pa.RecordBatch) -> pa.BooleanArray:
        values = batch.column(self.column)
        if self.values is not None:
            return pc.is_in(values, value_set=pa.array(sorted(self.values), type=pa.string()))
        ok = pc.is_valid(values)
        if self.low is not None:
            low = _scalar(self.low, values.type)
            ok = pc.and_(ok, pc.greater(values, low) if self.low_open else pc.greater_equal(values, low))
        if self.high is not None:
            high = _scalar(self.high, values.type)
            ok = pc.and_(ok, pc.less(values, high) if self.high_open else pc.less_equal(values, high))
        return pc.fill_null(ok, False)


def _scalar(bound: float | pd.Timestamp, type_: pa.DataType) -> pa.Scalar:
    if isinstance(bound, pd.Timestamp):
        return pa.scalar(bound.to_datetime64().astype("datetime64[us]"), type=type_)
    return pa.scalar(float(bound), type=pa.float64())


class CompiledConditions:
    """Conditions ready to apply. ``steer`` is the (column, value) given to
    CTGAN's conditional vector: the first equality on a categorical column, so
    even a rare category is generated efficiently rather than found by luck."""

    def __init__(self, compiled: list[_Compiled | _ComparedColumns], steer: tuple[str, str] | None) -> None:
        self._compiled = compiled
        self.steer = steer

    def __bool__(self) -> bool:
        return bool(self._compiled)

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The rows of ``batch`` (typed synthetic rows) that meet every condition."""
        if not self._compiled:
            return batch
        keep = self._compiled[0].mask(batch)
        for condition in self._compiled[1:]:
            keep = pc.and_(keep, condition.mask(batch))
        return batch.filter(keep)


MAX_CONDITIONS = 64  # more is a mistake or an attack (100,000 conditions took 17.6 s of CPU)


def compile_conditions(conditions: Sequence[Condition], columns: Sequence[ColumnInfo]) -> CompiledConditions:
    if len(conditions) > MAX_CONDITIONS:
        raise InvalidArgument(
            f"{len(conditions)} conditions; at most {MAX_CONDITIONS} are allowed per request",
            violations=[FieldViolation("conditions", f"at most {MAX_CONDITIONS} conditions")],
        )
    by_name = {c.name: c for c in columns}
    problems: list[FieldViolation] = []
    compiled: list[_Compiled | _ComparedColumns] = []
    steer: tuple[str, str] | None = None
    for index, condition in enumerate(conditions):
        where = f"conditions[{index}]"
        col = by_name.get(condition.column)
        if col is None:
            problems.append(
                FieldViolation(f"{where}.column", f"unknown column {condition.column!r}; known: {_names(columns)}")
            )
            continue
        checked: _Compiled | _ComparedColumns | FieldViolation
        if col.kind in (ColumnKind.IDENTIFIER, ColumnKind.FREE_TEXT):
            checked = FieldViolation(
                f"{where}.column", f"column {col.name!r} is {col.kind.value} and is not learned: no conditions"
            )
        elif isinstance(condition, Compare):
            checked = _compare(condition, col, by_name, where)
        elif isinstance(condition, Equals | InSet):
            checked = _values(condition, col, where)
        else:
            checked = _range(condition, col, where)
        if isinstance(checked, FieldViolation):
            problems.append(checked)
            continue
        compiled.append(checked)
        if steer is None and isinstance(checked, _Compiled) and checked.values is not None and len(checked.values) == 1:
            steer = (col.name, next(iter(checked.values)))
    if problems:
        raise InvalidArgument(
            "invalid conditions: " + "; ".join(f"{p.field}: {p.description}" for p in problems),
            reason="BAD_CONDITION",
            violations=problems,
        )
    return CompiledConditions(compiled, steer)


def _values(condition: Equals | InSet, col: ColumnInfo, where: str) -> _Compiled | FieldViolation:
    """Equality or a set of values: categorical columns only, values that occur."""
    wanted = (condition.value,) if isinstance(condition, Equals) else tuple(condition.values)
    if col.kind != ColumnKind.CATEGORICAL:
        return FieldViolation(where, f"column {col.name!r} is {col.kind.value}: use a range, not equality or a set")
    if not wanted:
        return FieldViolation(f"{where}.in_set", "the set of values is empty")
    known = set(col.categories)
    unknown = [v for v in wanted if v not in known]
    if unknown:
        return FieldViolation(
            where,
            f"{', '.join(map(repr, unknown[:_MAX_LISTED]))} never occurs in column {col.name!r} "
            f"(values: {', '.join(map(repr, col.categories[:_MAX_LISTED]))}"
            f"{', …' if len(col.categories) > _MAX_LISTED else ''})",
        )
    return _Compiled(col.name, col.kind, values=frozenset(wanted))


def _range(condition: Range, col: ColumnInfo, where: str) -> _Compiled | FieldViolation:
    """A range on a numeric or datetime column, which some training value can meet."""
    if col.kind == ColumnKind.CATEGORICAL:
        return FieldViolation(where, f"column {col.name!r} is categorical: use equality or a set")
    if condition.minimum is None and condition.maximum is None:
        return FieldViolation(f"{where}.range", "give a minimum, a maximum or both")
    try:
        low = _bound(condition.minimum, col)
        high = _bound(condition.maximum, col)
    except ValueError as err:
        return FieldViolation(f"{where}.range", str(err))
    if low is not None and high is not None and low > high:
        return FieldViolation(f"{where}.range", f"minimum {condition.minimum} is above maximum")
    lowest = _bound_of(col.minimum, col)
    highest = _bound_of(col.maximum, col)
    if (low is not None and highest is not None and low > highest) or (
        high is not None and lowest is not None and high < lowest
    ):
        return FieldViolation(
            f"{where}.range",
            f"no value of column {col.name!r} can satisfy it: the training data spans "
            f"{_show(lowest)} .. {_show(highest)}",
        )
    return _Compiled(
        col.name,
        col.kind,
        low=low,
        high=high,
        low_open=condition.minimum_exclusive,
        high_open=condition.maximum_exclusive,
    )


def _compare(
    condition: Compare, col: ColumnInfo, by_name: dict[str, ColumnInfo], where: str
) -> _ComparedColumns | FieldViolation:
    function = COMPARISONS.get(condition.op)
    if function is None:
        return FieldViolation(f"{where}.compare.op", f"unknown comparison {condition.op!r}")
    other = by_name.get(condition.other)
    if other is None:
        return FieldViolation(
            f"{where}.compare.other_column", f"unknown column {condition.other!r}; known: {_names(by_name.values())}"
        )
    if other.name == col.name:
        return FieldViolation(f"{where}.compare.other_column", f"column {col.name!r} is compared with itself")
    if other.kind in (ColumnKind.IDENTIFIER, ColumnKind.FREE_TEXT):
        return FieldViolation(
            f"{where}.compare.other_column", f"column {other.name!r} is {other.kind.value} and is not learned"
        )
    if col.kind != other.kind:
        return FieldViolation(
            where, f"column {col.name!r} is {col.kind.value} and {other.name!r} is {other.kind.value}: not comparable"
        )
    if col.kind == ColumnKind.CATEGORICAL and condition.op not in ("=", "!="):
        return FieldViolation(f"{where}.compare.op", "categorical columns compare only with = and !=")
    low, high = _widened(col)
    other_low, other_high = _widened(other)
    # Generated values stay inside the training ranges: some orderings are impossible.
    impossible = {
        "<": low is not None and other_high is not None and low >= other_high,
        "<=": low is not None and other_high is not None and low > other_high,
        ">": high is not None and other_low is not None and high <= other_low,
        ">=": high is not None and other_low is not None and high < other_low,
    }.get(condition.op, False)
    if impossible:
        return FieldViolation(
            where,
            f"no row can satisfy {col.name} {condition.op} {other.name}: the training data spans "
            f"{_show(low)} .. {_show(high)} and {_show(other_low)} .. {_show(other_high)}",
        )
    return _ComparedColumns(col.name, function, other.name)


def _widened(col: ColumnInfo) -> tuple[float | pd.Timestamp | None, float | pd.Timestamp | None]:
    """The training range, one output step wider on each side (integers and
    datetimes are rounded to whole units on output, which can meet a bound):
    an ordering outside it is impossible, never merely unlikely."""
    low, high = _bound_of(col.minimum, col), _bound_of(col.maximum, col)
    step: float | pd.Timedelta = 0.0
    if col.kind == ColumnKind.DATETIME:
        step = pd.Timedelta(seconds=1)
    elif col.integer:
        step = 1.0
    return (None if low is None else low - step), (None if high is None else high + step)


def _bound(text: str | None, col: ColumnInfo) -> float | pd.Timestamp | None:
    if text is None:
        return None
    if col.kind == ColumnKind.DATETIME:
        try:
            stamp = pd.Timestamp(pd.to_datetime(text, format=col.datetime_format or None))
        except (ValueError, TypeError):
            try:
                stamp = pd.Timestamp(text)
            except (ValueError, TypeError):
                raise ValueError(f"{text!r} is not a datetime (ISO-8601 or {col.datetime_format})") from None
        # Synthetic datetimes are naive UTC, as the stored table's are.
        return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _bound_of(value: float | None, col: ColumnInfo) -> float | pd.Timestamp | None:
    if value is None:
        return None
    return pd.Timestamp(value, unit="s") if col.kind == ColumnKind.DATETIME else value


def _show(value: object) -> str:
    return "?" if value is None else str(value)


def _names(columns: Iterable[ColumnInfo]) -> str:
    names = [c.name for c in columns]
    return ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
