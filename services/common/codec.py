"""The table codec: between a typed dataset frame and what CTGAN learns.

CTGAN models numbers and categories. So, going in:
- continuous → float (missing stays NaN; the engine models the missing rate);
- datetime   → float Unix seconds (the format is kept in the schema for output);
- categorical, and columns the user asked to treat as discrete → strings
  (missing → None, learned as its own category);
- identifier and free-text columns are not learned at all (they would only be
  memorised); the sampler makes fresh values for them: fakes in the source's
  format, row numbers, or nothing, as the model's schema says (``ColumnInfo.policy``;
  see ``services.trainer.protection`` and ``services.common.fakes``).

Coming out, ``OutputTyper`` turns the engine's decoded columns back into typed
rows (Arrow record batches in upload order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.common.calibration import MarginCalibration
from services.common.fakes import Avoid, FakeMaker
from services.common.schema import ColumnInfo, ColumnKind
from services.common.support import SupportRules

NOT_LEARNED = {ColumnKind.IDENTIFIER, ColumnKind.FREE_TEXT}


def columns_for_training(
    columns: Sequence[ColumnInfo], discrete: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[ColumnInfo]:
    """The schema a model is trained on and samples with: the dataset's, with the
    job's choices applied. ``exclude``: not learned, left empty in synthetic rows
    and in no metric. ``discrete``: learned as categories; an identifier or
    free-text column asked for so becomes categorical (its values are then learned,
    so the user chose to let real values appear)."""
    out: list[ColumnInfo] = []
    for col in columns:
        if col.name in exclude:
            col = dataclasses.replace(
                col, kind=ColumnKind.FREE_TEXT, overridden=True, kind_reason="excluded before training: left empty"
            )
        elif col.name in discrete and col.kind in NOT_LEARNED:
            col = dataclasses.replace(
                col, kind=ColumnKind.CATEGORICAL, overridden=True, kind_reason="learned as categories on request"
            )
        out.append(col)
    return out


def training_view(
    frame: pd.DataFrame, columns: Sequence[ColumnInfo], extra_discrete: Sequence[str] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """(the frame CTGAN trains on, its discrete column names)."""
    out: dict[str, pd.Series] = {}
    discrete: list[str] = []
    for col in columns:
        if col.kind in NOT_LEARNED:
            continue
        series = frame[col.name]
        if col.kind == ColumnKind.CATEGORICAL or col.name in extra_discrete:
            out[col.name] = _as_category_strings(series)
            discrete.append(col.name)
        elif col.kind == ColumnKind.DATETIME:
            values = pd.to_datetime(series, errors="coerce")
            seconds = (values - pd.Timestamp("1970-01-01", tz=values.dt.tz)) / pd.Timedelta(seconds=1)
            out[col.name] = seconds.astype("float64")
        else:
            out[col.name] = pd.to_numeric(series, errors="coerce").astype("float64")
    return pd.DataFrame(out, index=frame.index).reset_index(drop=True), discrete


def _as_category_strings(series: pd.Series) -> pd.Series:
    values = series.astype(object)
    missing = pd.isna(values)
    as_text = values.map(_category_text)
    return as_text.where(~missing, None)


def _category_text(value: object) -> object:
    # Whole floats from a nullable integer column print as "3", not "3.0".
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


class OutputTyper:
    """Typed synthetic rows, as Arrow record batches, from the engine's decoded columns.

    Keeps what users expect of their data: with a ``calibration`` (see
    ``services.common.calibration``), each numeric column's distribution is the
    real one, the model's ordering of values kept; with ``support`` rules (see
    ``services.common.support``), numbers land where real ones are (on the
    source's grid of decimals or days, on its few observed values, on its point
    masses rather than in the gap next to them); numbers stay inside the
    training range (CTGAN's tanh-and-mixture output can leave it), whole-number
    columns stay integers, datetimes come back as datetimes (naive UTC, whole seconds;
    written with the column's own format by the CSV encoder), categories are
    only trained ones, missing values stay missing (nulls); numbers keep off the
    rare real values the model's schema lists (``ColumnInfo.avoid``: top- and
    bottom-coded, moved off values fewer than k training rows hold). Columns with
    policy ``fake`` get fakes in the source's format, made from (``seed``, row
    number) alone; ``id`` columns and identifiers of older models are numbered
    by row; ``drop`` columns and free text of older models are left empty.

    Arrow, not pandas: every step is a vectorised kernel (no per-cell Python),
    and the batches feed both the CSV and the Arrow IPC encoders. Fakes are the
    exception: made cell by cell (a pattern a few microseconds, Faker about 80).
    """

    def __init__(
        self,
        columns: Sequence[ColumnInfo],
        learned: Sequence[str],
        categories: Mapping[str, Sequence[Any]],
        support: SupportRules | None = None,
        calibration: MarginCalibration | None = None,
        seed: int = 0,
    ) -> None:
        """``learned``: the engine's columns in its decoding order; ``categories``:
        the trained values of each column it learned as discrete; ``support``:
        the real support of the numeric columns it learned as continuous,
        applied before the range clip and integer rounding (None: values are
        only clipped and rounded); ``calibration``: applied first, to the same columns;
        ``seed``: the sample's seed, from which (with the row number) fakes are made."""
        self.columns = list(columns)
        self._seed = int(seed)
        self._fakes = {c.name: FakeMaker(c.fake, c.name) for c in self.columns if c.policy == "fake" and c.fake}
        self._avoid = {c.name: Avoid.from_spec(c.avoid) for c in self.columns if c.avoid}
        self._support = support
        self._calibration = calibration
        self.schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in self.columns])
        by_name = {c.name: c for c in self.columns}
        self._learned = [by_name[name] for name in learned]
        self.learned_schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in self._learned])
        self._lookups = {name: _category_lookup(by_name[name], values) for name, values in categories.items()}

    def learned_batch(self, decoded: Sequence[np.ndarray]) -> pa.RecordBatch:
        """The learned columns, typed, from ``transformer.decode_codes`` output."""
        arrays = [self._typed(col, values) for col, values in zip(self._learned, decoded, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=self.learned_schema)

    def complete(self, learned: pa.RecordBatch, first_row: int) -> pa.RecordBatch:
        """All columns in upload order: the learned ones plus fresh identifiers
        (``first_row`` + 1 onwards) and empty free text."""
        rows = learned.num_rows
        arrays = []
        for col in self.columns:
            maker = self._fakes.get(col.name)
            if maker is not None:
                arrays.append(maker.make(self._seed, first_row, rows).cast(arrow_type(col)))
            elif col.policy == "drop":
                arrays.append(pa.nulls(rows, arrow_type(col)))
            elif col.kind == ColumnKind.IDENTIFIER:
                numbers = pa.array(np.arange(first_row + 1, first_row + rows + 1, dtype=np.int64))
                if not col.integer:
                    padded = pc.utf8_lpad(pc.cast(numbers, pa.string()), width=9, padding="0")
                    numbers = pc.binary_join_element_wise("syn-", padded, "")
                arrays.append(numbers)
            elif col.kind == ColumnKind.FREE_TEXT:
                arrays.append(pa.nulls(rows, pa.string()))
            else:
                arrays.append(learned.column(col.name))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _typed(self, col: ColumnInfo, values: np.ndarray) -> pa.Array:
        lookup = self._lookups.get(col.name)
        if col.kind == ColumnKind.CATEGORICAL:
            if lookup is None:
                raise ValueError(f"categorical column {col.name!r} was not learned as discrete")
            return pc.take(lookup, pa.array(values))
        if lookup is not None:
            numbers = lookup[values]  # a numeric column learned as discrete: already real values
        else:
            numbers = values
            if self._calibration is not None:
                numbers = self._calibration.apply(col.name, numbers)
            if self._support is not None:
                numbers = self._support.apply(col.name, numbers)
        numbers = np.clip(
            numbers, -np.inf if col.minimum is None else col.minimum, np.inf if col.maximum is None else col.maximum
        )
        avoid = self._avoid.get(col.name)
        if avoid is not None:
            if col.integer or col.kind == ColumnKind.DATETIME:
                numbers = np.round(numbers)
            numbers = avoid.apply(numbers)
        missing = np.isnan(numbers)
        if col.kind == ColumnKind.DATETIME:
            micros = np.where(missing, 0.0, np.round(numbers)) * 1_000_000
            return pa.array(micros.astype(np.int64), type=pa.timestamp("us"), mask=missing)
        if col.integer:
            return pa.array(np.where(missing, 0.0, np.round(numbers)).astype(np.int64), mask=missing)
        return pa.array(numbers, type=pa.float64(), mask=missing)


def arrow_type(col: ColumnInfo) -> pa.DataType:
    """The Arrow type synthetic values of a column have (Arrow IPC output and the typed batches)."""
    if col.kind == ColumnKind.DATETIME:
        return pa.timestamp("us")
    if col.kind in (ColumnKind.CONTINUOUS, ColumnKind.IDENTIFIER) and col.integer:
        return pa.int64()
    if col.kind == ColumnKind.CONTINUOUS:
        return pa.float64()
    return pa.string()


def _category_lookup(col: ColumnInfo, values: Sequence[Any]) -> Any:
    """Index -> output value: a string array for a categorical column; float
    numbers (datetimes: epoch seconds) for a numeric column learned as discrete."""
    if col.kind == ColumnKind.CATEGORICAL:
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
    texts = pd.Series([None if v is None else str(v) for v in values], dtype=object)
    if col.kind == ColumnKind.DATETIME:
        # str() of timestamps: ISO 8601, with a fraction only where there is one
        stamps = pd.to_datetime(texts, errors="coerce", format="ISO8601")
        seconds = (stamps - pd.Timestamp("1970-01-01", tz=stamps.dt.tz)) / pd.Timedelta(seconds=1)
        return seconds.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(texts, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
