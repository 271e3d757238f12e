"""Training jobs: state, queue, event log, and the worker that runs the engine.

A job lives in ``jobs/<id>/`` in the store:
- ``job.json``      the record (state, config, model id...), rewritten atomically;
- ``events.jsonl``  the append-only event log (fsynced per event), which is what
                    WatchTraining replays to a re-attaching client;
- ``checkpoint/``   the last resumable engine state: a folder with
                    ``checkpoint.pt`` (tensors only) and its sha256 manifest
                    (and signature), replaced whole at each checkpoint.

States (:class:`JobState`): queued → running → succeeded | failed | cancelled.
Events are the dataclasses of ``services.trainer.events``. A trainer that is
killed leaves jobs "queued" or "running"; at start-up :meth:`JobManager.recover`
queues them again and a running one resumes from its last checkpoint.
The model id is chosen when the job starts, so a crash between writing the
model and updating the job is recognised at recovery (the model exists).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import enum
import json
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    SynthError,
    Unavailable,
)
from services.common.logs import log_context
from services.common.store import ArtifactStore, RequestKey, load_page, read_json, write_json_atomic
from services.trainer.events import JobCancelled, JobFailed, JobQueued, JobSucceeded, LoggedEvent, TrainingEvent
from services.trainer.jobspec import JobConfig, JobSpec

log = logging.getLogger(__name__)

_WATCH_RECHECK_SECONDS = 30.0


class JobState(enum.StrEnum):
    """A job's state; the values are what ``job.json`` holds."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass
