"""The one error tree of the platform.

Domain code raises these; only the server interceptor (``services.common.server``)
turns them into gRPC status codes. Domain modules never import grpc.

Each error carries a human message, a machine ``reason`` (UPPER_SNAKE, as in
google.rpc.ErrorInfo) and optionally field violations (``rows[123].age``) that
become a google.rpc.BadRequest detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: ``field`` is a path such as ``rows[12].age`` or ``config.epochs``."""

    field: str
    description: str


@dataclass
class SynthError(Exception):
    """Base class. ``code`` is the name of the gRPC status code it maps to."""

    message: str
    reason: str = ""
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    code = "UNKNOWN"

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.reason:
            self.reason = type(self).__name__.upper()

    def __str__(self) -> str:
        return self.message


class InvalidArgument(SynthError):
    code = "INVALID_ARGUMENT"


class NotFound(SynthError):
    code = "NOT_FOUND"


class AlreadyExists(SynthError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(SynthError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(SynthError):
    code = "RESOURCE_EXHAUSTED"


class Cancelled(SynthError):
    code = "CANCELLED"


class DeadlineExceeded(SynthError):
    code = "DEADLINE_EXCEEDED"


class Unavailable(SynthError):
    code = "UNAVAILABLE"


class DataLoss(SynthError):
    code = "DATA_LOSS"


class Unauthenticated(SynthError):
    code = "UNAUTHENTICATED"


class Internal(SynthError):
    code = "INTERNAL"


_BY_CODE: dict[str, type[SynthError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Cancelled,
        DeadlineExceeded,
        Unavailable,
        DataLoss,
        Unauthenticated,
        Internal,
    )
}


def error_for(
    code: str,
    message: str,
    *,
    reason: str = "",
    violations: list[FieldViolation] | None = None,
    metadata: dict[str, str] | None = None,
) -> SynthError:
    """The error of the tree for a status code name (a failure recorded with a
    job, raised again); a code with no class of its own becomes ``Internal``."""
    cls = _BY_CODE.get(code, Internal)
    return cls(message, reason=reason, violations=list(violations or []), metadata=dict(metadata or {}))
