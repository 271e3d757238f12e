"""Per-column pieces of ``FastDataTransformer`` (``services.common.engine.transformer``): the
fitted continuous and discrete column records, their encoders and decoders, and input checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from ctgan.data_transformer import SpanInfo

from services.common.errors import FieldViolation, InvalidArgument

STD_MULTIPLIER = 4.0
_BLOCK_ROWS = 65536


@dataclass
class _Continuous:
    name: str
    dtype: str
    fill_value: float
    has_nulls: bool
    means: np.ndarray  # all max_clusters components
    stds: np.ndarray
    precision_chol: np.ndarray
    log_offset: np.ndarray
    weights: np.ndarray
    valid: np.ndarray  # bool, weights > threshold

    @property
    def n_components(self) -> int:
        return int(self.valid.sum())

    def spans(self) -> list[SpanInfo]:
        spans = [SpanInfo(1, "tanh"), SpanInfo(self.n_components, "softmax")]
        if self.has_nulls:
            spans.append(SpanInfo(2, "softmax"))
        return spans


@dataclass
class _Discrete:
    name: str
    dtype: str
    categories: list[Any]  # non-null categories in first-seen order, then None if has_null
    has_null: bool
    counts: np.ndarray  # rows per category in the fitted data

    def spans(self) -> list[SpanInfo]:
        return [SpanInfo(len(self.categories), "softmax")]


def _check_frame(frame: pd.DataFrame, discrete: set[Any]) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if len(frame.columns) == 0 or len(frame) == 0:
        problems.append(FieldViolation("table", "the table has no rows or no columns"))
        return problems
    if frame.columns.has_duplicates:
        problems.append(FieldViolation("table", "column names must be unique"))
    for name in frame.columns:
        if not isinstance(name, str):
            problems.append(FieldViolation(f"columns[{name!r}]", "column names must be strings"))
            continue
        if name in discrete:
            continue
        series = frame[name]
        if pd.api.types.is_bool_dtype(series.dtype) or not pd.api.types.is_numeric_dtype(series.dtype):
            problems.append(
                FieldViolation(
                    f"columns[{name!r}]",
                    f"continuous column {name!r} has dtype {series.dtype}; list it in discrete_columns "
                    "or convert it to numbers",
                )
            )
            continue
        values = _as_float(series)
        if np.isinf(values).any():
            problems.append(FieldViolation(f"columns[{name!r}]", f"column {name!r} holds infinite values"))
        elif np.isnan(values).all():
            problems.append(FieldViolation(f"columns[{name!r}]", f"column {name!r} has no values (all missing)"))
    return problems


def _as_float(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _generator(rng: np.random.Generator | int | None, seed: int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng([seed, 1])
    return np.random.default_rng(rng)


def _encode_continuous(
    column: _Continuous, values: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised value, sampled component (among valid ones) and missing flag, per row.

    As rdt: posterior over all components, restricted to the valid ones, plus 1e-6,
    renormalised, one component drawn per row; value = (x - mean) / (4 std), clipped
    to [-0.99, 0.99]. The posterior is computed once per distinct value when there
    are few (counts, ages, rates), per row otherwise, in row blocks to bound the
    temporaries; both give the same numbers.
    """
    is_null = np.isnan(values)
    x = np.where(is_null, column.fill_value, values)
    n = x.size
    valid = column.valid
    means_v = column.means[valid]
    stds_v = column.stds[valid]
    alpha = np.empty(n, dtype=np.float32)
    component = np.empty(n, dtype=np.int32)
    uniform = rng.random(n)
    last = int(valid.sum()) - 1
    distinct, inverse = np.unique(x, return_inverse=True)
    per_value = distinct.size * 4 <= n
    value_cdf = _component_cdf(column, distinct) if per_value else None
    for lo in range(0, n, _BLOCK_ROWS):
        hi = min(n, lo + _BLOCK_ROWS)
        cdf = value_cdf[inverse[lo:hi]] if value_cdf is not None else _component_cdf(column, x[lo:hi])
        chosen = np.minimum((cdf < uniform[lo:hi, None]).sum(axis=1), last)
        normalized = (x[lo:hi] - means_v[chosen]) / (STD_MULTIPLIER * stds_v[chosen])
        alpha[lo:hi] = np.clip(normalized, -0.99, 0.99)
        component[lo:hi] = chosen
    return alpha, component, is_null.astype(np.int32)


