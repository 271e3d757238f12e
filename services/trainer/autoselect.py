"""``synthesizer: auto``: pick the engine for a table by a measured, time-boxed bake-off.

Every engine is trained on the same seeded subsample of the training rows
(at most ``SUBSAMPLE_ROWS``) for a fixed number of optimisation steps
(``TRIAL_STEPS`` of the engine, fewer when the job asks for fewer epochs), so that the
choice depends on the data and the seed, not on how busy the machine is; a
time cap (the bake-off's share of the job's budget) only guards against a
very slow machine. Each is scored on rows of that subsample it did not train on (its own validation
split; the model's holdout is never touched) with the evaluator's own
metrics (``services.common.quality``):

* fidelity: the evaluator's fidelity score (column shapes and column pairs);
* utility, when a target column is known: a random forest trained on
  synthetic rows against one trained on the real training part, both scored
  on the validation part: for a class target the synthetic forest's ROC-AUC
  gain over chance (0.5) as a share of the real one's, for a numeric target
  the ratio of R²s; clipped to [0, 1].

The score is the mean of the two (fidelity alone without a target). The
highest score wins; the record of what was tried, each score and why the
winner won is kept with the model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from services.common.engine.config import ENGINES, TrainingConfig
from services.common.engine.model import SynthesisModel
from services.common.quality import fidelity, utility
from services.common.quality.encoding import ColumnSet, prepare_frames
from services.common.schema import ColumnKind
from services.trainer.synthesizers import calibrate, synthetic_frame, train_model

log = logging.getLogger(__name__)

SUBSAMPLE_ROWS = 4_000
VALIDATION_SHARE = 0.25
# Optimisation steps per candidate: about the same time for each on 2 cores (a CTGAN
# step costs about five of TVAE's). TVAE needs them: measured on nyc_taxis, its
# trial utility is 0.53 after 400 steps and 0.98 after 2,000 (the full model's is
# 0.99), while the copula, which has no steps, scores 0.82; with too few steps the
# bake-off would always prefer the copula. The copula needs none.
TRIAL_STEPS = {"ctgan": 400, "tvae": 2_000}
BAKE_OFF_SHARE = 0.3  # of the job's time budget: the most one candidate may take
MIN_TRIAL_SECONDS = 30.0
DEFAULT_TRIAL_SECONDS = 60.0  # the cap per candidate when the job has no time budget
_TREES = 50
# a near tie goes to the fastest engine to train and sample
_TIE = 0.005
_FASTEST_FIRST = ("copula", "tvae", "ctgan")


@dataclass
class Trial:
    engine: str
    score: float
    fidelity: float
    utility: float | None  # TSTR/TRTR (None without a target)
    seconds: float
    epochs: int


@dataclass
class Selection:
    winner: str
    reason: str
    trials: list[Trial] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        values = dict(data)
        values["trials"] = [Trial(**t) for t in values.get("trials", [])]
        return cls(**values)


def trial_seconds(time_budget_seconds: float) -> float:
    """The time cap of each candidate for a job with this budget (0: none)."""
    if time_budget_seconds <= 0:
        return DEFAULT_TRIAL_SECONDS
    return max(MIN_TRIAL_SECONDS, time_budget_seconds * BAKE_OFF_SHARE)


def trial_epochs(rows: int, batch_size: int, asked: int, steps: int) -> int:
    """Epochs giving about ``steps`` steps on ``rows`` rows, at most ``asked``."""
    steps_per_epoch = max(rows // max(min(batch_size, rows), 1), 1)
    return max(1, min(asked, math.ceil(steps / steps_per_epoch)))


def choose_engine(
    table: pd.DataFrame,
    discrete: Sequence[str],
    target: str,
    config_for: Callable[[str], TrainingConfig],
    *,
    seed: int,
    device: str,
    threads: int | None,
    should_stop: Callable[[], bool] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    candidates: Sequence[str] = ENGINES,
) -> Selection:
    """Train every candidate briefly on a subsample and return the measured choice.
    ``config_for(engine)`` is the job's config for that engine (its epochs and
    time budget bound each trial's)."""
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    rows = min(len(table), SUBSAMPLE_ROWS)
    picked = np.sort(rng.choice(len(table), size=rows, replace=False))
    validation = np.zeros(rows, dtype=bool)
    validation[rng.choice(rows, size=max(1, int(rows * VALIDATION_SHARE)), replace=False)] = True
    sample = table.iloc[picked].reset_index(drop=True)
    fit, check = sample[~validation].reset_index(drop=True), sample[validation].reset_index(drop=True)
    scorer = _Scorer(fit, check, discrete, target, seed)
    trials: list[Trial] = []
    for engine in candidates:
        config = config_for(engine)
        cap = trial_seconds(config.time_budget_seconds)
        epochs = trial_epochs(len(fit), config.batch_size, config.epochs, TRIAL_STEPS.get(engine, 1))
        config = replace(
            config, synthesizer=engine, epochs=epochs, time_budget_seconds=cap, seed=seed, checkpoint_every=epochs
        ).validate()
        started = time.perf_counter()
        model = train_model(fit, discrete, config, device=device, should_stop=should_stop, threads=threads)
        seconds = time.perf_counter() - started
        fid, util = scorer.score(model, seed)
        score = fid if util is None else (fid + util) / 2
        trial = Trial(engine, score, fid, util, seconds, int(model.metadata.epochs_trained))
        trials.append(trial)
        log.info("bake-off trial", extra={"engine": engine, "score": round(score, 4), "seconds": round(seconds, 1)})
        if on_trial is not None:
            on_trial(trial)
    best = max(t.score for t in trials)
    near = [t for t in trials if t.score >= best - _TIE]
    winner = min(near, key=lambda t: _FASTEST_FIRST.index(t.engine) if t.engine in _FASTEST_FIRST else len(near))
    return Selection(
        winner=winner.engine,
        reason=_reason(winner, trials, target),
        trials=trials,
        rows=rows,
        seconds=time.perf_counter() - began,
    )


