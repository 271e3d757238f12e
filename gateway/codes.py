"""The one table from gRPC status codes to HTTP status codes, and the JSON error
body (AIP-193 style) the HTTP API answers with.

The table follows google.rpc.Code's documented HTTP mapping, refined by
ErrorInfo reason: an upload over the size limit is 413 (other
RESOURCE_EXHAUSTED, a full training queue, stays 429), a request body that
stopped arriving 408.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.rpc import error_details_pb2
from grpc_status import rpc_status

HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
# ErrorInfo reasons whose HTTP status is more precise than their code's.
HTTP_STATUS_BY_REASON: dict[str, int] = {
    "UPLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    # HTTP-only: a request body that stopped arriving.
    "REQUEST_BODY_TIMEOUT": 408,
    # HTTP-only: a path that exists, with another method.
    "METHOD_NOT_ALLOWED": 405,
}


def http_status(code: str, reason: str = "") -> int:
    return HTTP_STATUS_BY_REASON.get(reason) or HTTP_STATUS.get(code, 500)


class HttpError(Exception):
    """An error the HTTP API answers with: a gRPC code name, a message, and the
    google.rpc details (ErrorInfo reason, BadRequest field violations)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        reason: str = "",
        violations: list[dict[str, str]] | None = None,
        details: list[dict[str, Any]] | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.details = list(details or [])
        if reason and not any(d.get("@type", "").endswith("ErrorInfo") for d in self.details):
            self.details.insert(
                0, {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "synth.v1"}
            )
        if violations:
            self.details.append(
                {"@type": "type.googleapis.com/google.rpc.BadRequest", "field_violations": list(violations)}
            )
        self.request_id = request_id

    @property
    def status(self) -> int:
        return http_status(self.code, self.reason)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.status, "status": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        if self.request_id:
            error["request_id"] = self.request_id
        return {"error": error}

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError, message: str | None = None) -> HttpError:
        """From a failed backend call, keeping its reason and field violations."""
        code = err.code().name if callable(getattr(err, "code", None)) and err.code() else "UNKNOWN"
        details: list[dict[str, Any]] = []
        reason = ""
        try:
            status = rpc_status.from_call(err)
        except (ValueError, AttributeError):
            status = None
        for any_detail in status.details if status is not None else []:
            for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
                if any_detail.Is(kind.DESCRIPTOR):
                    msg = kind()
                    any_detail.Unpack(msg)
                    entry = {"@type": "type.googleapis.com/" + kind.DESCRIPTOR.full_name}
                    entry.update(MessageToDict(msg, preserving_proto_field_name=True))
                    details.append(entry)
                    if isinstance(msg, error_details_pb2.ErrorInfo):
                        reason = msg.reason
        trailers = err.trailing_metadata() if callable(getattr(err, "trailing_metadata", None)) else None
        request_id = next((str(v) for k, v in trailers or () if k == "x-request-id"), "")
        text = message or (err.details() if callable(getattr(err, "details", None)) else None) or code
        return cls(code, text, reason=reason, details=details, request_id=request_id)
