"""Streaming synthetic rows: generate in fixed-size pieces, type them, keep the
rows that meet the conditions, re-cut them into the client's chunks, encode, send.

Why it is built this way:
- Memory stays flat: a generated piece per worker and less than one output
  chunk are alive at a time, whatever the row count.
- Fast: the engine generates pieces of about 5,000 rows in a few large
  matrix products; typing, filtering and encoding are Arrow kernels over whole
  pieces (no Python per row or per cell).
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

import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from services.common.codec import OutputTyper
from services.common.engine.model import Condition as EngineCondition
from services.common.engine.model import SynthesisModel
from services.common.errors import Cancelled, FailedPrecondition, FieldViolation, InvalidArgument, ResourceExhausted
from services.common.schema import ColumnInfo
from services.sampler.conditions import CompiledConditions, Condition, compile_conditions
from services.sampler.encoders import ArrowEncoder, CsvEncoder
from services.sampler.model_cache import ModelCache

log = logging.getLogger(__name__)

CSV, ARROW = "csv", "arrow"
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
    # requests generating at once, the memory they may reserve together, and
    # how long one waits for its turn
    max_concurrent: int = 6
    memory_budget_bytes: int = 768 * 1024 * 1024
    queue_seconds: float = 30.0


# What one generating request holds, from the design bounds: a piece's widest
# buffer is at most ~20 MB (the engines size pieces so), with its decoded and
# typed copies about 30 MB per piece in flight; one output chunk as Arrow, its
# typed copy and the encoded bytes about 64 bytes per cell. Measured on Adult
# (CTGAN, 2 workers, 10,000-row chunks): ~80 MB per stream, estimated 98 MB.
PIECE_BYTES = 30 * 1024 * 1024
CHUNK_CELL_BYTES = 64


def reservation_bytes(workers: int, chunk_rows: int, columns: int) -> int:
    """Memory one request reserves while it generates: the pieces in flight
    (one per worker, plus the one being encoded) and one output chunk."""
    return (workers + 1) * PIECE_BYTES + chunk_rows * max(1, columns) * CHUNK_CELL_BYTES


class Admission:
    """Turns to generate, bounded both by count and by reserved bytes.

    A request bigger than the whole budget still runs, alone, so no valid
    request is refused for its size; others wait (holding no memory) until a
    turn frees, then give up with RESOURCE_EXHAUSTED."""

    def __init__(self, max_concurrent: int, budget_bytes: int, on_change: Callable[[int, int], None]) -> None:
        self._max = max_concurrent
        self._budget = budget_bytes
        self._active = 0
        self._reserved = 0
        self._changed = threading.Condition()
        self._on_change = on_change

    def acquire(self, nbytes: int, deadline: float, is_active: Callable[[], bool]) -> int:
        """Wait for a turn; returns the bytes reserved (give them to ``release``)."""
        nbytes = min(nbytes, self._budget)
        with self._changed:
            while self._active >= self._max or self._reserved + nbytes > self._budget:
                left = deadline - time.monotonic()
                if not is_active():
                    raise Cancelled("the client left while waiting for a turn", reason="CLIENT_LEFT")
                if left <= 0:
                    raise ResourceExhausted(
                        f"this sampler is generating {self._active} requests holding "
                        f"{self._reserved / 2**20:.0f} MB of its {self._budget / 2**20:.0f} MB budget, and none "
                        "ended in time; retry in a few seconds or use another replica",
                        reason="SAMPLER_BUSY",
                        metadata={"retry_after_seconds": "5"},
                    )
                self._changed.wait(min(0.5, left))
            self._active += 1
            self._reserved += nbytes
            self._on_change(self._active, self._reserved)
        return nbytes

    def release(self, nbytes: int) -> None:
        with self._changed:
            self._active -= 1
            self._reserved -= nbytes
            self._on_change(self._active, self._reserved)
            self._changed.notify_all()


class RowSampler:
    def __init__(
        self,
        cache: ModelCache,
        limits: SamplingLimits = SamplingLimits(),
        on_generated: Callable[[int], None] | None = None,
        workers: int = 1,
        on_admission: Callable[[int, int], None] | None = None,
    ) -> None:
        """``on_admission(active, reserved_bytes)`` is told each change of the
        requests generating and the memory they reserve (for metrics)."""
        self._cache = cache
        self._workers = max(1, workers)
        self._limits = limits
        self._on_generated = on_generated or (lambda _rows: None)
        # Admission: memory grows with the requests generating at once, so each
        # reserves its share of a budget first; the others wait their turn
        # (without memory), then give up.
        self._admission = Admission(
            limits.max_concurrent, limits.memory_budget_bytes, on_admission or (lambda _active, _bytes: None)
        )

    def stream(self, request: SampleRequest, is_active: Callable[[], bool]) -> Iterator[Header | Chunk | Summary]:
        """Header, chunks, summary. Validation happens before the first message."""
        chunk_rows = self._validate(request)
        model, info = self._cache.get(request.model_id)
        columns = [ColumnInfo.from_dict(c) for c in info.columns]
        conditions = compile_conditions(request.conditions, columns)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        try:
            steer = model.condition_position(EngineCondition(*conditions.steer) if conditions.steer else None)
        except InvalidArgument:
            steer = None  # the value is absent from the training rows (all held out): filter only
        typer = OutputTyper(
            columns,
            model.columns,
            {name: model.category_values(name) for name in model.discrete_columns},
            support=model.support,
            calibration=model.calibration,
            seed=seed,
        )
        encoder = ArrowEncoder(typer.schema) if request.fmt == ARROW else CsvEncoder(columns)
        reserve = reservation_bytes(self._workers, min(chunk_rows, request.row_count), len(columns))
        rows = self._accepted(model, typer, request.row_count, seed, conditions, steer, is_active, reserve)
        return self._messages(request, columns, seed, chunk_rows, typer, encoder, rows)

    def _messages(
        self,
        request: SampleRequest,
        columns: list[ColumnInfo],
        seed: int,
        chunk_rows: int,
        typer: OutputTyper,
        encoder: CsvEncoder | ArrowEncoder,
        rows: Generator[pa.RecordBatch | dict[str, int], None, None],
    ) -> Iterator[Header | Chunk | Summary]:
        start = time.perf_counter()
        stats = rows.send(None)  # runs the pilot: may raise before anything is sent
        assert isinstance(stats, dict)
        yield Header([c.name for c in columns], columns, request.fmt, seed, request.row_count)
        pending: list[pa.RecordBatch] = []
        pending_rows = sent = 0
        n = request.row_count
        for piece in rows:
            assert isinstance(piece, pa.RecordBatch)
            pending.append(piece)
            pending_rows += piece.num_rows
            while pending_rows >= chunk_rows or (pending_rows and sent + pending_rows == n):
                size = min(chunk_rows, pending_rows)
                table = pa.Table.from_batches(pending, schema=typer.learned_schema)
                out = table.slice(0, size).combine_chunks().to_batches()[0]
                rest = table.slice(size)
                pending, pending_rows = rest.to_batches(), rest.num_rows
                chunk = typer.complete(out, first_row=sent)
                yield Chunk(encoder.encode(chunk, first=sent == 0, last=sent + size == n), size)
                sent += size
        generated = stats["generated"]
        yield Summary(sent, generated, sent / generated if generated else 1.0, time.perf_counter() - start)

    def _accepted(
        self,
        model: SynthesisModel,
        typer: OutputTyper,
        n: int,
        seed: int,
        conditions: CompiledConditions,
        steer: int | None,
        is_active: Callable[[], bool],
        reserve: int,
    ) -> Generator[pa.RecordBatch | dict[str, int], None, None]:
        """A generator: first ``send(None)`` waits for a turn (reserving
        ``reserve`` bytes of the budget), runs the pilot and returns the live
        stats dict; then it yields accepted typed rows until ``n`` are out. The
        turn is given back when it ends, however it ends."""
        held = self._admission.acquire(reserve, time.monotonic() + self._limits.queue_seconds, is_active)
        try:
            yield from self._generate(model, typer, n, seed, conditions, steer, is_active)
        finally:
            self._admission.release(held)

    def _generate(
        self,
        model: SynthesisModel,
        typer: OutputTyper,
        n: int,
        seed: int,
        conditions: CompiledConditions,
        steer: int | None,
        is_active: Callable[[], bool],
    ) -> Iterator[pa.RecordBatch | dict[str, int]]:
        stats = {"generated": 0, "accepted": 0}
        budget = n if not conditions else n * self._limits.budget_factor + self._limits.budget_floor
        piece_rows = model.piece_rows
        pieces_allowed = math.ceil(budget / piece_rows)

        def make(index: int) -> tuple[int, pa.RecordBatch]:
            decoded = model.decoded_piece(seed, index, steer)
            if not conditions:  # the engine computes whole pieces; only the rows still wanted count
                wanted = n - index * piece_rows
                decoded = [values[:wanted] for values in decoded]
            return len(decoded[0]), conditions.filter(typer.learned_batch(decoded))

        def taken(made: tuple[int, pa.RecordBatch]) -> pa.RecordBatch:
            # Counted when taken, in order: the rows examined for this stream,
            # whatever the number of workers (pieces made ahead and not needed
            # are not part of the answer).
            generated, typed = made
            stats["generated"] += generated
            stats["accepted"] += typed.num_rows
            self._on_generated(generated)
            return typed

        piece = taken(make(0))
        if conditions and hopeless(stats["accepted"], stats["generated"], budget, n):
            raise _too_rare(n, stats, budget)
        yield stats
        # Pieces are made by worker threads while earlier ones are encoded and
        # sent (torch, numpy and Arrow release the GIL), at most one per worker
        # ahead, and none once enough rows are in hand; they are taken in order.
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="sampler-piece") as pool:
            in_flight: deque[Future[tuple[int, pa.RecordBatch]]] = deque()
            next_index = 1
            delivered = 0
            while True:
                if not is_active():
                    log.info("client left; generation stopped", extra={"rows_generated": stats["generated"]})
                    _cancel(in_flight)
                    return
                take = piece.slice(0, n - delivered)
                delivered += take.num_rows
                while delivered < n and len(in_flight) < self._workers and next_index < pieces_allowed:
                    in_flight.append(pool.submit(make, next_index))
                    next_index += 1
                if take.num_rows:
                    yield take
                if delivered >= n:
                    _cancel(in_flight)
                    return
                if not in_flight:
                    break
                piece = taken(in_flight.popleft().result())
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


def hopeless(accepted: int, generated: int, budget: int, n: int) -> bool:
    """After the pilot: could not even a generous acceptance rate (the ~95% upper
    bound, three more hits than seen) reach ``n`` rows within ``budget``? Only
    then is the request refused at once; otherwise the budget decides, so a rare
    but reachable condition is not refused for one unlucky piece."""
    return (accepted + 3) / generated * budget < n


def _cancel(futures: deque[Future[tuple[int, pa.RecordBatch]]]) -> None:
    for future in futures:
        future.cancel()  # one already running finishes (at most a piece per worker); it is not counted


def _too_rare(n: int, stats: dict[str, int], budget: int) -> FailedPrecondition:
    rate = stats["accepted"] / max(stats["generated"], 1)
    return FailedPrecondition(
        f"the conditions are too rare for this model: {rate:.4%} of {stats['generated']} generated rows met them, "
        f"so {n} rows would need about {n / max(rate, 1e-12):.0f} generated rows, beyond the budget of {budget}. "
        "Loosen the conditions or ask for fewer rows.",
        reason="CONDITIONS_TOO_RARE",
        metadata={"acceptance_rate": f"{rate:.6f}", "budget_rows": str(budget)},
    )
