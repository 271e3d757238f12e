"""One decoder for a failed gRPC call's rich status, used by the gateway (to
relay it as JSON), the client library (``SynthError``) and the evaluator (a
sampler failure keeps its reason and violations).

The server side puts a ``google.rpc.Status`` in ``grpc-status-details-bin``
with an ``ErrorInfo`` (reason, metadata such as ``retry_after_seconds``) and,
for bad input, a ``BadRequest`` (field violations); see ``rpc_calls.error_to_status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

REQUEST_ID_HEADER = "x-request-id"


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
    return DecodedStatus(
        code=code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN",
        message=message,
        reason=reason,
        metadata=metadata,
        violations=violations,
        request_id=next((str(v) for k, v in trailers if k == REQUEST_ID_HEADER), ""),
        details=messages,
    )
