"""EvaluationService: translate requests, call the domain, translate jobs,
events and reports back."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from synth.v1 import evaluation_pb2, evaluation_pb2_grpc, training_pb2

from services.common import jobs, labels
from services.common.convert import failure_to_status, timestamp
from services.common.quality import Report
from services.evaluator.evaluations import EvaluationRequest, Evaluations, Progress
from services.evaluator.jobs import (
    EvaluationCancelled,
    EvaluationEvent,
    EvaluationFailed,
    EvaluationJob,
    EvaluationProgressed,
    EvaluationQueued,
    EvaluationStarted,
    EvaluationSucceeded,
    JobState,
)

_STATES = {
    JobState.QUEUED: training_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: training_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: training_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: training_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: training_pb2.JOB_STATE_CANCELLED,
}


def _enum(enum: Any, text: str) -> Any:
    """The proto number for a domain label (UNSPECIFIED for one the proto lacks)."""
    try:
        return labels.value(enum, text)
    except KeyError:
        return 0


def _task(number: int) -> str:
    """The domain's task label; unset means "auto", and a number this build does
    not know stays unknown, so the evaluation refuses it (INVALID_ARGUMENT)."""
    text = labels.label(evaluation_pb2.Task, number)
    return "auto" if text == "unspecified" else text or f"#{number}"


def _num(value: float | None) -> float:
    """Proto doubles carry NaN fine, but JSON clients choke on it: 0 with the
    verdict saying not_applicable is the clearer wire value."""
    return 0.0 if value is None or not math.isfinite(value) else float(value)


def report_to_proto(report: Report) -> evaluation_pb2.Report:
    msg = evaluation_pb2.Report(
        id=report.id,
        dataset_id=report.dataset_id,
        model_id=report.model_id,
        synthetic_dataset_id=report.synthetic_dataset_id,
        target_column=report.target_column,
        task=_enum(evaluation_pb2.Task, report.task or "auto"),
        seed=report.seed,
        training_rows=report.training_rows,
        holdout_rows=report.holdout_rows,
        synthetic_rows=report.synthetic_rows,
        utility_score=_num(report.utility_score),
        fidelity_score=_num(report.fidelity_score),
        privacy_score=_num(report.privacy_score),
        verdict=_enum(evaluation_pb2.Verdict, report.verdict),
        summary=report.summary,
        seconds=_num(report.seconds),
        next_steps=report.next_steps,
        engine=report.engine,
        engine_reason=report.engine_reason,
    )
    for m in report.metrics:
        metric = msg.metrics.add(
            name=m.name,
            category=_enum(evaluation_pb2.MetricCategory, m.category),
            value=_num(m.value),
            threshold=_num(m.threshold),
            higher_is_better=m.higher_is_better,
            verdict=_enum(evaluation_pb2.Verdict, m.verdict),
            score=_num(m.score),
            explanation=m.explanation,
        )
        if m.baseline_value is not None and math.isfinite(m.baseline_value):
            metric.baseline_value = m.baseline_value
        if m.holdout_value is not None and math.isfinite(m.holdout_value):
            metric.holdout_value = m.holdout_value
    for h in report.histograms:
        msg.histograms.add(
            column=h.column,
            labels=h.labels,
            bin_edges=[_num(x) for x in h.bin_edges],
            real=[_num(x) for x in h.real],
            synthetic=[_num(x) for x in h.synthetic],
            baseline=[_num(x) for x in h.baseline],
        )
    for name in ("real", "synthetic", "difference"):
        matrix = getattr(report.correlations, name)
        getattr(msg.correlations, name).CopyFrom(
            evaluation_pb2.Matrix(columns=matrix.columns, values=[_num(x) for x in matrix.values])
        )
    for d in report.distances:
        msg.distances.add(
            name=d.name,
            bin_edges=[_num(x) for x in d.bin_edges],
            synthetic_to_train=[_num(x) for x in d.synthetic_to_train],
            holdout_to_train=[_num(x) for x in d.holdout_to_train],
        )
    if report.create_time:
        stamp = Timestamp()
        stamp.FromDatetime(datetime.strptime(report.create_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))
        msg.create_time.CopyFrom(stamp)
    return msg


def request_from_proto(
    request: evaluation_pb2.StartEvaluationRequest | evaluation_pb2.EvaluateRequest,
) -> EvaluationRequest:
    """StartEvaluation's request (or the deprecated Evaluate's, which has the same fields)."""
    return EvaluationRequest(
        dataset_id=request.dataset_id,
        model_id=request.model_id,
        synthetic_dataset_id=request.synthetic_dataset_id,
        target_column=request.target_column,
        task=_task(request.task),
        seed=request.seed if request.HasField("seed") else None,
        synthetic_rows=request.synthetic_row_count,
        thresholds=dict(request.thresholds),
        request_id=request.request_id,
    )


def job_to_proto(job: EvaluationJob) -> evaluation_pb2.EvaluationJob:
    spec = job.spec
    msg = evaluation_pb2.EvaluationJob(
        id=job.id,
        dataset_id=spec.dataset_id,
        model_id=spec.model_id,
        synthetic_dataset_id=spec.synthetic_dataset_id,
        target_column=spec.target_column,
        task=_enum(evaluation_pb2.Task, spec.task),
        seed=spec.seed,
        synthetic_row_count=spec.synthetic_rows,
        thresholds=spec.thresholds,
        state=_STATES[job.state],
        progress=evaluation_pb2.EvaluationProgress(stage=job.stage, fraction=job.fraction),
        report_id=job.report_id if job.state is JobState.SUCCEEDED else "",
        create_time=timestamp(job.created_at),
        attempts=job.attempts,
    )
    if job.failure is not None:
        msg.error.CopyFrom(failure_to_status(job.failure))
    if job.started_at:
        msg.start_time.CopyFrom(timestamp(job.started_at))
    if job.ended_at:
        msg.end_time.CopyFrom(timestamp(job.ended_at))
    return msg


def event_to_proto(logged: jobs.LoggedEvent[EvaluationEvent]) -> evaluation_pb2.WatchEvaluationResponse:
    msg = evaluation_pb2.WatchEvaluationResponse(sequence=logged.sequence, time=timestamp(logged.time))
    event = logged.event
    if isinstance(event, EvaluationQueued):
        msg.queued.position = event.position
        msg.queued.SetInParent()
    elif isinstance(event, EvaluationStarted):
        msg.started.attempt = event.attempt
        msg.started.SetInParent()
    elif isinstance(event, EvaluationProgressed):
        msg.progress.stage, msg.progress.fraction = event.stage, event.fraction
        msg.progress.SetInParent()
    elif isinstance(event, EvaluationSucceeded):
        msg.succeeded.report_id, msg.succeeded.seconds = event.report_id, event.seconds
        msg.succeeded.SetInParent()
    elif isinstance(event, EvaluationFailed):
        msg.failed.status.CopyFrom(failure_to_status(event.failure))
    elif isinstance(event, EvaluationCancelled):
        msg.cancelled.stage = event.stage
        msg.cancelled.SetInParent()
    return msg


class EvaluationServicer(evaluation_pb2_grpc.EvaluationServiceServicer):
    def __init__(self, evaluations: Evaluations) -> None:
        self._evaluations = evaluations

    def StartEvaluation(
        self, request: evaluation_pb2.StartEvaluationRequest, context: grpc.ServicerContext
    ) -> evaluation_pb2.StartEvaluationResponse:
        job = self._evaluations.start(request_from_proto(request))
        return evaluation_pb2.StartEvaluationResponse(job=job_to_proto(job))

    def GetEvaluationJob(
        self, request: evaluation_pb2.GetEvaluationJobRequest, context: grpc.ServicerContext
    ) -> evaluation_pb2.GetEvaluationJobResponse:
        return evaluation_pb2.GetEvaluationJobResponse(job=job_to_proto(self._evaluations.jobs.get(request.job_id)))

    def ListEvaluationJobs(
        self, request: evaluation_pb2.ListEvaluationJobsRequest, context: grpc.ServicerContext
    ) -> evaluation_pb2.ListEvaluationJobsResponse:
        found, token = self._evaluations.jobs.list(request.page_size, request.page_token)
        return evaluation_pb2.ListEvaluationJobsResponse(jobs=[job_to_proto(j) for j in found], next_page_token=token)

    def CancelEvaluationJob(
        self, request: evaluation_pb2.CancelEvaluationJobRequest, context: grpc.ServicerContext
    ) -> evaluation_pb2.CancelEvaluationJobResponse:
        job = self._evaluations.jobs.cancel(request.job_id)
        return evaluation_pb2.CancelEvaluationJobResponse(job=job_to_proto(job))

    async def WatchEvaluation(
        self, request: evaluation_pb2.WatchEvaluationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[evaluation_pb2.WatchEvaluationResponse]:
        # Async: an idle watch waits on the server's event loop, holding no thread.
        async with contextlib.aclosing(self._evaluations.jobs.watch(request.job_id, request.after_sequence)) as events:
            async for event in events:
                yield event_to_proto(event)

    async def Evaluate(
        self, request: evaluation_pb2.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[evaluation_pb2.EvaluateResponse]:
        """Deprecated: StartEvaluation and WatchEvaluation, with the report at the end."""
        sequence = 0
        async with contextlib.aclosing(self._evaluations.evaluate(request_from_proto(request))) as items:
            async for item in items:
                sequence += 1
                if isinstance(item, Progress):
                    yield evaluation_pb2.EvaluateResponse(
                        sequence=sequence,
                        progress=evaluation_pb2.EvaluationProgress(stage=item.stage, fraction=item.fraction),
                    )
                else:
                    yield evaluation_pb2.EvaluateResponse(sequence=sequence, report=report_to_proto(item))

    def GetReport(
        self, request: evaluation_pb2.GetReportRequest, context: grpc.ServicerContext
    ) -> evaluation_pb2.GetReportResponse:
        report = self._evaluations.reports.get(request.report_id)
        return evaluation_pb2.GetReportResponse(report=report_to_proto(report))

    def ListReports(
        self, request: evaluation_pb2.ListReportsRequest, context: grpc.ServicerContext
    ) -> evaluation_pb2.ListReportsResponse:
        reports, token = self._evaluations.reports.list(request.page_size, request.page_token)
        return evaluation_pb2.ListReportsResponse(reports=[report_to_proto(r) for r in reports], next_page_token=token)

    def DeleteReport(
        self, request: evaluation_pb2.DeleteReportRequest, context: grpc.ServicerContext
    ) -> evaluation_pb2.DeleteReportResponse:
        self._evaluations.reports.delete(request.report_id)
        return evaluation_pb2.DeleteReportResponse()
