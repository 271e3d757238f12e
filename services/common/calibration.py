"""Marginal calibration: each numeric column of a model's output mapped onto the real column's distribution.

A model that learned the relations between columns well can still misplace a
column's own distribution by a little: TVAE gives Adult's ``capital_loss``
5.5% non-zero values where the real table has 4.7%, which moves its 95th
percentile from 0 to 1,755. After training, the trainer draws rows from the
model and records, per numeric column, the model's quantiles beside the real
training rows' (``fit``). The sampler then sends every value ``x`` through
``F_real^-1(F_model(x))`` (``apply``): a monotone map, so the order of values,
and with it every rank correlation the model learned, is kept, while the
column's distribution becomes the real one (up to the ``LEVELS`` quantiles
stored, which are a summary, never single rows).

A value where the model's distribution has a point mass (many rows at one
value) covers a range of levels; the rows holding it in one batch are spread
evenly over that range in their order, so a model with too many zeros gives
back the right share of them. Batches are deterministic per seed, so output
stays reproducible. Missing values stay missing; discrete columns are not
touched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from services.common.errors import DataLoss

STATE_FORMAT = "synth.margin-calibration"
STATE_VERSION = 1
LEVELS = 257  # quantile levels 0, 1/256, ..., 1
_MIN_VALUES = 50  # fewer present values in either table: the column is left alone


@dataclass(frozen=True)
class _Column:
    model: np.ndarray  # the model's quantiles at the levels
    real: np.ndarray  # the real training rows' quantiles at the same levels


class MarginCalibration:
    def __init__(self, columns: Mapping[str, _Column]) -> None:
        self._columns = dict(columns)
        self._levels = np.linspace(0.0, 1.0, LEVELS)

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    @classmethod
    def fit(cls, real: pd.DataFrame, synthetic: pd.DataFrame, discrete: Sequence[str]) -> MarginCalibration:
        """From the real training view and rows the model generated (same columns; floats, NaN missing)."""
        levels = np.linspace(0.0, 1.0, LEVELS)
        columns: dict[str, _Column] = {}
        for name in real.columns:
            if name in set(discrete) or name not in synthetic.columns:
                continue
            r = real[name].to_numpy(dtype=np.float64)
            s = synthetic[name].to_numpy(dtype=np.float64)
            r, s = r[~np.isnan(r)], s[~np.isnan(s)]
            if r.size < _MIN_VALUES or s.size < _MIN_VALUES:
                continue
            columns[str(name)] = _Column(np.quantile(s, levels), np.quantile(r, levels))
        return cls(columns)

    def apply(self, name: str, values: np.ndarray) -> np.ndarray:
        column = self._columns.get(name)
        out = np.array(values, dtype=np.float64, copy=True)
        if column is None:
            return out
        present = ~np.isnan(out)
        x = out[present]
        if x.size:
            out[present] = np.interp(_levels_of(x, column.model, self._levels), self._levels, column.real)
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "levels": LEVELS,
            "columns": {n: {"model": c.model.tolist(), "real": c.real.tolist()} for n, c in self._columns.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> MarginCalibration:
        try:
            if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
                raise ValueError(f"not a {STATE_FORMAT} v{STATE_VERSION} state")
            if state.get("levels") != LEVELS:
                raise ValueError(f"{state.get('levels')!r} levels, expected {LEVELS}")
            columns = {}
            for name, item in state["columns"].items():
                model = np.asarray(item["model"], dtype=np.float64)
                real = np.asarray(item["real"], dtype=np.float64)
                if model.shape != (LEVELS,) or real.shape != (LEVELS,):
                    raise ValueError(f"column {name!r}: quantiles of the wrong length")
                if not (np.isfinite(model).all() and np.isfinite(real).all()):
                    raise ValueError(f"column {name!r}: quantiles are not finite")
                if (np.diff(model) < 0).any() or (np.diff(real) < 0).any():
                    raise ValueError(f"column {name!r}: quantiles are not sorted")
                columns[str(name)] = _Column(model, real)
            return cls(columns)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataLoss(f"margin calibration state is malformed: {exc}") from None


def _levels_of(x: np.ndarray, knots: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The model's CDF level of each value: linear between distinct knots; a value on
    a run of equal knots (a point mass) spread evenly over the run's levels, in order."""
    distinct, first = np.unique(knots, return_index=True)
    last = np.searchsorted(knots, distinct, side="right") - 1
    low, high = levels[first], levels[last]
    if distinct.size == 1:
        return _spread(x, np.zeros(x.size, dtype=np.int64), low, high)
    # between two distinct knots: from the upper end of the lower run to the lower end of the upper one
    position = np.clip(np.searchsorted(distinct, x, side="right") - 1, 0, distinct.size - 2)
    left, right = distinct[position], distinct[position + 1]
    fraction = np.clip((x - left) / (right - left), 0.0, 1.0)
    u = high[position] + fraction * (low[position + 1] - high[position])
    on_knot = np.searchsorted(distinct, x)
    on_knot = np.minimum(on_knot, distinct.size - 1)
    hit = (distinct[on_knot] == x) & (high[on_knot] > low[on_knot])
    if hit.any():
        u[hit] = _spread(x[hit], on_knot[hit], low, high)
    return u


def _spread(x: np.ndarray, run: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Rows on the same run get levels (k + 0.5) / n of the way through it, k their order among n."""
    order = np.argsort(run, kind="stable")
    sorted_runs = run[order]
    starts = np.flatnonzero(np.r_[True, sorted_runs[1:] != sorted_runs[:-1]])
    counts = np.diff(np.r_[starts, sorted_runs.size])
    rank = np.arange(sorted_runs.size) - np.repeat(starts, counts)
    fraction = np.empty(x.size)
    fraction[order] = (rank + 0.5) / np.repeat(counts, counts)
    return low[run] + fraction * (high[run] - low[run])