def _component_cdf(column: _Continuous, x: np.ndarray) -> np.ndarray:
    """Per value: the cumulative probabilities of the valid components (rdt's draw distribution)."""
    logp = (x[:, None] - column.means) * column.precision_chol
    logp *= logp
    logp *= -0.5
    logp += column.log_offset
    logp -= logp.max(axis=1, keepdims=True)
    prob = np.exp(logp)
    prob /= prob.sum(axis=1, keepdims=True)
    prob = prob[:, column.valid] + 1e-6
    cdf = np.cumsum(prob, axis=1)
    cdf /= cdf[:, -1:]
    return cdf


def _fit_discrete(name: str, series: pd.Series) -> _Discrete:
    null = series.isna().to_numpy()
    uniques = list(pd.unique(series[~null]))
    categories = [_python_value(v) for v in uniques]
    if null.any():
        categories.append(None)
    column = _Discrete(
        name=name, dtype=str(series.dtype), categories=categories, has_null=bool(null.any()), counts=np.zeros(0)
    )
    for value in categories:  # fail early on values the state cannot hold
        _encode_value(value, column=name)
    codes = _encode_discrete(column, series)
    column.counts = np.bincount(codes[codes >= 0], minlength=len(categories)).astype(np.int64)
    return column


def _encode_discrete(column: _Discrete, series: pd.Series) -> np.ndarray:
    known = column.categories[:-1] if column.has_null else column.categories
    codes = pd.Categorical(series, categories=pd.Index(known, dtype=object)).codes.astype(np.int32)
    null = series.isna().to_numpy()
    if column.has_null:
        codes[null] = len(known)
    else:
        codes[null] = -1
    return codes


def _category_index(column: _Discrete, value: Any) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if column.has_null:
            return len(column.categories) - 1
    else:
        for index, category in enumerate(column.categories):
            if category is not None and type(category) is type(_python_value(value)) and category == value:
                return index
        for index, category in enumerate(column.categories):  # 3 == 3.0, numpy vs python scalars
            if category is not None and category == value:
                return index
    raise InvalidArgument(
        f"the value {value!r} does not exist in the column {column.name!r}",
        violations=[FieldViolation("condition.value", f"not a category of column {column.name!r}")],
    )


def _python_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _encode_value(value: Any, column: str = "") -> list[Any]:
    """A category as a JSON-able ``[type tag, value]`` pair."""
    value = _python_value(value)
    if value is None:
        return ["null", None]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return ["float", repr(value)]
        return ["float", value]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, pd.Timestamp):
        return ["timestamp", value.isoformat()]
    raise InvalidArgument(
        f"column {column!r} holds a value of unsupported type {type(value).__name__}",
        violations=[FieldViolation(f"columns[{column!r}]", f"unsupported value type {type(value).__name__}")],
    )


def _decode_value(item: list[Any]) -> Any:
    tag, value = item
    if tag == "null":
        return None
    if tag == "bool":
        return bool(value)
    if tag == "int":
        return int(value)
    if tag == "float":
        return float(value)
    if tag == "str":
        return str(value)
    if tag == "timestamp":
        return pd.Timestamp(value)
    raise ValueError(f"unknown category tag {tag!r}")


def _restore_numeric(values: np.ndarray, dtype: str) -> Any:
    """Cast decoded floats back to the fitted dtype (integers are rounded, as rdt does)."""
    try:
        target = pd.api.types.pandas_dtype(dtype)
    except TypeError:
        return values
    try:
        if isinstance(target, np.dtype):
            if target.kind in "iu":
                values = np.round(values)
                if np.isnan(values).any():
                    return values
                info = np.iinfo(target)
                return np.clip(values, info.min, info.max).astype(target)
            return values.astype(target)
        if pd.api.types.is_integer_dtype(target):
            values = np.round(values)
        return pd.array(values).astype(target)
    except (TypeError, ValueError):
        return values


def _restore_categories(column: _Discrete, code: np.ndarray) -> Any:
    lookup = np.empty(len(column.categories), dtype=object)
    for index, value in enumerate(column.categories):
        lookup[index] = np.nan if value is None else value
    values = lookup[code]
    try:
        target = pd.api.types.pandas_dtype(column.dtype)
        if target == np.dtype(object):
            return values
        restored = pd.Series(values, dtype=object).astype(target)
    except (TypeError, ValueError):
        return values
    return restored.to_numpy() if isinstance(target, np.dtype) else restored.array
