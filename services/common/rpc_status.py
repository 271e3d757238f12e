"""One encoder and one decoder for the platform's rich status.

:func:`status_proto` builds the ``google.rpc.Status`` of an error: the server
sends it in ``grpc-status-details-bin`` (``rpc_calls.error_to_status``), and a
failed job carries it in its record and its failed event. It holds an
``ErrorInfo`` (reason, domain "synth.v1", metadata such as
``retry_after_seconds``) and, for bad input, a ``BadRequest`` (field
violations).

:func:`decode_rpc_error` reads it back from a failed call: used by the gateway
(to relay it as JSON), the client library (``SynthError``) and the evaluator (a
sampler failure keeps its reason and violations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

REQUEST_ID_HEADER = "x-request-id"
ERROR_DOMAIN = "synth.v1"
MAX_MESSAGE_CHARS = 2000
MAX_VIOLATIONS = 20


def status_proto(
    code: str,
    message: str,
    *,
    reason: str = "",
    metadata: dict[str, str] | None = None,
    violations: list[tuple[str, str]] | None = None,
) -> status_pb2.Status:
    """A ``google.rpc.Status`` for a status code name (e.g. "NOT_FOUND"): the
    message (cut to ``MAX_MESSAGE_CHARS``), an ErrorInfo with ``reason`` and
    ``metadata``, and a BadRequest with the first ``MAX_VIOLATIONS`` field
    violations when there are any."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "…"
    status = status_pb2.Status(code=getattr(code_pb2, code, code_pb2.UNKNOWN), message=message)
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {})
    status.details.add().Pack(info)
    if violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in violations[:MAX_VIOLATIONS]
            ]
        )
        status.details.add().Pack(bad)
    return status


@dataclass(frozen=True)
class DecodedStatus:
    code: str  # the status name, e.g. "INVALID_ARGUMENT"
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[tuple[str, str]] = field(default_factory=list)
    request_id: str = ""
    # The unpacked ErrorInfo and BadRequest messages, in the order sent.
    details: list[Message] = field(default_factory=list)


def decode_rpc_error(err: grpc.RpcError | Any) -> DecodedStatus:
    """The status of a failed call (sync or grpc.aio), whatever it carries."""
    code_of = getattr(err, "code", None)
    code = code_of() if callable(code_of) else None
    details_of = getattr(err, "details", None)
    message = (details_of() if callable(details_of) else None) or str(err)
    trailers_of = getattr(err, "trailing_metadata", None)
    trailers = tuple(trailers_of() or ()) if callable(trailers_of) else ()
    status = None
    try:
        status = rpc_status.from_call(err)
    except (ValueError, AttributeError, TypeError):  # no call, or details not matching the code
        pass
    reason, metadata, violations, messages = _details(status)
    return DecodedStatus(
        code=code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN",
        message=message,
        reason=reason,
        metadata=metadata,
        violations=violations,
        request_id=next((str(v) for k, v in trailers if k == REQUEST_ID_HEADER), ""),
        details=messages,
    )


def decode_status(status: status_pb2.Status) -> DecodedStatus:
    """A ``google.rpc.Status`` message (a failed job's) read like a failed call's."""
    reason, metadata, violations, messages = _details(status)
    try:
        code = code_pb2.Code.Name(status.code)
    except ValueError:
        code = "UNKNOWN"
    return DecodedStatus(
        code=code, message=status.message, reason=reason, metadata=metadata, violations=violations, details=messages
    )


def _details(
    status: status_pb2.Status | None,
) -> tuple[str, dict[str, str], list[tuple[str, str]], list[Message]]:
    reason, metadata, violations, messages = "", {}, [], []
    for packed in status.details if status is not None else ():
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
            messages.append(info)
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
            messages.append(bad)
    return reason, metadata, violations, messages
