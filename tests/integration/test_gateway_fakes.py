"""Helpers for the gateway tests (no tests here): tiny fake backends built on the
generated servicer base classes, served by real gRPC servers on 127.0.0.1:0,
that record what reached them (metadata, deadlines, cancellation); and a
function that starts the real gateway in-process in front of any backends.

The fakes let a test control what a backend answers and when (a slow watch,
a failing sample, a stream that stalls) and see what the gateway forwarded;
tests that need real behaviour use the real services."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from synth.v1 import (
    evaluation_pb2,
    evaluation_pb2_grpc,
    sampling_pb2,
    sampling_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from gateway.app import Gateway
from gateway.settings import GatewaySettings

CLOSED_PORT_ADDRESS = "127.0.0.1:1"  # nothing listens on port 1


@dataclass
class Recorder:
    """What a fake backend saw."""

    metadata: list[dict[str, str]] = field(default_factory=list)
    time_remaining: list[float | None] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    after_sequence: list[int] = field(default_factory=list)
    evaluation_after: list[int] = field(default_factory=list)  # WatchEvaluation's after_sequence, per call
    cancelled: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def saw(self, name: str, context: grpc.ServicerContext) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        self.time_remaining.append(context.time_remaining())

    def watch_cancel(self, context: grpc.ServicerContext, finished: threading.Event) -> None:
        """Set ``cancelled`` if the call ends before the servicer finished it."""

        def on_end() -> None:
            if not finished.is_set():
                self.cancelled.set()
            self.ended.set()

        context.add_callback(on_end)


class FakeSampler(sampling_pb2_grpc.SamplingServiceServicer):
    """Streams a header, ``row_count`` one-row CSV chunks (``chunk_rows`` ms
    apart) and a summary; records cancellation."""

    def __init__(self, recorder: Recorder, name: str = "sampler") -> None:
        self.rec = recorder
        self.name = name

    def SampleRows(self, request: sampling_pb2.SampleRowsRequest, context: grpc.ServicerContext) -> Any:
        self.rec.saw("SampleRows", context)
        finished = threading.Event()
        self.rec.watch_cancel(context, finished)
        if request.model_id == "mdl-missing":
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model_id} not found")
        delay = request.chunk_rows / 1000.0
        seq = 1
        yield sampling_pb2.SampleRowsResponse(
            sequence=seq,
            header=sampling_pb2.SampleHeader(column_names=["a", "b"], seed=request.seed, row_count=request.row_count),
        )
        yield sampling_pb2.SampleRowsResponse(sequence=2, chunk=sampling_pb2.RowChunk(data=b"a,b\n", row_count=0))
        seq = 2
        for i in range(request.row_count):
            if not context.is_active():
                return
            seq += 1
            self.rec.sent += 1
            yield sampling_pb2.SampleRowsResponse(
                sequence=seq, chunk=sampling_pb2.RowChunk(data=f"{i},{self.name}\n".encode(), row_count=1)
            )
            if delay:
                time.sleep(delay)
        if request.model_id == "mdl-fails-late":
            context.abort(grpc.StatusCode.INTERNAL, "the sampler broke mid-stream")
        finished.set()
        yield sampling_pb2.SampleRowsResponse(
            sequence=seq + 1, summary=sampling_pb2.SampleSummary(row_count=request.row_count)
        )


FAKE_EVALUATION = "eval-0123456789abcdef"
FAILING_EVALUATION = "eval-00000000000000ff"


class FakeEvaluator(evaluation_pb2_grpc.EvaluationServiceServicer):
    """GetReport: "rpt-slow" waits for the deadline; "rpt-flaky" fails once with
    UNAVAILABLE; DeleteReport "rpt-flaky" always fails with UNAVAILABLE.
    Evaluation jobs: StartEvaluation queues ``FAKE_EVALUATION`` (or, for
    dataset "ds-fails", ``FAILING_EVALUATION``); WatchEvaluation streams its
    log (queued, started, ``steps`` progress events, succeeded with
    "rpt-0123456789abcdef" or failed with a google.rpc.Status), ``delay``
    seconds apart, resumable with after_sequence."""

    def __init__(self, recorder: Recorder, steps: int = 10, delay: float = 0.0) -> None:
        self.rec = recorder
        self.steps = steps
        self.delay = delay

    def _job(self, job_id: str, state: int = training_pb2.JOB_STATE_QUEUED) -> evaluation_pb2.EvaluationJob:
        return evaluation_pb2.EvaluationJob(
            id=job_id, dataset_id="ds-0123456789abcdef", model_id="mdl-0123456789abcdef", seed=3, state=state
        )

    def StartEvaluation(self, request: evaluation_pb2.StartEvaluationRequest, context: grpc.ServicerContext) -> Any:
        self.rec.saw("StartEvaluation", context)
        job_id = FAILING_EVALUATION if request.dataset_id == "ds-fails" else FAKE_EVALUATION
        return evaluation_pb2.StartEvaluationResponse(job=self._job(job_id))

    def GetEvaluationJob(self, request: evaluation_pb2.GetEvaluationJobRequest, context: grpc.ServicerContext) -> Any:
        self.rec.saw("GetEvaluationJob", context)
        if request.job_id not in (FAKE_EVALUATION, FAILING_EVALUATION):
            context.abort(grpc.StatusCode.NOT_FOUND, f"evaluation {request.job_id} not found")
        return evaluation_pb2.GetEvaluationJobResponse(job=self._job(request.job_id, training_pb2.JOB_STATE_RUNNING))

    def ListEvaluationJobs(
        self, request: evaluation_pb2.ListEvaluationJobsRequest, context: grpc.ServicerContext
    ) -> Any:
        self.rec.saw("ListEvaluationJobs", context)
        return evaluation_pb2.ListEvaluationJobsResponse(jobs=[self._job(FAKE_EVALUATION)])

    def CancelEvaluationJob(
        self, request: evaluation_pb2.CancelEvaluationJobRequest, context: grpc.ServicerContext
    ) -> Any:
        self.rec.saw("CancelEvaluationJob", context)
        return evaluation_pb2.CancelEvaluationJobResponse(job=self._job(request.job_id, training_pb2.JOB_STATE_RUNNING))

    def evaluation_events(self, job_id: str) -> list[evaluation_pb2.WatchEvaluationResponse]:
        from google.rpc import code_pb2, error_details_pb2, status_pb2

        e = evaluation_pb2
        out = [
            e.WatchEvaluationResponse(sequence=1, queued=e.EvaluationQueued(position=0)),
            e.WatchEvaluationResponse(sequence=2, started=e.EvaluationStarted(attempt=1)),
        ]
        for i in range(1, self.steps + 1):
            progress = e.EvaluationProgress(stage=f"step {i}", fraction=i / (self.steps + 1))
            out.append(e.WatchEvaluationResponse(sequence=len(out) + 1, progress=progress))
        if job_id == FAILING_EVALUATION:
            status = status_pb2.Status(code=code_pb2.NOT_FOUND, message="model mdl-0123456789abcdef not found")
            status.details.add().Pack(error_details_pb2.ErrorInfo(reason="MODEL_NOT_FOUND", domain="synth.v1"))
            out.append(e.WatchEvaluationResponse(sequence=len(out) + 1, failed=e.EvaluationFailed(status=status)))
        else:
            done = e.EvaluationSucceeded(report_id="rpt-0123456789abcdef", seconds=1.5)
            out.append(e.WatchEvaluationResponse(sequence=len(out) + 1, succeeded=done))
        return out

    def WatchEvaluation(self, request: evaluation_pb2.WatchEvaluationRequest, context: grpc.ServicerContext) -> Any:
        self.rec.saw("WatchEvaluation", context)
        self.rec.evaluation_after.append(request.after_sequence)
        if request.job_id not in (FAKE_EVALUATION, FAILING_EVALUATION):
            context.abort(grpc.StatusCode.NOT_FOUND, f"evaluation {request.job_id} not found")
        for event in self.evaluation_events(request.job_id):
            if event.sequence <= request.after_sequence:
                continue
            if not context.is_active():
                return
            yield event
            if self.delay:
                time.sleep(self.delay)

    def GetReport(self, request: evaluation_pb2.GetReportRequest, context: grpc.ServicerContext) -> Any:
        self.rec.saw("GetReport", context)
        if request.report_id == "rpt-slow":
            finished = threading.Event()
            self.rec.watch_cancel(context, finished)
            while context.is_active():
                time.sleep(0.02)
            return evaluation_pb2.GetReportResponse()
        if request.report_id == "rpt-flaky" and self.rec.calls["GetReport"] == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "flaky: try again")
        if request.report_id == "rpt-flaky":
            return evaluation_pb2.GetReportResponse(report=evaluation_pb2.Report(id=request.report_id))
        return evaluation_pb2.GetReportResponse(report=rich_report(request.report_id))

    def ListReports(self, request: evaluation_pb2.ListReportsRequest, context: grpc.ServicerContext) -> Any:
        self.rec.saw("ListReports", context)
        return evaluation_pb2.ListReportsResponse(reports=[rich_report("rpt-0123456789abcdef")])

    def DeleteReport(self, request: evaluation_pb2.DeleteReportRequest, context: grpc.ServicerContext) -> Any:
        self.rec.saw("DeleteReport", context)
        context.abort(grpc.StatusCode.UNAVAILABLE, "flaky: try again")

    def Evaluate(self, request: evaluation_pb2.EvaluateRequest, context: grpc.ServicerContext) -> Any:
        self.rec.saw("Evaluate", context)
        for i, stage in enumerate(["utility", "fidelity", "privacy"], start=1):
            yield evaluation_pb2.EvaluateResponse(
                sequence=i, progress=evaluation_pb2.EvaluationProgress(stage=stage, fraction=i / 4)
            )
        yield evaluation_pb2.EvaluateResponse(
            sequence=4,
            report=evaluation_pb2.Report(
                id="rpt-0123456789abcdef",
                dataset_id=request.dataset_id,
                model_id=request.model_id,
                utility_score=0.8,
                verdict=evaluation_pb2.VERDICT_PASS,
            ),
        )


class FakeTraining(training_pb2_grpc.TrainingServiceServicer):
    """WatchTraining: a job's event log (queued, started, N epochs, succeeded),
    ``delay`` seconds apart, resumable with after_sequence."""

    def __init__(self, recorder: Recorder, epochs: int = 5, delay: float = 0.0) -> None:
        self.rec = recorder
        self.epochs = epochs
        self.delay = delay

    def events(self) -> list[training_pb2.WatchTrainingResponse]:
        now = Timestamp()
        now.GetCurrentTime()
        out = [
            training_pb2.WatchTrainingResponse(sequence=1, time=now, queued=training_pb2.JobQueued(position=0)),
            training_pb2.WatchTrainingResponse(
                sequence=2, time=now, started=training_pb2.JobStarted(device="cpu", training_rows=80, holdout_rows=20)
            ),
        ]
        for e in range(1, self.epochs + 1):
            out.append(
                training_pb2.WatchTrainingResponse(
                    sequence=len(out) + 1,
                    time=now,
                    epoch=training_pb2.EpochCompleted(
                        epoch=e, epochs=self.epochs, generator_loss=1.0 / e, discriminator_loss=-0.5 / e
                    ),
                )
            )
        out.append(
            training_pb2.WatchTrainingResponse(
                sequence=len(out) + 1, time=now, succeeded=training_pb2.JobSucceeded(model_id="mdl-0123456789abcdef")
            )
        )
        return out

    def WatchTraining(self, request: training_pb2.WatchTrainingRequest, context: grpc.ServicerContext) -> Any:
        self.rec.saw("WatchTraining", context)
        self.rec.after_sequence.append(request.after_sequence)
        finished = threading.Event()
        self.rec.watch_cancel(context, finished)
        if request.job_id == "job-missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "job job-missing not found")
        for event in self.events():
            if event.sequence <= request.after_sequence:
                continue
            if not context.is_active():
                return
            self.rec.sent += 1
            yield event
            if self.delay:
                time.sleep(self.delay)
        finished.set()


def rich_report(report_id: str) -> evaluation_pb2.Report:
    """A report with every part the web page draws: metrics of each category
    with baseline and holdout values, histograms, correlations, distances."""
    e = evaluation_pb2
    metrics = [
        e.MetricResult(
            name="tstr_roc_auc",
            category=e.METRIC_CATEGORY_UTILITY,
            value=0.78,
            baseline_value=0.55,
            holdout_value=0.83,
            threshold=0.7,
            higher_is_better=True,
            verdict=e.VERDICT_PASS,
            score=0.82,
            explanation="A model trained on synthetic rows predicts real outcomes nearly as well as real rows do.",
        ),
        e.MetricResult(
            name="ks_complement_mean",
            category=e.METRIC_CATEGORY_FIDELITY,
            value=0.8,
            baseline_value=0.78,
            holdout_value=0.97,
            threshold=0.85,
            higher_is_better=True,
            verdict=e.VERDICT_WARN,
            score=0.6,
            explanation="Column distributions are close, but some differ more than the threshold allows.",
        ),
        e.MetricResult(
            name="dcr_share",
            category=e.METRIC_CATEGORY_PRIVACY,
            value=0.51,
            holdout_value=0.5,
            threshold=0.55,
            higher_is_better=False,
            verdict=e.VERDICT_PASS,
            score=0.9,
            explanation="Synthetic rows are no closer to training rows than unseen real rows are.",
        ),
        e.MetricResult(
            name="exact_copy_rate",
            category=e.METRIC_CATEGORY_PRIVACY,
            value=0.02,
            threshold=0.01,
            higher_is_better=False,
            verdict=e.VERDICT_FAIL,
            score=0.2,
            explanation="2% of synthetic rows are exact copies of training rows.",
        ),
    ]
    columns = ["Glucose", "BMI", "Age"]
    return e.Report(
        id=report_id,
        dataset_id="ds-0123456789abcdef",
        model_id="mdl-0123456789abcdef",
        target_column="Outcome",
        task=e.TASK_CLASSIFICATION,
        training_rows=614,
        holdout_rows=154,
        synthetic_rows=614,
        metrics=metrics,
        utility_score=0.82,
        fidelity_score=0.6,
        privacy_score=0.55,
        verdict=e.VERDICT_WARN,
        summary="Useful and mostly faithful, but some rows are copied: check privacy before sharing.",
        histograms=[
            e.Histogram(
                column="Glucose",
                bin_edges=[0, 50, 100, 150, 200],
                real=[5, 150, 400, 213],
                synthetic=[10, 160, 380, 218],
                baseline=[100, 200, 300, 168],
            ),
            e.Histogram(
                column="Outcome", labels=["0", "1"], real=[500, 268], synthetic=[520, 248], baseline=[384, 384]
            ),
        ],
        correlations=e.CorrelationCharts(
            real=e.Matrix(columns=columns, values=[1, 0.2, 0.3, 0.2, 1, 0.0, 0.3, 0.0, 1]),
            synthetic=e.Matrix(columns=columns, values=[1, 0.1, 0.25, 0.1, 1, 0.05, 0.25, 0.05, 1]),
            difference=e.Matrix(columns=columns, values=[0, -0.1, -0.05, -0.1, 0, 0.05, -0.05, 0.05, 0]),
        ),
        distances=[
            e.DistanceHistogram(
                name="dcr",
                bin_edges=[0, 0.5, 1, 1.5, 2],
                synthetic_to_train=[5, 40, 30, 25],
                holdout_to_train=[4, 42, 31, 23],
            ),
            e.DistanceHistogram(
                name="nndr",
                bin_edges=[0, 0.25, 0.5, 0.75, 1],
                synthetic_to_train=[3, 20, 40, 37],
                holdout_to_train=[2, 22, 41, 35],
            ),
        ],
    )


@dataclass
class FakeBackend:
    server: grpc.Server
    address: str
    recorder: Recorder

    def stop(self) -> None:
        self.server.stop(0)


def start_fake_backend(
    name: str = "sampler", *, epochs: int = 5, delay: float = 0.0, evaluation_steps: int = 10
) -> FakeBackend:
    """A real gRPC server on 127.0.0.1:0 with the fake Sampling, Evaluation and
    Training services."""
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    sampling_pb2_grpc.add_SamplingServiceServicer_to_server(FakeSampler(recorder, name), server)
    evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server(
        FakeEvaluator(recorder, evaluation_steps, delay), server
    )
    training_pb2_grpc.add_TrainingServiceServicer_to_server(FakeTraining(recorder, epochs, delay), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return FakeBackend(server, f"127.0.0.1:{port}", recorder)


def start_gateway(
    *,
    trainer: str = CLOSED_PORT_ADDRESS,
    sampler: str = CLOSED_PORT_ADDRESS,
    evaluator: str = CLOSED_PORT_ADDRESS,
    key_file: Path | None = None,
    **settings: Any,
) -> Gateway:
    """The real gateway on free loopback ports in front of the given backends."""
    values: dict[str, Any] = {"port": 0, "http_port": 0, "metrics_port": 0, "grace_seconds": 1, **settings}
    gateway = Gateway(
        GatewaySettings(
            trainer_address=trainer,
            sampler_address=sampler,
            evaluator_address=evaluator,
            api_key_file=str(key_file) if key_file else "",
            **values,
        )
    ).start()
    gateway.set_serving()
    return gateway
