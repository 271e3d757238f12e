"""Span bookkeeping and the fused per-step operations over ctgan's output layout.

ctgan walks ``output_info_list`` in Python on every step: one ``gumbel_softmax``
per softmax span in ``_apply_activate`` and one ``cross_entropy`` per discrete
column in ``_cond_loss``. Here the spans are turned once into index tensors and
the work is done in a handful of kernels:

* all softmax spans are scattered into a padded ``(batch, spans, widest span)``
  tensor filled with ``-inf``, so one ``softmax`` over the last axis is a
  segment-wise softmax; the result is gathered back;
* the conditional loss only needs, per row, the span of the column the row was
  conditioned on, so that span is gathered and one ``log_softmax`` is taken.

The maths is ctgan's: tanh on tanh spans, Gumbel-softmax with ``tau=0.2`` on
softmax spans, cross-entropy of the conditioned column's logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

GUMBEL_TAU = 0.2
_TINY = torch.finfo(torch.float32).tiny


@dataclass(frozen=True)
class SpanLayout:
    """Plain-numpy description of a layout (``output_info_list``)."""

    data_dim: int
    tanh_cols: np.ndarray  # column of each tanh span
    soft_starts: np.ndarray  # first column of each softmax span
    soft_dims: np.ndarray
    discrete_spans: np.ndarray  # indices (into the softmax spans) of discrete columns' spans

    @classmethod
    def from_output_info(cls, output_info_list: list[list]) -> SpanLayout:
        tanh_cols: list[int] = []
        starts: list[int] = []
        dims: list[int] = []
        discrete: list[int] = []
        position = 0
        for column_info in output_info_list:
            is_discrete = len(column_info) == 1 and column_info[0].activation_fn == "softmax"
            for span in column_info:
                dim = int(span.dim)
                if span.activation_fn == "tanh":
                    tanh_cols.append(position)
                elif span.activation_fn == "softmax":
                    if is_discrete:
                        discrete.append(len(starts))
                    starts.append(position)
                    dims.append(dim)
                else:
                    raise ValueError(f"unexpected activation function {span.activation_fn!r}")
                position += dim
        return cls(
            data_dim=position,
            tanh_cols=np.array(tanh_cols, dtype=np.int64),
            soft_starts=np.array(starts, dtype=np.int64),
            soft_dims=np.array(dims, dtype=np.int64),
            discrete_spans=np.array(discrete, dtype=np.int64),
        )

    @property
    def n_discrete(self) -> int:
        return int(self.discrete_spans.size)

    @property
    def cond_dim(self) -> int:
        """Width of the conditional vector: all categories of all discrete columns."""
        return int(self.soft_dims[self.discrete_spans].sum()) if self.n_discrete else 0


def _padded_positions(starts: np.ndarray, dims: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the spans, in order, and their slots in a (spans x width) padded grid."""
    cols = np.concatenate([np.arange(s, s + d) for s, d in zip(starts, dims, strict=True)])
    slots = np.concatenate([i * width + np.arange(d) for i, d in enumerate(dims)])
    return cols, slots


