"""``FastDataTransformer``: ctgan's ``DataTransformer`` layout, fitted and applied fast.

The output is exactly the matrix ctgan's ``DataTransformer`` produces, so ctgan's
``DataSampler``, ``Generator`` and ``Discriminator`` work on it unchanged:

* a continuous column becomes ``[SpanInfo(1, "tanh"), SpanInfo(K, "softmax")]``:
  the value normalised by a Bayesian GMM component (mode-specific normalisation,
  ``max_clusters=10``, ``weight_threshold=0.005``) and a one-hot of that component;
* a discrete column becomes ``[SpanInfo(C, "softmax")]``, a one-hot over its
  categories in first-seen order, a missing value being one more category (last),
  as rdt's ``OneHotEncoder`` does.

What differs from ctgan:

* The mixture of a column is fitted on at most ``sample_rows`` of its values (a
  seeded random sample; all values, in order, when there are fewer), by a 1-D
  variational EM over distinct values and their counts that reproduces sklearn's
  ``BayesianGaussianMixture`` (see ``_bgm``). On the same values the components,
  and so the layout, are ctgan's.
* transform and inverse transform are vectorised numpy: no per-row Python, no joblib.
* Missing values in a continuous column are allowed (ctgan refuses them): such a
  column gets a third span ``SpanInfo(2, "softmax")`` (present, missing), the
  missing values are normalised as if they were the column mean, and the inverse
  writes NaN where the indicator says missing, so the missing rate is learned.
* The fitted state is plain data: ``to_state()`` returns a JSON-able dict (no
  pickle, no sklearn or rdt objects) and ``from_state`` rebuilds the transformer.

Besides the dense matrix, ``transform_codes`` returns the compact form the trainer
keeps in memory: the tanh values (``alphas``) and, per softmax span, the index of
its hot entry (``codes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from ctgan.data_transformer import SpanInfo

from services.common.engine._bgm import fit_bgm
from services.common.engine._columns import (
    STD_MULTIPLIER,
    _as_float,
    _category_index,
    _check_frame,
    _Continuous,
    _decode_value,
    _Discrete,
    _encode_continuous,
    _encode_discrete,
    _encode_value,
    _fit_discrete,
    _generator,
    _restore_categories,
    _restore_numeric,
)
from services.common.errors import FieldViolation, InvalidArgument

STATE_FORMAT = "synth.fast-data-transformer"
STATE_VERSION = 1
_KMEANS_RANDOM_STATE = 42  # what rdt's ClusterBasedNormalizer hands sklearn


@dataclass(frozen=True)
class EncodedTable:
    """The compact training form of a table.

    ``alphas[:, j]`` is the j-th tanh entry of the layout, ``codes[:, s]`` the hot
    index inside the s-th softmax span (``-1`` for a category unseen at fit time).
    """

    alphas: np.ndarray  # float32, (rows, number of tanh spans)
    codes: np.ndarray  # int32, (rows, number of softmax spans)


class FastDataTransformer:
    """Mode-specific normalisation with ctgan's output layout; see the module doc."""

    def __init__(
        self,
        max_clusters: int = 10,
        weight_threshold: float = 0.005,
        sample_rows: int = 20000,
        seed: int = 0,
    ) -> None:
        self.max_clusters = int(max_clusters)
        self.weight_threshold = float(weight_threshold)
        self.sample_rows = int(sample_rows)
        self.seed = int(seed)
        self._columns: list[_Continuous | _Discrete] = []
        self.output_info_list: list[list[SpanInfo]] = []
        self.output_dimensions = 0

    # ----------------------------------------------------------------- fit

    def fit(self, frame: pd.DataFrame, discrete_columns: Any = ()) -> FastDataTransformer:
        """Fit one spec per column of ``frame``; ``discrete_columns`` are one-hot encoded."""
        discrete = set(discrete_columns)
        unknown = [c for c in discrete if c not in frame.columns]
        problems = [
            FieldViolation(f"discrete_columns[{c!r}]", "not a column of the table") for c in sorted(map(str, unknown))
        ]
        problems += _check_frame(frame, discrete)
        if problems:
            raise InvalidArgument(
                "cannot fit the data transformer: " + "; ".join(p.description for p in problems),
                violations=problems,
            )
        columns: list[_Continuous | _Discrete] = []
        for index, name in enumerate(frame.columns):
            series = frame[name]
            if name in discrete:
                columns.append(_fit_discrete(name, series))
            else:
                rng = np.random.default_rng([self.seed, 0, index])
                columns.append(self._fit_continuous(name, series, rng))
        self._set_columns(columns)
        return self

    def _fit_continuous(self, name: str, series: pd.Series, rng: np.random.Generator) -> _Continuous:
        values = _as_float(series)
        present = values[~np.isnan(values)]
        if present.size > self.sample_rows:
            pick = np.sort(rng.choice(present.size, size=self.sample_rows, replace=False))
            fit_values = present[pick]
        else:
            fit_values = present
        n_components = min(fit_values.size, self.max_clusters)
        if fit_values.size >= 2:
            mixture = fit_bgm(fit_values, n_components, _KMEANS_RANDOM_STATE)
            means, stds, prec, offset, weights = (
                mixture.means,
                mixture.stds,
                mixture.precision_chol,
                mixture.log_offset,
                mixture.weights,
            )
        else:  # a single present value: one unit-width component around it
            means = np.array([float(fit_values[0])])
            stds = np.ones(1)
            prec = np.ones(1)
            offset = np.zeros(1)
            weights = np.ones(1)
        valid = weights > self.weight_threshold
        if not valid.any():  # cannot happen with threshold < 1/max_clusters, but never emit an empty span
            valid[int(np.argmax(weights))] = True
        return _Continuous(
            name=name,
            dtype=str(series.dtype),
            fill_value=float(present.mean()),
            has_nulls=bool(present.size < values.size),
            means=means,
            stds=stds,
            precision_chol=prec,
            log_offset=offset,
            weights=weights,
            valid=valid,
        )

    def _set_columns(self, columns: list[_Continuous | _Discrete]) -> None:
        self._columns = columns
        self.output_info_list = [column.spans() for column in columns]
        self.output_dimensions = sum(span.dim for spans in self.output_info_list for span in spans)

    # ------------------------------------------------------------ accessors

    @property
    def columns(self) -> list[str]:
        return [column.name for column in self._columns]

    @property
    def discrete_columns(self) -> list[str]:
        return [column.name for column in self._columns if isinstance(column, _Discrete)]

    def discrete_category_counts(self) -> list[np.ndarray]:
        """Rows per category of each discrete column, in layout order (for the conditional vector)."""
        return [column.counts.copy() for column in self._columns if isinstance(column, _Discrete)]

    def category_values(self, column: str) -> list[Any]:
        """The categories of a discrete column, in one-hot order (``None`` is the missing value)."""
        return list(self._discrete(column).categories)

    def convert_column_name_value_to_id(self, column_name: str, value: Any) -> dict[str, int]:
        """As ctgan's: which discrete column (among discrete ones), which column, which category."""
        discrete_id = 0
        for column_id, column in enumerate(self._columns):
            if column.name == column_name:
                if not isinstance(column, _Discrete):
                    raise InvalidArgument(
                        f"column {column_name!r} is not discrete",
                        violations=[FieldViolation("condition.column", "not a discrete column")],
                    )
                return {
                    "discrete_column_id": discrete_id,
                    "column_id": column_id,
                    "value_id": _category_index(column, value),
                }
            if isinstance(column, _Discrete):
                discrete_id += 1
        raise InvalidArgument(
            f"the column {column_name!r} does not exist in the data",
            violations=[FieldViolation("condition.column", "unknown column")],
        )

    def _discrete(self, name: str) -> _Discrete:
        for column in self._columns:
            if column.name == name and isinstance(column, _Discrete):
                return column
        raise InvalidArgument(
            f"{name!r} is not a discrete column of this model",
            violations=[FieldViolation("condition.column", "not a discrete column of the model")],
        )

    # ------------------------------------------------------------ transform

    def transform_codes(self, frame: pd.DataFrame, *, rng: np.random.Generator | int | None = None) -> EncodedTable:
        """Encode ``frame`` into the compact form; component choices are drawn from ``rng``.

        ``rng`` may be a Generator or a seed; by default it is derived from the
        transformer's seed, so the same transformer encodes the same frame the same way.
        """
        generator = _generator(rng, self.seed)
        missing = [name for name in self.columns if name not in frame.columns]
        if missing:
            raise InvalidArgument(
                f"the table lacks columns the transformer was fitted on: {missing}",
                violations=[FieldViolation(f"columns[{name!r}]", "missing") for name in missing],
            )
        n = len(frame)
        n_tanh = sum(1 for spans in self.output_info_list for s in spans if s.activation_fn == "tanh")
        n_soft = sum(1 for spans in self.output_info_list for s in spans if s.activation_fn == "softmax")
        alphas = np.empty((n, n_tanh), dtype=np.float32)
        codes = np.empty((n, n_soft), dtype=np.int32)
        t = s = 0
        for column in self._columns:
            if isinstance(column, _Continuous):
                values = _as_float(frame[column.name])
                alpha, component, is_null = _encode_continuous(column, values, generator)
                alphas[:, t] = alpha
                codes[:, s] = component
                t += 1
                s += 1
                if column.has_nulls:
                    codes[:, s] = is_null
                    s += 1
            else:
                codes[:, s] = _encode_discrete(column, frame[column.name])
                s += 1
        return EncodedTable(alphas=alphas, codes=codes)

    def transform(self, frame: pd.DataFrame, *, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """The dense matrix in ctgan's layout (float32)."""
        encoded = self.transform_codes(frame, rng=rng)
        return self.codes_to_matrix(encoded)

    def codes_to_matrix(self, encoded: EncodedTable) -> np.ndarray:
        tanh_cols, span_starts, _ = self._layout_arrays()
        n = encoded.alphas.shape[0]
        out = np.zeros((n, self.output_dimensions), dtype=np.float32)
        out[:, tanh_cols] = encoded.alphas
        rows = np.arange(n)
        for s, start in enumerate(span_starts):
            code = encoded.codes[:, s]
            seen = code >= 0
            out[rows[seen], start + code[seen]] = 1.0
        return out

    def _layout_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tanh_cols, starts, dims = [], [], []
        position = 0
        for spans in self.output_info_list:
            for span in spans:
                if span.activation_fn == "tanh":
                    tanh_cols.append(position)
                else:
                    starts.append(position)
                    dims.append(span.dim)
                position += span.dim
        return np.array(tanh_cols, dtype=np.int64), np.array(starts, dtype=np.int64), np.array(dims, dtype=np.int64)

    # ---------------------------------------------------- inverse transform

    def inverse_transform(self, data: np.ndarray) -> pd.DataFrame:
        """Decode a dense matrix (ctgan layout): argmax per softmax span, tanh value clipped to [-1, 1]."""
        data = np.asarray(data)
        tanh_cols, starts, dims = self._layout_arrays()
        alphas = data[:, tanh_cols]
        codes = np.empty((data.shape[0], starts.size), dtype=np.int64)
        for s, (start, dim) in enumerate(zip(starts, dims, strict=True)):
            codes[:, s] = np.argmax(data[:, start : start + dim], axis=1)
        return self.inverse_transform_codes(alphas, codes)

    def inverse_transform_codes(self, alphas: np.ndarray, codes: np.ndarray) -> pd.DataFrame:
        """Decode the compact form into a DataFrame with the fitted columns and dtypes."""
        out: dict[str, Any] = {}
        for column, values in zip(self._columns, self.decode_codes(alphas, codes), strict=True):
            if isinstance(column, _Continuous):
                out[column.name] = _restore_numeric(values, column.dtype)
            else:
                out[column.name] = _restore_categories(column, values)
        return pd.DataFrame(out, columns=self.columns)

    def decode_codes(self, alphas: np.ndarray, codes: np.ndarray) -> list[np.ndarray]:
        """The compact form as plain arrays, one per column in fitted order: a
        continuous column's float64 values (NaN where missing), a discrete
        column's indices into ``category_values(name)``."""
        out: list[np.ndarray] = []
        t = s = 0
        for column in self._columns:
            if isinstance(column, _Continuous):
                normalized = np.clip(np.asarray(alphas[:, t], dtype=np.float64), -1.0, 1.0)
                component = np.clip(np.asarray(codes[:, s]), 0, column.n_components - 1)
                means = column.means[column.valid]
                stds = column.stds[column.valid]
                values = normalized * STD_MULTIPLIER * stds[component] + means[component]
                t += 1
                s += 1
                if column.has_nulls:
                    values[np.asarray(codes[:, s]) == 1] = np.nan
                    s += 1
                out.append(values)
            else:
                out.append(np.clip(np.asarray(codes[:, s]), 0, len(column.categories) - 1))
                s += 1
        return out

    # ---------------------------------------------------------------- state

    def to_state(self) -> dict[str, Any]:
        """The whole fitted state as a JSON-able dict (floats round-trip exactly through ``json``)."""
        columns: list[dict[str, Any]] = []
        for column in self._columns:
            if isinstance(column, _Continuous):
                columns.append(
                    {
                        "name": column.name,
                        "kind": "continuous",
                        "dtype": column.dtype,
                        "fill_value": column.fill_value,
                        "has_nulls": column.has_nulls,
                        "means": column.means.tolist(),
                        "stds": column.stds.tolist(),
                        "precision_chol": column.precision_chol.tolist(),
                        "log_offset": column.log_offset.tolist(),
                        "weights": column.weights.tolist(),
                        "valid": column.valid.tolist(),
                    }
                )
            else:
                columns.append(
                    {
                        "name": column.name,
                        "kind": "discrete",
                        "dtype": column.dtype,
                        "has_null": column.has_null,
                        "categories": [_encode_value(v) for v in column.categories],
                        "counts": column.counts.tolist(),
                    }
                )
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "max_clusters": self.max_clusters,
            "weight_threshold": self.weight_threshold,
            "sample_rows": self.sample_rows,
            "seed": self.seed,
            "columns": columns,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FastDataTransformer:
        """Rebuild a fitted transformer; raises ``ValueError``/``KeyError`` on a malformed state."""
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported transformer state {state.get('format')!r} v{state.get('version')!r}")
        transformer = cls(
            max_clusters=state["max_clusters"],
            weight_threshold=state["weight_threshold"],
            sample_rows=state["sample_rows"],
            seed=state["seed"],
        )
        columns: list[_Continuous | _Discrete] = []
        for item in state["columns"]:
            if item["kind"] == "continuous":
                column = _Continuous(
                    name=str(item["name"]),
                    dtype=str(item["dtype"]),
                    fill_value=float(item["fill_value"]),
                    has_nulls=bool(item["has_nulls"]),
                    means=np.array(item["means"], dtype=np.float64),
                    stds=np.array(item["stds"], dtype=np.float64),
                    precision_chol=np.array(item["precision_chol"], dtype=np.float64),
                    log_offset=np.array(item["log_offset"], dtype=np.float64),
                    weights=np.array(item["weights"], dtype=np.float64),
                    valid=np.array(item["valid"], dtype=bool),
                )
                sizes = {column.means.size, column.stds.size, column.precision_chol.size}
                sizes |= {column.log_offset.size, column.weights.size, column.valid.size}
                if len(sizes) != 1 or column.n_components == 0:
                    raise ValueError(f"inconsistent mixture for column {column.name!r}")
                columns.append(column)
            elif item["kind"] == "discrete":
                categories = [_decode_value(v) for v in item["categories"]]
                counts = np.array(item["counts"], dtype=np.int64)
                if not categories or counts.shape != (len(categories),):
                    raise ValueError(f"inconsistent categories for column {item['name']!r}")
                columns.append(
                    _Discrete(
                        name=str(item["name"]),
                        dtype=str(item["dtype"]),
                        categories=categories,
                        has_null=bool(item["has_null"]),
                        counts=counts,
                    )
                )
            else:
                raise ValueError(f"unknown column kind {item['kind']!r}")
        transformer._set_columns(columns)
        return transformer
