"""The table codec: between a typed dataset frame and what CTGAN learns.

CTGAN models numbers and categories. So, going in:
- continuous → float (missing stays NaN; the engine models the missing rate);
- datetime   → float Unix seconds (the format is kept in the schema for output);
- categorical, and columns the user asked to treat as discrete → strings
  (missing → None, learned as its own category);
- identifier and free-text columns are not learned at all (they would only be
  memorised); the sampler makes fresh values for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from services.common.tables import ColumnInfo, ColumnKind

NOT_LEARNED = {ColumnKind.IDENTIFIER, ColumnKind.FREE_TEXT}


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


def output_view(frame: pd.DataFrame, columns: Sequence[ColumnInfo], first_row: int) -> pd.DataFrame:
    """Typed synthetic rows, in upload order, from the engine's output.

    Keeps what users expect of their data: numbers stay inside the training
    range (CTGAN's tanh-and-mixture output can leave it), whole-number columns
    stay integers, datetimes come back as datetimes (formatted on output with
    the column's own format), categories are only trained ones, missing values
    stay missing. Identifiers are fresh (``first_row`` makes them unique across
    chunks); free text is not synthesised and is left empty.
    """
    frame = frame.reset_index(drop=True)
    rows = len(frame)
    out: dict[str, pd.Series] = {}
    for col in columns:
        if col.kind == ColumnKind.IDENTIFIER:
            numbers = pd.Series(np.arange(first_row + 1, first_row + rows + 1, dtype=np.int64))
            out[col.name] = numbers.astype("Int64") if col.integer else "syn-" + numbers.map("{:09d}".format)
        elif col.kind == ColumnKind.FREE_TEXT:
            out[col.name] = pd.Series([None] * rows, dtype=object)
        elif col.kind == ColumnKind.CATEGORICAL:
            values = frame[col.name].astype(object)
            out[col.name] = values.where(values.notna(), None)
        elif col.kind == ColumnKind.DATETIME:
            seconds = _clipped(pd.to_numeric(frame[col.name], errors="coerce"), col)
            out[col.name] = pd.Series(pd.to_datetime(seconds.round(), unit="s"))
        else:
            values = _clipped(pd.to_numeric(frame[col.name], errors="coerce"), col)
            out[col.name] = values.round().astype("Int64") if col.integer else values
    result = pd.DataFrame(out)
    result.index = pd.RangeIndex(first_row, first_row + rows)
    return result


def _clipped(values: pd.Series, col: ColumnInfo) -> pd.Series:
    return values.astype("float64").clip(lower=col.minimum, upper=col.maximum)


def format_for_csv(frame: pd.DataFrame, columns: Sequence[ColumnInfo]) -> pd.DataFrame:
    """Datetimes as text in the column's own format; everything else as is."""
    formatted = frame.copy(deep=False)
    for col in columns:
        if col.kind == ColumnKind.DATETIME and col.datetime_format:
            text = frame[col.name].dt.strftime(col.datetime_format)
            formatted[col.name] = text.where(frame[col.name].notna(), None)
    return formatted
