"""Evaluation jobs: what one computes, its record and events, and the job
manager and context of ``services.common.jobs`` (the design training jobs
share) for them.

A job lives in ``evaluations/<id>/`` in the store (``job.json``,
``events.jsonl``, the claims of the replicas that ran it). Its events: queued,
started (attempt 1, 2... when a restart interrupted a run), progress (stage,
fraction), then succeeded (the report id), failed (a :class:`Failure`) or
cancelled. Evaluator replicas share the store, so the jobs are shared ones:
any replica runs a queued job, and a run interrupted by a restart is computed
again from the start by whichever takes it (its seed was fixed when the job was
made, so the report is the same). The report id is chosen when the job is
made: a run that stored the report and stopped before recording it finds the
report there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from services.common import jobs
from services.common.jobs import Failure, JobEvent, JobState, Running
from services.common.store import ArtifactStore, RequestKey

__all__ = [
    "EvaluationCancelled",
    "EvaluationContext",
    "EvaluationEvent",
    "EvaluationFailed",
    "EvaluationJob",
    "EvaluationJobs",
    "EvaluationProgressed",
    "EvaluationQueued",
    "EvaluationSpec",
    "EvaluationStarted",
    "EvaluationSucceeded",
    "JobState",
]

# Progress is logged when the stage changes or the fraction grew by this much.
_PROGRESS_STEP = 0.01


@dataclass(frozen=True)
class EvaluationSpec:
    """What a job scores: the request, with the seed chosen when it was made."""

    dataset_id: str
    seed: int
    model_id: str = ""
    synthetic_dataset_id: str = ""
    target_column: str = ""
    task: str = "auto"
    synthetic_rows: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "model_id": self.model_id,
            "synthetic_dataset_id": self.synthetic_dataset_id,
            "target_column": self.target_column,
            "task": self.task,
            "seed": self.seed,
            "synthetic_rows": self.synthetic_rows,
            "thresholds": dict(self.thresholds),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(
            dataset_id=str(data["dataset_id"]),
            seed=int(data["seed"]),
            model_id=str(data.get("model_id", "")),
            synthetic_dataset_id=str(data.get("synthetic_dataset_id", "")),
            target_column=str(data.get("target_column", "")),
            task=str(data.get("task", "auto")),
            synthetic_rows=int(data.get("synthetic_rows", 0)),
            thresholds={str(k): float(v) for k, v in dict(data.get("thresholds") or {}).items()},
        )


# ---- events: the ``event`` oneof of synth.v1.WatchEvaluationResponse -----------------------


@dataclass(frozen=True)
class EvaluationQueued(JobEvent):
    KIND: ClassVar[str] = "queued"
    position: int  # jobs ahead of this one


@dataclass(frozen=True)
class EvaluationStarted(JobEvent):
    KIND: ClassVar[str] = "started"
    attempt: int  # 1, then 2... when a restart interrupted the run before


@dataclass(frozen=True)
class EvaluationProgressed(JobEvent):
    KIND: ClassVar[str] = "progress"
    stage: str
    fraction: float  # 0..1 over the whole evaluation


@dataclass(frozen=True)
class EvaluationSucceeded(JobEvent):
    KIND: ClassVar[str] = "succeeded"
    TERMINAL: ClassVar[bool] = True
    report_id: str
    seconds: float


@dataclass(frozen=True)
class EvaluationFailed(JobEvent):
    KIND: ClassVar[str] = "failed"
    TERMINAL: ClassVar[bool] = True
    failure: Failure

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Self:
        return cls(failure=Failure.from_dict(fields["failure"]))


@dataclass(frozen=True)
class EvaluationCancelled(JobEvent):
    KIND: ClassVar[str] = "cancelled"
    TERMINAL: ClassVar[bool] = True
    stage: str  # reached when it stopped ("" if it was still queued)


EvaluationEvent = (
    EvaluationQueued
    | EvaluationStarted
    | EvaluationProgressed
    | EvaluationSucceeded
    | EvaluationFailed
    | EvaluationCancelled
)
EVENT_TYPES: tuple[type[EvaluationEvent], ...] = (
    EvaluationQueued,
    EvaluationStarted,
    EvaluationProgressed,
    EvaluationSucceeded,
    EvaluationFailed,
    EvaluationCancelled,
)
BY_KIND: dict[str, type[EvaluationEvent]] = {cls.KIND: cls for cls in EVENT_TYPES}


@dataclass
class EvaluationJob:
    """A job's ``job.json``: its spec, and how far it got."""

    id: str
    spec: EvaluationSpec
    report_id: str  # reserved at creation; exists once succeeded
    state: JobState = JobState.QUEUED
    stage: str = ""
    fraction: float = 0.0
    attempts: int = 0
    failure: Failure | None = None
    created_at: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state.terminal

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "spec": self.spec.to_dict(),
            "report_id": self.report_id,
            "state": self.state.value,
            "stage": self.stage,
            "fraction": self.fraction,
            "attempts": self.attempts,
            "failure": self.failure.to_dict() if self.failure is not None else None,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        failure = data.get("failure")
        return cls(
            id=str(data["id"]),
            spec=EvaluationSpec.from_dict(data["spec"]),
            report_id=str(data["report_id"]),
            state=JobState(data.get("state", JobState.QUEUED)),
            stage=str(data.get("stage", "")),
            fraction=float(data.get("fraction", 0.0)),
            attempts=int(data.get("attempts", 0)),
            failure=Failure.from_dict(failure) if failure else None,
            created_at=float(data.get("created_at", 0.0)),
            started_at=float(data.get("started_at", 0.0)),
            ended_at=float(data.get("ended_at", 0.0)),
        )


