"""The trainer's typed domain: job states, specs and configs, events, and
their converters to JSON (the job folder) and to protobuf (the API).

The job folders in ``tests/fixtures/job_records`` were written by the code
before it was typed (real jobs on pima_diabetes: CTGAN, auto, a failed and a
cancelled one, with the models' ``model.json``), plus one as the first
trainer wrote it (CTGAN only, no engine choice), left running with a torn
last event line. They must load, and convert to the same messages as the
untyped converters gave (copied below as the reference).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from synth.v1 import common_pb2, training_pb2

from services.common.engine.config import TrainingConfig
from services.common.models import ModelInfo
from services.common.store import ArtifactStore, read_json
from services.trainer.events import EVENT_TYPES, TERMINAL_EVENTS, JobQueued, LoggedEvent
from services.trainer.jobs import JobManager, JobRecord, JobState
from services.trainer.jobspec import ENGINE_FIELDS, ConfigOverrides, JobConfig
from services.trainer.training import config_for_engine, effective_config, final_engine_config
from services.trainer.training_servicer import (
    CONFIG_NOT_SHOWN,
    UnmappedField,
    config_from_proto,
    config_to_proto,
    event_to_proto,
    job_to_proto,
    model_to_proto,
)

RECORDS = Path(__file__).resolve().parents[1] / "fixtures" / "job_records"
WRITTEN_BEFORE = ["ctgan_succeeded", "auto_succeeded", "failed", "cancelled"]
ALL_RECORDS = [*WRITTEN_BEFORE, "first_version_running"]
COLUMNS = ["Pregnancies", "Glucose", "BloodPressure", "Insulin", "BMI", "Age", "Outcome"]


# ---- the untyped converters, as they were: the reference for "same meaning" ----------------


def _old_config_from_proto(msg: training_pb2.TrainingConfig) -> dict[str, Any]:
    devices = {0: "auto", common_pb2.DEVICE_AUTO: "auto", common_pb2.DEVICE_CPU: "cpu", common_pb2.DEVICE_CUDA: "cuda"}
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
    out["device"] = devices[msg.device]
    return out


def _old_config_to_proto(cfg: dict[str, Any]) -> training_pb2.TrainingConfig:
    devices = {"auto": common_pb2.DEVICE_AUTO, "cpu": common_pb2.DEVICE_CPU, "cuda": common_pb2.DEVICE_CUDA}
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
        device=devices.get(cfg.get("device", "auto"), common_pb2.DEVICE_AUTO),
        checkpoint_every_epochs=cfg.get("checkpoint_every", 0),
        synthesizer=cfg.get("synthesizer", "ctgan"),
        time_budget_seconds=cfg.get("time_budget_seconds", 0.0),
        preset=cfg.get("preset", ""),
    )
    if "holdout_fraction" in cfg:
        msg.holdout_fraction = cfg["holdout_fraction"]
    if cfg.get("seed") is not None:
        msg.seed = cfg["seed"]
    # Fields added since (privacy protection) show the defaults an old record reads as.
    msg.rare_value_min_count = 5
    msg.fake_locale = "en_US"
    return msg


def _old_event_to_proto(event: dict[str, Any]) -> training_pb2.WatchTrainingResponse:
    from services.common.convert import timestamp

    cls = getattr(training_pb2, _PROTO_NAMES[event["type"]])
    known = {f.name for f in cls.DESCRIPTOR.fields}
    payload = cls(**{k: v for k, v in event.items() if k in known and v is not None})
    msg = training_pb2.WatchTrainingResponse(sequence=event["sequence"], time=timestamp(event["time"]))
    getattr(msg, event["type"]).CopyFrom(payload)
    return msg


_PROTO_NAMES = {
    "queued": "JobQueued",
    "started": "JobStarted",
    "epoch": "EpochCompleted",
    "checkpoint": "CheckpointSaved",
    "resumed": "JobResumed",
    "succeeded": "JobSucceeded",
    "failed": "JobFailed",
    "cancelled": "JobCancelled",
    "engine_tried": "EngineTried",
    "engine_chosen": "EngineChosen",
}


# ---- job folders written before ------------------------------------------------------------


def _lines(name: str) -> list[dict[str, Any]]:
    lines = []
    for line in (RECORDS / name / "events.jsonl").read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            break  # the torn last line
    return lines


def _manager_with(tmp_path: Path, names: list[str]) -> tuple[JobManager, dict[str, str]]:
    """A JobManager over a store holding the fixture job folders (its workers not started)."""
    store = ArtifactStore(tmp_path / "store")
    ids = {}
    for name in names:
        job_id = read_json(RECORDS / name / "job.json")["id"]
        with store.staging() as staged:
            for file in ("job.json", "events.jsonl"):
                shutil.copy(RECORDS / name / file, staged / file)
            store.commit(staged, "jobs", job_id)
        ids[name] = job_id
    return JobManager(store, lambda job, ctx: None), ids


async def _watched(manager: JobManager, job_id: str, after: int = 0) -> list[LoggedEvent]:
    return [event async for event in manager.watch(job_id, after)]


@pytest.mark.parametrize("name", WRITTEN_BEFORE)
def test_a_job_folder_written_before_loads_and_is_written_back_the_same(tmp_path: Path, name: str) -> None:
    manager, ids = _manager_with(tmp_path, [name])
    stored = read_json(RECORDS / name / "job.json")
    job = manager.get(ids[name])
    assert isinstance(job.state, JobState) and job.state == stored["state"] and job.finished
    assert job.to_dict() == stored
    assert JobConfig.from_dict(stored["config"]).to_dict() == stored["config"]
    assert [LoggedEvent.from_dict(e).to_dict() for e in _lines(name)] == _lines(name)
    replayed = asyncio.run(_watched(manager, ids[name]))
    assert [e.to_dict() for e in replayed] == _lines(name)
    assert isinstance(replayed[-1].event, TERMINAL_EVENTS)
    assert asyncio.run(_watched(manager, ids[name], after=len(replayed))) == []


@pytest.mark.parametrize("name", ALL_RECORDS)
def test_records_written_before_convert_to_the_messages_they_always_did(tmp_path: Path, name: str) -> None:
    manager, ids = _manager_with(tmp_path, [name])
    stored = read_json(RECORDS / name / "job.json")
    job = job_to_proto(manager.get(ids[name]))
    assert job.config == _old_config_to_proto(stored["config"])
    assert (job.id, job.dataset_id, job.epochs_completed, job.device) == (
        stored["id"],
        stored["dataset_id"],
        stored["epochs_completed"],
        stored["device"],
    )
    assert job.model_id == (stored["model_id"] if stored["state"] == "succeeded" else "")
    events = manager._log(ids[name]).events
    assert [event_to_proto(e) for e in events] == [_old_event_to_proto(line) for line in _lines(name)]
    if (RECORDS / name / "model.json").exists():
        model = read_json(RECORDS / name / "model.json")
        message = model_to_proto(ModelInfo.from_dict(model))
        assert message.config == _old_config_to_proto(model["config"])
        trials = (model["selection"] or {}).get("trials", [])
        old_trials = [training_pb2.EngineTried(**{k: v for k, v in t.items() if v is not None}) for t in trials]
        assert list(message.selection.trials) == old_trials
        assert [(h.epoch, h.generator_loss) for h in message.loss_history] == [
            (h["epoch"], h["generator_loss"]) for h in model["loss_history"]
        ]


def test_a_job_of_the_first_trainer_is_recovered_and_trains_as_it_would_have(tmp_path: Path) -> None:
    manager, ids = _manager_with(tmp_path, ["first_version_running"])
    job_id = ids["first_version_running"]
    assert manager.recover() == [job_id]
    job = manager.get(job_id)
    assert job.state is JobState.RUNNING and not job.finished
    stored = read_json(RECORDS / "first_version_running" / "job.json")["config"]
    # what the untyped runner trained: the stored engine fields, as CTGAN
    engine_values = {k: v for k, v in stored.items() if k in ENGINE_FIELDS}
    expected = TrainingConfig.from_dict({**engine_values, "synthesizer": "ctgan"})
    assert final_engine_config(job.config, None) == expected
    assert (job.config.synthesizer, job.config.seed, job.config.exclude_columns) == ("ctgan", 1234, ())
    # the torn last line is left out; the events before it stand
    assert [e.sequence for e in manager._log(job_id).events] == [1, 2, 3, 4]
    # written back with the fields added since, which read as the missing ones did
    again = JobConfig.from_dict(job.config.to_dict())
    assert again == job.config and again.to_dict()["synthesizer"] == "ctgan"


def test_an_auto_job_written_before_gives_the_winner_the_same_config(tmp_path: Path) -> None:
    stored = read_json(RECORDS / "auto_succeeded" / "job.json")["config"]
    config = JobConfig.from_dict(stored)
    assert config.set_fields == ("epochs", "time_budget_seconds")
    tvae = config_for_engine(config, "tvae", budget_used=10.0)
    assert (tvae.synthesizer, tvae.epochs, tvae.seed, tvae.time_budget_seconds) == ("tvae", 2, 7, 50.0)
    assert (tvae.generator_dim, tvae.generator_lr) == ((128, 128), 1e-3)  # TVAE's own defaults, not set


# ---- states, specs, configs ----------------------------------------------------------------


def test_job_states_are_the_strings_on_disk() -> None:
    assert [s.value for s in JobState] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert [s for s in JobState if s.terminal] == [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]
    assert json.dumps({"state": JobState.FAILED}) == '{"state": "failed"}'


def test_an_effective_config_survives_its_json_form() -> None:
    overrides = ConfigOverrides(
        synthesizer="auto",
        preset="quick",
        generator_dim=(64, 64),
        target_column="Outcome",
        exclude_columns=("Insulin",),
        discrete_columns=("Pregnancies",),
        holdout_fraction=0.0,
        device="cpu",
    )
    config = effective_config(overrides, COLUMNS)
    assert (config.synthesizer, config.engine.synthesizer, config.preset) == ("auto", "ctgan", "quick")
    assert config.set_fields == ("generator_dim", "time_budget_seconds") and config.engine.time_budget_seconds == 60
    assert JobConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    spec_record = JobRecord.from_dict(
        {"id": "job-0123456789abcdef", "dataset_id": "ds-1", "config": config.to_dict(), "model_id": "mdl-1"}
    )
    assert spec_record.config == config and spec_record.state is JobState.QUEUED


def test_a_request_asks_for_what_it_always_did() -> None:
    """The request-id digest is taken over the set fields: a retry after an
    upgrade must still be recognised as the same request."""
    messages = [
        training_pb2.TrainingConfig(),
        training_pb2.TrainingConfig(
            epochs=3,
            batch_size=100,
            generator_dims=[32, 32],
            discriminator_dims=[16],
            embedding_dim=8,
            generator_lr=1e-3,
            discriminator_lr=2e-3,
            pac=5,
            discrete_columns=["a"],
            exclude_columns=["b"],
            holdout_fraction=0.0,
            target_column="c",
            seed=0,
            device=common_pb2.DEVICE_CPU,
            checkpoint_every_epochs=2,
            synthesizer="tvae",
            time_budget_seconds=30.0,
            preset="best",
        ),
    ]
    for msg in messages:
        assert config_from_proto(msg).to_dict() == _old_config_from_proto(msg)


# TrainingConfig (proto) names of the fields whose names differ
_API_NAMES = {
    "generator_dim": "generator_dims",
    "discriminator_dim": "discriminator_dims",
    "checkpoint_every": "checkpoint_every_epochs",
}


def test_every_config_field_is_shown_or_deliberately_internal() -> None:
    """A field added to JobConfig or TrainingConfig must be mapped to the API (or listed here)."""
    config = effective_config(
        ConfigOverrides(
            synthesizer="tvae",
            seed=5,
            device="cpu",
            # away from their defaults, which the stored form leaves out
            column_policies={COLUMNS[0]: "drop"},
            rare_value_min_count=3,
            allow_rare_values=True,
            fake_locale="de_DE",
        ),
        COLUMNS,
    )
    flat = config.to_dict()
    message = config_to_proto(config)
    shown = {f.name for f in training_pb2.TrainingConfig.DESCRIPTOR.fields}
    for name, value in flat.items():
        if name in CONFIG_NOT_SHOWN:
            continue
        api = _API_NAMES.get(name, name)
        assert api in shown, f"JobConfig.{name} is neither in the API nor listed as internal"
        got = getattr(message, api)
        if api == "device":
            assert common_pb2.Device.Name(got) == f"DEVICE_{value.upper()}"
        else:
            assert (list(got) if isinstance(value, list) else dict(got) if isinstance(value, dict) else got) == value, (
                name
            )
    assert shown == {_API_NAMES.get(n, n) for n in flat if n not in CONFIG_NOT_SHOWN}


# ---- events --------------------------------------------------------------------------------


def _field_types(cls: type) -> dict[str, Any]:
    """The dataclass's fields and their types (annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_SCALARS = {
    FieldDescriptor.CPPTYPE_INT32: int,
    FieldDescriptor.CPPTYPE_INT64: int,
    FieldDescriptor.CPPTYPE_DOUBLE: float,
    FieldDescriptor.CPPTYPE_STRING: str,
}