class SpanOps:
    """The layout's index tensors on one device, and the fused operations."""

    def __init__(self, layout: SpanLayout, device: torch.device) -> None:
        self.layout = layout
        self.device = device
        n_spans = int(layout.soft_starts.size)
        self.n_spans = n_spans
        self.width = int(layout.soft_dims.max()) if n_spans else 0
        soft_cols, slots = (
            _padded_positions(layout.soft_starts, layout.soft_dims, self.width)
            if n_spans
            else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        )
        order = np.concatenate([layout.tanh_cols, soft_cols])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        if order.size != layout.data_dim:
            raise ValueError("layout spans do not cover the data width")

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.long, device=device)

        self.tanh_idx = tensor(layout.tanh_cols)
        self.soft_idx = tensor(soft_cols)
        self.soft_slots = tensor(slots)
        self.inverse_order = tensor(inverse)
        self.soft_starts = tensor(layout.soft_starts)
        # discrete spans: their columns padded to the widest discrete span
        d_starts = layout.soft_starts[layout.discrete_spans]
        d_dims = layout.soft_dims[layout.discrete_spans]
        self.discrete_width = int(d_dims.max()) if d_dims.size else 0
        grid = np.zeros((d_dims.size, self.discrete_width), dtype=np.int64)
        grid_valid = np.zeros((d_dims.size, self.discrete_width), dtype=bool)
        for i, (start, dim) in enumerate(zip(d_starts, d_dims, strict=True)):
            grid[i, :dim] = np.arange(start, start + dim)
            grid_valid[i, :dim] = True
        self.discrete_grid = tensor(grid)
        self.discrete_grid_invalid = torch.as_tensor(~grid_valid, device=device)
        self.discrete_dims = tensor(d_dims)
        self.discrete_starts = tensor(d_starts)
        cond_offsets = np.concatenate([[0], np.cumsum(d_dims)[:-1]]) if d_dims.size else np.zeros(0, np.int64)
        self.cond_offsets = tensor(cond_offsets)
        self._argmax_buckets, self._bucket_order = _argmax_buckets(layout, tensor)

    def _gumbel(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Standard Gumbel noise, -log(-log(U)) (what ``gumbel_softmax`` draws via ``exponential_``,
        which is several times slower on the CPU)."""
        uniform = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return uniform.clamp_min_(_TINY).log_().neg_().log_().neg_()

    def activate(self, raw: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """ctgan's ``_apply_activate`` in one pass: tanh, and Gumbel-softmax (tau 0.2) per span."""
        batch = raw.shape[0]
        parts = [torch.tanh(raw.index_select(1, self.tanh_idx))]
        if self.n_spans:
            logits = raw.index_select(1, self.soft_idx)
            scores = (logits + self._gumbel(logits, generator)) / GUMBEL_TAU
            padded = scores.new_full((batch, self.n_spans * self.width), float("-inf"))
            padded = padded.index_copy(1, self.soft_slots, scores)
            soft = torch.softmax(padded.view(batch, self.n_spans, self.width), dim=-1)
            parts.append(soft.view(batch, -1).index_select(1, self.soft_slots))
        return torch.cat(parts, dim=1).index_select(1, self.inverse_order)

    def sample_codes(self, raw: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """For sampling (on the CPU): tanh values and, per softmax span, the index of the Gumbel argmax.

        argmax of Gumbel-softmax(tau) is argmax(logits + Gumbel noise) for any tau,
        so this is what ctgan's sample + inverse_transform pick, without the softmax.
        Noise is drawn for every column (the tanh ones are never read) plus one
        column of -inf that pads the spans of each width bucket. numpy draws it:
        its float32 uniform and log are several times faster than torch's here.
        """
        batch, width = raw.shape
        alphas = torch.tanh(raw.index_select(1, self.tanh_idx))
        if not self.n_spans:
            return alphas, raw.new_zeros((batch, 0), dtype=torch.long)
        noise = rng.random((batch, width + 1), dtype=np.float32)
        np.maximum(noise, _TINY, out=noise)
        np.log(noise, out=noise)
        np.negative(noise, out=noise)
        np.log(noise, out=noise)  # minus the Gumbel noise: log(-log U)
        scores = torch.from_numpy(noise)
        torch.sub(raw, scores[:, :width], out=scores[:, :width])
        scores[:, width] = float("-inf")
        picked = [
            scores.index_select(1, grid).view(batch, -1, size).argmax(dim=-1) for grid, size in self._argmax_buckets
        ]
        return alphas, torch.cat(picked, dim=1).index_select(1, self._bucket_order)

    def cond_loss(self, raw: torch.Tensor, column: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """ctgan's ``_cond_loss``: cross-entropy of the conditioned column's logits, summed / batch."""
        batch = raw.shape[0]
        cols = self.discrete_grid[column]  # (batch, discrete_width)
        logits = raw.gather(1, cols).masked_fill(self.discrete_grid_invalid[column], float("-inf"))
        log_prob = functional.log_softmax(logits, dim=1)
        return -log_prob.gather(1, category.view(-1, 1)).sum() / batch


def _argmax_buckets(
    layout: SpanLayout, tensor: Callable[[np.ndarray], torch.Tensor]
) -> tuple[list[tuple[torch.Tensor, int]], torch.Tensor]:
    """Softmax spans grouped by width rounded up to a power of two, as flat column
    grids (padding points at column ``data_dim``), and the permutation from the
    buckets' concatenated order back to span order.

    One wide span (Adult's 42 countries) would pad every span to its width in a
    single grid; buckets keep the padding under half of each bucket.
    """
    sizes = [1 << max(0, int(dim) - 1).bit_length() for dim in layout.soft_dims]
    buckets: list[tuple[torch.Tensor, int]] = []
    order: list[int] = []
    for size in sorted(set(sizes)):
        spans = [i for i, s in enumerate(sizes) if s == size]
        grid = np.full((len(spans), size), layout.data_dim, dtype=np.int64)
        for row, span in enumerate(spans):
            start, dim = int(layout.soft_starts[span]), int(layout.soft_dims[span])
            grid[row, :dim] = np.arange(start, start + dim)
        buckets.append((tensor(grid.ravel()), size))
        order.extend(spans)
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[np.array(order, dtype=np.int64)] = np.arange(len(order))
    return buckets, tensor(inverse)
