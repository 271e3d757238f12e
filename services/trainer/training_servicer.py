"""TrainingService: translate, call the domain, translate back (``model_to_proto`` serves ModelService too)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message
from synth.v1 import common_pb2, models_pb2, training_pb2, training_pb2_grpc

from services.common import jobs
from services.common.convert import failure_to_status, schema_to_proto, timestamp
from services.common.errors import FieldViolation, InvalidArgument
from services.common.jobs import Failure
from services.common.models import ModelInfo
from services.common.schema import ColumnInfo
from services.trainer.events import JobFailed, TrainingEvent
from services.trainer.jobs import JobRecord, JobState
from services.trainer.jobspec import ConfigOverrides, JobConfig
from services.trainer.training import Trainer

_STATES = {
    JobState.QUEUED: training_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: training_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: training_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: training_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: training_pb2.JOB_STATE_CANCELLED,
}
_DEVICES = {
    common_pb2.DEVICE_UNSPECIFIED: "auto",
    common_pb2.DEVICE_AUTO: "auto",
    common_pb2.DEVICE_CPU: "cpu",
    common_pb2.DEVICE_CUDA: "cuda",
}
_DEVICE_TO_PROTO = {
    "auto": common_pb2.DEVICE_AUTO,
    "cpu": common_pb2.DEVICE_CPU,
    "cuda": common_pb2.DEVICE_CUDA,
}
# the cases of WatchTrainingResponse's oneof "event": an event's KIND names one
_EVENT_CASES = frozenset(f.name for f in training_pb2.WatchTrainingResponse.DESCRIPTOR.oneofs_by_name["event"].fields)


class UnmappedField(TypeError):
    """A domain field that a converter has no proto field for: a programming
    error, raised (an INTERNAL error) rather than dropped from the message."""


def config_from_proto(msg: training_pb2.TrainingConfig) -> ConfigOverrides:
    """Only the fields the client set; the domain fills in defaults."""
    if msg.device not in _DEVICES:  # an enum value this build does not know: never a silent default
        raise InvalidArgument(
            f"unknown device {msg.device}", violations=[FieldViolation("config.device", f"unknown value {msg.device}")]
        )
    return ConfigOverrides(
        epochs=msg.epochs or None,
        batch_size=msg.batch_size or None,
        embedding_dim=msg.embedding_dim or None,
        generator_lr=msg.generator_lr or None,
        discriminator_lr=msg.discriminator_lr or None,
        pac=msg.pac or None,
        generator_dim=tuple(msg.generator_dims) or None,
        discriminator_dim=tuple(msg.discriminator_dims) or None,
        discrete_columns=tuple(msg.discrete_columns) or None,
        exclude_columns=tuple(msg.exclude_columns) or None,
        holdout_fraction=msg.holdout_fraction if msg.HasField("holdout_fraction") else None,
        target_column=msg.target_column or None,
        seed=msg.seed if msg.HasField("seed") else None,
        checkpoint_every=msg.checkpoint_every_epochs or None,
        synthesizer=msg.synthesizer or None,
        time_budget_seconds=msg.time_budget_seconds or None,
        preset=msg.preset or None,
        device=_DEVICES[msg.device],
        column_policies=dict(msg.column_policies) or None,
        rare_value_min_count=msg.rare_value_min_count or None,
        allow_rare_values=msg.allow_rare_values or None,
        fake_locale=msg.fake_locale or None,
    )


# JobConfig's (flat) fields that the API does not show: the engine's internals, and bookkeeping.
# Every other field is mapped below (a unit test checks the two against the descriptor).
CONFIG_NOT_SHOWN = frozenset(
    {
        "generator_decay",
        "discriminator_decay",
        "discriminator_steps",
        "log_frequency",
        "transformer_sample_rows",
        "set_fields",
    }
)


def config_to_proto(cfg: JobConfig) -> training_pb2.TrainingConfig:
    """Every field of the effective config but ``CONFIG_NOT_SHOWN``."""
    engine = cfg.engine
    msg = training_pb2.TrainingConfig(
        epochs=engine.epochs,
        batch_size=engine.batch_size,
        generator_dims=engine.generator_dim,
        discriminator_dims=engine.discriminator_dim,
        embedding_dim=engine.embedding_dim,
        generator_lr=engine.generator_lr,
        discriminator_lr=engine.discriminator_lr,
        pac=engine.pac,
        discrete_columns=cfg.discrete_columns,
        exclude_columns=cfg.exclude_columns,
        target_column=cfg.target_column,
        device=_DEVICE_TO_PROTO.get(cfg.device, common_pb2.DEVICE_AUTO),
        checkpoint_every_epochs=engine.checkpoint_every,
        synthesizer=cfg.synthesizer,
        time_budget_seconds=engine.time_budget_seconds,
        preset=cfg.preset,
        holdout_fraction=cfg.holdout_fraction,
        column_policies=cfg.column_policies,
        rare_value_min_count=cfg.rare_value_min_count,
        allow_rare_values=cfg.allow_rare_values,
        fake_locale=cfg.fake_locale,
    )
    if engine.seed is not None:
        msg.seed = engine.seed
    return msg


def job_to_proto(job: JobRecord) -> training_pb2.TrainingJob:
    msg = training_pb2.TrainingJob(
        id=job.id,
        dataset_id=job.dataset_id,
        config=config_to_proto(job.config),
        state=_STATES[job.state],
        epochs_completed=job.epochs_completed,
        model_id=job.model_id if job.state is JobState.SUCCEEDED else "",
        error_code=job.error_code,
        error_message=job.error_message,
        create_time=timestamp(job.created_at),
        device=job.device,
    )
    if job.started_at:
        msg.start_time.CopyFrom(timestamp(job.started_at))
    if job.ended_at:
        msg.end_time.CopyFrom(timestamp(job.ended_at))
    if job.failure is not None:
        msg.error.CopyFrom(failure_to_status(job.failure))
    return msg


def event_to_proto(logged: jobs.LoggedEvent[TrainingEvent]) -> training_pb2.WatchTrainingResponse:
    """The event as the oneof case its ``KIND`` names, every field of it copied;
    ``UnmappedField`` for a kind or a field the message does not have. A failed
    event with a reason also gets its ``google.rpc.Status`` (``status``, the
    one message field, made from the event's own)."""
    event = logged.event
    if event.KIND not in _EVENT_CASES:
        raise UnmappedField(f"{type(event).__name__}: WatchTrainingResponse has no event {event.KIND!r}")
    msg = training_pb2.WatchTrainingResponse(sequence=logged.sequence, time=timestamp(logged.time))
    payload: Message = getattr(msg, event.KIND)
    _copy_fields(event, payload)
    if isinstance(event, JobFailed) and event.reason:
        msg.failed.status.CopyFrom(failure_to_status(Failure(event.error_code, event.error_message, event.reason)))
    payload.SetInParent()  # the oneof is set even when every field is a default (position 0)
    return msg


def _copy_fields(source: TrainingEvent, target: Message) -> None:
    """Each field of ``source`` onto the scalar field of ``target`` with its
    name; None leaves an optional field unset. Nothing is skipped: a field
    ``target`` lacks is an ``UnmappedField``."""
    descriptor = target.DESCRIPTOR
    for f in dataclasses.fields(source):
        field = descriptor.fields_by_name.get(f.name)
        where = f"{type(source).__name__}.{f.name}"
        if field is None:
            raise UnmappedField(f"{where} has no field in {descriptor.full_name}")
        if field.type == field.TYPE_MESSAGE or field.is_repeated:
            raise UnmappedField(f"{where}: {descriptor.full_name}.{f.name} is not a scalar field")
        value = getattr(source, f.name)
        if value is None:
            if not field.has_presence:
                raise UnmappedField(f"{where} is None, which {descriptor.full_name}.{f.name} cannot hold")
            continue
        setattr(target, f.name, value)


def model_to_proto(info: ModelInfo) -> models_pb2.Model:
    return models_pb2.Model(
        id=info.id,
        dataset_id=info.dataset_id,
        job_id=info.job_id,
        dataset_fingerprint=info.dataset_fingerprint,
        schema=schema_to_proto([ColumnInfo.from_dict(c) for c in info.columns]),
        config=config_to_proto(JobConfig.from_dict(info.config)),
        holdout=models_pb2.HoldoutReference(
            training_rows=info.holdout.training_rows,
            holdout_rows=info.holdout.holdout_rows,
            split_seed=info.holdout.split_seed,
            stratify_column=info.holdout.stratify_column,
            indices_fingerprint=info.holdout.indices_fingerprint,
        ),
        loss_history=[
            models_pb2.EpochLoss(
                epoch=int(entry["epoch"]),
                generator_loss=entry["generator_loss"],
                discriminator_loss=entry["discriminator_loss"],
            )
            for entry in info.loss_history
        ],
        training_seconds=info.training_seconds,
        device=info.device,
        library_versions=info.library_versions,
        size_bytes=info.size_bytes,
        create_time=timestamp(info.created_at),
        engine=info.engine,
        epochs_trained=info.epochs_trained,
        selection=_selection_to_proto(info.selection),
    )


def _selection_to_proto(selection: dict[str, Any] | None) -> models_pb2.EngineSelection | None:
    if not selection:
        return None
    trials = [
        training_pb2.EngineTried(
            engine=trial["engine"],
            score=trial["score"],
            fidelity=trial["fidelity"],
            utility=trial.get("utility"),
            seconds=trial["seconds"],
            epochs=trial["epochs"],
        )
        for trial in selection.get("trials", [])
    ]
    return models_pb2.EngineSelection(
        winner=selection["winner"],
        reason=selection["reason"],
        trials=trials,
        rows=selection.get("rows", 0),
        seconds=selection.get("seconds", 0.0),
    )


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    def StartTraining(
        self, request: training_pb2.StartTrainingRequest, context: grpc.ServicerContext
    ) -> training_pb2.StartTrainingResponse:
        job = self._trainer.start(request.dataset_id, config_from_proto(request.config), request.request_id)
        return training_pb2.StartTrainingResponse(job=job_to_proto(job))

    def GetTrainingJob(
        self, request: training_pb2.GetTrainingJobRequest, context: grpc.ServicerContext
    ) -> training_pb2.GetTrainingJobResponse:
        return training_pb2.GetTrainingJobResponse(job=job_to_proto(self._trainer.jobs.get(request.job_id)))

    def ListTrainingJobs(
        self, request: training_pb2.ListTrainingJobsRequest, context: grpc.ServicerContext
    ) -> training_pb2.ListTrainingJobsResponse:
        jobs, token = self._trainer.jobs.list(request.page_size, request.page_token)
        return training_pb2.ListTrainingJobsResponse(jobs=[job_to_proto(j) for j in jobs], next_page_token=token)

    def CancelTrainingJob(
        self, request: training_pb2.CancelTrainingJobRequest, context: grpc.ServicerContext
    ) -> training_pb2.CancelTrainingJobResponse:
        return training_pb2.CancelTrainingJobResponse(job=job_to_proto(self._trainer.jobs.cancel(request.job_id)))

    async def WatchTraining(
        self, request: training_pb2.WatchTrainingRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[training_pb2.WatchTrainingResponse]:
        # Async: an idle watch waits on the server's event loop, holding no thread.
        async with contextlib.aclosing(self._trainer.jobs.watch(request.job_id, request.after_sequence)) as events:
            async for event in events:
                yield event_to_proto(event)
