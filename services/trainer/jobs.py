"""Training jobs: the record, and the job manager and context of
``services.common.jobs`` (the one design for long-running work) for them.

A job lives in ``jobs/<id>/`` in the store:
- ``job.json``      the record (state, config, model id...), rewritten atomically;
- ``events.jsonl``  the append-only event log (fsynced per event), which is what
                    WatchTraining replays to a re-attaching client;
- ``checkpoint/``   the last resumable engine state: a folder with
                    ``checkpoint.pt`` (tensors only) and its sha256 manifest
                    (and signature), replaced whole at each checkpoint.

States (:class:`JobState`): queued → running → succeeded | failed | cancelled.
Events are the dataclasses of ``services.trainer.events``. The trainer runs
alone (one replica) and owns its jobs: a trainer that is killed leaves jobs
"queued" or "running"; at start-up :meth:`JobManager.recover` queues them again
and a running one resumes from its last checkpoint. The model id is chosen
when the job starts, so a crash between writing the model and updating the job
is recognised at recovery (the model exists).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from services.common import jobs
from services.common.jobs import Failure, JobState, Running
from services.common.store import ArtifactStore, RequestKey
from services.trainer.events import BY_KIND, JobCancelled, JobFailed, JobQueued, JobSucceeded, TrainingEvent
from services.trainer.jobspec import JobConfig, JobSpec

__all__ = ["JobContext", "JobManager", "JobRecord", "JobState"]


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
    error_reason: str = ""  # the ErrorInfo reason of a failure (empty before it was kept)
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

    @property
    def failure(self) -> Failure | None:
        """A failure recorded with its reason (set when state is FAILED, by this version and later)."""
        if self.state is not JobState.FAILED or not self.error_reason:
            return None
        return Failure(self.error_code, self.error_message, self.error_reason)

    def to_dict(self) -> dict[str, Any]:
        """The stored form (the spec's fields at the top level, as they always
        were; ``error_reason`` only when there is one)."""
        out: dict[str, Any] = {
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
        if self.error_reason:
            out["error_reason"] = self.error_reason
        return out

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
            error_reason=str(data.get("error_reason", "")),
            device=str(data.get("device", "")),
            created_at=float(data.get("created_at", 0.0)),
            started_at=float(data.get("started_at", 0.0)),
            ended_at=float(data.get("ended_at", 0.0)),
        )


class JobManager(jobs.JobManager[JobRecord, TrainingEvent, "JobContext"]):
    """Owns every training job: creates, queues, runs (``concurrency`` worker
    threads), cancels, and serves event logs to watchers."""

    KIND = "jobs"
    SERVICE = "trainer"
    NOUN = "training"

    def __init__(
        self,
        store: ArtifactStore,
        run_job: Callable[[JobRecord, JobContext], None],
        *,
        concurrency: int = 1,
        max_queued: int = 16,
    ) -> None:
        super().__init__(store, run_job, kinds=BY_KIND, concurrency=concurrency, max_queued=max_queued)

    def create(self, spec: JobSpec, request: RequestKey | None = None) -> JobRecord:
        """Queue a new job. With ``request`` (looked up by ``Trainer.start``
        first), a retry that commits second gets the job the first one made."""
        return self._create(
            lambda job_id: JobRecord(
                id=job_id, spec=spec, model_id=self._store.new_id("models"), created_at=time.time()
            ),
            request,
        )

    def _load(self, data: dict[str, Any]) -> JobRecord:
        return JobRecord.from_dict(data)

    def _context(self, job: JobRecord, running: Running) -> JobContext:
        return JobContext(self, job, running)

    def _queued_event(self, position: int) -> TrainingEvent:
        return JobQueued(position=position)

    def _cancelled_event(self, job: JobRecord) -> TrainingEvent:
        return JobCancelled(epochs_completed=job.epochs_completed)

    def _record_failure(self, job: JobRecord, failure: Failure) -> TrainingEvent:
        job.error_code, job.error_message, job.error_reason = failure.code, failure.message, failure.reason
        return JobFailed(error_code=failure.code, error_message=failure.message, reason=failure.reason)

    def _internal_failure(self, err: Exception) -> Failure:
        return Failure("INTERNAL", f"training failed: {type(err).__name__}: {err}", reason="INTERNAL")

    def _log_ids(self, job: JobRecord) -> dict[str, str]:
        return {"job_id": job.id, "dataset_id": job.dataset_id}


class JobContext(jobs.JobContext[JobRecord, TrainingEvent]):
    """What a running training job may do: report events, save progress, check for stop."""

    def succeed(self, model_id: str, training_seconds: float) -> None:
        self.job.model_id = model_id
        self.finish(JobState.SUCCEEDED, JobSucceeded(model_id=model_id, training_seconds=training_seconds))
