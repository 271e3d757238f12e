"""TrainingService: translate, call the domain, translate back (``model_to_proto`` serves ModelService too)."""

from __future__ import annotations

import contextlib
from typing import Any

import grpc
from synth.v1 import common_pb2, models_pb2, training_pb2, training_pb2_grpc

from services.common.convert import schema_to_proto, timestamp
from services.common.errors import FieldViolation, InvalidArgument
from services.common.models import ModelInfo
from services.common.schema import ColumnInfo
from services.trainer.jobs import JobRecord
from services.trainer.training import Trainer

_STATES = {
    "queued": training_pb2.JOB_STATE_QUEUED,
    "running": training_pb2.JOB_STATE_RUNNING,
    "succeeded": training_pb2.JOB_STATE_SUCCEEDED,
    "failed": training_pb2.JOB_STATE_FAILED,
    "cancelled": training_pb2.JOB_STATE_CANCELLED,
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


def config_from_proto(msg: training_pb2.TrainingConfig) -> dict[str, Any]:
    """Only the fields the client set; the domain fills in defaults."""
    out: dict[str, Any] = {}
    for name in ("epochs", "batch_size", "embedding_dim", "generator_lr", "discriminator_lr", "pac"):
        if getattr(msg, name):
            out[name] = getattr(msg, name)
    if msg.generator_dims:
        out["generator_dim"] = list(msg.generator_dims)
    if msg.discriminator_dims:
        out["discriminator_dim"] = list(msg.discriminator_dims)
    if msg.discrete_columns:
        out["discrete_columns"] = list(msg.discrete_columns)
    if msg.exclude_columns:
        out["exclude_columns"] = list(msg.exclude_columns)
    if msg.HasField("holdout_fraction"):
        out["holdout_fraction"] = msg.holdout_fraction
    if msg.target_column:
        out["target_column"] = msg.target_column
    if msg.HasField("seed"):
        out["seed"] = msg.seed
    if msg.checkpoint_every_epochs:
        out["checkpoint_every"] = msg.checkpoint_every_epochs
    for name in ("synthesizer", "time_budget_seconds", "preset"):
        if getattr(msg, name):
            out[name] = getattr(msg, name)
    if msg.column_policies:
        out["column_policies"] = dict(msg.column_policies)
    for name in ("rare_value_min_count", "allow_rare_values", "fake_locale"):
        if getattr(msg, name):
            out[name] = getattr(msg, name)
    if msg.device not in _DEVICES:  # an enum value this build does not know: never a silent default
        raise InvalidArgument(
            f"unknown device {msg.device}", violations=[FieldViolation("config.device", f"unknown value {msg.device}")]
        )
    out["device"] = _DEVICES[msg.device]
    return out


def config_to_proto(cfg: dict[str, Any]) -> training_pb2.TrainingConfig:
    msg = training_pb2.TrainingConfig(
        epochs=cfg.get("epochs", 0),
        batch_size=cfg.get("batch_size", 0),
        generator_dims=cfg.get("generator_dim", []),
        discriminator_dims=cfg.get("discriminator_dim", []),
        embedding_dim=cfg.get("embedding_dim", 0),
        generator_lr=cfg.get("generator_lr", 0.0),
        discriminator_lr=cfg.get("discriminator_lr", 0.0),
        pac=cfg.get("pac", 0),
        discrete_columns=cfg.get("discrete_columns", []),
        exclude_columns=cfg.get("exclude_columns", []),
        target_column=cfg.get("target_column", ""),
        device=_DEVICE_TO_PROTO.get(cfg.get("device", "auto"), common_pb2.DEVICE_AUTO),
        checkpoint_every_epochs=cfg.get("checkpoint_every", 0),
        synthesizer=cfg.get("synthesizer", "ctgan"),  # jobs from before the choice were CTGAN
        time_budget_seconds=cfg.get("time_budget_seconds", 0.0),
        preset=cfg.get("preset", ""),
    )
    msg.column_policies.update(cfg.get("column_policies") or {})
    msg.rare_value_min_count = int(cfg.get("rare_value_min_count") or 0)
    msg.allow_rare_values = bool(cfg.get("allow_rare_values", False))
    msg.fake_locale = str(cfg.get("fake_locale") or "")
    if "holdout_fraction" in cfg:
        msg.holdout_fraction = cfg["holdout_fraction"]
    if cfg.get("seed") is not None:
        msg.seed = cfg["seed"]
    return msg


def job_to_proto(job: JobRecord) -> training_pb2.TrainingJob:
    msg = training_pb2.TrainingJob(
        id=job.id,
        dataset_id=job.dataset_id,
        config=config_to_proto(job.config),
        state=_STATES[job.state],
        epochs_completed=job.epochs_completed,
        model_id=job.model_id if job.state == "succeeded" else "",
        error_code=job.error_code,
        error_message=job.error_message,
        create_time=timestamp(job.created_at),
        device=job.device,
    )
    if job.started_at:
        msg.start_time.CopyFrom(timestamp(job.started_at))
    if job.ended_at:
        msg.end_time.CopyFrom(timestamp(job.ended_at))
    return msg


_EVENT_MESSAGES = {
    "queued": ("queued", training_pb2.JobQueued),
    "started": ("started", training_pb2.JobStarted),
    "epoch": ("epoch", training_pb2.EpochCompleted),
    "checkpoint": ("checkpoint", training_pb2.CheckpointSaved),
    "resumed": ("resumed", training_pb2.JobResumed),
    "succeeded": ("succeeded", training_pb2.JobSucceeded),
    "failed": ("failed", training_pb2.JobFailed),
    "cancelled": ("cancelled", training_pb2.JobCancelled),
    "engine_tried": ("engine_tried", training_pb2.EngineTried),
    "engine_chosen": ("engine_chosen", training_pb2.EngineChosen),
}


def event_to_proto(event: dict[str, Any]) -> training_pb2.WatchTrainingResponse:
    field, cls = _EVENT_MESSAGES[event["type"]]
    known = {f.name for f in cls.DESCRIPTOR.fields}
    payload = cls(**{k: v for k, v in event.items() if k in known and v is not None})
    msg = training_pb2.WatchTrainingResponse(sequence=event["sequence"], time=timestamp(event["time"]))
    getattr(msg, field).CopyFrom(payload)
    return msg


def model_to_proto(info: ModelInfo) -> models_pb2.Model:
    return models_pb2.Model(
        id=info.id,
        dataset_id=info.dataset_id,
        job_id=info.job_id,
        dataset_fingerprint=info.dataset_fingerprint,
        schema=schema_to_proto([ColumnInfo.from_dict(c) for c in info.columns]),
        config=config_to_proto(info.config),
        holdout=models_pb2.HoldoutReference(
            training_rows=info.holdout.training_rows,
            holdout_rows=info.holdout.holdout_rows,
            split_seed=info.holdout.split_seed,
            stratify_column=info.holdout.stratify_column,
            indices_fingerprint=info.holdout.indices_fingerprint,
        ),
        loss_history=[models_pb2.EpochLoss(**entry) for entry in info.loss_history],  # type: ignore[arg-type]
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
        training_pb2.EngineTried(**{k: v for k, v in trial.items() if v is not None})
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

    def StartTraining(self, request, context):  # type: ignore[no-untyped-def]
        job = self._trainer.start(request.dataset_id, config_from_proto(request.config), request.request_id)
        return training_pb2.StartTrainingResponse(job=job_to_proto(job))

    def GetTrainingJob(self, request, context):  # type: ignore[no-untyped-def]
        return training_pb2.GetTrainingJobResponse(job=job_to_proto(self._trainer.jobs.get(request.job_id)))

    def ListTrainingJobs(self, request, context):  # type: ignore[no-untyped-def]
        jobs, token = self._trainer.jobs.list(request.page_size, request.page_token)
        return training_pb2.ListTrainingJobsResponse(jobs=[job_to_proto(j) for j in jobs], next_page_token=token)

    def CancelTrainingJob(self, request, context):  # type: ignore[no-untyped-def]
        return training_pb2.CancelTrainingJobResponse(job=job_to_proto(self._trainer.jobs.cancel(request.job_id)))

    async def WatchTraining(self, request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        # Async: an idle watch waits on the server's event loop, holding no thread.
        async with contextlib.aclosing(self._trainer.jobs.watch(request.job_id, request.after_sequence)) as events:
            async for event in events:
                yield event_to_proto(event)
