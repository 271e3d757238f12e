"""The client's one exception type, carrying the server's rich error details."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import status_pb2

from services.common.rpc_status import DecodedStatus, decode_rpc_error, decode_status


@dataclass
class SynthError(Exception):
    """A call failed. ``code`` is the gRPC status name (e.g. "INVALID_ARGUMENT"),
    ``violations`` the (field, description) pairs the server named."""

    code: str
    message: str
    reason: str = ""
    violations: list[tuple[str, str]] = field(default_factory=list)
    # ErrorInfo metadata, e.g. {"retry_after_seconds": "5"} on a busy server.
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def retry_after_seconds(self) -> float | None:
        """How long the server asked the caller to wait before a retry, if it did."""
        value = self.metadata.get("retry_after_seconds")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        lines = [f"{self.code}: {self.message}"]
        lines += [f"  - {f}: {d}" for f, d in self.violations]
        return "\n".join(lines)

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> SynthError:
        return cls._decoded(decode_rpc_error(err))

    @classmethod
    def from_status(cls, status: status_pb2.Status) -> SynthError:
        """A failed job's ``google.rpc.Status`` (its record's ``error``, its failed event's ``status``)."""
        return cls._decoded(decode_status(status))

    @classmethod
    def _decoded(cls, status: DecodedStatus) -> SynthError:
        return cls(
            code=status.code,
            message=status.message,
            reason=status.reason,
            violations=status.violations,
            metadata=status.metadata,
        )
