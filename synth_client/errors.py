"""The client's one exception type, carrying the server's rich error details."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass
class SynthError(Exception):
    """A call failed. ``code`` is the gRPC status name (e.g. "INVALID_ARGUMENT"),
    ``violations`` the (field, description) pairs the server named."""

    code: str
    message: str
    reason: str = ""
    violations: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        lines = [f"{self.code}: {self.message}"]
        lines += [f"  - {f}: {d}" for f, d in self.violations]
        return "\n".join(lines)

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> SynthError:
        code = err.code().name if hasattr(err, "code") and err.code() else "UNKNOWN"
        message = err.details() if hasattr(err, "details") and err.details() else str(err)
        reason, violations = "", []
        try:
            status = rpc_status.from_call(err)
        except (ValueError, AttributeError):
            status = None
        if status is not None:
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason = info.reason
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations = [(v.field, v.description) for v in bad.field_violations]
        return cls(code=code, message=message, reason=reason, violations=violations)