# Message fields made from the event's own rather than copied: the failure as a google.rpc.Status.
_DERIVED = {"JobFailed": {"status"}}


def test_every_event_field_has_its_proto_field_and_back() -> None:
    """Checked against the message descriptors: one event class per oneof case,
    and each field of it a field of that message of its type (optional where it may be None)."""
    oneof = training_pb2.WatchTrainingResponse.DESCRIPTOR.oneofs_by_name["event"]
    assert sorted(cls.KIND for cls in EVENT_TYPES) == sorted(f.name for f in oneof.fields)
    for cls in EVENT_TYPES:
        descriptor = training_pb2.WatchTrainingResponse.DESCRIPTOR.fields_by_name[cls.KIND].message_type
        types = _field_types(cls)
        assert set(types) == set(descriptor.fields_by_name) - _DERIVED.get(cls.__name__, set()), cls.__name__
        for name, annotation in types.items():
            proto = descriptor.fields_by_name[name]
            assert not proto.is_repeated, f"{descriptor.full_name}.{name}"
            kind = _SCALARS[proto.cpp_type]
            allowed = [kind, kind | None] if proto.has_presence else [kind]
            assert annotation in allowed, f"{cls.__name__}.{name}: {annotation} for a {kind.__name__} field"


def _sample(cls: type) -> Any:
    values: dict[Any, Any] = {int: 3, float: 0.25, str: "text", float | None: 0.5}
    return cls(**{name: values[annotation] for name, annotation in _field_types(cls).items()})


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.__name__)
def test_each_event_converts_field_for_field(cls: type) -> None:
    event = _sample(cls)
    message = event_to_proto(LoggedEvent(sequence=9, time=1700000000.5, event=event))
    assert message.WhichOneof("event") == cls.KIND and message.sequence == 9
    payload = getattr(message, cls.KIND)
    for f in dataclasses.fields(cls):
        assert getattr(payload, f.name) == getattr(event, f.name)
    assert LoggedEvent.from_dict(json.loads(json.dumps(LoggedEvent(9, 1.5, event).to_dict()))).event == event


