"""Long-running jobs (AIP-151), one design for every service that runs them:
the trainer's training jobs (``services.trainer.jobs``) and the evaluator's
evaluation jobs (``services.evaluator.jobs``) are this machinery with a record
and events of their own.

A job is a folder in the store, ``<kind>/<id>/``:
- ``job.json``      its record (state, what it does, how far it got), rewritten atomically;
- ``events.jsonl``  its append-only event log, fsynced per event, one JSON object per line:
                    ``{"sequence": 1, "time": 1700000000.0, "type": "queued", ...}``, the
                    :class:`LoggedEvent` envelope beside the event's own fields;
- ``run-<n>``       (shared jobs) the claim of the worker that runs attempt n;
- ``cancel``        (shared jobs) a cancel asked where the job does not run.

States (:class:`JobState`): queued → running → succeeded | failed | cancelled.
Workers (``concurrency`` threads) run queued jobs; watchers replay the log after
a sequence number, then follow it live, waiting on their event loop (no
thread); a job ends only by finishing or by :meth:`JobManager.cancel` (a
watcher leaving changes nothing); a failed job records a :class:`Failure` (a
gRPC status code, a message, the ErrorInfo reason, field violations), which
the API shows as a ``google.rpc.Status``.

Who runs a job:
- alone (the trainer: one process owns its jobs): a job is queued where it was
  made, and at start-up :meth:`JobManager.recover` queues again whatever a
  previous process left unfinished;
- shared (the evaluator: replicas behind round-robin over one store): the store
  is the queue. A worker runs an attempt only after claiming it, by creating
  ``run-<n>`` exclusively (one winner however many replicas try), and keeps
  the claim fresh while it runs; a stopping worker releases it. Every replica
  looks at the store each second and takes queued jobs no live worker holds
  (made on a busy replica, or left by one that died: its claim goes stale after
  ``LEASE_SECONDS``); a cancel reaches the replica that runs the job through
  the ``cancel`` file, and watchers follow what other replicas append.
The record and state types are in ``services.common.job_records``, the event
log in ``services.common.job_events``, the claims in ``services.common.job_claims``;
their public names are importable from here too. Domain code: no protobuf, no grpc.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SynthError,
    Unavailable,
)
from services.common.job_claims import LEASE_SECONDS, TICK_SECONDS, claim_next, held, taken_over
from services.common.job_events import E, EventLog, JobEvent, LoggedEvent, Wakeups, decode_event
from services.common.job_records import CancelledByUser, Failure, JobState, Record, Running, Stopped
from services.common.logs import log_context
from services.common.store import ArtifactStore, RequestKey, load_page, read_json, write_json_atomic

__all__ = [
    "CANCEL_FILE",
    "EVENTS_FILE",
    "JOB_FILE",
    "LEASE_SECONDS",
    "TICK_SECONDS",
    "WATCH_RECHECK_SECONDS",
    "CancelledByUser",
    "EventLog",
    "Failure",
    "JobContext",
    "JobEvent",
    "JobManager",
    "JobState",
    "LoggedEvent",
    "Record",
    "Running",
    "Stopped",
    "decode_event",
]

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
CANCEL_FILE = "cancel"
# A watcher's wait: a wakeup comes with every event of this process; the timeout guards against a lost one.
WATCH_RECHECK_SECONDS = 30.0

R = TypeVar("R", bound=Record)
C = TypeVar("C", bound="JobContext[Any, Any]")


class JobManager(Generic[R, E, C]):
    """Owns a kind of job: creates, queues, runs (``concurrency`` worker
    threads), cancels, and serves event logs to watchers. A service subclasses
    it with its record, events and context (the ``_`` hooks below)."""

    KIND: ClassVar[str] = "jobs"  # the store kind of the job folders
    SERVICE: ClassVar[str] = "service"  # who runs them, for messages
    NOUN: ClassVar[str] = "job"  # "the training queue is full"

    def __init__(
        self,
        store: ArtifactStore,
        run_job: Callable[[R, C], None],
        *,
        kinds: Mapping[str, type[E]],
        concurrency: int = 1,
        max_queued: int = 16,
        shared: bool = False,
        on_end: Callable[[R], None] | None = None,
    ) -> None:
        """``run_job(job, context)`` runs on a worker thread: it reports events and
        progress through the context, raises the error tree to fail the job,
        and returns after ending it (``context.finish``). ``on_end`` sees every
        job that ends here (metrics)."""
        self._store = store
        self._run_job = run_job
        self._kinds = kinds
        self._concurrency = max(0, concurrency)  # 0: no worker (jobs stay queued)
        self._max_queued = max_queued
        self.shared = shared
        self._on_end = on_end
        self._lock = threading.RLock()
        self._wakeups = Wakeups()  # watchers wait on event loops, holding no thread
        self._logs: dict[str, EventLog[E]] = {}
        self._running: dict[str, Running] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._queued: set[str] = set()  # in self._queue, not yet taken by a worker
        self._finished: set[str] = set()  # ids known to have ended (a job never un-ends)
        self._waiting = 0  # queued jobs in the store, as last counted (shared)
        self._draining = threading.Event()  # no new job is started
        self._stopping = threading.Event()  # running jobs stop; watchers end
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._workers = [
            threading.Thread(target=self._work, name=f"{self.KIND}-worker-{i}", daemon=True)
            for i in range(self._concurrency)
        ]
        self._keeper = threading.Thread(target=self._keep, name=f"{self.KIND}-keeper", daemon=True)

    # ---- what a service supplies ------------------------------------------
    def _load(self, data: dict[str, Any]) -> R:
        """A record from its ``job.json``."""
        raise NotImplementedError

    def _context(self, job: R, running: Running) -> C:
        raise NotImplementedError

    def _queued_event(self, position: int) -> E:
        raise NotImplementedError

    def _cancelled_event(self, job: R) -> E:
        raise NotImplementedError

    def _record_failure(self, job: R, failure: Failure) -> E:
        """Note ``failure`` on the record; returns the failed event."""
        raise NotImplementedError

    def _internal_failure(self, err: Exception) -> Failure:
        """A failure that is not of the error tree: a fixed message (the traceback is in the log)."""
        return Failure(
            "INTERNAL",
            f"the {self.NOUN} failed with an internal error; the {self.SERVICE}'s log has the details",
            reason="INTERNAL",
        )

    def _log_ids(self, job: R) -> dict[str, str]:
        """The ids the log lines of a running job carry."""
        return {"job_id": job.id}

    # ---- lifecycle ------------------------------------------------------
    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        if self.shared:
            self._keeper.start()

    def recover(self) -> builtins.list[str]:
        """Queue the jobs a previous process left unfinished (oldest first);
        shared jobs: those no live worker holds."""
        if self.shared:
            requeued = self._scan()
        else:
            requeued = [job.id for job in self._unfinished()]
            for job_id in requeued:
                self._enqueue(job_id)
        if requeued:
            log.info("recovered unfinished jobs", extra={"jobs": requeued})
        return requeued

    def shutdown(self, timeout: float = 30.0, finish_within: float = 0.0) -> None:
        """Start no new job; let running ones finish for ``finish_within``
        seconds; then ask the rest to stop at their next step (they stay
        resumable, shared ones released for any replica to run again), end the
        watches, and wait for the workers (``timeout`` in all)."""
        deadline = time.monotonic() + max(timeout, finish_within)
        self._draining.set()
        for _ in self._workers:
            self._queue.put(None)
        finish_by = time.monotonic() + finish_within
        while finish_within > 0 and self._running_ids() and time.monotonic() < finish_by:
            time.sleep(0.1)
        self._stopping.set()
        self._wakeups.notify()
        for worker in self._workers:
            if worker.is_alive():
                worker.join(max(0.1, deadline - time.monotonic()))
        if self._keeper.is_alive():
            self._keeper.join(max(0.1, deadline - time.monotonic()))
        with self._lock:  # a worker stuck past the timeout: its job is anyone's now
            for running in self._running.values():
                self._release(running)

    # ---- requests -------------------------------------------------------
    def _create(self, make: Callable[[str], R], request: RequestKey | None = None) -> R:
        """Store and queue the job ``make(id)`` builds. With ``request`` (looked
        up by the caller first), a retry that commits second gets the job the
        first one made."""
        with self._lock:
            queued = sum(1 for j in self._unfinished() if j.state is JobState.QUEUED)
            if queued >= self._max_queued:
                raise ResourceExhausted(
                    f"the {self.NOUN} queue is full ({queued} jobs waiting, limit {self._max_queued}); "
                    "wait for a job to finish or cancel one",
                    reason="QUEUE_FULL",
                )
            job = make(self._store.new_id(self.KIND, request))
            with self._store.staging() as staged:
                write_json_atomic(staged / JOB_FILE, job.to_dict())
                EventLog(staged / EVENTS_FILE, self._kinds).append(self._queued_event(queued))
                if not self._store.commit_once(staged, self.KIND, job.id, request):
                    return self.get(job.id)  # a retry in another process queued it first
            self._logs[job.id] = EventLog(self.job_folder(job.id) / EVENTS_FILE, self._kinds)
            self._enqueue(job.id)
        log.info("job queued", extra=self._log_ids(job))
        return job

    def get(self, job_id: str) -> R:
        return self._load(read_json(self._store.existing(self.KIND, job_id) / JOB_FILE))

    def list(self, page_size: int = 50, page_token: str = "") -> tuple[builtins.list[R], str]:
        ids, token = self._store.page(self.KIND, page_size, page_token)
        return load_page(ids, self.get), token

    def cancel(self, job_id: str) -> R:
        """A queued job ends cancelled now; a running one at its next step (the
        record returned still says running)."""
        with self._lock:
            job = self._unfinished_job(job_id)
            running = self._running.get(job_id)
            if running is not None:
                running.cancel.set()
                return job
            if self.shared:
                # Ours to end only if no worker holds it; else its worker sees the file.
                claim = self._claim(job_id)
                if claim is None:
                    (self.job_folder(job_id) / CANCEL_FILE).touch()
                    return job
                job = self._unfinished_job(job_id)  # it may have ended before the claim
            # Queued: end it now; a worker skips finished jobs.
            self._finish(job, JobState.CANCELLED)
            self._event(job.id, self._cancelled_event(job))
            return job

    def queued_count(self) -> int:
        """Jobs waiting for a worker: here (alone), or in the store as last looked at (shared)."""
        if self.shared:
            return self._waiting
        with self._lock:
            return len(self._queued)

    async def watch(self, job_id: str, after_sequence: int) -> AsyncGenerator[LoggedEvent[E], None]:
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
        wait = TICK_SECONDS if self.shared else WATCH_RECHECK_SECONDS
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
                            f"the {self.SERVICE} is shutting down; reattach with after_sequence={sent}",
                            reason="SHUTTING_DOWN",
                        )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), wait)
                    if self.shared and not changed.is_set() and job_id not in self._running:
                        await asyncio.to_thread(events.refresh)  # another replica may run it
                    continue
                for event in batch:
                    yield event
                    sent = event.sequence
                    if event.terminal:
                        return

    def job_folder(self, job_id: str) -> Path:
        return self._store.existing(self.KIND, job_id)

    # ---- workers ----------------------------------------------------------
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._draining.is_set():
                return
            with self._lock:
                self._queued.discard(job_id)
                running = self._take(job_id)
                if running is None:
                    continue
                job = self.get(job_id)
            try:
                with log_context(**self._log_ids(job)):
                    self._run_one(job, running)
            finally:
                with self._lock:
                    self._running.pop(job_id, None)
                    self._release(running)

    def _take(self, job_id: str) -> Running | None:
        """Mark the job running here, if it is still to run and (shared) this worker claims it."""
        if job_id in self._running:
            return None
        try:
            job = self.get(job_id)
        except NotFound:  # deleted since it was queued
            return None
        if job.finished:
            self._finished.add(job_id)
            return None
        running = Running()
        if self.shared:
            running.claim = self._claim(job_id)
            if running.claim is None:
                return None  # another worker runs it
            job = self.get(job_id)
            if job.finished:
                self._finished.add(job_id)
                return None
            if (self.job_folder(job_id) / CANCEL_FILE).exists():
                running.cancel.set()
        self._running[job_id] = running
        return running

    def _run_one(self, job: R, running: Running) -> None:
        if running.cancel.is_set():  # cancelled on another replica before it started
            self._end_cancelled(job)
            return
        try:
            self._run_job(job, self._context(job, running))
        except Stopped:
            log.info("job interrupted; it runs again at the next start")
        except CancelledByUser:
            if not running.lost.is_set():
                self._end_cancelled(job)
        except SynthError as err:
            if not running.lost.is_set():
                self._fail(job, Failure.of(err))
        except Exception as err:  # noqa: BLE001 - a job failure must not kill the worker
            log.exception("job failed")
            if not running.lost.is_set():
                self._fail(job, self._internal_failure(err))

    def _end_cancelled(self, job: R) -> None:
        self._finish(job, JobState.CANCELLED)
        self._event(job.id, self._cancelled_event(job))
        log.info("job cancelled")

    def _fail(self, job: R, failure: Failure) -> None:
        event = self._record_failure(job, failure)
        self._finish(job, JobState.FAILED)
        self._event(job.id, event)
        log.warning("job failed", extra={"grpc_code": failure.code, "reason": failure.reason})

    def _finish(self, job: R, state: JobState) -> None:
        job.state, job.ended_at = state, time.time()
        self._save(job)
        self._finished.add(job.id)
        with self._lock:
            self._queued.discard(job.id)
        if self._on_end is not None:
            try:
                self._on_end(job)
            except Exception:  # noqa: BLE001 - bookkeeping must not change how a job ends
                log.exception("on_end hook failed")

    # ---- shared jobs: claims, the keeper ------------------------------------
    def _claim(self, job_id: str) -> Path | None:
        """Claim the job's next attempt: ``run-<n+1>`` created exclusively when
        no live worker holds ``run-<n>``. None when another worker holds it or
        won the race."""
        return claim_next(self.job_folder(job_id), self._owner)

    def _release(self, running: Running) -> None:
        """Let any worker take the job at once (its claim dated stale)."""
        if running.claim is not None and not running.lost.is_set():
            with contextlib.suppress(FileNotFoundError):
                os.utime(running.claim, (0, 0))
        running.claim = None

    def _keep(self) -> None:
        """Shared jobs, every tick: refresh this worker's claims, pass on
        cancels asked elsewhere, and take jobs no live worker holds."""
        while not self._stopping.wait(TICK_SECONDS):
            try:
                self._heartbeat()
                if not self._draining.is_set():
                    self._scan()
            except Exception:  # noqa: BLE001 - the keeper must keep going
                log.exception("job keeper failed")

    def _heartbeat(self) -> None:
        with self._lock:
            for running in self._running.values():
                claim = running.claim
                if claim is None:
                    continue
                if taken_over(claim):
                    running.lost.set()  # presumed dead and taken over: stop, write nothing
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.utime(claim)
                if (claim.parent / CANCEL_FILE).exists():
                    running.cancel.set()

    def _scan(self) -> builtins.list[str]:
        """Queue here the unfinished jobs no live worker holds, oldest first, as
        many as this process has idle workers; count the queued ones."""
        taken = []
        waiting = 0
        with self._lock:
            idle = self._concurrency - len(self._running) - len(self._queued)
        for job in self._unfinished():
            if job.state is JobState.QUEUED:
                waiting += 1
            with self._lock:
                if idle <= 0 or job.id in self._running or job.id in self._queued:
                    continue
            if held(self.job_folder(job.id)):
                continue
            self._enqueue(job.id)
            taken.append(job.id)
            idle -= 1
        self._waiting = waiting
        return taken

    # ---- helpers ------------------------------------------------------------
    def _enqueue(self, job_id: str) -> None:
        with self._lock:
            self._queued.add(job_id)
        self._queue.put(job_id)

    def _running_ids(self) -> builtins.list[str]:
        with self._lock:
            return builtins.list(self._running)

    def _unfinished(self) -> builtins.list[R]:
        """Every job not known to have ended, oldest first."""
        out = []
        for job_id in self._store.list_ids(self.KIND):
            if job_id in self._finished:
                continue
            try:
                job = self.get(job_id)
            except (NotFound, FileNotFoundError):  # deleted meanwhile
                continue
            if job.finished:
                self._finished.add(job_id)
            else:
                out.append(job)
        return out

    def _unfinished_job(self, job_id: str) -> R:
        job = self.get(job_id)
        if job.finished:
            raise FailedPrecondition(
                f"job {job_id} already ended ({job.state}); only queued or running jobs can be cancelled",
                reason="JOB_FINISHED",
            )
        return job

    def _save(self, job: R) -> None:
        write_json_atomic(self.job_folder(job.id) / JOB_FILE, job.to_dict())

    def _log(self, job_id: str) -> EventLog[E]:
        if job_id not in self._logs:
            self._logs[job_id] = EventLog(self.job_folder(job_id) / EVENTS_FILE, self._kinds)
        return self._logs[job_id]

    def _watched_log(self, job_id: str) -> EventLog[E]:
        self.get(job_id)  # NOT_FOUND for unknown jobs
        with self._lock:
            events = self._log(job_id)
        if self.shared:
            events.refresh()
        return events

    def _event(self, job_id: str, event: E) -> LoggedEvent[E]:
        with self._lock:
            logged = self._log(job_id).append(event)
        self._wakeups.notify()
        return logged


class JobContext(Generic[R, E]):
    """What a running job may do: report events, save progress, check for a stop."""

    def __init__(self, manager: JobManager[R, E, Any], job: R, running: Running) -> None:
        self._manager = manager
        self.job = job
        self._running = running
        self.folder = manager.job_folder(job.id)

    @property
    def events(self) -> list[LoggedEvent[E]]:
        return list(self._manager._log(self.job.id).events)

    def event(self, event: E) -> None:
        self._check_owner()
        self._manager._event(self.job.id, event)

    def save(self) -> None:
        self._check_owner()
        self._manager._save(self.job)

    def finish(self, state: JobState, event: E) -> None:
        """End the job in ``state`` with its terminal ``event``."""
        self._check_owner()
        self._manager._finish(self.job, state)
        self._manager._event(self.job.id, event)

    @property
    def cancel_requested(self) -> bool:
        return self._running.cancel.is_set()

    def should_stop(self) -> bool:
        return self._running.cancel.is_set() or self._running.lost.is_set() or self._manager._stopping.is_set()

    def raise_if_stopped(self) -> None:
        """Called by the runner when the work stopped early: say why."""
        if self._running.cancel.is_set():
            raise CancelledByUser()
        raise Stopped()

    def _check_owner(self) -> None:
        if self._running.lost.is_set():
            raise Stopped()
