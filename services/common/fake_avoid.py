"""Rare real numbers kept out of synthetic ones (``services.common.fakes``):
``learn_avoid`` (trainer) finds a learned numeric column's bounds and rare grid
points, ``Avoid`` (sampler) clips synthetic numbers and moves those that land on
a rare real value."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.fake_hashing import contains, mix_array, pack, unpack

_GRID_STEPS = (86_400.0, 3_600.0, 60.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6)
_MAX_NUDGE = 16


def _grid_step(values: np.ndarray, datetime: bool) -> float | None:
    steps = _GRID_STEPS if datetime else _GRID_STEPS[3:]
    for step in steps:
        q = values / step
        if np.all(np.abs(q - np.round(q)) <= 1e-6 * np.maximum(1.0, np.abs(q) * 1e-9)):
            return step
    return None


def learn_avoid(
    values: np.ndarray, k: int, *, datetime: bool = False, others: np.ndarray | None = None
) -> dict[str, Any] | None:
    """The rare values of a learned numeric column (float64 training values, NaN missing;
    datetimes as epoch seconds): bounds at the k-th smallest and largest value, and the
    salted hashes of the grid points that fewer than ``k`` training rows hold, or fewer than
    ``k`` rows of the whole table (``others``: the rest of its rows, e.g. the holdout). None
    when the column has no present value."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return None
    ordered = np.sort(present)
    kk = min(k, ordered.size)
    low, high = float(ordered[kk - 1]), float(ordered[-kk])
    if low > high:
        low = high = float(np.median(ordered))
    step = _grid_step(present, datetime)
    salt = secrets.randbits(63)
    keys = _grid_keys(present, step)
    uniq, counts = np.unique(keys, return_counts=True)
    rare = uniq[counts < k]
    if others is not None:
        rest = others[~np.isnan(others)]
        everyone, total = np.unique(np.concatenate([keys, _grid_keys(rest, step)]), return_counts=True)
        rare = np.union1d(rare, everyone[total < k])
    return {
        "low": low,
        "high": high,
        "step": step,
        "salt": salt,
        "hashes": pack(mix_array(rare.view(np.uint64), salt)),
        "rare_values": int(rare.size),
    }


def _grid_keys(values: np.ndarray, step: float | None) -> np.ndarray:
    if step is None:
        return np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    return np.round(values / step).astype(np.int64)


@dataclass
class Avoid:
    """Applies a column's ``learn_avoid`` spec to synthetic numbers."""

    low: float
    high: float
    step: float | None
    salt: int
    hashes: np.ndarray

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Avoid:
        return cls(
            low=float(spec["low"]),
            high=float(spec["high"]),
            step=None if spec.get("step") is None else float(spec["step"]),
            salt=int(spec["salt"]),
            hashes=np.sort(unpack(spec.get("hashes") or "")),
        )

    def _rare(self, values: np.ndarray) -> np.ndarray:
        keys = _grid_keys(values, self.step)
        return contains(self.hashes, mix_array(keys.view(np.uint64), self.salt))

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Clip to [low, high], then move values on a rare real value to the nearest grid
        point (within the bounds) that is not one. NaN stays NaN."""
        out = np.clip(values, self.low, self.high)
        present = ~np.isnan(out)
        if len(self.hashes) == 0 or not present.any():
            return out
        idx = np.flatnonzero(present)
        hit = idx[self._rare(out[idx])]
        if hit.size == 0:
            return out
        base = out[hit]
        fixed = np.zeros(hit.size, dtype=bool)
        for distance in range(1, _MAX_NUDGE + 1):
            for sign in (1.0, -1.0):
                todo = ~fixed
                if not todo.any():
                    break
                if self.step is None:
                    cand = base[todo] * (1.0 + sign * distance * 1e-9) + sign * distance * 1e-300
                else:
                    cand = np.round(base[todo] / self.step + sign * distance) * self.step
                ok = (cand >= self.low) & (cand <= self.high) & ~self._rare(cand)
                where = np.flatnonzero(todo)[ok]
                out[hit[where]] = cand[ok]
                fixed[where] = True
        return out


def rare_hash_count(spec: dict[str, Any] | None) -> int:
    return 0 if not spec else int(spec.get("rare_values", 0))
