"""The real support of each numeric column, and synthetic values put back on it.

Engines decode a continuous or datetime column to free floats, so synthetic
values fall where no real value is: ``16.773805985269888`` for ages recorded
with at most 2 decimals, ``0.37`` in a column whose only values are
0, 0.2, …, 1.0, a ``capital_loss`` of 1 when real values are 0 or ≥ 155, a
time of day on dates that have none. ``SupportRules`` learns, per numeric
column of the training frame (float64, NaN = missing, datetimes as Unix epoch
seconds; see ``services.common.codec.training_view``), where real values lie:

- ``step``: the value grid; the largest of 86400, 3600, 60 (epoch-like columns
  only), 1, 0.1, …, 1e-6 that every present value is a multiple of; None when
  none fits (7+ decimals, or numbers too large for float64 to tell).
- ``values``: for a column with at most ``MAX_LISTED_VALUES`` distinct values,
  the sorted ones seen in at least ``MIN_VALUE_ROWS`` rows (rarer ones are
  left out so they are not re-emitted: a record that unique would identify
  someone); None when the column has more values, or when all are rare.
- ``masses``: point masses, values holding at least ``MASS_SHARE`` of present
  rows (the 0 of a zero-inflated column), at most ``MAX_MASSES`` of them.
- ``body``: ``(low, high)`` of the present values that are not masses, the
  continuous part; None when every value is a mass.

The support is ``masses ∪ [low, high]``, on the grid, restricted to ``values``
when those are listed. ``apply`` moves synthetic values onto it, in this order:
a value outside the body goes to the nearest of the masses and the body's
edges (capital_loss 1 → 0, 120 → 155, 3000 stays); then a value goes to the
nearest listed value, or else is rounded to the grid. Missing values stay
missing. ``off_support`` says which values are not on the support; on the real
training column it is all False, except the rare values left out of ``values``.

Pure numpy, vectorised: ``apply`` runs in the sampler's hot path, on millions
of values per column. The fitted rules are data (``to_state``/``from_state``,
JSON), saved with the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from services.common.errors import DataLoss

STATE_FORMAT = "synth.support-rules"
STATE_VERSION = 1

# A column with at most this many distinct present values has its values listed.
MAX_LISTED_VALUES = 32
# A value is listed only if it occurs in at least this many rows.
MIN_VALUE_ROWS = 3
# A point mass holds at least this share of the present rows (and MIN_VALUE_ROWS rows).
MASS_SHARE = 0.01
MAX_MASSES = 5
# Time grids (seconds) are tried only for columns whose median |value| is at
# least this: epoch seconds of dates after 1973 or before 1967. Smaller numbers
# that happen to be multiples of 60 are not taken for times.
EPOCH_LIKE = 1e8
_TIME_STEPS = (86_400.0, 3_600.0, 60.0)
_DECIMAL_STEPS = (1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6)
# Rounding error allowed in comparisons: float64 error on the column's largest value...
_ULPS = 16 * float(np.finfo(np.float64).eps)
# ... or a millionth of the step, whichever is larger.
_STEP_FRACTION = 1e-6
# A grid is not tried when that float64 error exceeds this fraction of its step.
_RESOLVABLE = 1e-3
# Up to this many anchors, nearest-anchor lookups count midpoints instead of searching.
_COUNTED_MIDPOINTS = 64


@dataclass(frozen=True)
class ColumnSupport:
    """Where the real values of one numeric column lie (see the module docstring)."""

    step: float | None
    values: tuple[float, ...] | None
    masses: tuple[float, ...]
    body: tuple[float, float] | None
    # Two numbers closer than this are equal; a value this close to the grid is on it.
    tolerance: float


class SupportRules:
    """Per-column ``ColumnSupport``; ``apply`` puts synthetic values on it."""

    def __init__(self, columns: Mapping[str, ColumnSupport]) -> None:
        self._columns = dict(columns)
        self._compiled = {name: _Compiled.of(rules) for name, rules in self._columns.items()}

    @classmethod
    def fit(cls, table: pd.DataFrame, discrete: Sequence[str]) -> SupportRules:
        """Learn the support of each non-discrete column of ``table`` (the
        training frame: float64, NaN = missing). A column with no present
        value gets no rules."""
        skip = set(discrete)
        columns: dict[str, ColumnSupport] = {}
        for name in table.columns:
            if name in skip:
                continue
            rules = _fit_column(pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64))
            if rules is not None:
                columns[str(name)] = rules
        return cls(columns)

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __getitem__(self, name: str) -> ColumnSupport:
        return self._columns[name]

    def apply(self, name: str, values: np.ndarray) -> np.ndarray:
        """A new float64 array of ``values`` moved onto the column's support;
        NaN stays NaN. A column without rules comes back unchanged (as float64,
        not copied when it already is)."""
        compiled = self._compiled.get(name)
        if compiled is None:
            return np.asarray(values, dtype=np.float64)
        return compiled.apply(np.array(values, dtype=np.float64, copy=True))

    def off_support(self, name: str, values: np.ndarray) -> np.ndarray:
        """Which present values are not on the real support (off the grid, not
        a listed value, or in a gap outside the body and the masses). Missing
        values and columns without rules are never off it."""
        numbers = np.asarray(values, dtype=np.float64)
        compiled = self._compiled.get(name)
        if compiled is None:
            return np.zeros(numbers.shape, dtype=bool)
        return compiled.off_support(numbers)

    # ---------------------------------------------------------------- state

    def to_state(self) -> dict[str, Any]:
        """The rules as a JSON-able dict (floats round-trip exactly through ``json``)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "columns": [
                {
                    "name": name,
                    "step": rules.step,
                    "values": None if rules.values is None else list(rules.values),
                    "masses": list(rules.masses),
                    "body": None if rules.body is None else list(rules.body),
                    "tolerance": rules.tolerance,
                }
                for name, rules in self._columns.items()
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SupportRules:
        """Rebuild the rules; raises ``DataLoss`` on a malformed or unknown state."""
        if not isinstance(state, Mapping):
            raise DataLoss("support rules: state is not an object")
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise DataLoss(f"support rules: unsupported state {state.get('format')!r} v{state.get('version')!r}")
        items = state.get("columns")
        if not isinstance(items, list):
            raise DataLoss("support rules: 'columns' is not a list")
        columns: dict[str, ColumnSupport] = {}
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise DataLoss(f"support rules: columns[{i}] has no name")
            name = item["name"]
            if name in columns:
                raise DataLoss(f"support rules: column {name!r} appears twice")
            try:
                columns[name] = _column_from_state(item)
            except (TypeError, ValueError) as exc:
                raise DataLoss(f"support rules: column {name!r}: {exc}") from None
        return cls(columns)


# -------------------------------------------------------------------- fitting


def _fit_column(numbers: np.ndarray) -> ColumnSupport | None:
    present = numbers[np.isfinite(numbers)]
    if present.size == 0:
        return None
    uniques, counts = np.unique(present, return_counts=True)
    scale = max(1.0, float(np.max(np.abs(uniques))))
    step = _fit_step(uniques, scale, epoch_like=float(np.median(np.abs(present))) >= EPOCH_LIKE)
    tolerance = max(_ULPS * scale, 0.0 if step is None else step * _STEP_FRACTION)

    listed: tuple[float, ...] | None = None
    if uniques.size <= MAX_LISTED_VALUES:
        kept = uniques[counts >= MIN_VALUE_ROWS]
        listed = tuple(float(v) for v in kept) if kept.size else None

    heavy = np.flatnonzero((counts >= MASS_SHARE * present.size) & (counts >= MIN_VALUE_ROWS))
    heavy = heavy[np.argsort(-counts[heavy], kind="stable")[:MAX_MASSES]]
    is_mass = np.zeros(uniques.size, dtype=bool)
    is_mass[heavy] = True
    rest = uniques[~is_mass]
    body = (float(rest[0]), float(rest[-1])) if rest.size else None
    masses = tuple(float(v) for v in uniques[is_mass])
    return ColumnSupport(step=step, values=listed, masses=masses, body=body, tolerance=tolerance)


def _fit_step(uniques: np.ndarray, scale: float, epoch_like: bool) -> float | None:
    """The largest candidate grid every value is on; None if none is."""
    candidates = (_TIME_STEPS if epoch_like else ()) + _DECIMAL_STEPS
    for step in candidates:
        error = _ULPS * scale
        if error > step * _RESOLVABLE:
            return None  # float64 cannot tell this grid (or any finer one) at this magnitude
        tolerance = max(error, step * _STEP_FRACTION)
        if np.all(np.abs(uniques - _round_to(uniques, step)) <= tolerance):
            return step
    return None


def _round_to(numbers: np.ndarray, step: float) -> np.ndarray:
    """``numbers`` rounded to multiples of ``step``: for a decimal step the
    nearest float to the decimal (what parsing "16.77" gives), so real values
    on the grid are unchanged."""
    if step < 1.0:
        decimals = round(-math.log10(step))
        if 10.0**-decimals == step:
            factor = 10.0**decimals
            return np.rint(numbers * factor) / factor
    return np.rint(numbers / step) * step


def _column_from_state(item: Mapping[str, Any]) -> ColumnSupport:
    step = item.get("step")
    if step is not None:
        step = _finite(step, "step")
        if step <= 0:
            raise ValueError("step is not positive")
    values = item.get("values")
    if values is not None:
        values = _sorted_floats(values, "values")
        if not values:
            raise ValueError("values is empty")
    masses = _sorted_floats(item.get("masses"), "masses")
    body = item.get("body")
    if body is not None:
        if not isinstance(body, list) or len(body) != 2:
            raise ValueError("body is not [low, high]")
        body = (_finite(body[0], "body"), _finite(body[1], "body"))
        if body[0] > body[1]:
            raise ValueError("body low is above high")
    if body is None and not masses:
        raise ValueError("neither a body nor masses")
    tolerance = _finite(item.get("tolerance"), "tolerance")
    if tolerance < 0:
        raise ValueError("tolerance is negative")
    return ColumnSupport(step=step, values=values, masses=masses, body=body, tolerance=tolerance)


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number")
    return float(value)


def _sorted_floats(items: object, what: str) -> tuple[float, ...]:
    if not isinstance(items, list):
        raise ValueError(f"{what} is not a list")
    numbers = tuple(_finite(v, what) for v in items)
    if any(a >= b for a, b in zip(numbers, numbers[1:], strict=False)):
        raise ValueError(f"{what} is not strictly increasing")
    return numbers


# ------------------------------------------------------------------- applying


@dataclass(frozen=True)
class _Compiled:
    """A column's rules as numpy arrays, ready for the hot path."""

    step: float | None
    values: np.ndarray | None
    masses: np.ndarray
    anchors: np.ndarray  # masses and body edges, sorted: where outside-body values go
    low: float
    high: float
    has_body: bool
    tolerance: float

    @classmethod
    def of(cls, rules: ColumnSupport) -> _Compiled:
        edges = () if rules.body is None else rules.body
        return cls(
            step=rules.step,
            values=None if rules.values is None else np.array(rules.values, dtype=np.float64),
            masses=np.array(rules.masses, dtype=np.float64),
            anchors=np.unique(np.array(rules.masses + tuple(edges), dtype=np.float64)),
            low=np.nan if rules.body is None else rules.body[0],
            high=np.nan if rules.body is None else rules.body[1],
            has_body=rules.body is not None,
            tolerance=rules.tolerance,
        )

    def _outside_body(self, numbers: np.ndarray) -> np.ndarray:
        """Present values outside [low, high] (all present values when there is no body)."""
        if not self.has_body:
            return ~np.isnan(numbers)
        return (numbers < self.low - self.tolerance) | (numbers > self.high + self.tolerance)

    def apply(self, numbers: np.ndarray) -> np.ndarray:
        """Moves ``numbers`` (a private copy) onto the support, in place."""
        outside = self._outside_body(numbers)
        count = np.count_nonzero(outside)
        if count > numbers.size // 8:  # many (the blur around a zero mass): one pass over all
            numbers = np.where(outside, _nearest(self.anchors, numbers), numbers)
        elif count:
            numbers[outside] = _nearest(self.anchors, numbers[outside])
        if self.values is not None:
            numbers = np.where(np.isnan(numbers), numbers, _nearest(self.values, numbers))
        elif self.step is not None:
            numbers = _round_to(numbers, self.step)  # NaN stays NaN
        return numbers

    def off_support(self, numbers: np.ndarray) -> np.ndarray:
        present = ~np.isnan(numbers)
        off = ~np.isfinite(numbers) & present
        outside = self._outside_body(numbers)
        if self.masses.size:
            outside &= ~_close(self.masses, numbers, self.tolerance)
        off |= outside
        if self.values is not None:
            off |= present & ~_close(self.values, numbers, self.tolerance)
        if self.step is not None:
            with np.errstate(invalid="ignore"):
                off |= np.abs(numbers - _round_to(numbers, self.step)) > self.tolerance
        return off


def _nearest(anchors: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """For each number, the nearest of the sorted ``anchors`` (ties: the lower; NaN: any)."""
    if anchors.size == 1:
        return np.full(numbers.shape, anchors[0])
    midpoints = (anchors[:-1] + anchors[1:]) / 2
    if midpoints.size > _COUNTED_MIDPOINTS:
        return anchors.take(np.searchsorted(midpoints, numbers))
    # Few anchors: count the midpoints below each number, one comparison pass per
    # midpoint. Several times faster than searchsorted, whose binary search on
    # unsorted input mispredicts branches.
    index = np.zeros(numbers.shape, dtype=np.uint8)
    above = np.empty(numbers.shape, dtype=bool)
    for midpoint in midpoints:
        np.greater(numbers, midpoint, out=above)
        index += above
    return anchors.take(index)


def _close(anchors: np.ndarray, numbers: np.ndarray, tolerance: float) -> np.ndarray:
    """Which numbers are within ``tolerance`` of one of the sorted ``anchors`` (NaN: False)."""
    with np.errstate(invalid="ignore"):
        return np.abs(numbers - _nearest(anchors, numbers)) <= tolerance
