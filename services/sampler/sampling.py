"""Streaming synthetic rows: generate in fixed-size pieces, keep the rows that
meet the conditions, re-cut them into the client's chunks, encode, send.

Why it is built this way:
- Memory stays flat: one generated piece and less than one output chunk are
  alive at a time, whatever the row count.
- Reproducible: the engine makes row *i* from (seed, i) alone, and filtering
  and chunking are deterministic, so the same model, seed, count and
  conditions give byte-identical output whatever the chunk size.
- Honest conditions: every delivered row satisfies them. When they are too
  rare to reach within the budget (``budget_factor`` x the rows asked, plus a
  floor), the call fails with FAILED_PRECONDITION — first after a pilot
  piece, before any row is sent, when the measured acceptance rate cannot
  reach the count; never with fewer rows than asked.
"""

from __future__ import annotations

import io
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
from pyarrow import ipc

from services.common.codec import format_for_csv, output_view
from services.common.engine.model import Condition as EngineCondition
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, ResourceExhausted
from services.common.tables import ColumnInfo, ColumnKind
from services.sampler.conditions import Condition, compile_conditions
from services.sampler.model_cache import ModelCache

log = logging.getLogger(__name__)

CSV, ARROW = "csv", "arrow"
_PIECE_ROWS = 10_000  # generated per step; never changes which rows come out
_MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class SampleRequest:
    model_id: str
    row_count: int
    seed: int | None = None
    chunk_rows: int = 0
    fmt: str = CSV
    conditions: Sequence[Condition] = field(default_factory=tuple)


@dataclass(frozen=True)
class Header:
    column_names: list[str]
    columns: list[ColumnInfo]
    fmt: str
    seed: int
    row_count: int


@dataclass(frozen=True)
class Chunk:
    data: bytes
    rows: int


@dataclass(frozen=True)
class Summary:
    rows: int
    generated: int
    acceptance_rate: float
    seconds: float


@dataclass(frozen=True)
class SamplingLimits:
    max_rows: int = 100_000_000
    default_chunk_rows: int = 10_000
    max_chunk_rows: int = 200_000
    budget_factor: int = 100
    budget_floor: int = 200_000


class RowSampler:
    def __init__(
        self,
        cache: ModelCache,
        limits: SamplingLimits = SamplingLimits(),
        on_generated: Callable[[int], None] | None = None,
    ) -> None:
        self._cache = cache
        self._limits = limits
        self._on_generated = on_generated or (lambda _rows: None)

    def stream(self, request: SampleRequest, is_active: Callable[[], bool]) -> Iterator[Header | Chunk | Summary]:
        """Header, chunks, summary. Validation happens before the first message."""
        chunk_rows = self._validate(request)
        model, info = self._cache.get(request.model_id)
        columns = [ColumnInfo.from_dict(c) for c in info.columns]
        conditions = compile_conditions(request.conditions, columns)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        steer = EngineCondition(*conditions.steer) if conditions.steer else None
        if steer is not None:
            try:
                model.condition_vector(steer)
            except InvalidArgument:
                steer = None  # the value is absent from the training rows (all held out): filter only
        encoder = _encoder(request.fmt, columns)
        rows = self._accepted(model, columns, request.row_count, seed, conditions, steer, is_active)
        return self._messages(request, columns, seed, chunk_rows, encoder, rows)

    def _messages(self, request, columns, seed, chunk_rows, encoder, rows) -> Iterator[Header | Chunk | Summary]:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        stats = rows.send(None)  # runs the pilot: may raise before anything is sent
        yield Header([c.name for c in columns], columns, request.fmt, seed, request.row_count)
        pending: list[pd.DataFrame] = []
        pending_rows = 0
        sent = 0
        for piece in rows:
            pending.append(piece)
            pending_rows += len(piece)
            while pending_rows >= chunk_rows or (pending_rows and sent + pending_rows == request.row_count):
                frame = pd.concat(pending) if len(pending) > 1 else pending[0]
                size = min(chunk_rows, pending_rows)
                out, rest = frame.iloc[:size], frame.iloc[size:]
                last = sent + size == request.row_count
                yield Chunk(encoder.encode(out, first=sent == 0, last=last), size)
                sent += size
                pending, pending_rows = ([rest], len(rest)) if len(rest) else ([], 0)
        generated = stats["generated"]
        yield Summary(sent, generated, sent / generated if generated else 1.0, time.perf_counter() - start)

    def _accepted(self, model, columns, n, seed, conditions, steer, is_active):  # type: ignore[no-untyped-def]
        """A generator: first ``send(None)`` runs the pilot and returns the live
        stats dict; then it yields accepted typed rows until ``n`` are out."""
        stats = {"generated": 0, "accepted": 0}
        budget = n if not conditions else n * self._limits.budget_factor + self._limits.budget_floor
        pieces = model.sample(budget, seed, chunk_rows=_PIECE_ROWS, condition=steer)

        def next_piece() -> pd.DataFrame | None:
            raw = next(pieces, None)
            if raw is None:
                return None
            stats["generated"] += len(raw)
            self._on_generated(len(raw))
            typed = output_view(raw, columns, first_row=int(raw.index[0]))
            if conditions:
                typed = typed[conditions.mask(typed)]
            stats["accepted"] += len(typed)
            return typed

        first = next_piece()
        if conditions and first is not None:
            rate = stats["accepted"] / stats["generated"]
            if rate * budget < n:
                raise _too_rare(n, stats, budget)
        yield stats
        piece = first
        delivered = 0
        while piece is not None:
            if not is_active():
                log.info("client left; generation stopped", extra={"rows_generated": stats["generated"]})
                return
            if len(piece):
                take = piece.iloc[: n - delivered]
                delivered += len(take)
                yield take
            if delivered >= n:
                return
            piece = next_piece()
        raise _too_rare(n, stats, budget)

    def _validate(self, request: SampleRequest) -> int:
        problems = []
        if request.row_count <= 0:
            problems.append(FieldViolation("row_count", f"must be positive, got {request.row_count}"))
        if request.seed is not None and not 0 <= request.seed <= _MAX_SEED:
            problems.append(FieldViolation("seed", "must be in [0, 2**63 - 1]"))
        if request.chunk_rows < 0 or request.chunk_rows > self._limits.max_chunk_rows:
            problems.append(
                FieldViolation("chunk_rows", f"must be between 1 and {self._limits.max_chunk_rows} (0: default)")
            )
        if request.fmt not in (CSV, ARROW):
            problems.append(FieldViolation("format", f"unknown output format {request.fmt!r}"))
        if problems:
            raise InvalidArgument(
                "invalid sampling request: " + "; ".join(f"{p.field} {p.description}" for p in problems),
                violations=problems,
            )
        if request.row_count > self._limits.max_rows:
            raise ResourceExhausted(
                f"{request.row_count} rows asked for; this sampler serves at most {self._limits.max_rows} per "
                "request (SYNTH_SAMPLER_MAX_ROWS). Split the request with different seeds.",
                reason="TOO_MANY_ROWS",
            )
        return request.chunk_rows or self._limits.default_chunk_rows