class JobRecord:
    """A job's ``job.json``: its spec, and how far it got."""

    id: str
    spec: JobSpec
    model_id: str  # reserved at creation; exists in the registry once succeeded
    state: JobState = JobState.QUEUED
    epochs_completed: int = 0
    error_code: str = ""
    error_message: str = ""
    device: str = ""
    created_at: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def dataset_id(self) -> str:
        return self.spec.dataset_id

    @property
    def config(self) -> JobConfig:
        """The effective config: defaults filled in, seed chosen."""
        return self.spec.config

    @property
    def finished(self) -> bool:
        return self.state.terminal

    def to_dict(self) -> dict[str, Any]:
        """The stored form (the spec's fields at the top level, as they always were)."""
        return {
            "id": self.id,
            "dataset_id": self.spec.dataset_id,
            "config": self.spec.config.to_dict(),
            "model_id": self.model_id,
            "state": self.state.value,
            "epochs_completed": self.epochs_completed,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "device": self.device,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; keys it does not know are ignored, as they always were."""
        return cls(
            id=str(data["id"]),
            spec=JobSpec(dataset_id=str(data["dataset_id"]), config=JobConfig.from_dict(data["config"])),
            model_id=str(data["model_id"]),
            state=JobState(data.get("state", JobState.QUEUED)),
            epochs_completed=int(data.get("epochs_completed", 0)),
            error_code=str(data.get("error_code", "")),
            error_message=str(data.get("error_message", "")),
            device=str(data.get("device", "")),
            created_at=float(data.get("created_at", 0.0)),
            started_at=float(data.get("started_at", 0.0)),
            ended_at=float(data.get("ended_at", 0.0)),
        )


class _EventLog:
    """One job's events in memory, backed by events.jsonl. Sequence = index + 1."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[LoggedEvent] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn last line from a crash: the events before it stand
                self.events.append(LoggedEvent.from_dict(data))

    def append(self, event: TrainingEvent) -> LoggedEvent:
        logged = LoggedEvent(sequence=len(self.events) + 1, time=time.time(), event=event)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(logged.to_dict()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.events.append(logged)
        return logged

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1].terminal


@dataclass
class _Running:
    cancel: threading.Event = field(default_factory=threading.Event)


class _Wakeups:
    """Wakes async watchers, each waiting on an event of its own event loop,
    from any thread: one ``call_soon_threadsafe`` per loop, not per watcher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # never held across I/O: the loops take it too
        self._events: dict[asyncio.AbstractEventLoop, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Event]:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            self._events.setdefault(loop, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                waiting = self._events.get(loop, set())
                waiting.discard(event)
                if not waiting:
                    self._events.pop(loop, None)

    def notify(self) -> None:
        with self._lock:
            loops = list(self._events)
        for loop in loops:
            with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                loop.call_soon_threadsafe(self._wake, loop)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            events = list(self._events.get(loop, ()))
        for event in events:
            event.set()


class JobManager:
    """Owns every job: creates, queues, runs (``concurrency`` worker threads),
    cancels, and serves event logs to watchers."""

    def __init__(
        self,
        store: ArtifactStore,
        run_job: Callable[[JobRecord, JobContext], None],
        *,
        concurrency: int = 1,
        max_queued: int = 16,
    ) -> None:
        self._store = store
        self._run_job = run_job
        self._max_queued = max_queued
        self._lock = threading.RLock()
        self._wakeups = _Wakeups()  # watchers wait on event loops, holding no thread
        self._logs: dict[str, _EventLog] = {}
        self._running: dict[str, _Running] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"train-worker-{i}", daemon=True) for i in range(concurrency)
        ]

    # ---- lifecycle ------------------------------------------------------
    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def recover(self) -> builtins.list[str]:
        """Queue again the jobs a previous process left unfinished (oldest first)."""
        requeued = []
        for job_id in self._store.list_ids("jobs"):
            job = self.get(job_id)
            if not job.finished:
                self._queue.put(job_id)
                requeued.append(job_id)
        if requeued:
            log.info("recovered unfinished jobs", extra={"jobs": requeued})
        return requeued

    def shutdown(self, timeout: float = 30.0) -> None:
        """Ask running jobs to stop at their next step (they checkpoint and stay
        resumable), and wait for the workers."""
        self._stopping.set()
        self._wakeups.notify()
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.1, deadline - time.monotonic()))

    # ---- requests -------------------------------------------------------
    def create(self, spec: JobSpec, request: RequestKey | None = None) -> JobRecord:
        """Queue a new job. With ``request`` (looked up by ``Trainer.start``
        first), a retry that commits second gets the job the first one made."""
        with self._lock:
            queued = sum(1 for j in self._unfinished() if j.state is JobState.QUEUED)
            if queued >= self._max_queued:
                raise ResourceExhausted(
                    f"the training queue is full ({queued} jobs waiting, limit {self._max_queued}); "
                    "wait for a job to finish or cancel one",
                    reason="QUEUE_FULL",
                )
            job = JobRecord(
                id=self._store.new_id("jobs", request),
                spec=spec,
                model_id=self._store.new_id("models"),
                created_at=time.time(),
            )
            with self._store.staging() as staged:
                write_json_atomic(staged / "job.json", job.to_dict())
                events = _EventLog(staged / "events.jsonl")
                events.append(JobQueued(position=queued))
                if not self._store.commit_once(staged, "jobs", job.id, request):
                    return self.get(job.id)  # a retry in another process queued it first
            self._logs[job.id] = _EventLog(self._store.existing("jobs", job.id) / "events.jsonl")
            self._queue.put(job.id)
        log.info("job queued", extra={"job_id": job.id, "dataset_id": spec.dataset_id})
        return job

    def get(self, job_id: str) -> JobRecord:
        folder = self._store.existing("jobs", job_id)
        return JobRecord.from_dict(read_json(folder / "job.json"))

    def list(self, page_size: int = 50, page_token: str = "") -> tuple[builtins.list[JobRecord], str]:
        ids, token = self._store.page("jobs", page_size, page_token)
        return load_page(ids, self.get), token

    def cancel(self, job_id: str) -> JobRecord:
        with self._lock:
            job = self.get(job_id)
            if job.finished:
                raise FailedPrecondition(
                    f"job {job_id} already ended ({job.state}); only queued or running jobs can be cancelled",
                    reason="JOB_FINISHED",
                )
            running = self._running.get(job_id)
            if running is not None:
                running.cancel.set()
                return job
            # Queued: end it now; the worker skips finished jobs.
            job.state, job.ended_at = JobState.CANCELLED, time.time()
            self._save(job)
            self._event(job.id, JobCancelled(epochs_completed=job.epochs_completed))
            return job

    async def watch(self, job_id: str, after_sequence: int) -> AsyncGenerator[LoggedEvent, None]:
        """Events with sequence > ``after_sequence``, then live ones, until the
        terminal event or server shutdown (or the caller closing it: a cancelled
        call). Waits on the event loop, holding no thread."""
        if after_sequence < 0:
            raise InvalidArgument(
                "after_sequence must not be negative",
                violations=[FieldViolation("after_sequence", "must be >= 0")],
            )
        # File reads (and the lock, which a worker holds while it fsyncs): off the loop.
        events = await asyncio.to_thread(self._watched_log, job_id)
        sent = after_sequence
        with self._wakeups.subscription() as changed:
            while True:
                changed.clear()
                # One writer appends; a slice of a list is a consistent snapshot.
                batch = events.events[sent:]
                if not batch:
                    if events.finished:  # the client has everything already
                        return
                    if self._stopping.is_set():
                        raise Unavailable(
                            f"the trainer is shutting down; reattach with after_sequence={sent}",
                            reason="SHUTTING_DOWN",
                        )
                    # A wakeup comes with every event; the timeout only guards against a lost one.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), _WATCH_RECHECK_SECONDS)
                    continue
                for event in batch:
                    yield event
                    sent = event.sequence
                    if event.terminal:
                        return

    def _watched_log(self, job_id: str) -> _EventLog:
        self.get(job_id)  # NOT_FOUND for unknown jobs
        with self._lock:
            return self._log(job_id)

    # ---- worker -----------------------------------------------------------
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            with self._lock:
                job = self.get(job_id)
                if job.finished:
                    continue
                running = _Running()
                self._running[job_id] = running
            try:
                with log_context(job_id=job.id, dataset_id=job.dataset_id):
                    self._run_one(job, running)
            finally:
                with self._lock:
                    self._running.pop(job_id, None)

    def _run_one(self, job: JobRecord, running: _Running) -> None:
        context = JobContext(self, job, running)
        try:
            self._run_job(job, context)
        except _Stopped:
            log.info("job interrupted by shutdown; it resumes at next start")
            return
        except _CancelledByUser:
            self._finish(job, JobState.CANCELLED)
            self._event(job.id, JobCancelled(epochs_completed=job.epochs_completed))
            log.info("job cancelled", extra={"epochs": job.epochs_completed})
            return
        except SynthError as err:
            self._fail(job, err.code, err.message)
            return
        except Exception as err:  # noqa: BLE001 - a job failure must not kill the worker
            log.exception("training failed")
            self._fail(job, "INTERNAL", f"training failed: {type(err).__name__}: {err}")
            return

    def _fail(self, job: JobRecord, code: str, message: str) -> None:
        job.error_code, job.error_message = code, message
        self._finish(job, JobState.FAILED)
        self._event(job.id, JobFailed(error_code=code, error_message=message))
        log.warning("job failed", extra={"grpc_code": code})

    def _finish(self, job: JobRecord, state: JobState) -> None:
        job.state, job.ended_at = state, time.time()
        self._save(job)

    # ---- helpers ------------------------------------------------------------
    def _unfinished(self) -> builtins.list[JobRecord]:
        return [j for j in (self.get(i) for i in self._store.list_ids("jobs")) if not j.finished]

    def _save(self, job: JobRecord) -> None:
        write_json_atomic(self._store.existing("jobs", job.id) / "job.json", job.to_dict())

    def _log(self, job_id: str) -> _EventLog:
        if job_id not in self._logs:
            self._logs[job_id] = _EventLog(self._store.existing("jobs", job_id) / "events.jsonl")
        return self._logs[job_id]

    def _event(self, job_id: str, event: TrainingEvent) -> LoggedEvent:
        with self._lock:
            logged = self._log(job_id).append(event)
        self._wakeups.notify()
        return logged

    def job_folder(self, job_id: str) -> Path:
        return self._store.existing("jobs", job_id)


class _Stopped(Exception):
    """The trainer is shutting down: leave the job resumable."""


class _CancelledByUser(Exception):
    """CancelTrainingJob was called."""


class JobContext:
    """What a running job may do: report events, save progress, check for stop."""

    def __init__(self, manager: JobManager, job: JobRecord, running: _Running) -> None:
        self._manager = manager
        self.job = job
        self._running = running
        self.folder = manager.job_folder(job.id)

    @property
    def events(self) -> list[LoggedEvent]:
        return list(self._manager._log(self.job.id).events)

    def event(self, event: TrainingEvent) -> None:
        self._manager._event(self.job.id, event)

    def save(self) -> None:
        self._manager._save(self.job)

    @property
    def cancel_requested(self) -> bool:
        return self._running.cancel.is_set()

    def should_stop(self) -> bool:
        return self._running.cancel.is_set() or self._manager._stopping.is_set()

    def raise_if_stopped(self) -> None:
        """Called by the runner when the engine stopped early: say why."""
        if self._running.cancel.is_set():
            raise _CancelledByUser()
        raise _Stopped()

    def succeed(self, model_id: str, training_seconds: float) -> None:
        self.job.model_id = model_id
        self._manager._finish(self.job, JobState.SUCCEEDED)
        self.event(JobSucceeded(model_id=model_id, training_seconds=training_seconds))
