"""Privacy attacks on a released table: membership inference, singling out, linkability,
attribute inference, and rare-value leakage.

Every attack is run twice: on the real *training* rows (members) and on real *holdout* rows
(controls, never trained on). What it achieves on the controls is what the released table
reveals about anyone; only the excess on the members is a leak of the training people.
Distances are those of every privacy metric (``DistanceEncoder``); neighbours are exact
(``nearest_neighbours``). Seeded: the same inputs and seed give the same numbers.

- **Membership inference** (no shadow models): a density-ratio attack after DOMIAS (van Breugel
  et al., 2023) with nearest-neighbour densities. A row's score is
  ``log d_ref(x) − log d_rel(x)``: its distance to the nearest row of a *reference* sample of
  the population (the holdout rows, the row itself left out) over its distance to the nearest
  released row. A released table that sits on its training rows gives members a high score. The result
  is the ROC-AUC of telling members from non-members by the score (0.5: no better than a coin).
  The plain distance attack (score ``−d_rel``) is reported beside it.
- **Singling out, linkability, attribute inference**: the three risks of Anonymeter (Giomi et
  al., 2023, *A Unified Framework for Quantifying Privacy Risk in Synthetic Data*), implemented
  here from the paper (the ``anonymeter`` package pins numpy < 1.27, which this platform cannot
  install beside numpy 2). Each gives success rates of the attack on members and on controls
  and a random-guess baseline, Wilson score intervals, and the risk
  ``(member − control) / (1 − control)`` with its propagated 95% error; the reported value is
  the low end of that interval, clipped at 0 (for inference, the worst of the columns, its
  interval widened to hold for all columns at once: Bonferroni).

  - *singling out* (multivariate, 3 columns): predicates built from released rows (a category
    equals, a number is at least / at most the row's value, toward the far side of the released
    column's median) that single out exactly one released row. Each is evaluated on the training
    and control rows together: it succeeds on a member when the one row of both it matches is a
    training row, on a control when it is a control row. The control rate is restated for a
    population as large as the training rows (times ``n / h``), so the two rates agree when the
    released table says nothing about who was trained on; no model of predicate weights is
    needed (Anonymeter fits one to correct for the control table's smaller size).
  - *linkability*: the evaluated columns split in two (alternately); an attacker holding each
    half of a person's record links them when the nearest released row on one half is also the
    nearest on the other (ties broken at random, independently per half).
  - *attribute inference*: every evaluated column in turn is the secret, the others are known;
    the guess is the secret of the nearest released row on the known columns (numbers right
    within 5% of the robust range); the worst column is reported.
- **Rare-value leakage**: per column (identifier and free-text columns included), the share of
  released rows whose value exactly one training row holds; the column that exceeds the real
  holdout's own share the most is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special

from services.common.quality.attack_results import (
    AttackNumbers,
    Leakage,
    Membership,
    Risk,
    auc,
    auc_noise,
    residual_risk,
    wilson,
)
from services.common.quality.encoding import ColumnSet, DistanceEncoder, Prepared
from services.common.quality.neighbors import nearest_neighbours

__all__ = [
    "ATTACKS",
    "AttackNumbers",
    "AttackRun",
    "Leakage",
    "Membership",
    "Risk",
    "auc",
    "residual_risk",
    "wilson",
]

# Anonymeter's default number of attacks per evaluation.
ATTACKS = 500
# Membership targets per side (members and non-members).
MIA_TARGETS = 2_000
SO_COLUMNS = 3
# Candidate predicates tried per singling-out query wanted.
SO_ATTEMPTS = 40
NUMERIC_TOLERANCE = 0.05


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class AttackRun:
    """Shared encodings and seeded samples for the released tables of one evaluation.

    ``texts``: for rare-value leakage, the raw cells (object arrays, None missing) of the
    identifier and free-text columns, ``{"train": {col: ...}, "holdout": {col: ...}}``."""

    def __init__(
        self,
        columns: ColumnSet,
        encoder: DistanceEncoder,
        train: Prepared,
        holdout: Prepared,
        *,
        seed: int,
        texts: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        attacks: int = ATTACKS,
        train_x: np.ndarray | None = None,
        holdout_x: np.ndarray | None = None,
    ) -> None:
        self._columns = columns
        self._encoder = encoder
        self._train = train
        self._holdout = holdout
        self._attacks = max(1, int(attacks))
        self._seed = seed
        self._texts = {k: dict(v) for k, v in (texts or {}).items()}
        self.train_x = encoder.encode(train) if train_x is None else train_x
        self.holdout_x = encoder.encode(holdout) if holdout_x is None else holdout_x
        rng = self._rng(0)
        h = holdout.rows
        perm = rng.permutation(h)
        self._a, self._b = np.sort(perm[: h // 2]), np.sort(perm[h // 2 :])
        self._singles = {col: _singletons(self._cells(train, col, "train")) for col in self._leak_columns()}

    # ---- helpers ------------------------------------------------------------------------------
    def _rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self._seed, 0xA77A, stream]))

    def _leak_columns(self) -> list[str]:
        return [*self._columns.names, *[c for c in self._texts.get("train", {}) if c not in self._columns.kinds]]

    def _cells(
        self, frame: Prepared | None, col: str, name: str, raw: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        if col in self._columns.kinds:
            assert frame is not None
            return frame.column(col)
        source = raw if raw is not None else self._texts.get(name, {})
        return source[col] if col in source else np.empty(0, dtype=object)

    @staticmethod
    def _sample(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
        size = min(n, size)
        return np.arange(n) if size == n else np.sort(rng.choice(n, size=size, replace=False))

    # ---- public -------------------------------------------------------------------------------
    def evaluate(
        self,
        release: Prepared,
        raw: Mapping[str, np.ndarray] | None = None,
        *,
        scale: float = 1.0,
        inference: bool = True,
    ) -> AttackNumbers:
        """Every attack on a released table (the synthetic rows or the naive baseline); ``raw``
        holds its identifier / free-text cells for the leakage count; ``scale`` < 1 runs fewer
        attacks and ``inference=False`` skips the costliest one (both for the naive baseline,
        whose numbers only place the scale)."""
        release_x = self._encoder.encode(release)
        attacks = max(20, int(self._attacks * scale))
        rng = self._rng(1)
        h = self._holdout.rows
        members = self._sample(rng, self._train.rows, min(h, MIA_TARGETS))
        non_members = self._sample(rng, h, MIA_TARGETS)
        membership = _membership(release_x, self.train_x[members], non_members, self.holdout_x)
        train_targets = self._sample(rng, self._train.rows, attacks)
        control_targets = self._sample(rng, self._holdout.rows, attacks)
        return self._risks(
            release,
            release_x,
            self._holdout,
            self.holdout_x,
            train_targets,
            control_targets,
            attacks,
            membership,
            self._leakage(release, raw),
            self._rng(2),
            inference=inference,
        )

    def evaluate_holdout(self) -> AttackNumbers:
        """The same attacks with the real holdout's half A as the released table and its half B as
        the controls: what fresh real data scores."""
        rng = self._rng(3)
        release = self._holdout.take(self._a)
        release_x = self.holdout_x[self._a]
        b = self._b
        members = self._sample(rng, self._train.rows, min(len(b), MIA_TARGETS))
        non_members = np.arange(len(b))[self._sample(rng, len(b), MIA_TARGETS)]
        membership = _membership(release_x, self.train_x[members], non_members, self.holdout_x[b])
        controls = self._holdout.take(b)
        controls_x = self.holdout_x[b]
        train_targets = self._sample(rng, self._train.rows, self._attacks)
        control_targets = self._sample(rng, len(b), self._attacks)
        # leakage needs no split: every holdout row is a fresh person's
        leakage = self._leakage(self._holdout, self._texts.get("holdout", {}))
        return self._risks(
            release,
            release_x,
            controls,
            controls_x,
            train_targets,
            control_targets,
            self._attacks,
            membership,
            leakage,
            self._rng(4),
        )

    # ---- the attacks --------------------------------------------------------------------------
    def _risks(
        self,
        release: Prepared,
        release_x: np.ndarray,
        controls: Prepared,
        controls_x: np.ndarray,
        train_targets: np.ndarray,
        control_targets: np.ndarray,
        attacks: int,
        membership: Membership,
        leakage: Leakage,
        rng: np.random.Generator,
        *,
        inference: bool = True,
    ) -> AttackNumbers:
        singling = _singling_out(self._columns, release, self._train, controls, attacks, rng)
        linkability = self._linkability(release_x, controls_x, train_targets, control_targets, rng)
        by_column = (
            self._inference(release, release_x, controls, controls_x, train_targets, control_targets, rng)
            if inference
            else {}
        )
        finite = {c: r for c, r in by_column.items() if np.isfinite(r.value)}
        if finite:
            worst = max(finite, key=lambda c: (finite[c].value, finite[c].point))
            inferred = finite[worst]
        else:
            nan = float("nan")
            inferred = Risk(nan, nan, nan, nan, nan, nan, nan, 0)
        return AttackNumbers(membership, singling, linkability, inferred, leakage, by_column)

    def _halves(self) -> tuple[np.ndarray, np.ndarray] | None:
        names = self._columns.names
        if len(names) < 2:
            return None
        dims = [np.arange(self._encoder.slices[c].start, self._encoder.slices[c].stop) for c in names]
        return np.concatenate(dims[0::2]), np.concatenate(dims[1::2])

    def _linkability(
        self,
        release_x: np.ndarray,
        controls_x: np.ndarray,
        train_targets: np.ndarray,
        control_targets: np.ndarray,
        rng: np.random.Generator,
    ) -> Risk:
        halves = self._halves()
        m = release_x.shape[0]
        if halves is None or m == 0:
            nan = float("nan")
            return Risk(nan, nan, nan, nan, nan, nan, nan, 0)
        order = [rng.permutation(m), rng.permutation(m)]  # independent random tie-breaking per half
        refs = [np.ascontiguousarray(release_x[order[i]][:, halves[i]]) for i in (0, 1)]

        def links(x: np.ndarray) -> int:
            got = []
            for i in (0, 1):
                idx = nearest_neighbours(np.ascontiguousarray(x[:, halves[i]]), refs[i], k=1).indices[:, 0]
                got.append(order[i][idx])
            return int(np.sum(got[0] == got[1]))

        hits = links(self.train_x[train_targets])
        control = links(controls_x[control_targets])
        # random guessing: two independent uniform picks agree with probability 1/m
        baseline = len(train_targets) / m
        return Risk.of(hits, len(train_targets), control, len(control_targets), baseline)

    def _inference(
        self,
        release: Prepared,
        release_x: np.ndarray,
        controls: Prepared,
        controls_x: np.ndarray,
        train_targets: np.ndarray,
        control_targets: np.ndarray,
        rng: np.random.Generator,
    ) -> dict[str, Risk]:
        out: dict[str, Risk] = {}
        names = self._columns.names
        if len(names) < 2 or release.rows == 0:
            return out
        # the worst of len(names) attacks is reported: its interval holds for all of them at once (Bonferroni)
        z = float(special.ndtri(1.0 - 0.025 / len(names)))
        for secret in names:
            known = np.concatenate(
                [np.arange(self._encoder.slices[c].start, self._encoder.slices[c].stop) for c in names if c != secret]
            )
            ref = np.ascontiguousarray(release_x[:, known])
            guesses = release.column(secret)
            tolerance = NUMERIC_TOLERANCE * self._encoder.scales.get(secret, 0.0)

            hits = _guess_hits(
                self.train_x[train_targets], known, ref, guesses, self._train.column(secret)[train_targets], tolerance
            )
            control = _guess_hits(
                controls_x[control_targets], known, ref, guesses, controls.column(secret)[control_targets], tolerance
            )
            random_guess = guesses[rng.integers(0, release.rows, size=len(train_targets))]
            baseline = _hits(random_guess, self._train.column(secret)[train_targets], tolerance)
            out[secret] = Risk.of(hits, len(train_targets), control, len(control_targets), baseline, detail=secret, z=z)
        return out

    def _leakage(self, release: Prepared, raw: Mapping[str, np.ndarray] | None) -> Leakage:
        shares: dict[str, float] = {}
        for col, singles in self._singles.items():
            cells = self._cells(release, col, "release", raw if raw is not None else {})
            if len(cells) == 0 and release.rows > 0:
                continue  # an identifier / free-text column the released table leaves out
            shares[col] = _share_in(cells, singles, release.rows)
        return Leakage(shares, release.rows)


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------


def _guess_hits(
    x: np.ndarray, known: np.ndarray, ref: np.ndarray, guesses: np.ndarray, truth: np.ndarray, tolerance: float
) -> int:
    """Targets whose secret equals that of their nearest released row on the known dimensions."""
    idx = nearest_neighbours(np.ascontiguousarray(x[:, known]), ref, k=1).indices[:, 0]
    return _hits(guesses[idx], truth, tolerance)


def _hits(guess: np.ndarray, truth: np.ndarray, tolerance: float) -> int:
    if truth.dtype.kind == "f":
        both_missing = np.isnan(guess) & np.isnan(truth)
        with np.errstate(invalid="ignore"):
            close = np.abs(guess - truth) <= tolerance
        return int(np.sum(both_missing | close))
    return int(np.sum(guess == truth))


def _present(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return values[~np.isnan(values)]
    if values.dtype.kind in "iu":
        return values[values >= 0]  # category codes: -1 is missing
    return np.array([v for v in values if v is not None and v == v], dtype=object)


def _singletons(values: np.ndarray) -> np.ndarray:
    """The values exactly one cell holds (missing never counts)."""
    present = _present(values)
    if present.dtype == object:
        present = present.astype(str)
    uniq, counts = np.unique(present, return_counts=True)
    return uniq[counts == 1]


def _share_in(values: np.ndarray, singles: np.ndarray, rows: int) -> float:
    if rows == 0:
        return float("nan")
    if len(singles) == 0:
        return 0.0
    present = _present(values)
    if present.dtype == object:
        present = present.astype(str)
        return float(np.isin(present, singles.astype(str)).sum() / rows)
    return float(np.isin(present, singles).sum() / rows)


def _membership(
    release_x: np.ndarray, members_x: np.ndarray, non_members: np.ndarray, reference_x: np.ndarray
) -> Membership:
    """The density-ratio attack. ``non_members`` are rows of the reference sample
    ``reference_x`` (real rows never trained on); each is left out of the reference when its own
    density is estimated (leave-one-out), so the whole sample serves as reference for everyone."""
    nan = float("nan")
    if release_x.shape[0] == 0 or reference_x.shape[0] < 2 or len(members_x) == 0 or len(non_members) == 0:
        return Membership(nan, nan, len(members_x), len(non_members), nan)
    targets = np.concatenate([members_x, reference_x[non_members]])
    n = len(members_x)
    exclude = np.concatenate([np.full(n, -1, dtype=np.int64), non_members.astype(np.int64)])
    d_rel = nearest_neighbours(targets, release_x, k=1).distances[:, 0]
    d_ref = nearest_neighbours(targets, reference_x, k=1, exclude=exclude).distances[:, 0]
    positive = np.concatenate([d_rel, d_ref])
    positive = positive[positive > 0]
    eps = 1e-3 * (float(np.median(positive)) if len(positive) else 1.0)
    ratio = np.log(d_ref + eps) - np.log(d_rel + eps)
    return Membership(
        auc=auc(ratio[:n], ratio[n:]),
        distance_auc=auc(-d_rel[:n], -d_rel[n:]),
        members=n,
        non_members=len(non_members),
        noise=auc_noise(n, len(non_members)),
    )


def _predicate_masks(
    frame: Prepared, cols: Sequence[str], values: Sequence[float], ops: Sequence[int], numeric: set[str]
) -> np.ndarray:
    mask = np.ones(frame.rows, dtype=bool)
    for col, value, op in zip(cols, values, ops, strict=True):
        data = frame.column(col)
        if col in numeric:
            if np.isnan(value):
                mask &= np.isnan(data)
            elif op > 0:
                mask &= data >= value
            else:
                mask &= data <= value
        else:
            mask &= data == value
    return mask


def _singling_out(
    columns: ColumnSet, release: Prepared, train: Prepared, controls: Prepared, attacks: int, rng: np.random.Generator
) -> Risk:
    """Multivariate singling out (see the module docstring)."""
    names = columns.names
    nan = float("nan")
    if release.rows == 0 or not names or train.rows == 0 or controls.rows == 0:
        return Risk(nan, nan, nan, nan, nan, nan, nan, 0)
    numeric = set(columns.numeric)
    medians = {
        c: float(np.nanmedian(release.numeric[c])) if (~np.isnan(release.numeric[c])).any() else 0.0 for c in numeric
    }
    width = min(SO_COLUMNS, len(names))
    queries: list[tuple[tuple[str, ...], tuple[float, ...], tuple[int, ...]]] = []
    seen: set[tuple] = set()
    for _ in range(attacks * SO_ATTEMPTS):
        if len(queries) >= attacks:
            break
        row = int(rng.integers(0, release.rows))
        cols = tuple(sorted(rng.choice(len(names), size=width, replace=False).tolist()))
        picked = tuple(names[i] for i in cols)
        values = tuple(float(release.column(c)[row]) for c in picked)
        ops = tuple(1 if (c in numeric and v > medians[c]) else -1 for c, v in zip(picked, values, strict=True))
        key = (picked, values, ops)
        if key in seen:
            continue
        seen.add(key)
        if int(_predicate_masks(release, picked, values, ops, numeric).sum()) == 1:
            queries.append(key)
    if not queries:
        return Risk(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, detail="no predicate singles out a released row")

    def singles(q: tuple[tuple[str, ...], tuple[float, ...], tuple[int, ...]]) -> tuple[bool, bool]:
        in_train = int(_predicate_masks(train, q[0], q[1], q[2], numeric).sum())
        in_control = int(_predicate_masks(controls, q[0], q[1], q[2], numeric).sum())
        return in_train == 1 and in_control == 0, in_control == 1 and in_train == 0

    hits = np.array([singles(q) for q in queries], dtype=bool).reshape(-1, 2)
    # random predicates of the same form: released values of independent random rows per column
    baseline_hits = 0
    for _ in range(len(queries)):
        cols = tuple(sorted(rng.choice(len(names), size=width, replace=False).tolist()))
        picked = tuple(names[i] for i in cols)
        values = tuple(float(release.column(c)[int(rng.integers(0, release.rows))]) for c in picked)
        ops = tuple(int(rng.choice([-1, 1])) for _ in picked)
        baseline_hits += int(singles((picked, values, ops))[0])
    return Risk.of(
        int(hits[:, 0].sum()),
        len(queries),
        int(hits[:, 1].sum()),
        len(queries),
        baseline_hits,
        control_scale=train.rows / controls.rows,
    )


def raw_texts(frame: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Object arrays of str (None missing) of the named columns a frame has."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in frame.columns:
            continue
        series = frame[name]
        values = series.astype(object).to_numpy()
        missing = pd.isna(series).to_numpy()
        cells = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            if missing[i]:
                cells[i] = None
            elif isinstance(v, float) and v.is_integer():
                cells[i] = str(int(v))
            else:
                cells[i] = str(v)
        out[name] = cells
    return out