def _too_rare(n: int, stats: dict[str, int], budget: int) -> FailedPrecondition:
    rate = stats["accepted"] / max(stats["generated"], 1)
    return FailedPrecondition(
        f"the conditions are too rare for this model: {rate:.4%} of {stats['generated']} generated rows met them, "
        f"so {n} rows would need about {n / max(rate, 1e-12):.0f} generated rows, beyond the budget of {budget}. "
        "Loosen the conditions or ask for fewer rows.",
        reason="CONDITIONS_TOO_RARE",
        metadata={"acceptance_rate": f"{rate:.6f}", "budget_rows": str(budget)},
    )


class _CsvEncoder:
    def __init__(self, columns: list[ColumnInfo]) -> None:
        self._columns = columns

    def encode(self, frame: pd.DataFrame, *, first: bool, last: bool) -> bytes:
        text = format_for_csv(frame, self._columns).to_csv(index=False, header=first, lineterminator="\n")
        return text.encode("utf-8")


class _ArrowEncoder:
    """One Arrow IPC stream cut into chunks: the schema travels in the first
    chunk, the end-of-stream marker in the last."""

    def __init__(self, columns: list[ColumnInfo]) -> None:
        self._schema = pa.schema([pa.field(c.name, _arrow_type(c)) for c in columns])
        self._sink = io.BytesIO()
        self._writer = ipc.new_stream(self._sink, self._schema)

    def encode(self, frame: pd.DataFrame, *, first: bool, last: bool) -> bytes:
        table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        self._writer.write_table(table)
        if last:
            self._writer.close()
        data = self._sink.getvalue()
        self._sink.seek(0)
        self._sink.truncate()
        return data


def _arrow_type(col: ColumnInfo) -> pa.DataType:
    if col.kind == ColumnKind.DATETIME:
        return pa.timestamp("us")
    if col.kind in (ColumnKind.CONTINUOUS, ColumnKind.IDENTIFIER) and col.integer:
        return pa.int64()
    if col.kind == ColumnKind.CONTINUOUS:
        return pa.float64()
    return pa.string()


def _encoder(fmt: str, columns: list[ColumnInfo]) -> _CsvEncoder | _ArrowEncoder:
    return _ArrowEncoder(columns) if fmt == ARROW else _CsvEncoder(columns)