def test_an_unset_optional_field_stays_unset() -> None:
    from services.trainer.events import EngineTried

    tried = EngineTried(engine="copula", score=0.8, fidelity=0.8, utility=None, seconds=1.0, epochs=1)
    assert not event_to_proto(LoggedEvent(1, 0.0, tried)).engine_tried.HasField("utility")


@dataclass(frozen=True)
class _QueuedWithMore(JobQueued):
    """An event that grew a field the proto does not have."""

    note: str = "new"


def test_a_field_the_proto_lacks_fails_loudly() -> None:
    with pytest.raises(UnmappedField, match=r"_QueuedWithMore.note has no field in synth.v1.JobQueued"):
        event_to_proto(LoggedEvent(1, 0.0, _QueuedWithMore(position=0)))
    with pytest.raises(UnmappedField, match="cannot hold"):
        event_to_proto(LoggedEvent(1, 0.0, JobQueued(position=None)))


def test_a_queued_event_at_position_zero_is_still_a_queued_event() -> None:
    assert event_to_proto(LoggedEvent(1, 0.0, JobQueued(position=0))).WhichOneof("event") == "queued"


def test_a_failure_with_a_reason_is_also_a_google_rpc_status_on_the_event_and_the_job() -> None:
    from google.rpc import code_pb2, error_details_pb2

    from services.trainer.events import JobFailed

    event = JobFailed(error_code="NOT_FOUND", error_message="dataset ds-1 not found", reason="DATASET_NOT_FOUND")
    failed = event_to_proto(LoggedEvent(3, 1.0, event)).failed
    assert (failed.error_code, failed.reason) == ("NOT_FOUND", "DATASET_NOT_FOUND")
    assert (failed.status.code, failed.status.message) == (code_pb2.NOT_FOUND, "dataset ds-1 not found")
    info = error_details_pb2.ErrorInfo()
    assert failed.status.details[0].Unpack(info) and (info.reason, info.domain) == ("DATASET_NOT_FOUND", "synth.v1")
    # a failure recorded before the reason was kept has no status (and converts as it always did)
    assert not event_to_proto(LoggedEvent(3, 1.0, JobFailed("NOT_FOUND", "gone"))).failed.HasField("status")
    stored = read_json(RECORDS / "failed" / "job.json")
    assert not job_to_proto(JobRecord.from_dict(stored)).HasField("error")
    job = JobRecord.from_dict({**stored, "error_reason": "DATASET_NOT_FOUND"})
    assert job.to_dict()["error_reason"] == "DATASET_NOT_FOUND"
    assert job_to_proto(job).error.code == code_pb2.NOT_FOUND
