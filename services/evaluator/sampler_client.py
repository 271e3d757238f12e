"""Draws synthetic rows from the sampler service, through the synth.v1 contract
(the evaluator never imports the sampler's code)."""

from __future__ import annotations

import grpc
import pandas as pd
import pyarrow as pa
from synth.v1 import sampling_pb2, sampling_pb2_grpc

from services.common import errors, tls
from services.common.rpc_status import decode_rpc_error

_CODES = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.DATA_LOSS: errors.DataLoss,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
}


class SamplerClient:
    def __init__(
        self, address: str, timeout: float = 600.0, credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        """``credentials``: mutual TLS to the sampler (None: plaintext)."""
        self.address = address
        self._timeout = timeout
        options = [
            ("grpc.lb_policy_name", "round_robin"),
            # Chunks are ~20k rows of Arrow; allow headroom over gRPC's 4 MiB default.
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ]
        self._channel = tls.channel(address, credentials, options)
        self._stub = sampling_pb2_grpc.SamplingServiceStub(self._channel)

    def draw(self, model_id: str, rows: int, seed: int) -> pd.DataFrame:
        """``rows`` synthetic rows as a typed frame (Arrow IPC keeps the types)."""
        request = sampling_pb2.SampleRowsRequest(
            model_id=model_id,
            row_count=rows,
            seed=seed,
            chunk_rows=20_000,
            format=sampling_pb2.OUTPUT_FORMAT_ARROW_IPC,
        )
        try:
            data = b"".join(
                m.chunk.data for m in self._stub.SampleRows(request, timeout=self._timeout) if m.HasField("chunk")
            )
        except grpc.RpcError as err:
            # The sampler's own reason and violations pass through (SAMPLER_BUSY, MODEL_INCONSISTENT…).
            status = decode_rpc_error(err)
            kind = _CODES.get(err.code(), errors.Unavailable)
            raise kind(
                f"the sampler ({self.address}) could not draw rows: {status.message}",
                # unreachable (no reason of the sampler's own): say which service
                reason=status.reason or ("SAMPLER_UNAVAILABLE" if kind is errors.Unavailable else ""),
                violations=[errors.FieldViolation(f, d) for f, d in status.violations],
                metadata=status.metadata,
            ) from None
        return pa.ipc.open_stream(data).read_all().to_pandas()

    def close(self) -> None:
        self._channel.close()
