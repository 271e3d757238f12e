"""A training job's events: one dataclass per kind, and their JSON form.

Each job's ``events.jsonl`` holds one JSON object per line:
``{"sequence": 1, "time": 1700000000.0, "type": "queued", "position": 0}``:
the :class:`LoggedEvent` envelope (sequence, time) and the event's ``KIND``
as ``type`` beside its own fields (``services.common.jobs``, the one job
design the evaluator's jobs share). The kinds are the ``event`` oneof of
``synth.v1.WatchTrainingResponse``: ``KIND`` names its field, and each
dataclass field a field of that message (``training_servicer.event_to_proto``
maps them and refuses any it cannot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from services.common import jobs
from services.common.jobs import JobEvent


@dataclass(frozen=True)
class JobQueued(JobEvent):
    KIND: ClassVar[str] = "queued"
    position: int  # jobs ahead of this one


@dataclass(frozen=True)
class JobStarted(JobEvent):
    KIND: ClassVar[str] = "started"
    device: str
    training_rows: int
    holdout_rows: int
    preparation_seconds: float  # fitting the data before the first epoch


@dataclass(frozen=True)
class EpochCompleted(JobEvent):
    KIND: ClassVar[str] = "epoch"
    epoch: int
    epochs: int
    generator_loss: float
    discriminator_loss: float
    elapsed_seconds: float
    eta_seconds: float
    rows_per_second: float


@dataclass(frozen=True)
class CheckpointSaved(JobEvent):
    KIND: ClassVar[str] = "checkpoint"
    epoch: int


@dataclass(frozen=True)
class JobResumed(JobEvent):
    KIND: ClassVar[str] = "resumed"
    from_epoch: int


@dataclass(frozen=True)
class EngineTried(JobEvent):
    KIND: ClassVar[str] = "engine_tried"
    engine: str
    score: float
    fidelity: float
    utility: float | None  # None without a target column
    seconds: float
    epochs: int


@dataclass(frozen=True)
class EngineChosen(JobEvent):
    KIND: ClassVar[str] = "engine_chosen"
    engine: str
    reason: str


@dataclass(frozen=True)
class JobSucceeded(JobEvent):
    KIND: ClassVar[str] = "succeeded"
    TERMINAL: ClassVar[bool] = True
    model_id: str
    training_seconds: float


@dataclass(frozen=True)
class JobFailed(JobEvent):
    KIND: ClassVar[str] = "failed"
    TERMINAL: ClassVar[bool] = True
    error_code: str
    error_message: str
    reason: str = ""  # the ErrorInfo reason; absent from events logged before it was kept


@dataclass(frozen=True)
class JobCancelled(JobEvent):
    KIND: ClassVar[str] = "cancelled"
    TERMINAL: ClassVar[bool] = True
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
TERMINAL_EVENTS: tuple[type[TrainingEvent], ...] = tuple(cls for cls in EVENT_TYPES if cls.TERMINAL)
BY_KIND: dict[str, type[TrainingEvent]] = {cls.KIND: cls for cls in EVENT_TYPES}


class LoggedEvent(jobs.LoggedEvent[TrainingEvent]):
    """A training event as the log holds it: numbered 1, 2, 3... per job, and timed."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoggedEvent:
        """Inverse of :meth:`to_dict`. Keys the event does not have are ignored
        (a later version may add fields); a missing field (one without a
        default) or an unknown type is ``DataLoss``."""
        sequence, when, event = jobs.decode_event(data, BY_KIND)
        return cls(sequence=sequence, time=when, event=event)
