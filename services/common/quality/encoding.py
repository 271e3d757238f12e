"""Column preparation shared by every metric.

- :class:`ColumnSet`: which columns are evaluated. Continuous and datetime columns are *numeric*
  (datetimes as epoch seconds), categorical columns are *categorical*; identifier and free-text
  columns are excluded from every metric.
- :func:`prepare_frames`: typed arrays per frame. Numbers become float64 with NaN for missing;
  categories become int32 codes in one code space per column shared by every frame (the real
  training rows' categories first, most frequent first; categories only other frames hold are
  appended), ``-1`` for missing. Bad values (text in a numeric column, infinities) raise
  InvalidArgument naming the frame and the column.
- :class:`DistanceEncoder`: the mixed-type encoding behind every distance (DCR, NNDR,
  identifiability, disclosure risk). Euclidean distance on it means: a numeric column adds
  ``((a - b) / robust_range)**2`` where the robust range is the real training column's
  5th-95th percentile spread; a categorical column adds 1 when the categories differ (one-hot
  scaled by 1/sqrt(2)); missing is a value of its own (categorical: its own one-hot slot;
  numeric: an indicator dimension adding 1, the value itself sitting at the median).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from services.common.errors import FieldViolation, InvalidArgument
from services.common.schema import ColumnInfo, ColumnKind

__all__ = [
    "EXCLUDED_KINDS",
    "ColumnSet",
    "DistanceEncoder",
    "Prepared",
    "prepare_frames",
    "robust_range",
]

EXCLUDED_KINDS = frozenset({ColumnKind.IDENTIFIER, ColumnKind.FREE_TEXT})
_NUMERIC_KINDS = frozenset({ColumnKind.CONTINUOUS, ColumnKind.DATETIME})

# At most this many categories of a column get their own one-hot slot in the distance encoding
# (the real training rows' most frequent ones); the others share an "other" slot.
MAX_ONE_HOT = 100
_INV_SQRT2 = float(1.0 / np.sqrt(2.0))
_MAX_BAD_EXAMPLES = 3


@dataclass(frozen=True)
class ColumnSet:
    """The evaluated columns, in schema order, by kind."""

    names: list[str]
    kinds: dict[str, ColumnKind]
    excluded: list[str]

    @classmethod
    def from_schema(cls, columns: Sequence[ColumnInfo]) -> ColumnSet:
        names = [c.name for c in columns if c.kind not in EXCLUDED_KINDS]
        return cls(
            names=names,
            kinds={c.name: c.kind for c in columns if c.kind not in EXCLUDED_KINDS},
            excluded=[c.name for c in columns if c.kind in EXCLUDED_KINDS],
        )

    @property
    def numeric(self) -> list[str]:
        return [n for n in self.names if self.kinds[n] in _NUMERIC_KINDS]

    @property
    def categorical(self) -> list[str]:
        return [n for n in self.names if self.kinds[n] is ColumnKind.CATEGORICAL]

    def is_numeric(self, name: str) -> bool:
        return self.kinds[name] in _NUMERIC_KINDS


@dataclass
class Prepared:
    """One frame's evaluated columns as arrays: ``numeric`` float64 (NaN = missing),
    ``codes`` int32 (-1 = missing) in the shared code space ``vocabulary[column]``."""

    rows: int
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    codes: dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, index: np.ndarray) -> Prepared:
        return Prepared(
            rows=len(index),
            numeric={k: v[index] for k, v in self.numeric.items()},
            codes={k: v[index] for k, v in self.codes.items()},
        )

    def column(self, name: str) -> np.ndarray:
        return self.numeric[name] if name in self.numeric else self.codes[name]

    def missing(self, name: str) -> np.ndarray:
        if name in self.numeric:
            return np.isnan(self.numeric[name])
        return self.codes[name] < 0


def _numeric_values(series: pd.Series, kind: ColumnKind) -> tuple[np.ndarray, list[str]]:
    """float64 values (epoch seconds for datetimes) and up to a few offending cell texts."""
    if kind is ColumnKind.DATETIME:
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            values = series
            if getattr(series.dt, "tz", None) is not None:
                values = series.dt.tz_convert("UTC").dt.tz_localize(None)
            stamps = values.astype("datetime64[ns]")
            out = stamps.to_numpy(dtype="datetime64[ns]").astype("int64").astype(np.float64) / 1e9
            out[stamps.isna().to_numpy()] = np.nan
            return out, []
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
            return _plain_numbers(series)
        present = series.notna().to_numpy()
        parsed = pd.to_datetime(series.astype(object).where(present, None), errors="coerce", utc=True, format="mixed")
        bad = present & parsed.isna().to_numpy()
        if bad.any():
            return np.empty(0), [repr(v) for v in series[bad].head(_MAX_BAD_EXAMPLES)]
        stamps = parsed.dt.tz_localize(None)
        out = stamps.to_numpy(dtype="datetime64[ns]").astype("int64").astype(np.float64) / 1e9
        out[~present] = np.nan
        return out, []
    return _plain_numbers(series)


def _plain_numbers(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype("float64")
    if pd.api.types.is_numeric_dtype(series.dtype):
        out = series.to_numpy(dtype=np.float64, na_value=np.nan)
        present = np.ones(len(out), dtype=bool)
    else:
        present = series.notna().to_numpy()
        coerced = pd.to_numeric(series.where(series.notna(), None), errors="coerce")
        out = np.asarray(coerced, dtype=np.float64)
        bad = present & np.isnan(out)
        if bad.any():
            return np.empty(0), [repr(v) for v in series[bad].head(_MAX_BAD_EXAMPLES)]
    bad = present & np.isinf(out)
    if bad.any():
        return np.empty(0), [repr(v) for v in series[bad].head(_MAX_BAD_EXAMPLES)]
    return out, []


def _category_text(series: pd.Series) -> np.ndarray:
    """Object array of str (None = missing). Whole floats print as ints (1.0 -> "1"),
    so codes that went through a float column still match their real text."""
    values = series.astype(object).to_numpy()
    missing = pd.isna(series).to_numpy()
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        out = values.copy()
        out[missing] = None
        return out
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if missing[i]:
            out[i] = None
        elif isinstance(v, str):
            out[i] = v
        elif isinstance(v, float | np.floating) and float(v).is_integer():
            out[i] = str(int(v))
        else:
            out[i] = str(v)
    return out


def prepare_frames(
    columns: ColumnSet, frames: Mapping[str, pd.DataFrame], *, reference: str
) -> tuple[dict[str, list[str]], dict[str, Prepared]]:
    """Typed arrays for every frame (keyed as given) and the shared category vocabulary.
    ``reference`` names the frame whose categories come first (most frequent first, ties by text).
    Raises InvalidArgument listing every column with values of the wrong type."""
    violations: list[FieldViolation] = []
    out = {name: Prepared(rows=len(frame)) for name, frame in frames.items()}
    texts: dict[str, dict[str, np.ndarray]] = {name: {} for name in frames}
    for col in columns.names:
        kind = columns.kinds[col]
        for name, frame in frames.items():
            if kind is ColumnKind.CATEGORICAL:
                texts[name][col] = _category_text(frame[col])
                continue
            values, bad = _numeric_values(frame[col], kind)
            if bad:
                what = "dates or times" if kind is ColumnKind.DATETIME else "finite numbers"
                violations.append(
                    FieldViolation(
                        f'{name}.columns["{col}"]',
                        f"{kind.value} column {col!r} of the {name} rows holds values that are not {what}, "
                        f"e.g. {', '.join(bad)}",
                    )
                )
                continue
            out[name].numeric[col] = values
    if violations:
        raise InvalidArgument(
            "some columns hold values of the wrong type: " + "; ".join(v.description for v in violations),
            reason="INVALID_VALUES",
            violations=violations,
        )
    vocabulary: dict[str, list[str]] = {}
    for col in columns.categorical:
        ref = pd.Series(texts[reference][col]).dropna()
        counts = ref.value_counts()
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        vocab = [k for k, _ in ordered]
        known = set(vocab)
        extra: set[str] = set()
        for name in frames:
            if name == reference:
                continue
            extra.update(v for v in pd.unique(texts[name][col]) if v is not None and v not in known)
        vocab.extend(sorted(extra))
        vocabulary[col] = vocab
        index = pd.Index(vocab)
        for name in frames:
            values = texts[name][col]
            codes = index.get_indexer(pd.Index(values, dtype=object)) if len(values) else np.empty(0, dtype=np.intp)
            codes = np.asarray(codes, dtype=np.int32)
            codes[pd.isna(values)] = -1
            out[name].codes[col] = codes
    return vocabulary, out


def robust_range(values: np.ndarray) -> float:
    """Spread used to scale a numeric column: the 5th-95th percentile range of its present
    values, else the 1st-99th, else max - min, else 1."""
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return 1.0
    for lo, hi in ((0.05, 0.95), (0.01, 0.99), (0.0, 1.0)):
        spread = float(np.quantile(present, hi) - np.quantile(present, lo))
        if spread > 0 and np.isfinite(spread):
            return spread
    return 1.0


@dataclass(frozen=True)
class DistanceEncoder:
    """Fitted on the real training rows; see the module docstring for what a distance means."""

    numeric: list[str]
    centers: dict[str, float]
    scales: dict[str, float]
    with_missing: dict[str, bool]  # a missing indicator (numeric) or slot (categorical)
    categorical: list[str]
    one_hot: dict[str, int]  # categories with their own one-hot slot (codes 0..n-1)
    other: dict[str, bool]  # a shared slot for the codes beyond MAX_ONE_HOT
    slices: dict[str, slice]
    width: int

    @classmethod
    def fit(cls, columns: ColumnSet, reference: Prepared, others: Sequence[Prepared] = ()) -> DistanceEncoder:
        frames = [reference, *others]
        centers: dict[str, float] = {}
        scales: dict[str, float] = {}
        with_missing: dict[str, bool] = {}
        slices: dict[str, slice] = {}
        pos = 0
        one_hot: dict[str, int] = {}
        other: dict[str, bool] = {}
        for col in columns.names:
            if columns.is_numeric(col):
                values = reference.numeric[col]
                present = values[~np.isnan(values)]
                centers[col] = float(np.median(present)) if len(present) else 0.0
                scales[col] = robust_range(values)
                with_missing[col] = any(bool(np.isnan(f.numeric[col]).any()) for f in frames)
                width = 2 if with_missing[col] else 1
            else:
                top = int(max((f.codes[col].max(initial=-1) for f in frames), default=-1)) + 1
                one_hot[col] = min(top, MAX_ONE_HOT)
                # slots: the top categories, then "other" (codes beyond the cap) and "missing",
                # each only when some frame needs it
                other[col] = top > MAX_ONE_HOT
                with_missing[col] = any(bool((f.codes[col] < 0).any()) for f in frames)
                width = one_hot[col] + int(other[col]) + int(with_missing[col])
            slices[col] = slice(pos, pos + width)
            pos += width
        return cls(
            numeric=columns.numeric,
            centers=centers,
            scales=scales,
            with_missing=with_missing,
            categorical=columns.categorical,
            one_hot=one_hot,
            other=other,
            slices=slices,
            width=pos,
        )

    def encode(self, frame: Prepared, columns: Sequence[str] | None = None) -> np.ndarray:
        """float32 matrix (rows x dims) of the given columns (all by default), in encoder order."""
        names = [c for c in self.slices if columns is None or c in columns]
        width = sum(self.slices[c].stop - self.slices[c].start for c in names)
        out = np.zeros((frame.rows, width), dtype=np.float32)
        pos = 0
        for col in names:
            if col in self.centers:
                values = frame.numeric[col]
                missing = np.isnan(values)
                z = (values - self.centers[col]) / self.scales[col]
                z[missing] = 0.0
                out[:, pos] = z
                if self.with_missing[col]:
                    out[:, pos + 1] = missing
                pos += self.slices[col].stop - self.slices[col].start
            else:
                codes = frame.codes[col]
                cap = self.one_hot[col]
                slot = np.where(codes < 0, cap + int(self.other[col]), np.minimum(codes, cap))
                out[np.arange(frame.rows), pos + slot] = _INV_SQRT2
                pos += self.slices[col].stop - self.slices[col].start
        return out
