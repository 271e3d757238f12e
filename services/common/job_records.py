"""A job's record and state types (``services.common.jobs``): its state, why
it failed, what the manager needs of a service's record, and the marks of a
job running in this process. Domain code: no protobuf, no grpc."""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from services.common.errors import FieldViolation, SynthError, error_for


class JobState(enum.StrEnum):
    """A job's state; the values are what ``job.json`` holds."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class Failure:
    """Why a job failed, as the error tree says it: ``code`` is a gRPC status
    code name, ``reason`` the ErrorInfo reason (UPPER_SNAKE)."""

    code: str
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()

    @classmethod
    def of(cls, err: SynthError) -> Failure:
        return cls(err.code, err.message, err.reason, dict(err.metadata), tuple(err.violations))

    def error(self) -> SynthError:
        """The failure as the error it was (to raise it again)."""
        return error_for(
            self.code, self.message, reason=self.reason, violations=list(self.violations), metadata=self.metadata
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "reason": self.reason,
            "metadata": dict(self.metadata),
            "violations": [{"field": v.field, "description": v.description} for v in self.violations],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Failure:
        return cls(
            code=str(data["code"]),
            message=str(data["message"]),
            reason=str(data.get("reason", "")),
            metadata={str(k): str(v) for k, v in dict(data.get("metadata") or {}).items()},
            violations=tuple(
                FieldViolation(str(v["field"]), str(v["description"])) for v in data.get("violations") or ()
            ),
        )


class Record(Protocol):
    """What the manager needs of a job's record (a service's own dataclass)."""

    id: str
    state: JobState
    ended_at: float

    @property
    def finished(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class Running:
    """A job running in this process."""

    cancel: threading.Event = field(default_factory=threading.Event)
    # shared jobs: the claim file, and whether another worker took the job over
    # (this one was presumed dead): it then writes nothing more
    claim: Path | None = None
    lost: threading.Event = field(default_factory=threading.Event)


class Stopped(Exception):
    """The service is shutting down (or another worker took the job over):
    leave the job as it is, to run again."""


class CancelledByUser(Exception):
    """The job's cancel was asked for."""
