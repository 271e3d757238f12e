"""SamplingService: translate the request, stream the domain's messages back."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from synth.v1 import sampling_pb2, sampling_pb2_grpc

from services.common.convert import schema_to_proto
from services.common.errors import FieldViolation, InvalidArgument
from services.sampler.conditions import Compare, Condition, Equals, InSet, Range
from services.sampler.sampling import ARROW, CSV, Chunk, Header, RowSampler, SampleRequest, Summary

_FORMATS = {
    sampling_pb2.OUTPUT_FORMAT_UNSPECIFIED: CSV,
    sampling_pb2.OUTPUT_FORMAT_CSV: CSV,
    sampling_pb2.OUTPUT_FORMAT_ARROW_IPC: ARROW,
}
_FORMAT_TO_PROTO = {CSV: sampling_pb2.OUTPUT_FORMAT_CSV, ARROW: sampling_pb2.OUTPUT_FORMAT_ARROW_IPC}
_COMPARISONS = {
    sampling_pb2.COMPARISON_LESS: "<",
    sampling_pb2.COMPARISON_LESS_EQUAL: "<=",
    sampling_pb2.COMPARISON_GREATER: ">",
    sampling_pb2.COMPARISON_GREATER_EQUAL: ">=",
    sampling_pb2.COMPARISON_EQUAL: "=",
    sampling_pb2.COMPARISON_NOT_EQUAL: "!=",
}


def condition_from_proto(index: int, msg: sampling_pb2.Condition) -> Condition:
    test = msg.WhichOneof("test")
    if test == "equals":
        return Equals(msg.column, msg.equals)
    if test == "in_set":
        return InSet(msg.column, tuple(msg.in_set.values))
    if test == "range":
        r = msg.range
        return Range(
            msg.column,
            r.minimum if r.HasField("minimum") else None,
            r.maximum if r.HasField("maximum") else None,
            r.minimum_exclusive,
            r.maximum_exclusive,
        )
    if test == "compare":
        op = _COMPARISONS.get(msg.compare.op)
        if op is None:
            raise InvalidArgument(
                f"condition {index} compares with no operator",
                violations=[FieldViolation(f"conditions[{index}].compare.op", "set an operator")],
            )
        return Compare(msg.column, op, msg.compare.other_column)
    raise InvalidArgument(
        f"condition {index} has no test (equals, in_set, range or compare)",
        violations=[FieldViolation(f"conditions[{index}]", "set equals, in_set, range or compare")],
    )


class SamplingServicer(sampling_pb2_grpc.SamplingServiceServicer):
    def __init__(self, sampler: RowSampler) -> None:
        self._sampler = sampler

    def SampleRows(
        self, request: sampling_pb2.SampleRowsRequest, context: grpc.ServicerContext
    ) -> Iterator[sampling_pb2.SampleRowsResponse]:
        if request.format not in _FORMATS:
            raise InvalidArgument(f"unknown output format {request.format}")
        domain_request = SampleRequest(
            model_id=request.model_id,
            row_count=request.row_count,
            seed=request.seed if request.HasField("seed") else None,
            chunk_rows=request.chunk_rows,
            fmt=_FORMATS[request.format],
            conditions=[condition_from_proto(i, c) for i, c in enumerate(request.conditions)],
        )
        for sequence, message in enumerate(self._sampler.stream(domain_request, context.is_active), start=1):
            response = sampling_pb2.SampleRowsResponse(sequence=sequence)
            if isinstance(message, Header):
                response.header.CopyFrom(
                    sampling_pb2.SampleHeader(
                        column_names=message.column_names,
                        schema=schema_to_proto(message.columns),
                        format=_FORMAT_TO_PROTO[message.fmt],
                        seed=message.seed,
                        row_count=message.row_count,
                    )
                )
            elif isinstance(message, Chunk):
                response.chunk.CopyFrom(sampling_pb2.RowChunk(data=message.data, row_count=message.rows))
            elif isinstance(message, Summary):
                response.summary.CopyFrom(
                    sampling_pb2.SampleSummary(
                        row_count=message.rows,
                        rows_generated=message.generated,
                        acceptance_rate=message.acceptance_rate,
                        seconds=message.seconds,
                    )
                )
            yield response
