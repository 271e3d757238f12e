"""Exact k-nearest neighbours in bounded memory.

Euclidean distances between every query row and every reference row, computed block by block:
a ``block_queries x block_reference`` float32 matrix at a time (64 MiB with the defaults),
never the whole ``queries x reference`` matrix. Each block is one matrix product of the
augmented rows ``[q, 1] . [-2r, |r|^2]`` (= ``|q - r|^2 - |q|^2``, which ranks references the
same way), so the BLAS does almost all the work. The few best candidates per query survive
from block to block; at the end their distances are recomputed in float64 from the rows, so
exact copies come out at exactly 0 and ties between equal distances are exact ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Neighbours", "nearest_neighbours"]

BLOCK_QUERIES = 2048
BLOCK_REFERENCE = 8192
# Candidates kept beyond k, so that float32 rounding cannot push the true k-th neighbour out.
_SPARE = 1


@dataclass(frozen=True)
class Neighbours:
    """``distances`` (float64) and ``indices`` (into the reference rows), both ``queries x k``,
    nearest first; ties keep the lower reference index first."""

    distances: np.ndarray
    indices: np.ndarray


def nearest_neighbours(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int = 1,
    *,
    exclude: np.ndarray | None = None,
    block_queries: int = BLOCK_QUERIES,
    block_reference: int = BLOCK_REFERENCE,
) -> Neighbours:
    """The ``k`` nearest reference rows of every query row.

    ``exclude`` (optional, one int per query): a reference index that query must not match
    (itself, when the queries are part of the reference), or -1 for none.
    Needs ``len(reference) >= k`` (plus one when a query excludes a row)."""
    if queries.ndim != 2 or reference.ndim != 2 or queries.shape[1] != reference.shape[1]:
        raise ValueError("queries and reference must be 2-D with the same number of columns")
    n_ref = reference.shape[0]
    need = k + (1 if exclude is not None and bool((exclude >= 0).any()) else 0)
    if n_ref < need:
        raise ValueError(f"{k} neighbours asked from {n_ref} reference rows")
    n_q = queries.shape[0]
    keep = min(k + _SPARE, n_ref - (need - k))
    out_d = np.empty((n_q, k), dtype=np.float64)
    out_i = np.empty((n_q, k), dtype=np.int64)
    if n_q == 0:
        return Neighbours(out_d, out_i)

    ref32 = np.ascontiguousarray(reference, dtype=np.float32)
    aug_ref = np.empty((n_ref, ref32.shape[1] + 1), dtype=np.float32)
    np.multiply(ref32, -2.0, out=aug_ref[:, :-1])
    aug_ref[:, -1] = np.einsum("ij,ij->i", ref32, ref32, dtype=np.float64)
    q32 = np.ascontiguousarray(queries, dtype=np.float32)
    bq, br = min(block_queries, n_q), min(block_reference, n_ref)
    buffer = np.empty((bq, br), dtype=np.float32)
    aug_q = np.ones((bq, ref32.shape[1] + 1), dtype=np.float32)

    for q0 in range(0, n_q, bq):
        q1 = min(q0 + bq, n_q)
        m = q1 - q0
        aug_q[:m, :-1] = q32[q0:q1]
        rows = np.arange(m)
        best_v = np.full((m, keep), np.inf, dtype=np.float32)
        best_i = np.full((m, keep), -1, dtype=np.int64)
        excl = None if exclude is None else exclude[q0:q1]
        for r0 in range(0, n_ref, br):
            r1 = min(r0 + br, n_ref)
            block = buffer[:m, : r1 - r0]
            np.matmul(aug_q[:m], aug_ref[r0:r1].T, out=block)
            if excl is not None:
                hit = (excl >= r0) & (excl < r1)
                block[rows[hit], excl[hit] - r0] = np.inf
            take = min(keep, r1 - r0)
            cand_v = np.empty((m, take), dtype=np.float32)
            cand_i = np.empty((m, take), dtype=np.int64)
            for j in range(take):
                a = block.argmin(axis=1)
                cand_v[:, j] = block[rows, a]
                cand_i[:, j] = a + r0
                block[rows, a] = np.inf
            cand_i[np.isinf(cand_v)] = -1  # an excluded row, picked only when nothing else was left
            all_v = np.concatenate([best_v, cand_v], axis=1)
            all_i = np.concatenate([best_i, cand_i], axis=1)
            order = np.argsort(all_v, axis=1, kind="stable")[:, :keep]
            best_v = np.take_along_axis(all_v, order, axis=1)
            best_i = np.take_along_axis(all_i, order, axis=1)
        # Exact distances of the surviving candidates, then the k nearest of them.
        valid = best_i >= 0
        cand = ref32[np.where(valid, best_i, 0)].astype(np.float64)
        diff = cand - q32[q0:q1, None, :].astype(np.float64)
        dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        dist[~valid] = np.inf
        # nearest first; equal distances: lower reference index first
        order = np.lexsort((np.where(valid, best_i, np.iinfo(np.int64).max), dist), axis=1)[:, :k]
        out_d[q0:q1] = np.take_along_axis(dist, order, axis=1)
        out_i[q0:q1] = np.take_along_axis(best_i, order, axis=1)
    return Neighbours(out_d, out_i)
