"""The one job machinery (``services.common.jobs``) that training and
evaluation jobs share, on a small job kind of its own: the event log (torn
lines, fields added later), failures, and shared jobs (claims, a stale claim
taken over, a cancel asked on another replica, watchers following what another
process appends). No sockets: managers over one store in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from services.common import jobs
from services.common.errors import FieldViolation, InvalidArgument, NotFound
from services.common.jobs import EventLog, Failure, JobEvent, JobState, Running
from services.common.store import ArtifactStore


@dataclass(frozen=True)
class Queued(JobEvent):
    KIND: ClassVar[str] = "queued"
    position: int


@dataclass(frozen=True)
class Step(JobEvent):
    KIND: ClassVar[str] = "step"
    n: int
    note: str = ""  # a field added later


@dataclass(frozen=True)
class Done(JobEvent):
    KIND: ClassVar[str] = "done"
    TERMINAL: ClassVar[bool] = True


@dataclass(frozen=True)
class Failed(JobEvent):
    KIND: ClassVar[str] = "failed"
    TERMINAL: ClassVar[bool] = True
    failure: Failure

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Failed:
        return cls(failure=Failure.from_dict(fields["failure"]))


@dataclass(frozen=True)
class Cancelled(JobEvent):
    KIND: ClassVar[str] = "cancelled"
    TERMINAL: ClassVar[bool] = True


Event = Queued | Step | Done | Failed | Cancelled
KINDS: dict[str, type[Event]] = {c.KIND: c for c in (Queued, Step, Done, Failed, Cancelled)}


@dataclass
class Record:
    id: str
    state: JobState = JobState.QUEUED
    ended_at: float = 0.0
    failure: Failure | None = None

    @property
    def finished(self) -> bool:
        return self.state.terminal

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "ended_at": self.ended_at,
            "failure": self.failure.to_dict() if self.failure else None,
        }


class Context(jobs.JobContext[Record, Event]):
    pass


class Manager(jobs.JobManager[Record, Event, Context]):
    KIND = "evaluations"
    SERVICE = "tester"
    NOUN = "test"

    def __init__(self, store: ArtifactStore, run: Callable[[Record, Context], None], **kw: Any) -> None:
        super().__init__(store, run, kinds=KINDS, **kw)

    def create(self) -> Record:
        return self._create(lambda job_id: Record(id=job_id))

    def _load(self, data: dict[str, Any]) -> Record:
        failure = data.get("failure")
        return Record(
            data["id"], JobState(data["state"]), data["ended_at"], Failure.from_dict(failure) if failure else None
        )

    def _context(self, job: Record, running: Running) -> Context:
        return Context(self, job, running)

    def _queued_event(self, position: int) -> Event:
        return Queued(position=position)

    def _cancelled_event(self, job: Record) -> Event:
        return Cancelled()

    def _record_failure(self, job: Record, failure: Failure) -> Event:
        job.failure = failure
        return Failed(failure=failure)


def steps(count: int, gate: threading.Event | None = None) -> Callable[[Record, Context], None]:
    """A job that logs ``count`` steps (waiting for ``gate`` after the first), stopping when asked."""

    def run(job: Record, ctx: Context) -> None:
        job.state = JobState.RUNNING
        ctx.save()
        for n in range(1, count + 1):
            ctx.event(Step(n=n))
            if gate is not None:
                while not gate.wait(0.02):
                    if ctx.should_stop():
                        ctx.raise_if_stopped()
            if ctx.should_stop():
                ctx.raise_if_stopped()
        ctx.finish(JobState.SUCCEEDED, Done())

    return run


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


async def _watched(manager: Manager, job_id: str, after: int = 0) -> list[jobs.LoggedEvent[Event]]:
    return [e async for e in manager.watch(job_id, after)]


def kinds_of(events: list[jobs.LoggedEvent[Event]]) -> list[str]:
    return [e.event.KIND for e in events]


# ---- the event log ---------------------------------------------------------------------------


def test_a_torn_last_line_is_left_out_and_cut_off_by_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, KINDS)
    log.append(Queued(position=0))
    log.append(Step(n=1))
    with open(path, "a") as fh:
        fh.write('{"sequence": 3, "time": 17')  # a crash mid-write
    again = EventLog(path, KINDS)
    assert [e.sequence for e in again.events] == [1, 2]
    again.append(Step(n=2))
    again.append(Done())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["sequence"] for line in lines] == [1, 2, 3, 4], "the torn fragment is gone, nothing glued to it"
    assert [e.event for e in EventLog(path, KINDS).events][-2:] == [Step(n=2), Done()]


def test_a_field_added_later_reads_from_old_lines_and_old_lines_stay_as_they_were(tmp_path: Path) -> None:
    line = {"sequence": 1, "time": 1.5, "type": "step", "n": 4}
    sequence, when, event = jobs.decode_event(line, KINDS)
    assert (sequence, when, event) == (1, 1.5, Step(n=4, note=""))
    assert jobs.LoggedEvent(1, 1.5, event).to_dict() == line, "a default is not written"
    assert jobs.LoggedEvent(1, 1.5, Step(n=4, note="x")).to_dict()["note"] == "x"


def test_a_failure_survives_the_log_and_is_raised_again_as_the_error_it_was(tmp_path: Path) -> None:
    err = InvalidArgument("bad column", reason="SCHEMA_MISMATCH", violations=[FieldViolation("columns[0]", "extra")])
    failure = Failure.of(err)
    log = EventLog(tmp_path / "events.jsonl", KINDS)
    log.append(Failed(failure=failure))
    read = EventLog(tmp_path / "events.jsonl", KINDS).events[0].event
    assert isinstance(read, Failed) and read.failure == failure
    again = read.failure.error()
    assert isinstance(again, InvalidArgument) and again.reason == "SCHEMA_MISMATCH"
    assert again.violations == [FieldViolation("columns[0]", "extra")]


# ---- jobs run alone ---------------------------------------------------------------------------


def test_a_job_runs_fails_with_its_reason_or_is_cancelled(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")

    def run(job: Record, ctx: Context) -> None:
        if job.id == failing:
            raise NotFound("model mdl-0123456789abcdef not found", reason="MODEL_NOT_FOUND")
        steps(2)(job, ctx)

    ended: list[Record] = []
    manager = Manager(store, run, on_end=ended.append)
    failing = manager.create().id
    ok = manager.create().id
    cancelled = manager.create().id
    assert manager.queued_count() == 3
    manager.cancel(cancelled)  # queued: ends now
    assert manager.get(cancelled).state is JobState.CANCELLED
    manager.start()
    try:
        wait_until(lambda: manager.get(ok).finished and manager.get(failing).finished)
    finally:
        manager.shutdown(5)
    assert kinds_of(asyncio.run(_watched(manager, ok))) == ["queued", "step", "step", "done"]
    failed = manager.get(failing)
    assert failed.state is JobState.FAILED and failed.failure is not None
    assert (failed.failure.code, failed.failure.reason) == ("NOT_FOUND", "MODEL_NOT_FOUND")
    assert kinds_of(asyncio.run(_watched(manager, cancelled))) == ["queued", "cancelled"]
    assert sorted(j.state for j in ended) == sorted([JobState.CANCELLED, JobState.SUCCEEDED, JobState.FAILED])
    with pytest.raises(Exception, match="already ended"):
        manager.cancel(ok)


def test_an_internal_error_fails_the_job_with_a_fixed_message(tmp_path: Path) -> None:
    def run(job: Record, ctx: Context) -> None:
        raise RuntimeError("secret detail /etc/passwd")

    manager = Manager(ArtifactStore(tmp_path / "store"), run)
    job_id = manager.create().id
    manager.start()
    try:
        wait_until(lambda: manager.get(job_id).finished)
    finally:
        manager.shutdown(5)
    failure = manager.get(job_id).failure
    assert failure is not None and failure.code == "INTERNAL" and "secret" not in failure.message


# ---- shared jobs: replicas over one store -----------------------------------------------------


def test_a_job_runs_once_on_whichever_replica_claims_it_and_watchers_anywhere_follow_it(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    gate = threading.Event()
    first = Manager(ArtifactStore(store_dir), steps(3, gate), shared=True)
    second = Manager(ArtifactStore(store_dir), steps(3, gate), shared=True)
    job_id = first.create().id  # queued on the first, whose workers are not started
    assert second.recover() == [job_id], "the idle replica takes it from the store"
    second.start()
    try:
        wait_until(lambda: second.get(job_id).state is JobState.RUNNING)
        folder = store_dir / "evaluations" / job_id
        assert [p.name for p in folder.glob("run-*")] == ["run-1"]
        assert first._claim(job_id) is None, "a live claim: no second run"
        assert first.recover() == [], "and no replica queues it again"

        async def follow() -> list[jobs.LoggedEvent[Event]]:
            watching = asyncio.ensure_future(_watched(first, job_id))  # where it does not run
            await asyncio.sleep(0.3)
            gate.set()
            return await watching

        events = asyncio.run(follow())
        assert kinds_of(events) == ["queued", "step", "step", "step", "done"]
        assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
        assert first.get(job_id).state is JobState.SUCCEEDED
    finally:
        gate.set()
        second.shutdown(5)


def test_a_cancel_asked_on_another_replica_reaches_the_one_running_the_job(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    gate = threading.Event()
    runner = Manager(ArtifactStore(store_dir), steps(3, gate), shared=True)
    other = Manager(ArtifactStore(store_dir), steps(3, gate), shared=True)
    job_id = runner.create().id
    runner.start()
    try:
        wait_until(lambda: runner.get(job_id).state is JobState.RUNNING)
        assert other.cancel(job_id).state is JobState.RUNNING  # asked where it does not run
        assert (store_dir / "evaluations" / job_id / "cancel").exists()
        wait_until(lambda: runner.get(job_id).finished)  # its keeper passes it on within a tick
    finally:
        gate.set()
        runner.shutdown(5)
    assert runner.get(job_id).state is JobState.CANCELLED
    assert kinds_of(asyncio.run(_watched(other, job_id)))[-1] == "cancelled"


def test_a_stopped_replica_releases_its_job_and_a_dead_ones_claim_goes_stale(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    gate = threading.Event()
    first = Manager(ArtifactStore(store_dir), steps(3, gate), shared=True)
    job_id = first.create().id
    first.start()
    wait_until(lambda: first.get(job_id).state is JobState.RUNNING)
    first.shutdown(5)  # a graceful stop: the job stays running, its claim released
    folder = store_dir / "evaluations" / job_id
    assert first.get(job_id).state is JobState.RUNNING and (folder / "run-1").stat().st_mtime == 0

    second = Manager(ArtifactStore(store_dir), steps(3), shared=True)
    assert second.recover() == [job_id]
    second.start()
    try:
        wait_until(lambda: second.get(job_id).finished)
    finally:
        second.shutdown(5)
    events = asyncio.run(_watched(second, job_id))
    assert [e.sequence for e in events] == list(range(1, len(events) + 1)) and events[-1].event == Done()
    assert sorted(p.name for p in folder.glob("run-*")) == ["run-1", "run-2"]

    # A claim not refreshed for LEASE_SECONDS is a dead worker's; one refreshed is not.
    stale_job = Manager(ArtifactStore(store_dir), steps(1), shared=True).create().id
    stale_folder = store_dir / "evaluations" / stale_job
    (stale_folder / "run-1").write_text("a worker that died")
    third = Manager(ArtifactStore(store_dir), steps(1), shared=True)
    assert third.recover() == []
    old = time.time() - jobs.LEASE_SECONDS - 5
    os.utime(stale_folder / "run-1", (old, old))
    assert third.recover() == [stale_job]
    assert third._claim(stale_job) == stale_folder / "run-2"


def test_a_worker_presumed_dead_and_taken_over_writes_nothing_more(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    manager = Manager(ArtifactStore(store_dir), steps(1), shared=True)
    job_id = manager.create().id
    running = Running(claim=manager._claim(job_id))
    manager._running[job_id] = running
    (store_dir / "evaluations" / job_id / "run-2").write_text("the replica that took over")
    manager._heartbeat()
    assert running.lost.is_set()
    ctx = Context(manager, manager.get(job_id), running)
    assert ctx.should_stop()
    with pytest.raises(jobs.Stopped):
        ctx.event(Step(n=1))
    assert len(EventLog(store_dir / "evaluations" / job_id / "events.jsonl", KINDS).events) == 1
