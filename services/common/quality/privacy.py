"""Privacy: does a released table sit closer to the training rows than fresh real data would?

Distances are Euclidean on :class:`~services.common.quality.encoding.DistanceEncoder`'s
encoding; nearest neighbours come from :func:`~services.common.quality.neighbors.nearest_neighbours`
(exact, blockwise, bounded memory). The real holdout is the yardstick: it was never trained on,
so whatever it scores is what "no memorisation" looks like on this data.

Row-wise averages are estimated on seeded samples of at most ``rows`` query rows (the reference
side of every nearest-neighbour search is always complete); exact copies are counted on every row.
Formulas: METRICS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.common.quality.encoding import ColumnSet, DistanceEncoder, Prepared
from services.common.quality.neighbors import nearest_neighbours
from services.common.quality.report import DistanceHistogram

__all__ = [
    "Disclosure",
    "PrivacyNumbers",
    "PrivacyRun",
    "closer_share",
    "disclosure_risk",
    "dcr_closer_than_holdout",
    "exact_copy_rate",
    "identifiability",
    "neutral_share",
    "nndr",
    "row_hashes",
    "size_adjusted",
]

DEFAULT_ROWS = 10_000
# The naive baseline's privacy numbers only place the scale: a smaller sample is enough.
BASELINE_ROWS = 2_000
# A guessed number counts as right within this share of the column's robust range.
NUMERIC_TOLERANCE = 0.05
DISTANCE_BINS = 20


# ---------------------------------------------------------------------------------------------
# The formulas, on plain arrays
# ---------------------------------------------------------------------------------------------


def row_hashes(columns: ColumnSet, frame: Prepared) -> np.ndarray:
    """One uint64 per row over every evaluated column (numbers as float64, -0.0 = 0.0, every NaN
    alike; categories by code), so equal rows hash equal."""
    data = {}
    for col in columns.names:
        if col in frame.numeric:
            v = frame.numeric[col] + 0.0
            data[col] = np.where(np.isnan(v), np.nan, v)
        else:
            data[col] = frame.codes[col]
    return pd.util.hash_pandas_object(pd.DataFrame(data), index=False).to_numpy()


def exact_copy_rate(query_hashes: np.ndarray, reference_hashes: np.ndarray) -> float:
    """Share of query rows equal, on every evaluated column, to some reference row."""
    if len(query_hashes) == 0:
        return float("nan")
    return float(np.isin(query_hashes, reference_hashes).mean())


def closer_share(d_first: np.ndarray, d_second: np.ndarray, tie: float = 0.5) -> float:
    """Share of rows with ``d_first < d_second``; a tie counts ``tie`` (one half by default)."""
    if len(d_first) == 0:
        return float("nan")
    return float(np.mean((d_first < d_second) + tie * (d_first == d_second)))


def neutral_share(d_first: np.ndarray, d_second: np.ndarray, first_rows: int, second_rows: int) -> float:
    """:func:`closer_share` restated for equally large reference sets (:func:`size_adjusted`), a tie
    counting what unrelated rows would score, ``first / (first + second)``: a row equally close to
    both sets (e.g. a duplicate that both hold) says nothing about which set it came from, so it
    moves the result toward 0.5, not away from it."""
    tie = first_rows / (first_rows + second_rows) if first_rows + second_rows > 0 else 0.5
    return size_adjusted(closer_share(d_first, d_second, tie), first_rows, second_rows)


def size_adjusted(share: float, first_rows: int, second_rows: int) -> float:
    """A :func:`closer_share` against two reference sets of different sizes, restated as if they were
    equally large: ``s / (s + (1 - s) * first_rows / second_rows)`` (the odds divided by the size
    ratio). If the rows are unrelated to which real rows went into which set, the raw share is
    ``first / (first + second)`` on average and the adjusted one 0.5; rows that copy the first set
    give 1 either way."""
    if not np.isfinite(share) or first_rows <= 0 or second_rows <= 0:
        return float("nan")
    ratio = first_rows / second_rows
    den = share + (1.0 - share) * ratio
    return float(share / den) if den > 0 else float("nan")


def nndr(distances: np.ndarray) -> np.ndarray:
    """Nearest / second-nearest distance per row (``distances`` is rows x 2); 0 when the nearest
    distance is 0 (the row coincides with a real record)."""
    d1, d2 = distances[:, 0], distances[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(d1 > 0, d1 / np.where(d2 > 0, d2, 1.0), 0.0)
    return out


def identifiability(d_to_release: np.ndarray, d_to_other_real: np.ndarray) -> float:
    """Yoon et al. (2020), unweighted, raw: share of real rows whose nearest released row is closer
    than their nearest *other* real row; a tie counts one half. (The report states it for equal
    sizes with neutral ties: :func:`neutral_share`.)"""
    return closer_share(d_to_release, d_to_other_real)


@dataclass(frozen=True)
class Disclosure:
    member_rate: float  # attack success on training rows
    control_rate: float  # the same attack on rows never trained on
    naive_rate: float  # always guessing the release's majority category / mean, on training rows
    risk: float  # the low end of the 95% interval of (member - control) / (1 - control), at least 0
    risk_point: float  # the point estimate, at least 0
    targets: int


def disclosure_risk(member: float, control: float, targets: int) -> tuple[float, float]:
    """(low end of the 95% confidence interval, point estimate) of ``(member - control) / (1 - control)``,
    both clipped at 0; ``targets`` people were attacked in each group. The low end keeps sampling noise
    from reading as risk when the control rate is close to 1 (the denominator is then tiny)."""
    if not (np.isfinite(member) and np.isfinite(control)) or targets <= 0:
        return float("nan"), float("nan")
    if control >= 1.0:
        return 0.0, 0.0
    se = np.sqrt((member * (1 - member) + control * (1 - control)) / targets)
    point = (member - control) / (1.0 - control)
    low = (member - control - 1.96 * se) / (1.0 - control)
    return float(min(1.0, max(0.0, low))), float(min(1.0, max(0.0, point)))


# ---------------------------------------------------------------------------------------------
# One evaluation's privacy numbers
# ---------------------------------------------------------------------------------------------


@dataclass
class PrivacyNumbers:
    dcr: np.ndarray  # per sampled released row: distance to the closest training row
    nndr: np.ndarray
    dcr_share: float
    dcr_closer_than_holdout: float
    nndr_mean: float
    exact_copy_rate: float
    identifiability: float
    disclosure: Disclosure | None


class PrivacyRun:
    """Holds the encodings and seeded samples shared by the released tables of one evaluation."""

    def __init__(
        self,
        columns: ColumnSet,
        encoder: DistanceEncoder,
        train: Prepared,
        holdout: Prepared,
        *,
        seed: int,
        rows: int = DEFAULT_ROWS,
        sensitive: str | None = None,
        quasi_identifiers: Sequence[str] = (),
    ) -> None:
        if train.rows < 3 or holdout.rows < 2:
            raise ValueError("privacy needs at least 3 training rows and 2 holdout rows")
        self._columns = columns
        self._encoder = encoder
        self._train = train
        self._holdout = holdout
        self._rows = max(2, int(rows))
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EC]))
        self._sensitive = sensitive
        self._qis = [c for c in columns.names if c in set(quasi_identifiers) and c != sensitive]
        self.train_x = encoder.encode(train)
        self.holdout_x = encoder.encode(holdout)
        self.train_hashes = row_hashes(columns, train)
        n, h = train.rows, holdout.rows
        # The holdout's own reference numbers: half A plays the released table, half B the fresh rows.
        perm = self._rng.permutation(h)
        self._half_a, self._half_b = np.sort(perm[: h // 2]), np.sort(perm[h // 2 :])
        # Identifiability targets (training rows) and their nearest other training row.
        self._targets = self._sample(n, max(1, self._rows // 2))
        self._target_other = nearest_neighbours(
            self.train_x[self._targets], self.train_x, exclude=self._targets
        ).distances[:, 0]
        # Disclosure: members (training rows) and controls (holdout rows), equally many.
        t = min(n, h, max(1, self._rows // 2))
        self._members = self._sample(n, t)
        self._controls = self._sample(h, t)
        # The holdout's own distances to the training rows (also the histograms' reference).
        self._holdout_q = self._sample(h, self._rows)
        near = nearest_neighbours(self.holdout_x[self._holdout_q], self.train_x, k=2).distances
        self.holdout_dcr = near[:, 0]
        self.holdout_nndr = nndr(near)

    def _sample(self, n: int, size: int) -> np.ndarray:
        size = min(n, size)
        if size == n:
            return np.arange(n)
        return np.sort(self._rng.choice(n, size=size, replace=False))

    @staticmethod
    def _nn(queries: np.ndarray, reference: np.ndarray, k: int = 1) -> np.ndarray:
        return nearest_neighbours(queries, reference, k=k).distances

    def evaluate(
        self, release: Prepared, *, rows: int | None = None, progress: Callable[[float], None] | None = None
    ) -> PrivacyNumbers:
        """Numbers for a released table (the synthetic rows or the naive baseline). ``rows`` caps
        the sampled query rows below the run's setting (used for the baseline); ``progress(fraction)``
        follows the work."""
        step = progress or (lambda _f: None)
        cap = min(self._rows, rows or self._rows)
        m, n, h = release.rows, self._train.rows, self._holdout.rows
        release_x = self._encoder.encode(release)
        q = self._sample(m, cap)
        step(0.1)
        near = self._nn(release_x[q], self.train_x, k=2)
        dcr = near[:, 0]
        step(0.35)
        share = neutral_share(dcr, self._nn(release_x[q], self.holdout_x)[:, 0], n, h)
        step(0.5)
        t = min(len(self._targets), max(1, cap // 2))
        ident = neutral_share(
            self._nn(self.train_x[self._targets[:t]], release_x)[:, 0], self._target_other[:t], m, n - 1
        )
        step(0.75)
        t = min(len(self._members), max(1, cap // 2))
        disclosure = self._disclosure(release, release_x, self._members[:t], self._holdout, self._controls[:t])
        step(1.0)
        ratios = nndr(near)
        return PrivacyNumbers(
            dcr=dcr,
            nndr=ratios,
            dcr_share=share,
            dcr_closer_than_holdout=dcr_closer_than_holdout(dcr, self.holdout_dcr),
            nndr_mean=float(ratios.mean()),
            exact_copy_rate=exact_copy_rate(row_hashes(self._columns, release), self.train_hashes),
            identifiability=ident,
            disclosure=disclosure,
        )

    def evaluate_holdout(self) -> PrivacyNumbers:
        """The same numbers for the real holdout, the "no memorisation" reference: its half A plays
        the released table, its half B the fresh real rows that A is compared with."""
        n, h = self._train.rows, self._holdout.rows
        in_a = np.isin(self._holdout_q, self._half_a)
        a_q = self._holdout_q[in_a]
        b_x = self.holdout_x[self._half_b]
        share = neutral_share(self.holdout_dcr[in_a], self._nn(self.holdout_x[a_q], b_x)[:, 0], n, len(self._half_b))
        ident = neutral_share(self._nn(self.train_x[self._targets], self.holdout_x)[:, 0], self._target_other, h, n - 1)
        t = min(len(self._members), len(self._half_b))
        controls = np.sort(self._rng.choice(self._half_b, size=t, replace=False))
        a_x = self.holdout_x[self._half_a]
        disclosure = self._disclosure(self._holdout.take(self._half_a), a_x, self._members[:t], self._holdout, controls)
        return PrivacyNumbers(
            dcr=self.holdout_dcr,
            nndr=self.holdout_nndr,
            dcr_share=share,
            dcr_closer_than_holdout=dcr_closer_than_holdout(self.holdout_dcr[in_a], self.holdout_dcr[~in_a]),
            nndr_mean=float(self.holdout_nndr.mean()),
            exact_copy_rate=exact_copy_rate(row_hashes(self._columns, self._holdout), self.train_hashes),
            identifiability=ident,
            disclosure=disclosure,
        )

    def _disclosure(
        self,
        release: Prepared,
        release_x: np.ndarray,
        members: np.ndarray,
        controls_frame: Prepared,
        controls: np.ndarray,
    ) -> Disclosure | None:
        """Attribute inference: an attacker who knows a person's quasi-identifiers takes the
        sensitive value of the released row nearest on them."""
        s = self._sensitive
        if s is None or not self._qis or release.rows == 0 or len(members) == 0:
            return None
        dims = np.concatenate(
            [np.arange(self._encoder.slices[c].start, self._encoder.slices[c].stop) for c in self._qis]
        )
        rel_q = np.ascontiguousarray(release_x[:, dims])
        secret = release.column(s)
        tolerance = self._tolerance()

        def rate(frame: Prepared, frame_x: np.ndarray, rows: np.ndarray) -> float:
            x = np.ascontiguousarray(frame_x[rows][:, dims])
            guess = secret[nearest_neighbours(x, rel_q, k=1).indices[:, 0]]
            return _hit_rate(guess, frame.column(s)[rows], tolerance)

        member_rate = rate(self._train, self.train_x, members)
        control_rate = rate(controls_frame, self.holdout_x, controls)
        truth = self._train.column(s)[members]
        if s in release.numeric:
            present = secret[~np.isnan(secret)]
            naive_guess = np.full(len(truth), present.mean() if len(present) else np.nan)
        else:
            counts = np.bincount(secret + 1)  # code -1 (missing) is a value too
            naive_guess = np.full(len(truth), int(np.argmax(counts)) - 1)
        naive_rate = _hit_rate(naive_guess, truth, tolerance)
        low, point = disclosure_risk(member_rate, control_rate, min(len(members), len(controls)))
        return Disclosure(member_rate, control_rate, naive_rate, low, point, min(len(members), len(controls)))

    def _tolerance(self) -> float:
        s = self._sensitive
        if s is None or s not in self._encoder.scales:
            return 0.0
        return NUMERIC_TOLERANCE * self._encoder.scales[s]

    def distance_histograms(self, synthetic: PrivacyNumbers) -> list[DistanceHistogram]:
        both = np.concatenate([synthetic.dcr, self.holdout_dcr])
        top = float(np.quantile(both, 0.99)) if len(both) else 1.0
        if not top > 0:
            top = float(both.max()) if len(both) and both.max() > 0 else 1.0
        dcr_edges = np.linspace(0.0, top, DISTANCE_BINS + 1)
        nndr_edges = np.linspace(0.0, 1.0, DISTANCE_BINS + 1)
        return [
            DistanceHistogram(
                "dcr",
                [float(x) for x in dcr_edges],
                _shares(synthetic.dcr, dcr_edges),
                _shares(self.holdout_dcr, dcr_edges),
            ),
            DistanceHistogram(
                "nndr",
                [float(x) for x in nndr_edges],
                _shares(synthetic.nndr, nndr_edges),
                _shares(self.holdout_nndr, nndr_edges),
            ),
        ]


def _hit_rate(guess: np.ndarray, truth: np.ndarray, tolerance: float) -> float:
    if len(truth) == 0:
        return float("nan")
    if truth.dtype.kind == "f":
        both_missing = np.isnan(guess) & np.isnan(truth)
        with np.errstate(invalid="ignore"):
            close = np.abs(guess - truth) <= tolerance
        return float(np.mean(both_missing | close))
    return float(np.mean(guess == truth))


def dcr_closer_than_holdout(released: np.ndarray, holdout: np.ndarray) -> float:
    """Over all (released row, holdout row) pairs, the share in which the released row's DCR is the
    smaller one (a tie counts one half): a Mann-Whitney probability, 0.5 when both sit as close to
    the training rows. Rank-based, so outliers and duplicate-heavy data (many DCRs of 0) are fine."""
    if len(released) == 0 or len(holdout) == 0:
        return float("nan")
    h = np.sort(holdout)
    below = len(h) - np.searchsorted(h, released, side="right")  # holdout DCRs above each released one
    equal = np.searchsorted(h, released, side="right") - np.searchsorted(h, released, side="left")
    return float(np.mean((below + 0.5 * equal) / len(h)))


def _shares(values: np.ndarray, edges: np.ndarray) -> list[float]:
    bins = len(edges) - 1
    if len(values) == 0:
        return [0.0] * bins
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    return [float(x) for x in np.bincount(idx, minlength=bins) / len(values)]