class EvaluationJobs(jobs.JobManager[EvaluationJob, EvaluationEvent, "EvaluationContext"]):
    """Every evaluation job, shared with the other evaluator replicas."""

    KIND = "evaluations"
    SERVICE = "evaluator"
    NOUN = "evaluation"

    def __init__(
        self,
        store: ArtifactStore,
        run_job: Callable[[EvaluationJob, EvaluationContext], None],
        *,
        concurrency: int = 1,
        max_queued: int = 32,
        on_end: Callable[[EvaluationJob], None] | None = None,
    ) -> None:
        super().__init__(
            store,
            run_job,
            kinds=BY_KIND,
            concurrency=concurrency,
            max_queued=max_queued,
            shared=True,
            on_end=on_end,
        )

    def create(self, spec: EvaluationSpec, request: RequestKey | None = None) -> EvaluationJob:
        """Queue a new job (its report id reserved). With ``request`` (looked up
        by the caller first), a retry that commits second gets the first's job."""
        return self._create(
            lambda job_id: EvaluationJob(
                id=job_id, spec=spec, report_id=self._store.new_id("reports"), created_at=time.time()
            ),
            request,
        )

    def _load(self, data: dict[str, Any]) -> EvaluationJob:
        return EvaluationJob.from_dict(data)

    def _context(self, job: EvaluationJob, running: Running) -> EvaluationContext:
        return EvaluationContext(self, job, running)

    def _queued_event(self, position: int) -> EvaluationEvent:
        return EvaluationQueued(position=position)

    def _cancelled_event(self, job: EvaluationJob) -> EvaluationEvent:
        return EvaluationCancelled(stage=job.stage)

    def _record_failure(self, job: EvaluationJob, failure: Failure) -> EvaluationEvent:
        job.failure = failure
        return EvaluationFailed(failure=failure)

    def _log_ids(self, job: EvaluationJob) -> dict[str, str]:
        ids = {"job_id": job.id, "dataset_id": job.spec.dataset_id}
        if job.spec.model_id:
            ids["model_id"] = job.spec.model_id
        return ids


class EvaluationContext(jobs.JobContext[EvaluationJob, EvaluationEvent]):
    """What a running evaluation may do: start, report progress (which is
    also where a cancel or a shutdown stops it), succeed."""

    def started(self) -> None:
        job = self.job
        job.state, job.attempts = JobState.RUNNING, job.attempts + 1
        job.stage, job.fraction = "", 0.0  # a run again after a restart starts over
        job.started_at = job.started_at or time.time()
        self.save()
        self.event(EvaluationStarted(attempt=job.attempts))

    def progress(self, stage: str, fraction: float) -> None:
        """Record progress (a step of at least 1 %, or a new stage); stops the
        work here when the job was cancelled or the evaluator is stopping."""
        if self.should_stop():
            self.raise_if_stopped()
        job = self.job
        fraction = min(1.0, max(0.0, float(fraction)))
        if stage == job.stage and fraction < job.fraction + _PROGRESS_STEP:
            return
        job.stage, job.fraction = stage, max(fraction, job.fraction)
        self.save()
        self.event(EvaluationProgressed(stage=stage, fraction=job.fraction))

    def succeed(self, report_id: str, seconds: float) -> None:
        self.job.report_id = report_id
        self.job.fraction = 1.0
        self.finish(JobState.SUCCEEDED, EvaluationSucceeded(report_id=report_id, seconds=seconds))
