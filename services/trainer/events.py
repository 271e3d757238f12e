"""A training job's events: one dataclass per kind, and their JSON form.

Each job's ``events.jsonl`` holds one JSON object per line:
``{"sequence": 1, "time": 1700000000.0, "type": "queued", "position": 0}``:
the :class:`LoggedEvent` envelope (sequence, time) and the event's ``KIND``
as ``type`` beside its own fields. The kinds are the ``event`` oneof of
``synth.v1.WatchTrainingResponse``: ``KIND`` names its field, and each
dataclass field a field of that message (``training_servicer.event_to_proto``
maps them and refuses any it cannot).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from services.common.errors import DataLoss


@dataclass(frozen=True)
class JobQueued:
    KIND: ClassVar[str] = "queued"
    position: int  # jobs ahead of this one


@dataclass(frozen=True)
class JobStarted:
    KIND: ClassVar[str] = "started"
    device: str
    training_rows: int
    holdout_rows: int
    preparation_seconds: float  # fitting the data before the first epoch


@dataclass(frozen=True)
class EpochCompleted:
    KIND: ClassVar[str] = "epoch"
    epoch: int
    epochs: int
    generator_loss: float
    discriminator_loss: float
    elapsed_seconds: float
    eta_seconds: float
    rows_per_second: float


@dataclass(frozen=True)
class CheckpointSaved:
    KIND: ClassVar[str] = "checkpoint"
    epoch: int


@dataclass(frozen=True)
class JobResumed:
    KIND: ClassVar[str] = "resumed"
    from_epoch: int


@dataclass(frozen=True)
class EngineTried:
    KIND: ClassVar[str] = "engine_tried"
    engine: str
    score: float
    fidelity: float
    utility: float | None  # None without a target column
    seconds: float
    epochs: int


@dataclass(frozen=True)
class EngineChosen:
    KIND: ClassVar[str] = "engine_chosen"
    engine: str
    reason: str


@dataclass(frozen=True)
class JobSucceeded:
    KIND: ClassVar[str] = "succeeded"
    model_id: str
    training_seconds: float


@dataclass(frozen=True)
class JobFailed:
    KIND: ClassVar[str] = "failed"
    error_code: str
    error_message: str


@dataclass(frozen=True)
class JobCancelled:
    KIND: ClassVar[str] = "cancelled"
    epochs_completed: int


TrainingEvent = (
    JobQueued
    | JobStarted
    | EpochCompleted
    | CheckpointSaved
    | JobResumed
    | EngineTried
    | EngineChosen
    | JobSucceeded
    | JobFailed
    | JobCancelled
)
EVENT_TYPES: tuple[type[TrainingEvent], ...] = (
    JobQueued,
    JobStarted,
    EpochCompleted,
    CheckpointSaved,
    JobResumed,
    EngineTried,
    EngineChosen,
    JobSucceeded,
    JobFailed,
    JobCancelled,
)
# A job's last event is one of these, and there is none after it.
TERMINAL_EVENTS: tuple[type[TrainingEvent], ...] = (JobSucceeded, JobFailed, JobCancelled)
_BY_KIND: dict[str, type[TrainingEvent]] = {cls.KIND: cls for cls in EVENT_TYPES}
_ENVELOPE = ("sequence", "time", "type")


@dataclass(frozen=True)
class LoggedEvent:
    """An event as the log holds it: numbered 1, 2, 3... per job, and timed."""

    sequence: int
    time: float
    event: TrainingEvent

    @property
    def terminal(self) -> bool:
        return isinstance(self.event, TERMINAL_EVENTS)

    def to_dict(self) -> dict[str, Any]:
        """One line of ``events.jsonl``."""
        return {"sequence": self.sequence, "time": self.time, "type": self.event.KIND, **dataclasses.asdict(self.event)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoggedEvent:
        """Inverse of :meth:`to_dict`. Keys the event does not have are ignored
        (a later version may add fields); a missing field or an unknown type
        is ``DataLoss``."""
        kind = data.get("type")
        event_type = _BY_KIND.get(kind) if isinstance(kind, str) else None
        if event_type is None:
            raise DataLoss(f"event log: unknown event type {kind!r}", reason="EVENT_LOG_CORRUPT")
        names = [f.name for f in dataclasses.fields(event_type)]
        missing = [n for n in (*_ENVELOPE, *names) if n not in data]
        if missing:
            raise DataLoss(f"event log: a {kind} event lacks {', '.join(missing)}", reason="EVENT_LOG_CORRUPT")
        event = event_type(**{n: data[n] for n in names})
        return cls(sequence=int(data["sequence"]), time=float(data["time"]), event=event)
