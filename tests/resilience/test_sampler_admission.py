"""The sampler's memory is bounded under concurrency: only MAX_CONCURRENT_SAMPLES requests
generate at once; the others wait their turn, then get RESOURCE_EXHAUSTED (SAMPLER_BUSY)."""

from __future__ import annotations

import time

import grpc
import pytest
from synth.v1 import sampling_pb2, sampling_pb2_grpc

from tests.conftest import TinyModel
from tests.integration.test_sampler_service import start_sampler


def test_requests_beyond_the_limit_wait_their_turn_then_are_refused(tiny_model: TinyModel) -> None:
    server = start_sampler(tiny_model.store_dir, max_concurrent_samples=1, queue_seconds=1.0)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = sampling_pb2_grpc.SamplingServiceStub(channel)
            big = sampling_pb2.SampleRowsRequest(model_id=tiny_model.model_id, row_count=5_000_000, seed=1)
            holder = stub.SampleRows(big, timeout=60)
            assert next(holder).WhichOneof("part") == "header"  # generating, and holding the one turn

            small = sampling_pb2.SampleRowsRequest(model_id=tiny_model.model_id, row_count=100, seed=2)
            began = time.monotonic()
            with pytest.raises(grpc.RpcError) as busy:
                list(stub.SampleRows(small, timeout=30))
            assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "its limit" in busy.value.details()
            assert time.monotonic() - began >= 0.9, "it waited for a turn first"

            holder.cancel()  # the turn is given back when a stream ends, however it ends
            deadline = time.monotonic() + 10
            while True:
                try:
                    rows = list(stub.SampleRows(small, timeout=30))
                    break
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
            assert rows[-1].WhichOneof("part") == "summary" and rows[-1].summary.row_count == 100
    finally:
        server.stop(1)
