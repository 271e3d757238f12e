"""Statistical fidelity: how closely a table's distributions follow the real training rows.

Every measure is invariant to the units of a column (multiplying a column by 1e6 in both tables
changes nothing): KS and the binned KL work on ranks/quantiles, summary statistics are expressed
in units of the real column's standard deviation, and correlations are unit-free.
Formulas and thresholds: METRICS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp
from threadpoolctl import threadpool_limits

from services.common.quality.encoding import ColumnSet, Prepared
from services.common.quality.report import Histogram, Matrix
from services.common.schema import ColumnKind

__all__ = [
    "FidelityNumbers",
    "association_matrix",
    "compare",
    "correlation_ratio",
    "cramers_v",
    "histograms",
    "kl_divergence",
    "ks_complement",
    "pearson",
    "summary_stats_mse",
    "tv_complement",
]

KL_BINS = 20
KL_SMOOTHING = 0.5
# Floor on the real association strength that normalises the column-pair score.
MIN_ASSOCIATION = 0.05
HISTOGRAM_BINS = 20
HISTOGRAM_CATEGORIES = 20
_STAT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _present(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def ks_complement(real: np.ndarray, other: np.ndarray) -> float:
    """1 - the two-sample Kolmogorov-Smirnov statistic on the present values (sdmetrics' KSComplement).
    NaN when the real column has no values; 0 when only the other one has none."""
    r, o = _present(real), _present(other)
    if len(r) == 0:
        return float("nan")
    if len(o) == 0:
        return 0.0
    # the statistic does not depend on the p-value method; "asymp" skips the slow exact p-value
    return float(1.0 - ks_2samp(r, o, method="asymp").statistic)


def tv_complement(real: np.ndarray, other: np.ndarray) -> float:
    """1 - total variation distance between the category frequencies, missing values left out
    (sdmetrics' TVComplement). ``real`` and ``other`` are codes of one code space."""
    r, o = real[real >= 0], other[other >= 0]
    if len(r) == 0:
        return float("nan")
    if len(o) == 0:
        return 0.0
    size = int(max(r.max(), o.max())) + 1
    p = np.bincount(r, minlength=size) / len(r)
    q = np.bincount(o, minlength=size) / len(o)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def _kl(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    keep = (p_counts + q_counts) > 0
    p = p_counts[keep] + KL_SMOOTHING
    q = q_counts[keep] + KL_SMOOTHING
    p, q = p / p.sum(), q / q.sum()
    return float(max(0.0, np.sum(p * np.log(p / q))))


def _numeric_bins(real: np.ndarray) -> np.ndarray:
    """Interior bin edges: the real column's deciles-of-twenty, taken from its values
    (``inverted_cdf``), so rescaling a column moves edges and values together."""
    r = _present(real)
    if len(r) == 0:
        return np.empty(0)
    qs = np.quantile(r, np.linspace(0, 1, KL_BINS + 1)[1:-1], method="inverted_cdf")
    return np.unique(qs)


def _binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    missing = np.isnan(values)
    bins = np.searchsorted(edges, values[~missing], side="right")
    return np.append(np.bincount(bins, minlength=len(edges) + 1), missing.sum())


def kl_divergence(real: np.ndarray, other: np.ndarray, numeric: bool) -> float:
    """KL(real || other) in nats over the real column's quantile bins (numbers) or the categories,
    missing values as one more bin, each bin count smoothed by +0.5 (bins empty in both dropped)."""
    if numeric:
        edges = _numeric_bins(real)
        return _kl(_binned(real, edges), _binned(other, edges))
    size = int(max(real.max(initial=-1), other.max(initial=-1))) + 2
    return _kl(np.bincount(real + 1, minlength=size), np.bincount(other + 1, minlength=size))


def _stats(values: np.ndarray) -> np.ndarray:
    return np.concatenate([[values.mean(), values.std()], np.quantile(values, _STAT_QUANTILES)])


def summary_stats_mse(real: np.ndarray, other: np.ndarray) -> float:
    """Mean squared difference of (mean, std, 5/25/50/75/95th percentiles), each difference divided
    by the real column's standard deviation (its |mean| if constant, else 1). A column with no values
    in ``other`` counts as one standard deviation off on every statistic."""
    r, o = _present(real), _present(other)
    if len(r) == 0:
        return float("nan")
    if len(o) == 0:
        return 1.0
    unit = float(r.std())
    if not unit > 0:
        unit = abs(float(r.mean())) or 1.0
    return float(np.mean(((_stats(o) - _stats(r)) / unit) ** 2))


# ---------------------------------------------------------------------------------------------
# Associations
# ---------------------------------------------------------------------------------------------


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r on the rows where both are present; NaN if either is constant there."""
    m = ~(np.isnan(x) | np.isnan(y))
    x, y = x[m], y[m]
    if len(x) < 2:
        return float("nan")
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if not den > 0:
        return float("nan")
    return float(np.clip(np.dot(x, y) / den, -1.0, 1.0))


def _dense(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes renumbered 0..k-1 over the categories present."""
    present = np.bincount(codes) > 0
    mapping = np.cumsum(present) - 1
    return mapping[codes], int(present.sum())


def _cramers_v_dense(ai: np.ndarray, r: int, bi: np.ndarray, c: int) -> float:
    if min(r, c) < 2:
        return float("nan")
    n = len(ai)
    table = np.bincount(ai * c + bi, minlength=r * c).reshape(r, c).astype(np.float64)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(min(1.0, np.sqrt(chi2 / (n * (min(r, c) - 1)))))


def cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramér's V (no bias correction) on the rows where both are present; NaN if either has one category."""
    m = (a >= 0) & (b >= 0)
    if m.sum() < 2:
        return float("nan")
    return _cramers_v_dense(*_dense(a[m]), *_dense(b[m]))


def _eta_dense(c: np.ndarray, k: int, y: np.ndarray, counts: np.ndarray | None = None) -> float:
    mean = y.mean()
    total = float(((y - mean) ** 2).sum())
    if not total > 0:
        return float("nan")
    counts = np.bincount(c, minlength=k) if counts is None else counts
    sums = np.bincount(c, weights=y, minlength=k)
    between = float((counts * (sums / counts - mean) ** 2).sum())
    return float(np.sqrt(min(1.0, between / total)))


def correlation_ratio(codes: np.ndarray, values: np.ndarray) -> float:
    """Correlation ratio eta = sqrt(between-category variance / total variance) of a number across
    categories, on the rows where both are present; NaN if the number is constant there."""
    m = (codes >= 0) & ~np.isnan(values)
    if m.sum() < 2:
        return float("nan")
    c, k = _dense(codes[m])
    return _eta_dense(c, k, values[m])


def association_matrix(columns: ColumnSet, frame: Prepared) -> np.ndarray:
    """Symmetric matrix over ``columns.names``: Pearson's r for two numbers, Cramér's V for two
    categories, the correlation ratio for a number and a category; 1 on the diagonal."""
    names = columns.names
    k = len(names)
    out = np.eye(k)
    numeric = {n: columns.is_numeric(n) for n in names}
    complete = {n for n in names if not frame.missing(n).any()}
    # Columns without missing values: dense codes (and their counts) computed once, not per pair.
    dense = {n: _dense(frame.codes[n]) for n in names if not numeric[n] and n in complete and frame.rows}
    counts = {n: np.bincount(d, minlength=m) for n, (d, m) in dense.items()}
    fast: dict[tuple[str, str], float] = {}
    full_numeric = [n for n in names if numeric[n] and n in complete]
    if len(full_numeric) >= 2 and frame.rows >= 2:
        stack = np.vstack([frame.numeric[n] for n in full_numeric])
        # One BLAS thread: multithreaded OpenBLAS on this thin product (columns x rows x columns) can be
        # 100x slower than one thread when the cores are busy.
        with np.errstate(invalid="ignore", divide="ignore"), threadpool_limits(1, user_api="blas"):
            corr = np.corrcoef(stack)
        for i, a in enumerate(full_numeric):
            for j in range(i + 1, len(full_numeric)):
                fast[(a, full_numeric[j])] = float(np.clip(corr[i, j], -1, 1))
    for i, a in enumerate(names):
        for j in range(i + 1, k):
            b = names[j]
            both = a in complete and b in complete and frame.rows >= 2
            if numeric[a] and numeric[b]:
                v = fast.get((a, b))
                if v is None:
                    v = pearson(frame.numeric[a], frame.numeric[b])
            elif not numeric[a] and not numeric[b]:
                v = _cramers_v_dense(*dense[a], *dense[b]) if both else cramers_v(frame.codes[a], frame.codes[b])
            else:
                cat, num = (b, a) if numeric[a] else (a, b)
                if both:
                    v = _eta_dense(dense[cat][0], dense[cat][1], frame.numeric[num], counts[cat])
                else:
                    v = correlation_ratio(frame.codes[cat], frame.numeric[num])
            out[i, j] = out[j, i] = v
    return out


def _pair_values(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(matrix.shape[0], k=1)]


# ---------------------------------------------------------------------------------------------
# One comparison: a table against the real training rows
# ---------------------------------------------------------------------------------------------


@dataclass
class FidelityNumbers:
    ks: dict[str, float]  # numeric columns: KS complement
    tv: dict[str, float]  # categorical columns: TV complement
    kl: dict[str, float]
    stats_mse: dict[str, float]  # numeric columns
    associations: np.ndarray
    correlation_difference: float  # mean |assoc(other) - assoc(real)| over pairs
    real_association: float  # mean |assoc(real)| over the same pairs
    column_shapes: float  # mean of ks and tv over every column
    column_pairs: float  # 1 - difference / max(real_association, MIN_ASSOCIATION), clipped
    fidelity_score: float

    @staticmethod
    def _mean(values: dict[str, float]) -> float:
        xs = [v for v in values.values() if np.isfinite(v)]
        return float(np.mean(xs)) if xs else float("nan")

    @property
    def ks_mean(self) -> float:
        return self._mean(self.ks)

    @property
    def tv_mean(self) -> float:
        return self._mean(self.tv)

    @property
    def kl_mean(self) -> float:
        return self._mean(self.kl)

    @property
    def stats_mse_mean(self) -> float:
        return self._mean(self.stats_mse)


def compare(columns: ColumnSet, real: Prepared, other: Prepared, real_associations: np.ndarray) -> FidelityNumbers:
    ks: dict[str, float] = {}
    tv: dict[str, float] = {}
    kl: dict[str, float] = {}
    mse: dict[str, float] = {}
    for col in columns.names:
        if columns.is_numeric(col):
            ks[col] = ks_complement(real.numeric[col], other.numeric[col])
            kl[col] = kl_divergence(real.numeric[col], other.numeric[col], numeric=True)
            mse[col] = summary_stats_mse(real.numeric[col], other.numeric[col])
        else:
            tv[col] = tv_complement(real.codes[col], other.codes[col])
            kl[col] = kl_divergence(real.codes[col], other.codes[col], numeric=False)
    assoc = association_matrix(columns, other)
    r_pairs, o_pairs = _pair_values(real_associations), _pair_values(assoc)
    defined = np.isfinite(r_pairs)
    # A pair undefined in the other table (a constant column there) counts as no association.
    diffs = np.abs(np.nan_to_num(o_pairs[defined], nan=0.0) - r_pairs[defined])
    if len(diffs):
        difference = float(diffs.mean())
        strength = float(np.abs(r_pairs[defined]).mean())
        pairs = float(np.clip(1.0 - difference / max(strength, MIN_ASSOCIATION), 0.0, 1.0))
    else:
        difference = strength = pairs = float("nan")
    shapes_list = [v for v in [*ks.values(), *tv.values()] if np.isfinite(v)]
    shapes = float(np.mean(shapes_list)) if shapes_list else float("nan")
    parts = [x for x in (shapes, pairs) if np.isfinite(x)]
    return FidelityNumbers(
        ks=ks,
        tv=tv,
        kl=kl,
        stats_mse=mse,
        associations=assoc,
        correlation_difference=difference,
        real_association=strength,
        column_shapes=shapes,
        column_pairs=pairs,
        fidelity_score=float(np.mean(parts)) if parts else float("nan"),
    )


def correlation_matrices(columns: ColumnSet, real: np.ndarray, synthetic: np.ndarray) -> tuple[Matrix, ...]:
    names = list(columns.names)
    return (
        Matrix(names, [float(x) for x in real.ravel()]),
        Matrix(names, [float(x) for x in synthetic.ravel()]),
        Matrix(names, [float(x) for x in (synthetic - real).ravel()]),
    )


# ---------------------------------------------------------------------------------------------
# Chart data
# ---------------------------------------------------------------------------------------------


def _edge_label(x: float, kind: ColumnKind) -> str:
    if kind is ColumnKind.DATETIME:
        return str(np.datetime64(int(round(x)), "s")).replace("T", " ")
    return f"{x:.6g}"


def histograms(columns: ColumnSet, vocabulary: dict[str, list[str]], frames: dict[str, Prepared]) -> list[Histogram]:
    """Per column: shares of the real ("train"), "synthetic" and "baseline" rows per bin. Numbers:
    20 equal-width bins over the real range (values outside it fall in the end bins); categories:
    the 20 most frequent real categories, then "(other)" and "(missing)" when present."""
    out = []
    real, synth, base = frames["train"], frames["synthetic"], frames["baseline"]
    for col in columns.names:
        if columns.is_numeric(col):
            r = _present(real.numeric[col])
            lo, hi = (float(r.min()), float(r.max())) if len(r) else (0.0, 1.0)
            if not hi > lo:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)

            def shares(values: np.ndarray, edges: np.ndarray = edges) -> list[float]:
                v = _present(values)
                if len(v) == 0:
                    return [0.0] * HISTOGRAM_BINS
                idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, HISTOGRAM_BINS - 1)
                return [float(x) for x in np.bincount(idx, minlength=HISTOGRAM_BINS) / len(v)]

            out.append(
                Histogram(
                    column=col,
                    labels=[_edge_label(x, columns.kinds[col]) for x in edges],
                    bin_edges=[float(x) for x in edges],
                    real=shares(real.numeric[col]),
                    synthetic=shares(synth.numeric[col]),
                    baseline=shares(base.numeric[col]),
                )
            )
            continue
        vocab = vocabulary[col]
        top = min(HISTOGRAM_CATEGORIES, len(vocab))
        codes = [f.codes[col] for f in (real, synth, base)]
        has_other = any(bool((c >= top).any()) for c in codes)
        has_missing = any(bool((c < 0).any()) for c in codes)
        labels = list(vocab[:top]) + (["(other)"] if has_other else []) + (["(missing)"] if has_missing else [])

        def cat_shares(c: np.ndarray, top: int = top, has_other: bool = has_other, has_missing: bool = has_missing):
            if len(c) == 0:
                return [0.0] * (top + has_other + has_missing)
            counts = list(np.bincount(c[(c >= 0) & (c < top)], minlength=top)[:top])
            if has_other:
                counts.append(int((c >= top).sum()))
            if has_missing:
                counts.append(int((c < 0).sum()))
            return [float(x) / len(c) for x in counts]

        out.append(Histogram(col, labels, [], *(cat_shares(c) for c in codes)))
    return out
