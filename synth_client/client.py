"""SynthClient: typed calls over gRPC with deadlines and readable errors."""

from __future__ import annotations

import functools
import io
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from synth.v1 import (
    common_pb2,
    datasets_pb2,
    datasets_pb2_grpc,
    evaluation_pb2,
    evaluation_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    sampling_pb2,
    sampling_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from services.common import labels
from synth_client.errors import SynthError

DEFAULT_ADDRESSES = {
    "trainer": "127.0.0.1:50051",
    "sampler": "127.0.0.1:50052",
    "evaluator": "127.0.0.1:50053",
}
CHUNK_BYTES = 1 << 20  # 1 MiB: well under the 4 MiB default message limit
_KINDS = {
    "continuous": common_pb2.COLUMN_KIND_CONTINUOUS,
    "categorical": common_pb2.COLUMN_KIND_CATEGORICAL,
    "datetime": common_pb2.COLUMN_KIND_DATETIME,
    "identifier": common_pb2.COLUMN_KIND_IDENTIFIER,
    "free_text": common_pb2.COLUMN_KIND_FREE_TEXT,
}
T = TypeVar("T")


def _retry_unavailable(call: Callable[[], T], channel: grpc.Channel, retries: int, wait_seconds: float) -> T:
    """``call()``; while the server is unreachable (UNAVAILABLE: a restart, a
    dropped connection), wait until the channel is ready again, for at most
    ``wait_seconds`` in all, and call again, at most ``retries`` more times.
    Waiting for readiness rather than sleeping: gRPC fails calls at once while
    it backs off between connection attempts, so fixed sleeps mostly retry into
    that. Only for calls that are safe to repeat: creates that send a request
    id (AIP-155), so a retry never makes a second item."""
    give_up = time.monotonic() + wait_seconds
    attempt = 0
    while True:
        try:
            return call()
        except grpc.RpcError as err:
            left = give_up - time.monotonic()
            if err.code() != grpc.StatusCode.UNAVAILABLE or attempt >= retries or left <= 0:
                raise
            try:
                grpc.channel_ready_future(channel).result(timeout=left)
            except grpc.FutureTimeoutError:
                raise err from None
            attempt += 1


def _translate_errors(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as err:
            raise SynthError.from_rpc_error(err) from None

    return wrapper


class SynthClient:
    """One client for the platform. Pass one address for all services (the
    gateway) or one per service; defaults are the local ``synth up`` ports."""

    def __init__(
        self,
        address: str | None = None,
        *,
        trainer: str | None = None,
        sampler: str | None = None,
        evaluator: str | None = None,
        timeout: float = 60.0,
        metadata: Sequence[tuple[str, str]] = (),
        retries: int = 3,
        retry_wait_seconds: float = 30.0,
    ) -> None:
        targets = {
            "trainer": trainer or address or DEFAULT_ADDRESSES["trainer"],
            "sampler": sampler or address or DEFAULT_ADDRESSES["sampler"],
            "evaluator": evaluator or address or DEFAULT_ADDRESSES["evaluator"],
        }
        self.targets = targets
        self.timeout = timeout
        # Uploads and training starts are called again, up to `retries` times, when the
        # server is unreachable and comes back within `retry_wait_seconds`.
        self.retries = max(0, retries)
        self.retry_wait_seconds = retry_wait_seconds
        self._metadata = tuple(metadata)
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        self._channels = {name: grpc.insecure_channel(t, options=options) for name, t in targets.items()}
        self._datasets = datasets_pb2_grpc.DatasetServiceStub(self._channels["trainer"])
        self._training = training_pb2_grpc.TrainingServiceStub(self._channels["trainer"])
        self._models = models_pb2_grpc.ModelServiceStub(self._channels["trainer"])
        self._sampling = sampling_pb2_grpc.SamplingServiceStub(self._channels["sampler"])
        self._evaluation = evaluation_pb2_grpc.EvaluationServiceStub(self._channels["evaluator"])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> SynthClient:
        """Addresses from SYNTH_ADDRESS (all services) or SYNTH_TRAINER_ADDRESS,
        SYNTH_SAMPLER_ADDRESS, SYNTH_EVALUATOR_ADDRESS."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("SYNTH_ADDRESS"),
            trainer=kwargs.pop("trainer", None) or env.get("SYNTH_TRAINER_ADDRESS"),
            sampler=kwargs.pop("sampler", None) or env.get("SYNTH_SAMPLER_ADDRESS"),
            evaluator=kwargs.pop("evaluator", None) or env.get("SYNTH_EVALUATOR_ADDRESS"),
            **kwargs,
        )

    def __enter__(self) -> SynthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def _md(self) -> tuple[tuple[str, str], ...]:
        return (*self._metadata, ("x-request-id", uuid.uuid4().hex[:16]))

    # ---- datasets ----------------------------------------------------------
    @_translate_errors
    def upload_dataset(
        self,
        source: str | Path | bytes,
        *,
        name: str | None = None,
        encoding: str = "",
        kinds: Mapping[str, str] | None = None,
        missing_markers: Sequence[str] = (),
        chunk_bytes: int = CHUNK_BYTES,
        on_progress: Callable[[int, int], None] | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> datasets_pb2.Dataset:
        """Upload a CSV (optionally gzip-compressed) file or bytes; returns the
        stored dataset with its inferred schema. ``kinds`` overrides column kinds
        (continuous, categorical, datetime, identifier, free_text).

        An unreachable trainer is retried with the whole file under one
        ``request_id`` (a new UUID unless given), so a retry of an upload that
        was in fact stored returns that dataset instead of a second copy."""
        overrides = {}
        for column, kind in (kinds or {}).items():
            if kind not in _KINDS:
                raise SynthError("INVALID_ARGUMENT", f"unknown kind {kind!r} for column {column!r}")
            overrides[column] = _KINDS[kind]
        if isinstance(source, bytes):
            total, display = len(source), name or "dataset.csv"
        else:
            path = Path(source)
            total, display = path.stat().st_size, name or path.name
        header = datasets_pb2.UploadDatasetHeader(
            display_name=display,
            encoding=encoding,
            kind_overrides=overrides,
            missing_markers=list(missing_markers),
            total_bytes=total,
            request_id=request_id or str(uuid.uuid4()),
            expect_end=True,
        )

        def messages() -> Iterator[datasets_pb2.UploadDatasetRequest]:
            yield datasets_pb2.UploadDatasetRequest(header=header)
            sent = 0
            for chunk in _chunks(source, chunk_bytes):
                sent += len(chunk)
                yield datasets_pb2.UploadDatasetRequest(chunk=chunk)
                if on_progress:
                    on_progress(sent, total)
            # Only a complete upload says so: a cancelled stream must not be stored short.
            yield datasets_pb2.UploadDatasetRequest(end=datasets_pb2.UploadDatasetEnd(total_bytes=sent))

        response = _retry_unavailable(
            lambda: self._datasets.UploadDataset(
                messages(), timeout=timeout or max(self.timeout, 600.0), metadata=self._md()
            ),
            self._channels["trainer"],
            self.retries,
            self.retry_wait_seconds,
        )
        return response.dataset

    @_translate_errors
    def get_dataset(self, dataset_id: str) -> datasets_pb2.Dataset:
        request = datasets_pb2.GetDatasetRequest(dataset_id=dataset_id)
        return self._datasets.GetDataset(request, timeout=self.timeout, metadata=self._md()).dataset

    @_translate_errors
    def list_datasets(self, page_size: int = 100) -> list[datasets_pb2.Dataset]:
        """Every dataset, newest first (follows page tokens)."""
        return self._all_pages(
            lambda token: self._datasets.ListDatasets(
                datasets_pb2.ListDatasetsRequest(page_size=page_size, page_token=token),
                timeout=self.timeout,
                metadata=self._md(),
            ),
            "datasets",
        )

    @_translate_errors
    def delete_dataset(self, dataset_id: str) -> None:
        request = datasets_pb2.DeleteDatasetRequest(dataset_id=dataset_id)
        self._datasets.DeleteDataset(request, timeout=self.timeout, metadata=self._md())

    @_translate_errors
    def preview_dataset(self, dataset_id: str, rows: int = 10) -> tuple[list[str], list[list[str | None]]]:
        """Column names and the first rows; missing cells are None, rare values "***"."""
        request = datasets_pb2.PreviewDatasetRequest(dataset_id=dataset_id, row_count=rows)
        response = self._datasets.PreviewDataset(request, timeout=self.timeout, metadata=self._md())
        return list(response.column_names), [
            [None if missing else value for value, missing in zip(row.values, row.missing, strict=True)]
            for row in response.rows
        ]

    # ---- training ------------------------------------------------------------
    @_translate_errors
    def start_training(
        self,
        dataset_id: str,
        *,
        synthesizer: str = "auto",
        preset: str = "",
        time_budget_seconds: float = 0.0,
        epochs: int = 0,
        batch_size: int = 0,
        target_column: str = "",
        seed: int | None = None,
        holdout_fraction: float | None = None,
        device: str = "auto",
        request_id: str | None = None,
        **config: Any,
    ) -> training_pb2.TrainingJob:
        """Queue a training job; returns at once. ``synthesizer`` "auto" picks
        the engine by a bake-off ("ctgan", "tvae" or "copula" force one). With
        neither ``epochs`` nor ``time_budget_seconds`` the ``preset`` (default
        "balanced", 3 minutes) sets the budget. Unset values take the engine's
        defaults. Extra keyword arguments are
        TrainingConfig fields (generator_dims, pac, checkpoint_every_epochs...), among
        them the privacy settings: ``column_policies={"Name": "fake", "PassengerId": "id"}``
        (learn, fake, id or drop), ``rare_value_min_count`` (default 5),
        ``allow_rare_values`` and ``fake_locale``.
        Retried under one ``request_id`` when the trainer is unreachable: never
        two jobs for one call."""
        msg = training_pb2.TrainingConfig(
            synthesizer=synthesizer,
            preset=preset,
            time_budget_seconds=time_budget_seconds,
            epochs=epochs,
            batch_size=batch_size,
            target_column=target_column,
            device=labels.value(common_pb2.Device, device),
            **config,
        )
        if seed is not None:
            msg.seed = seed
        if holdout_fraction is not None:
            msg.holdout_fraction = holdout_fraction
        request = training_pb2.StartTrainingRequest(
            dataset_id=dataset_id, config=msg, request_id=request_id or str(uuid.uuid4())
        )
        return _retry_unavailable(
            lambda: self._training.StartTraining(request, timeout=self.timeout, metadata=self._md()),
            self._channels["trainer"],
            self.retries,
            self.retry_wait_seconds,
        ).job

    @_translate_errors
    def get_job(self, job_id: str) -> training_pb2.TrainingJob:
        request = training_pb2.GetTrainingJobRequest(job_id=job_id)
        return self._training.GetTrainingJob(request, timeout=self.timeout, metadata=self._md()).job

    @_translate_errors
    def list_jobs(self, page_size: int = 100) -> list[training_pb2.TrainingJob]:
        return self._all_pages(
            lambda token: self._training.ListTrainingJobs(
                training_pb2.ListTrainingJobsRequest(page_size=page_size, page_token=token),
                timeout=self.timeout,
                metadata=self._md(),
            ),
            "jobs",
        )

    @_translate_errors
    def cancel_job(self, job_id: str) -> training_pb2.TrainingJob:
        request = training_pb2.CancelTrainingJobRequest(job_id=job_id)
        return self._training.CancelTrainingJob(request, timeout=self.timeout, metadata=self._md()).job

    def watch_job(
        self, job_id: str, after_sequence: int = 0, *, reconnect: bool = True
    ) -> Iterator[training_pb2.WatchTrainingResponse]:
        """A job's events until its terminal event. With ``reconnect``, a dropped
        stream (trainer restart, network) is re-attached after the last event
        seen, so nothing is lost or repeated."""
        last = after_sequence
        attempts = 0
        while True:
            request = training_pb2.WatchTrainingRequest(job_id=job_id, after_sequence=last)
            try:
                for event in self._training.WatchTraining(request, metadata=self._md()):
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

    # ---- models --------------------------------------------------------------
    @_translate_errors
    def get_model(self, model_id: str) -> models_pb2.Model:
        request = models_pb2.GetModelRequest(model_id=model_id)
        return self._models.GetModel(request, timeout=self.timeout, metadata=self._md()).model

    @_translate_errors
    def list_models(self, page_size: int = 100) -> list[models_pb2.Model]:
        return self._all_pages(
            lambda token: self._models.ListModels(
                models_pb2.ListModelsRequest(page_size=page_size, page_token=token),
                timeout=self.timeout,
                metadata=self._md(),
            ),
            "models",
        )

    @_translate_errors
    def delete_model(self, model_id: str) -> None:
        request = models_pb2.DeleteModelRequest(model_id=model_id)
        self._models.DeleteModel(request, timeout=self.timeout, metadata=self._md())

    # ---- sampling ------------------------------------------------------------
    def sample(
        self,
        model_id: str,
        rows: int,
        *,
        seed: int | None = None,
        where: Sequence[str | sampling_pb2.Condition] = (),
        chunk_rows: int = 0,
        fmt: str = "csv",
        timeout: float | None = None,
    ) -> Iterator[sampling_pb2.SampleRowsResponse]:
        """The raw stream: a header, chunks of CSV or Arrow IPC bytes, a summary.
        ``where`` takes conditions like "age>=18", "sex=Female", "race in White,Black"."""
        request = sampling_pb2.SampleRowsRequest(
            model_id=model_id,
            row_count=rows,
            chunk_rows=chunk_rows,
            format=sampling_pb2.OUTPUT_FORMAT_ARROW_IPC if fmt == "arrow" else sampling_pb2.OUTPUT_FORMAT_CSV,
            conditions=[c if isinstance(c, sampling_pb2.Condition) else parse_condition(c) for c in where],
        )
        if seed is not None:
            request.seed = seed
        waited = 0.0
        while True:
            received = False
            try:
                for message in self._sampling.SampleRows(request, timeout=timeout, metadata=self._md()):
                    received = True
                    yield message
                return
            except grpc.RpcError as err:
                error = SynthError.from_rpc_error(err)
            # A busy sampler (every turn taken) says when to come back. Nothing was
            # received yet, so a retry gives the same rows; wait at most
            # retry_wait_seconds in all.
            pause = error.retry_after_seconds
            if received or error.code != "RESOURCE_EXHAUSTED" or pause is None or waited >= self.retry_wait_seconds:
                raise error
            time.sleep(pause)
            waited += pause

    def sample_frames(self, model_id: str, rows: int, **kwargs: Any) -> Iterator[Any]:
        """Synthetic rows as typed pandas DataFrames, one per chunk (memory stays flat)."""
        import pyarrow as pa

        stream = self.sample(model_id, rows, fmt="arrow", **kwargs)
        reader = pa.ipc.open_stream(_ChunkReader(m.chunk.data for m in stream if m.WhichOneof("part") == "chunk"))
        for batch in reader:
            yield batch.to_pandas()

    def sample_to_file(
        self,
        model_id: str,
        rows: int,
        path: str | Path,
        *,
        on_progress: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> sampling_pb2.SampleSummary:
        """Write rows to ``path``: .csv, .arrow (IPC stream) or .parquet, by
        extension. Written to a temporary name and renamed when complete, so a
        failed or cancelled call never leaves a partial file."""
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in (".csv", ".arrow", ".parquet"):
            raise SynthError("INVALID_ARGUMENT", f"unknown output type {suffix!r}: use .csv, .arrow or .parquet")
        partial = target.with_name(f".{target.name}.partial")
        summary = sampling_pb2.SampleSummary()
        try:
            stream = self.sample(model_id, rows, fmt="csv" if suffix == ".csv" else "arrow", **kwargs)
            if suffix == ".parquet":
                summary = _write_parquet(stream, partial, on_progress)
            else:
                with open(partial, "wb") as fh:
                    for message in stream:
                        part = message.WhichOneof("part")
                        if part == "chunk":
                            fh.write(message.chunk.data)
                            if on_progress:
                                on_progress(message.chunk.row_count)
                        elif part == "summary":
                            summary = message.summary
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return summary

    # ---- evaluation ----------------------------------------------------------
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

    @staticmethod
    def _all_pages(fetch: Callable[[str], Any], field: str) -> list[Any]:
        items: list[Any] = []
        token = ""
        while True:
            page = fetch(token)
            items.extend(getattr(page, field))
            token = page.next_page_token
            if not token:
                return items


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


_OPERATORS = (">=", "<=", "!=", "=", ">", "<")


_COMPARISONS = {
    "<": sampling_pb2.COMPARISON_LESS,
    "<=": sampling_pb2.COMPARISON_LESS_EQUAL,
    ">": sampling_pb2.COMPARISON_GREATER,
    ">=": sampling_pb2.COMPARISON_GREATER_EQUAL,
    "=": sampling_pb2.COMPARISON_EQUAL,
    "!=": sampling_pb2.COMPARISON_NOT_EQUAL,
}


def parse_condition(text: str) -> sampling_pb2.Condition:
    """ "age>=18", "age<65", "sex=Female", "race in White,Black" → a Condition;
    "dropoff>@pickup" (``@`` names a column) compares two columns of a row;
    "handle=@@bob" is the value "@bob"."""
    if " in " in text:
        column, _, values = text.partition(" in ")
        return sampling_pb2.Condition(
            column=column.strip(), in_set=sampling_pb2.ValueSet(values=[v.strip() for v in values.split(",")])
        )
    for op in _OPERATORS:
        column, found, value = text.partition(op)
        if found:
            column, value = column.strip(), value.strip()
            if value.startswith("@@"):  # an escaped @: the value itself starts with one
                value = value[1:]
            elif value.startswith("@"):
                return sampling_pb2.Condition(
                    column=column,
                    compare=sampling_pb2.ColumnComparison(op=_COMPARISONS[op], other_column=value[1:].strip()),
                )
            if op == "=":
                return sampling_pb2.Condition(column=column, equals=value)
            if op == "!=":
                break
            bound = sampling_pb2.Range()
            if op.startswith(">"):
                bound.minimum, bound.minimum_exclusive = value, op == ">"
            else:
                bound.maximum, bound.maximum_exclusive = value, op == "<"
            return sampling_pb2.Condition(column=column, range=bound)
    raise SynthError(
        "INVALID_ARGUMENT",
        f"cannot read condition {text!r}: use COL=VALUE, COL>=N, COL<N, 'COL in A,B' or COL<=@OTHER_COL",
    )


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for Arrow's stream reader)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _write_parquet(
    stream: Iterator[sampling_pb2.SampleRowsResponse], path: Path, on_progress: Callable[[int], None] | None
) -> sampling_pb2.SampleSummary:
    import pyarrow as pa
    import pyarrow.parquet as pq

    summary = sampling_pb2.SampleSummary()

    def chunks() -> Iterator[bytes]:
        nonlocal summary
        for message in stream:
            part = message.WhichOneof("part")
            if part == "chunk":
                yield message.chunk.data
            elif part == "summary":
                summary = message.summary

    source = chunks()
    reader = pa.ipc.open_stream(_ChunkReader(source))
    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            if on_progress:
                on_progress(batch.num_rows)
    for _ in source:  # Arrow stops at its end-of-stream marker; the summary follows it
        pass
    return summary


def _chunks(source: str | Path | bytes, size: int) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, len(source), size):
            yield source[start : start + size]
        return
    with open(source, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk
