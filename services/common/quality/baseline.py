"""The naive baseline generator: every column sampled on its own from the real marginal.

Each column of the output draws its cells independently, with replacement, from the same column
of the real rows (missing cells included), from its own seeded random stream. It keeps every
column's distribution and destroys every relation between columns: the "useless" end of every
metric's scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["naive_baseline"]


def naive_baseline(real: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` rows with ``real``'s columns and dtypes; the same seed gives the same rows."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    if len(real) == 0 and rows > 0:
        raise ValueError("cannot sample from an empty table")
    streams = np.random.SeedSequence(seed).spawn(len(real.columns))
    out = {}
    for stream, col in zip(streams, real.columns, strict=True):
        idx = np.random.default_rng(stream).integers(0, len(real), size=rows)
        out[col] = real[col].iloc[idx].reset_index(drop=True)
    return pd.DataFrame(out, columns=real.columns)
