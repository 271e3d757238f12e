"""The evaluator's domain: gather the real training rows, the real held-out rows
and a synthetic table, score them (``quality.evaluate``), store the report.

An evaluation is a job (``services.evaluator.jobs``, the design training jobs
share): :meth:`Evaluations.start` validates a request and queues a job at once;
a worker computes the report and stores it under the id the job reserved; the
job ends succeeded (the report id), failed (a Failure with its reason) or
cancelled, whoever watches. :meth:`Evaluations.evaluate` is the deprecated
streamed call on top: start, follow, the report.

Where the rows come from:
- a model: the real rows are split exactly as the model recorded (its holdout
  indices), and synthetic rows are drawn from the sampler;
- an uploaded synthetic table: it must have the real table's columns, and the
  real rows get a seeded split (stratified on the target when there is one).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.dataset_store import DatasetRepository
from services.common.errors import (
    AlreadyExists,
    Cancelled,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
)
from services.common.holdout import split_holdout
from services.common.jobs import JobState
from services.common.models import ModelRegistry
from services.common.quality import TASKS, EvaluationInputs, Report, check_schema, evaluate
from services.common.schema import ColumnInfo
from services.common.store import ArtifactStore, RequestKey, load_page, read_json, request_key, write_json_atomic
from services.evaluator.jobs import (
    EvaluationCancelled,
    EvaluationContext,
    EvaluationFailed,
    EvaluationJob,
    EvaluationJobs,
    EvaluationProgressed,
    EvaluationQueued,
    EvaluationSpec,
    EvaluationSucceeded,
)
from services.evaluator.sampler_client import SamplerClient

log = logging.getLogger(__name__)
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class EvaluationRequest:
    dataset_id: str
    model_id: str = ""
    synthetic_dataset_id: str = ""
    target_column: str = ""
    task: str = "auto"
    seed: int | None = None
    synthetic_rows: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)
    request_id: str = ""  # AIP-155 idempotency key

    def key(self) -> RequestKey | None:
        """The request id with a digest of everything else asked."""
        asked = {k: v for k, v in dataclasses.asdict(self).items() if k != "request_id"}
        digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
        return request_key(self.request_id, digest)


@dataclass(frozen=True)
class Progress:
    stage: str
    fraction: float


class ReportStore:
    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    def put(self, report: Report) -> Report:
        """Store ``report`` under its id (the one its job reserved); the report
        already there when an earlier run of the job stored it first."""
        with self._store.staging() as staged:
            write_json_atomic(staged / REPORT_FILE, report.to_dict())
            try:
                self._store.commit(staged, "reports", report.id)
            except AlreadyExists:
                return self.get(report.id)
        return report

    def find(self, request: RequestKey | None) -> Report | None:
        """The report an earlier version's Evaluate stored for this request id, if any."""
        earlier = self._store.find_request("reports", request)
        return self.get(earlier) if earlier is not None else None

    def get(self, report_id: str) -> Report:
        return Report.from_dict(read_json(self._store.existing("reports", report_id) / REPORT_FILE))

    def list(self, page_size: int = 50, page_token: str = "") -> tuple[list[Report], str]:
        ids, token = self._store.page("reports", page_size, page_token)
        return load_page(ids, self.get), token

    def delete(self, report_id: str) -> None:
        self._store.delete("reports", report_id)


