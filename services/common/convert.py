"""Conversions between domain objects and synth.v1 messages that more than one
servicer needs. Servicers use these; domain code never sees protobuf."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2
from synth.v1 import common_pb2, datasets_pb2

from services.common.errors import FieldViolation, InvalidArgument
from services.common.fakes import describe_fake
from services.common.jobs import Failure
from services.common.rpc_status import status_proto
from services.common.schema import ColumnInfo, ColumnKind, DatasetInfo

_KIND_TO_PROTO = {
    ColumnKind.CONTINUOUS: common_pb2.COLUMN_KIND_CONTINUOUS,
    ColumnKind.CATEGORICAL: common_pb2.COLUMN_KIND_CATEGORICAL,
    ColumnKind.DATETIME: common_pb2.COLUMN_KIND_DATETIME,
    ColumnKind.IDENTIFIER: common_pb2.COLUMN_KIND_IDENTIFIER,
    ColumnKind.FREE_TEXT: common_pb2.COLUMN_KIND_FREE_TEXT,
}
_PROTO_TO_KIND: dict[int, ColumnKind] = {v: k for k, v in _KIND_TO_PROTO.items()}


def kind_from_proto(value: int, field: str) -> ColumnKind:
    try:
        return _PROTO_TO_KIND[value]
    except KeyError:
        raise InvalidArgument(
            f"{field}: column kind must be one of {', '.join(k.value for k in ColumnKind)}",
            violations=[FieldViolation(field, "unspecified or unknown column kind")],
        ) from None


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def column_to_proto(col: ColumnInfo) -> common_pb2.ColumnSchema:
    msg = common_pb2.ColumnSchema(
        name=col.name,
        kind=_KIND_TO_PROTO[col.kind],
        missing_count=col.missing_count,
        distinct_count=col.distinct_count,
        integer=col.integer,
        datetime_format=col.datetime_format or "",
        kind_overridden=col.overridden,
        categories=col.categories,
        kind_reason=col.kind_reason,
        withheld_categories=col.withheld_categories,
        policy=col.policy,
        fake_format=describe_fake(col.fake),
    )
    if col.minimum is not None:
        msg.minimum = col.minimum
    if col.maximum is not None:
        msg.maximum = col.maximum
    return msg


def schema_to_proto(columns: list[ColumnInfo]) -> common_pb2.Schema:
    return common_pb2.Schema(columns=[column_to_proto(c) for c in columns])


def dataset_to_proto(info: DatasetInfo) -> datasets_pb2.Dataset:
    return datasets_pb2.Dataset(
        id=info.id,
        display_name=info.display_name,
        row_count=info.row_count,
        column_count=info.column_count,
        size_bytes=info.size_bytes,
        fingerprint=info.fingerprint,
        schema=schema_to_proto(info.columns),
        missing_markers=info.missing_markers,
        source_encoding=info.source_encoding,
        create_time=timestamp(info.created_at),
    )


def failure_to_status(failure: Failure) -> status_pb2.Status:
    """A failed job's failure as the ``google.rpc.Status`` its record and failed
    event carry: the code, the message, an ErrorInfo (reason, metadata) and a
    BadRequest for field violations, as a failed call would have them."""
    return status_proto(
        failure.code,
        failure.message,
        reason=failure.reason,
        metadata=failure.metadata,
        violations=[(v.field, v.description) for v in failure.violations],
    )
