"""A Gaussian copula synthesizer, written here with numpy and scipy.

Fast (a fit is a few passes over the table, no training loop) and a strong
baseline on small tables: every column's marginal is reproduced by
construction, and the pairwise dependence through one correlation matrix of
normal scores.

* A numeric column (continuous or datetime, as the codec's training view gives
  them: float64, NaN missing) is mapped to normal scores through its empirical
  CDF. Ties (point masses such as Adult's ``capital_gain = 0``) get scores
  spread uniformly over their CDF interval, so the latent stays continuous.
  Its marginal is stored as ``_KNOTS`` quantiles (never more than the rows
  allow, so small tables do not store every value) and sampled back by linear
  interpolation. A column with missing values gets one more latent: a
  present/missing indicator, so missingness can correlate with other columns.
* A discrete column is mapped like SDV's frequency encoding: its categories,
  most frequent first, split [0, 1) into intervals of their frequencies; a
  row's score is a uniform draw inside its category's interval, through the
  normal quantile function. Sampling maps a score back to its interval.
* The correlation matrix of all scores, shrunk a little towards the identity
  so it is always positive definite, gives the joint. Sampling draws
  ``z = L e`` (``L`` its Cholesky factor).

A condition "column = category" is met exactly and cheaply: the column's score
is drawn from the normal truncated to the category's interval, and the others
from their Gaussian conditional on it.

The fitted state is plain JSON (lists of numbers and category values); a
model is data, never code. Pieces follow the same seed rules as the CTGAN
model: piece ``p`` depends only on ``(seed, p)`` and the condition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from services.common.errors import DataLoss, FieldViolation, InvalidArgument

STATE_FORMAT = "synth.gaussian-copula"
STATE_VERSION = 1
_KNOTS = 256  # quantiles stored per numeric column
_MIN_ROWS_PER_KNOT = 4  # small tables store fewer knots than rows, never every value
_SHRINK = 0.01  # correlation shrinkage towards the identity
_PIECE_ROWS = 5_000
_MAX_SEED = 2**63 - 1
_EPS = 1e-9


@dataclass
class _Numeric:
    name: str
    quantiles: np.ndarray  # at probabilities linspace(0, 1, len)
    missing_rate: float


@dataclass
class _Categorical:
    name: str
    categories: list[Any]  # most frequent first; None is the missing category
    cumulative: np.ndarray  # upper edge of each category's interval in [0, 1]


def _ndtri(u: np.ndarray) -> np.ndarray:
    return special.ndtri(np.clip(u, _EPS, 1 - _EPS))


def _fit_numeric(name: str, values: np.ndarray, rng: np.random.Generator) -> tuple[_Numeric, np.ndarray, np.ndarray]:
    """The column's marginal, its scores (NaN where missing) and its missing indicator."""
    missing = np.isnan(values)
    present = values[~missing]
    n = present.size
    scores = np.full(values.size, np.nan)
    if n == 0:
        return _Numeric(name, np.zeros(0), 1.0), scores, missing
    knots = int(max(2, min(_KNOTS, n // _MIN_ROWS_PER_KNOT)))
    quantiles = np.quantile(present, np.linspace(0.0, 1.0, knots))
    # empirical CDF interval of each value (ties share one), a uniform draw inside it
    order = np.sort(present)
    low = np.searchsorted(order, present, side="left") / n
    high = np.searchsorted(order, present, side="right") / n
    scores[~missing] = _ndtri(low + (high - low) * rng.random(n))
    return _Numeric(name, quantiles, float(missing.mean())), scores, missing


def _fit_categorical(name: str, series: pd.Series, rng: np.random.Generator) -> tuple[_Categorical, np.ndarray]:
    values = series.astype(object).where(series.notna(), None)
    counts = values.value_counts(dropna=False, sort=False)
    # most frequent first, ties in first-seen order (value_counts keeps it with sort=False)
    ranked = sorted(range(len(counts)), key=lambda i: -int(counts.iloc[i]))
    categories = [None if pd.isna(counts.index[i]) else counts.index[i] for i in ranked]
    sizes = np.array([int(counts.iloc[i]) for i in ranked], dtype=np.float64)
    cumulative = np.cumsum(sizes) / sizes.sum()
    cumulative[-1] = 1.0
    index = pd.Index(categories, dtype=object)
    codes = index.get_indexer(values.to_numpy(dtype=object))
    low = np.concatenate([[0.0], cumulative[:-1]])[codes]
    high = cumulative[codes]
    return _Categorical(name, categories, cumulative), _ndtri(low + (high - low) * rng.random(len(values)))


class GaussianCopula:
    """A fitted Gaussian copula; the sampler's engine contract (see ``model.SynthesisModel``)."""

    engine = "copula"

    def __init__(
        self,
        columns: list[_Numeric | _Categorical],
        correlation: np.ndarray,
        latent_of: list[list[int]],
    ) -> None:
        self._columns = columns
        self._by_name = {c.name: c for c in columns}
        self.correlation = correlation
        self._latent_of = latent_of  # per column: its latent indices (a numeric column may have 2)
        self._cholesky = np.linalg.cholesky(correlation)
        categorical = [c for c in columns if isinstance(c, _Categorical)]
        self._discrete = [c.name for c in categorical]
        offsets = np.cumsum([0] + [len(c.categories) for c in categorical])
        self._cond_offsets = offsets[:-1]
        self._cond_dim = int(offsets[-1])
        self.piece_rows = _PIECE_ROWS
        # set by the trainer (and by load_model): the TrainingConfig and ModelMetadata
        self.config: Any = None
        self.metadata: Any = None
        # the training columns' value support (support.SupportRules), set when loaded
        self.support: Any = None
        # calibration.MarginCalibration of the numeric columns, set when loaded
        self.calibration: Any = None

    # ------------------------------------------------------------------ fit

    @classmethod
    def fit(cls, frame: pd.DataFrame, discrete_columns: Sequence[str], seed: int) -> GaussianCopula:
        """Fit on ``frame`` (the codec's training view); ``seed`` makes the tie-breaking draws reproducible."""
        if len(frame) < 2:
            raise InvalidArgument(
                f"the Gaussian copula needs at least 2 training rows, got {len(frame)}",
                violations=[FieldViolation("dataset", "fewer than 2 training rows")],
            )
        discrete = set(discrete_columns)
        rng = np.random.Generator(np.random.PCG64(seed))
        columns: list[_Numeric | _Categorical] = []
        latents: list[np.ndarray] = []
        latent_of: list[list[int]] = []
        for name in frame.columns:
            if name in discrete:
                column, scores = _fit_categorical(str(name), frame[name], rng)
                columns.append(column)
                latent_of.append([len(latents)])
                latents.append(scores)
                continue
            numeric, scores, missing = _fit_numeric(str(name), frame[name].to_numpy(dtype=np.float64), rng)
            columns.append(numeric)
            indices = [len(latents)]
            # a missing value's score is unknown: an independent draw keeps the
            # column's own variance and only weakens its correlations
            latents.append(np.where(missing, rng.standard_normal(missing.size), scores))
            if 0.0 < numeric.missing_rate < 1.0:
                # the indicator as a two-category latent: present first
                rate = numeric.missing_rate
                low = np.where(missing, 1.0 - rate, 0.0)
                high = np.where(missing, 1.0, 1.0 - rate)
                indices.append(len(latents))
                latents.append(_ndtri(low + (high - low) * rng.random(missing.size)))
            latent_of.append(indices)
        matrix = np.column_stack(latents) if latents else np.zeros((len(frame), 0))
        correlation = _shrunk_correlation(matrix)
        return cls(columns, correlation, latent_of)

    # ------------------------------------------------------- the engine contract

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self._columns]

    @property
    def discrete_columns(self) -> list[str]:
        return list(self._discrete)

    def category_values(self, column: str) -> list[Any]:
        spec = self._by_name.get(column)
        if not isinstance(spec, _Categorical):
            raise InvalidArgument(f"{column!r} is not a discrete column of this model")
        return list(spec.categories)

    def condition_position(self, condition: Any) -> int | None:
        """Where ``column = value`` sits among all discrete categories (None: no condition)."""
        if condition is None:
            return None
        spec = self._by_name.get(condition.column)
        if not isinstance(spec, _Categorical):
            raise InvalidArgument(
                f"{condition.column!r} is not a discrete column of this model",
                violations=[FieldViolation("conditions.column", "not a discrete column")],
            )
        wanted = None if condition.value is None else str(condition.value)
        texts = [None if c is None else str(c) for c in spec.categories]
        if wanted not in texts:
            raise InvalidArgument(
                f"value {condition.value!r} was not seen in column {condition.column!r}",
                violations=[FieldViolation("conditions.value", "unseen value")],
            )
        return int(self._cond_offsets[self._discrete.index(spec.name)]) + texts.index(wanted)

    def size_bytes(self) -> int:
        return int(self.correlation.nbytes * 2 + sum(c.quantiles.nbytes for c in self._numeric()) + 4096)

    def to(self, device: Any) -> GaussianCopula:
        return self  # numpy only

    def decoded_piece(self, seed: int, piece: int, fixed: int | None) -> list[np.ndarray]:
        """Piece ``piece`` of ``seed``: one array per column, as ``transformer.decode_codes`` gives
        (float64 with NaN for numeric columns, category indices for discrete ones)."""
        rng = np.random.Generator(np.random.PCG64(_piece_seed(seed, piece)))
        rows = self.piece_rows
        z = rng.standard_normal((rows, self.correlation.shape[0])) @ self._cholesky.T
        if fixed is not None:
            z = self._condition(z, fixed, rng)
        u = special.ndtr(z)
        out: list[np.ndarray] = []
        for column, latent in zip(self._columns, self._latent_of, strict=True):
            if isinstance(column, _Categorical):
                code = np.searchsorted(column.cumulative, u[:, latent[0]], side="right")
                out.append(np.minimum(code, len(column.categories) - 1))
                continue
            if column.quantiles.size == 0:
                out.append(np.full(rows, np.nan))
                continue
            grid = np.linspace(0.0, 1.0, column.quantiles.size)
            values = np.interp(u[:, latent[0]], grid, column.quantiles)
            if len(latent) > 1:
                values[u[:, latent[1]] >= 1.0 - column.missing_rate] = np.nan
            out.append(values)
        return out

    def _condition(self, z: np.ndarray, fixed: int, rng: np.random.Generator) -> np.ndarray:
        """Redraw ``z`` given that the fixed category's latent lies in its interval."""
        which = int(np.searchsorted(self._cond_offsets, fixed, side="right") - 1)
        spec = self._by_name[self._discrete[which]]
        assert isinstance(spec, _Categorical)
        category = fixed - int(self._cond_offsets[which])
        j = self._latent_of[self.columns.index(spec.name)][0]
        low = 0.0 if category == 0 else float(spec.cumulative[category - 1])
        high = float(spec.cumulative[category])
        zj = _ndtri(low + (high - low) * rng.random(len(z)))  # truncated standard normal
        sigma = self.correlation
        # z | z_j: mean sigma[:, j] z_j, covariance sigma - sigma[:, j] sigma[j, :];
        # z - sigma[:, j] z_j(original) has that covariance and is independent of z_j(original)
        return z + np.outer(zj - z[:, j], sigma[:, j])

    def _numeric(self) -> list[_Numeric]:
        return [c for c in self._columns if isinstance(c, _Numeric)]

    # ----------------------------------------------------------------- state

    def to_state(self) -> dict[str, Any]:
        columns: list[dict[str, Any]] = []
        for column in self._columns:
            if isinstance(column, _Categorical):
                columns.append(
                    {
                        "name": column.name,
                        "kind": "categorical",
                        "categories": [None if c is None else str(c) for c in column.categories],
                        "cumulative": column.cumulative.tolist(),
                    }
                )
            else:
                columns.append(
                    {
                        "name": column.name,
                        "kind": "numeric",
                        "quantiles": column.quantiles.tolist(),
                        "missing_rate": column.missing_rate,
                    }
                )
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "columns": columns,
            "latent_of": self._latent_of,
            "correlation": self.correlation.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GaussianCopula:
        try:
            if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
                raise ValueError(f"not a {STATE_FORMAT} v{STATE_VERSION} state")
            columns: list[_Numeric | _Categorical] = []
            for item in state["columns"]:
                if item["kind"] == "categorical":
                    cumulative = np.asarray(item["cumulative"], dtype=np.float64)
                    if len(item["categories"]) != cumulative.size or cumulative.size == 0:
                        raise ValueError(f"column {item['name']!r}: categories and cumulative differ in length")
                    columns.append(_Categorical(str(item["name"]), list(item["categories"]), cumulative))
                elif item["kind"] == "numeric":
                    quantiles = np.asarray(item["quantiles"], dtype=np.float64)
                    columns.append(_Numeric(str(item["name"]), quantiles, float(item["missing_rate"])))
                else:
                    raise ValueError(f"unknown column kind {item['kind']!r}")
            latent_of = [[int(i) for i in entry] for entry in state["latent_of"]]
            correlation = np.asarray(state["correlation"], dtype=np.float64)
            width = sum(len(entry) for entry in latent_of)
            if len(latent_of) != len(columns) or correlation.shape != (width, width):
                raise ValueError("the correlation matrix does not match the columns")
            return cls(columns, correlation, latent_of)
        except (KeyError, TypeError, ValueError, np.linalg.LinAlgError) as exc:
            raise DataLoss(f"Gaussian copula state is malformed: {exc}") from None


def _shrunk_correlation(matrix: np.ndarray) -> np.ndarray:
    width = matrix.shape[1]
    if width == 0:
        return np.zeros((0, 0))
    if width == 1 or matrix.shape[0] < 3:
        return np.eye(width)
    correlation = np.corrcoef(matrix, rowvar=False)
    correlation = np.nan_to_num(correlation, nan=0.0)
    np.fill_diagonal(correlation, 1.0)
    correlation = (1 - _SHRINK) * correlation + _SHRINK * np.eye(width)
    # eigenvalues clipped: rounding can leave the matrix a hair from definite
    values, vectors = np.linalg.eigh(correlation)
    correlation = (vectors * np.maximum(values, 1e-6)) @ vectors.T
    scale = np.sqrt(np.diag(correlation))
    return correlation / np.outer(scale, scale)


def _piece_seed(seed: int, piece: int) -> int:
    digest = hashlib.blake2b(f"copula:{seed}:{piece}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MAX_SEED