class EvaluationMetrics:
    """The evaluator's domain metrics (``synth_evaluation_*``): verdicts and
    error codes are the only labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reports = Counter(
            "synth_evaluation_reports_total", "Reports stored, by overall verdict.", ["verdict"], registry=registry
        )
        self.failures = Counter(
            "synth_evaluation_failures_total",
            "Evaluation jobs that ended without a report, by error code (CANCELLED: cancelled on request).",
            ["code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "synth_evaluation_seconds",
            "Time to compute and store one report.",
            buckets=(1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1800),
            registry=registry,
        )
        self.running = Gauge(
            "synth_evaluation_running", "Evaluations computing now in this process.", registry=registry
        )
        self.waiting = Gauge(
            "synth_evaluation_waiting",
            "Evaluation jobs queued for a worker (MAX_CONCURRENT per replica), in the store all replicas share.",
            registry=registry,
        )


class Evaluations:
    def __init__(
        self,
        store: ArtifactStore,
        datasets: DatasetRepository,
        models: ModelRegistry,
        sampler: SamplerClient,
        *,
        max_synthetic_rows: int = 1_000_000,
        holdout_fraction: float = 0.2,
        max_concurrent: int = 1,
        max_queued: int = 32,
        n_jobs: int | None = -1,
        metrics: EvaluationMetrics | None = None,
    ) -> None:
        self._store = store
        self.metrics = metrics or EvaluationMetrics(CollectorRegistry())
        self._datasets = datasets
        self._models = models
        self._sampler = sampler
        self._max_rows = max_synthetic_rows
        self._holdout_fraction = holdout_fraction
        self._n_jobs = n_jobs
        self.reports = ReportStore(store)
        self.jobs = EvaluationJobs(
            store, self._run_job, concurrency=max_concurrent, max_queued=max_queued, on_end=self._ended
        )
        self.metrics.waiting.set_function(self.jobs.queued_count)

    def start(self, request: EvaluationRequest) -> EvaluationJob:
        """Validate and queue an evaluation job; returns at once. A retry with
        the same ``request_id`` (AIP-155) gets the job the first call queued,
        in whatever state it is, even if its inputs have gone since."""
        key = request.key()
        earlier = self._store.find_request("evaluations", key)
        if earlier is not None:
            return self.jobs.get(earlier)
        self._check(request)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        spec = EvaluationSpec(
            dataset_id=request.dataset_id,
            seed=seed,
            model_id=request.model_id,
            synthetic_dataset_id=request.synthetic_dataset_id,
            target_column=request.target_column,
            task=request.task,
            synthetic_rows=request.synthetic_rows,
            thresholds=dict(request.thresholds),
        )
        return self.jobs.create(spec, key)

    async def evaluate(self, request: EvaluationRequest) -> AsyncGenerator[Progress | Report, None]:
        """The deprecated streamed Evaluate, over jobs: start the job (or find
        the one this request id started), then its progress, then its stored
        report; a failed or cancelled job raises its error. Bad requests fail
        before the first item. Leaving stops nothing: the job goes on."""
        stored = await asyncio.to_thread(self.reports.find, request.key())
        if stored is not None:  # stored by an earlier version's Evaluate for this request id
            yield stored
            return
        job = await asyncio.to_thread(self.start, request)
        if job.state is JobState.SUCCEEDED:
            yield await asyncio.to_thread(self.reports.get, job.report_id)
            return
        fraction = 0.0
        async with contextlib.aclosing(self.jobs.watch(job.id, 0)) as events:
            async for logged in events:
                event = logged.event
                if isinstance(event, EvaluationQueued) and event.position:
                    yield Progress("waiting for another evaluation to finish", fraction)
                elif isinstance(event, EvaluationProgressed):
                    fraction = max(fraction, event.fraction)  # a run again after a restart starts over
                    yield Progress(event.stage, fraction)
                elif isinstance(event, EvaluationSucceeded):
                    yield await asyncio.to_thread(self.reports.get, event.report_id)
                    return
                elif isinstance(event, EvaluationFailed):
                    raise event.failure.error()
                elif isinstance(event, EvaluationCancelled):
                    raise Cancelled(f"evaluation {job.id} was cancelled", reason="JOB_CANCELLED")

    # ---- running a job (on a worker thread) ------------------------------------
    def _run_job(self, job: EvaluationJob, ctx: EvaluationContext) -> None:
        ctx.started()
        if self._store.exists("reports", job.report_id):
            # A run before this one stored the report and stopped before recording it.
            report = self.reports.get(job.report_id)
            ctx.succeed(report.id, report.seconds)
            return
        self.metrics.running.inc()
        try:
            report = self._compute(job.spec, job.report_id, ctx.progress)
        finally:
            self.metrics.running.dec()
        self.metrics.reports.labels(report.verdict or "none").inc()
        self.metrics.seconds.observe(report.seconds)
        log.info("report stored", extra={"report_id": report.id, "seconds": round(report.seconds, 1)})
        ctx.succeed(report.id, report.seconds)

    def _ended(self, job: EvaluationJob) -> None:
        if job.state is JobState.FAILED and job.failure is not None:
            self.metrics.failures.labels(job.failure.code).inc()
        elif job.state is JobState.CANCELLED:
            self.metrics.failures.labels("CANCELLED").inc()

    def _check(self, request: EvaluationRequest) -> None:
        if bool(request.model_id) == bool(request.synthetic_dataset_id):
            raise InvalidArgument(
                "name exactly one synthetic source: a model_id or a synthetic_dataset_id",
                violations=[FieldViolation("synthetic", "set model_id or synthetic_dataset_id")],
            )
        if request.task not in TASKS:
            raise InvalidArgument(f"unknown task {request.task!r}; use one of {', '.join(TASKS)}")
        if request.synthetic_rows < 0:
            raise InvalidArgument("synthetic_row_count must not be negative")
        if request.synthetic_rows > self._max_rows:
            raise ResourceExhausted(
                f"{request.synthetic_rows} synthetic rows asked for; at most {self._max_rows} per report "
                "(SYNTH_EVALUATOR_MAX_SYNTHETIC_ROWS)",
                reason="TOO_MANY_ROWS",
            )
        dataset = self._datasets.get(request.dataset_id)
        names = [c.name for c in dataset.columns]
        if request.target_column and request.target_column not in names:
            raise InvalidArgument(
                f"target column {request.target_column!r} is not in dataset {dataset.id} (columns: {', '.join(names)})",
                violations=[FieldViolation("target_column", f"unknown column {request.target_column!r}")],
            )
        if request.model_id:
            model = self._models.get(request.model_id)
            if model.dataset_id != request.dataset_id:
                raise InvalidArgument(
                    f"model {model.id} was trained on dataset {model.dataset_id}, not {request.dataset_id}",
                    violations=[FieldViolation("model_id", "trained on another dataset")],
                )
            if model.holdout.holdout_rows == 0:
                raise FailedPrecondition(
                    f"model {model.id} held out no rows, so nothing is left to test on; "
                    "train with holdout_fraction > 0",
                    reason="NO_HOLDOUT",
                )
        else:
            synthetic = self._datasets.get(request.synthetic_dataset_id)
            # its columns, from its stored schema: a mismatch is refused now, not when the job runs
            check_schema(dataset.columns, pd.DataFrame(columns=[c.name for c in synthetic.columns]))

    def _compute(self, spec: EvaluationSpec, report_id: str, progress: Callable[[str, float], None]) -> Report:
        started = time.perf_counter()
        seed = spec.seed
        progress("loading the real rows", 0.01)
        dataset = self._datasets.get(spec.dataset_id)
        real = self._datasets.load_frame(spec.dataset_id)
        columns = dataset.columns
        engine = engine_reason = ""
        if spec.model_id:
            model = self._models.get(spec.model_id)
            # the schema the model was trained with (a job may exclude columns or learn them as categories)
            columns = [ColumnInfo.from_dict(c) for c in model.columns]
            engine, engine_reason = model.engine, (model.selection or {}).get("reason", "")
            holdout = self._models.holdout_indices(spec.model_id)
            train = np.setdiff1d(np.arange(len(real)), holdout)
            rows = spec.synthetic_rows or len(train)
            progress(f"drawing {rows} synthetic rows from the model", 0.03)
            synthetic = self._sampler.draw(spec.model_id, rows, seed)
        else:
            target = real[spec.target_column] if spec.target_column else None
            train, holdout = split_holdout(target, len(real), self._holdout_fraction, seed)
            progress("loading the synthetic rows", 0.03)
            synthetic = self._datasets.load_frame(spec.synthetic_dataset_id)
            check_schema(dataset.columns, synthetic)
        report = evaluate(
            EvaluationInputs(
                real_train=real.iloc[train].reset_index(drop=True),
                real_holdout=real.iloc[holdout].reset_index(drop=True),
                synthetic=synthetic,
                columns=columns,
                target=spec.target_column or None,
                task=spec.task,
                seed=seed,
                thresholds=dict(spec.thresholds),
                n_jobs=self._n_jobs,
            ),
            progress=lambda stage, fraction: progress(stage, 0.05 + 0.93 * fraction),
        )
        report.id = report_id
        report.dataset_id = spec.dataset_id
        report.model_id = spec.model_id
        report.synthetic_dataset_id = spec.synthetic_dataset_id
        report.engine, report.engine_reason = engine, engine_reason
        report.create_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        report.seconds = time.perf_counter() - started
        progress("storing the report", 0.99)
        return self.reports.put(report)
