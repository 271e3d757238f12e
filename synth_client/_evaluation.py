"""SynthClient's evaluation-job and report calls."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from synth.v1 import evaluation_pb2

from synth_client._base import _ClientBase
from synth_client._retry import _retry_unavailable, _translate_errors
from synth_client.errors import SynthError

_TASKS = {
    "auto": evaluation_pb2.TASK_AUTO,
    "classification": evaluation_pb2.TASK_CLASSIFICATION,
    "regression": evaluation_pb2.TASK_REGRESSION,
}


def _evaluation_fields(
    dataset_id: str,
    *,
    model_id: str,
    synthetic_dataset_id: str,
    target_column: str,
    task: str,
    seed: int | None,
    synthetic_rows: int,
    thresholds: Mapping[str, float] | None,
) -> dict[str, Any]:
    """The fields StartEvaluationRequest and EvaluateRequest share, set as asked."""
    if task not in _TASKS:
        raise SynthError("INVALID_ARGUMENT", f"unknown task {task!r}: use one of {', '.join(_TASKS)}")
    fields: dict[str, Any] = {
        "dataset_id": dataset_id,
        "target_column": target_column,
        "task": _TASKS[task],
        "synthetic_row_count": synthetic_rows,
        "thresholds": dict(thresholds or {}),
    }
    if model_id:
        fields["model_id"] = model_id
    if synthetic_dataset_id:
        fields["synthetic_dataset_id"] = synthetic_dataset_id
    if seed is not None:
        fields["seed"] = seed
    return fields


class _EvaluationMixin(_ClientBase):
    """Evaluation jobs and reports (the evaluator)."""

    @_translate_errors
    def start_evaluation(
        self,
        dataset_id: str,
        *,
        model_id: str = "",
        synthetic_dataset_id: str = "",
        target_column: str = "",
        task: str = "auto",
        seed: int | None = None,
        synthetic_rows: int = 0,
        thresholds: Mapping[str, float] | None = None,
        request_id: str | None = None,
    ) -> evaluation_pb2.EvaluationJob:
        """Queue an evaluation job (utility, fidelity, privacy of the rows of
        ``model_id``, or of the uploaded ``synthetic_dataset_id``, against the
        real ``dataset_id``); returns at once. Follow it with
        :meth:`watch_evaluation`; it runs whether or not anyone watches, until
        it ends or :meth:`cancel_evaluation`. Retried under one ``request_id``
        (a new UUID unless given) when the evaluator is unreachable: never two
        jobs for one call."""
        fields = _evaluation_fields(
            dataset_id,
            model_id=model_id,
            synthetic_dataset_id=synthetic_dataset_id,
            target_column=target_column,
            task=task,
            seed=seed,
            synthetic_rows=synthetic_rows,
            thresholds=thresholds,
        )
        request = evaluation_pb2.StartEvaluationRequest(**fields, request_id=request_id or str(uuid.uuid4()))
        return _retry_unavailable(
            lambda: self._evaluation.StartEvaluation(request, timeout=self.timeout, metadata=self._md()),
            self._channels["evaluator"],
            self.retries,
            self.retry_wait_seconds,
        ).job

    @_translate_errors
    def get_evaluation_job(self, job_id: str) -> evaluation_pb2.EvaluationJob:
        request = evaluation_pb2.GetEvaluationJobRequest(job_id=job_id)
        return self._evaluation.GetEvaluationJob(request, timeout=self.timeout, metadata=self._md()).job

    @_translate_errors
    def list_evaluation_jobs(self, page_size: int = 100) -> list[evaluation_pb2.EvaluationJob]:
        """Every evaluation job, newest first (follows page tokens)."""
        return self._all_pages(
            lambda token: self._evaluation.ListEvaluationJobs(
                evaluation_pb2.ListEvaluationJobsRequest(page_size=page_size, page_token=token),
                timeout=self.timeout,
                metadata=self._md(),
            ),
            "jobs",
        )

    @_translate_errors
    def cancel_evaluation(self, job_id: str) -> evaluation_pb2.EvaluationJob:
        """A queued evaluation ends cancelled at once, a running one at its next step."""
        request = evaluation_pb2.CancelEvaluationJobRequest(job_id=job_id)
        return self._evaluation.CancelEvaluationJob(request, timeout=self.timeout, metadata=self._md()).job

    def watch_evaluation(
        self, job_id: str, after_sequence: int = 0, *, reconnect: bool = True, timeout: float | None = None
    ) -> Iterator[evaluation_pb2.WatchEvaluationResponse]:
        """An evaluation job's events until its terminal one (succeeded with the
        report id, failed with a ``google.rpc.Status``, or cancelled). With
        ``reconnect``, a dropped stream (evaluator restart, network) is
        re-attached after the last event seen, so nothing is lost or repeated.
        ``timeout``: seconds in all (None: no limit); the job goes on after it."""
        give_up = None if timeout is None else time.monotonic() + timeout
        last = after_sequence
        attempts = 0
        while True:
            request = evaluation_pb2.WatchEvaluationRequest(job_id=job_id, after_sequence=last)
            left = None if give_up is None else max(0.0, give_up - time.monotonic())
            try:
                for event in self._evaluation.WatchEvaluation(request, timeout=left, metadata=self._md()):
                    attempts = 0
                    last = event.sequence
                    yield event
                    if event.WhichOneof("event") in ("succeeded", "failed", "cancelled"):
                        return
                return
            except grpc.RpcError as err:
                retriable = err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
                if not (reconnect and retriable) or attempts >= 30:
                    raise SynthError.from_rpc_error(err) from None
                attempts += 1
                time.sleep(min(0.2 * 2**attempts, 2.0))

    def evaluate(
        self,
        dataset_id: str,
        *,
        model_id: str = "",
        synthetic_dataset_id: str = "",
        target_column: str = "",
        task: str = "auto",
        seed: int | None = None,
        synthetic_rows: int = 0,
        thresholds: Mapping[str, float] | None = None,
        timeout: float | None = 3600.0,
        request_id: str | None = None,
    ) -> Iterator[evaluation_pb2.EvaluateResponse]:
        """Progress events, then the stored report (the last message), as
        EvaluateResponse messages: an evaluation job (:meth:`start_evaluation`)
        followed to its end (:meth:`watch_evaluation`) and its report fetched.
        A failed job raises its error (``SynthError`` with the code and
        reason); a cancelled one raises CANCELLED. Sent with a ``request_id`` (a
        new UUID unless given): calling again with the same one re-attaches to
        the same job. Stopping early leaves the job running. An evaluator
        older than evaluation jobs is asked with its streamed Evaluate."""
        asked: dict[str, Any] = dict(
            model_id=model_id,
            synthetic_dataset_id=synthetic_dataset_id,
            target_column=target_column,
            task=task,
            seed=seed,
            synthetic_rows=synthetic_rows,
            thresholds=thresholds,
        )
        request_id = request_id or str(uuid.uuid4())
        try:
            job = self.start_evaluation(dataset_id, **asked, request_id=request_id)
        except SynthError as err:
            if err.code != "UNIMPLEMENTED":
                raise
            fields = _evaluation_fields(dataset_id, **asked)
            yield from self._evaluate_streamed(evaluation_pb2.EvaluateRequest(**fields, request_id=request_id), timeout)
            return
        yield from self._follow_evaluation(job, timeout)

    def _follow_evaluation(
        self, job: evaluation_pb2.EvaluationJob, timeout: float | None
    ) -> Iterator[evaluation_pb2.EvaluateResponse]:
        sequence = 0
        fraction = 0.0
        for event in self.watch_evaluation(job.id, timeout=timeout):
            kind = event.WhichOneof("event")
            if kind == "queued" and event.queued.position:
                sequence += 1
                progress = evaluation_pb2.EvaluationProgress(stage="waiting for another evaluation to finish")
                yield evaluation_pb2.EvaluateResponse(sequence=sequence, progress=progress)
            elif kind == "progress":
                sequence += 1
                fraction = max(fraction, event.progress.fraction)  # a run again after a restart starts over
                progress = evaluation_pb2.EvaluationProgress(stage=event.progress.stage, fraction=fraction)
                yield evaluation_pb2.EvaluateResponse(sequence=sequence, progress=progress)
            elif kind == "succeeded":
                report = self.get_report(event.succeeded.report_id)
                yield evaluation_pb2.EvaluateResponse(sequence=sequence + 1, report=report)
                return
            elif kind == "failed":
                raise SynthError.from_status(event.failed.status)
            elif kind == "cancelled":
                raise SynthError("CANCELLED", f"evaluation {job.id} was cancelled", reason="JOB_CANCELLED")
        raise SynthError("UNAVAILABLE", f"evaluation {job.id}'s events ended before it did; watch it again")

    def _evaluate_streamed(
        self, request: evaluation_pb2.EvaluateRequest, timeout: float | None
    ) -> Iterator[evaluation_pb2.EvaluateResponse]:
        try:
            yield from self._evaluation.Evaluate(request, timeout=timeout, metadata=self._md())
        except grpc.RpcError as err:
            raise SynthError.from_rpc_error(err) from None

    @_translate_errors
    def get_report(self, report_id: str) -> evaluation_pb2.Report:
        request = evaluation_pb2.GetReportRequest(report_id=report_id)
        return self._evaluation.GetReport(request, timeout=self.timeout, metadata=self._md()).report

    @_translate_errors
    def list_reports(self, page_size: int = 100) -> list[evaluation_pb2.Report]:
        return self._all_pages(
            lambda token: self._evaluation.ListReports(
                evaluation_pb2.ListReportsRequest(page_size=page_size, page_token=token),
                timeout=self.timeout,
                metadata=self._md(),
            ),
            "reports",
        )

    @_translate_errors
    def delete_report(self, report_id: str) -> None:
        request = evaluation_pb2.DeleteReportRequest(report_id=report_id)
        self._evaluation.DeleteReport(request, timeout=self.timeout, metadata=self._md())
