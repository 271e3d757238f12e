"""Statistics and result records of the privacy attacks (``services.common.quality.attacks``):
Wilson intervals, Anonymeter's residual risk, ROC-AUC, and the numbers each attack returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Z95", "AttackNumbers", "Leakage", "Membership", "Risk", "auc", "auc_noise", "residual_risk", "wilson"]

Z95 = 1.959963984540054


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def wilson(successes: float, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score estimate of a success rate and its error bound (as Anonymeter)."""
    if trials <= 0:
        return float("nan"), float("nan")
    s = min(max(successes, 0.0), float(trials))
    z2 = z * z
    den = trials + z2
    rate = (s + 0.5 * z2) / den
    error = (z / den) * float(np.sqrt(s * (trials - s) / trials + 0.25 * z2))
    return float(rate), float(error)


def residual_risk(attack: tuple[float, float], control: tuple[float, float]) -> tuple[float, float]:
    """``(a − c) / (1 − c)`` and its propagated error (as Anonymeter)."""
    a, da = attack
    c, dc = control
    if not (np.isfinite(a) and np.isfinite(c)) or c >= 1.0:
        return float("nan"), float("nan")
    value = (a - c) / (1.0 - c)
    error = float(np.sqrt((da / (1.0 - c)) ** 2 + (dc * (a - 1.0) / (1.0 - c) ** 2) ** 2))
    return float(value), error


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    neg = np.sort(negative)
    below = np.searchsorted(neg, positive, side="left")
    equal = np.searchsorted(neg, positive, side="right") - below
    return float(np.mean((below + 0.5 * equal) / len(neg)))


def auc_noise(positives: int, negatives: int) -> float:
    """Twice the standard error of an AUC of unrelated scores (Hanley & McNeil at 0.5)."""
    if positives <= 0 or negatives <= 0:
        return float("nan")
    return 2.0 * float(np.sqrt((positives + negatives + 1) / (12.0 * positives * negatives)))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Risk:
    """An Anonymeter-style risk. ``value`` (the judged number) is the low end of the 95% interval."""

    value: float
    point: float
    low: float
    high: float
    attack_rate: float
    control_rate: float
    baseline_rate: float
    attacks: int
    detail: str = ""

    @classmethod
    def of(
        cls,
        successes: float,
        trials: int,
        control: float,
        control_trials: int,
        baseline: float,
        detail: str = "",
        *,
        z: float = Z95,
        control_scale: float = 1.0,
    ) -> Risk:
        """From success counts; ``z`` sets the interval (wider for the worst of several attacks);
        ``control_scale`` restates the control rate for a population of the members' size."""
        a = wilson(successes, trials, z)
        c_rate, c_error = wilson(control, control_trials, z)
        c = (min(c_rate * control_scale, 0.999), c_error * control_scale)
        b = wilson(baseline, trials, z)
        point, error = residual_risk(a, c)
        if not np.isfinite(point):
            nan = float("nan")
            return cls(nan, nan, nan, nan, a[0], c[0], b[0], trials, detail)
        low = min(1.0, max(0.0, point - error))
        return cls(
            value=low,
            point=min(1.0, max(0.0, point)),
            low=low,
            high=min(1.0, max(0.0, point + error)),
            attack_rate=a[0],
            control_rate=c[0],
            baseline_rate=b[0],
            attacks=trials,
            detail=detail,
        )


@dataclass(frozen=True)
class Membership:
    auc: float  # the density-ratio attack
    distance_auc: float  # the plain distance attack
    members: int
    non_members: int
    noise: float  # twice the AUC's standard error under no leak


@dataclass(frozen=True)
class Leakage:
    shares: dict[str, float]  # per column: released rows holding a value one training row holds
    rows: int


@dataclass
class AttackNumbers:
    membership: Membership
    singling_out: Risk
    linkability: Risk
    inference: Risk
    leakage: Leakage
    inference_by_column: dict[str, Risk] = field(default_factory=dict)