def _reason(winner: Trial, trials: list[Trial], target: str) -> str:
    measure = "fidelity and utility" if target else "fidelity"
    others = [t for t in trials if t is not winner]
    parts = ", ".join(f"{t.engine} {t.score:.3f}" for t in others)
    tie = any(t.score > winner.score for t in others)
    because = "the fastest within 0.005 of the best score" if tie else "the best score"
    return f"{winner.engine} scored {winner.score:.3f} on {measure} ({because}; {parts})."


class _Scorer:
    """The evaluator's fidelity score and TSTR/TRTR, in the training view's space."""

    def __init__(self, fit: pd.DataFrame, check: pd.DataFrame, discrete: Sequence[str], target: str, seed: int):
        names = [str(c) for c in fit.columns]
        kinds = {n: ColumnKind.CATEGORICAL if n in set(discrete) else ColumnKind.CONTINUOUS for n in names}
        self.columns = ColumnSet(names=names, kinds=kinds, excluded=[])
        self.fit, self.check, self.target, self.discrete = fit, check, target, list(discrete)
        self.task = utility.CLASSIFICATION if kinds.get(target) is ColumnKind.CATEGORICAL else utility.REGRESSION
        _, prepared = prepare_frames(self.columns, {"fit": fit, "check": check}, reference="fit")
        self.real = prepared["fit"]
        self.real_associations = fidelity.association_matrix(self.columns, self.real)
        self.trtr = self._utility(self.real, prepared["check"], seed) if target else None

    def _utility(self, train: Any, evaluation: Any, seed: int) -> float:
        numbers = utility.fit_and_score(
            self.columns, train, evaluation, self.target, self.task, seed, trees=_TREES, n_jobs=1
        )
        return numbers.roc_auc if self.task == utility.CLASSIFICATION else numbers.r2

    def score(self, model: SynthesisModel, seed: int) -> tuple[float, float | None]:
        # scored as the sampler will serve it: numeric columns calibrated (on other rows than those scored)
        calibration = calibrate(model, self.fit, self.discrete, seed + 1)
        synthetic = synthetic_frame(model, len(self.fit), seed)
        for name in synthetic.columns:
            if name in calibration:
                synthetic[name] = calibration.apply(name, synthetic[name].to_numpy(dtype=np.float64))
        _, prepared = prepare_frames(
            self.columns, {"fit": self.fit, "check": self.check, "synthetic": synthetic}, reference="fit"
        )
        numbers = fidelity.compare(self.columns, self.real, prepared["synthetic"], self.real_associations)
        fid = float(np.nan_to_num(numbers.fidelity_score))
        if not self.target or self.trtr is None or not np.isfinite(self.trtr):
            return fid, None
        tstr = self._utility(prepared["synthetic"], prepared["check"], seed)
        if self.task == utility.CLASSIFICATION:  # chance (0.5) is worth nothing
            ratio = (tstr - 0.5) / max(self.trtr - 0.5, 1e-6)
        else:
            ratio = tstr / self.trtr if self.trtr > 0 else float("nan")
        return fid, float(np.clip(np.nan_to_num(ratio), 0.0, 1.0))
