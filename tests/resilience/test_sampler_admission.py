"""The sampler's memory is bounded under concurrency: at most MAX_CONCURRENT_SAMPLES requests
generate at once, and together they reserve at most GENERATION_MEMORY_MB; the others wait
their turn, then get RESOURCE_EXHAUSTED (SAMPLER_BUSY)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from synth.v1 import sampling_pb2, sampling_pb2_grpc

from services.common.errors import Cancelled, ResourceExhausted
from services.sampler.sampling import PIECE_BYTES, Admission, reservation_bytes
from synth_client import SynthClient
from synth_client.errors import SynthError
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
            assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "none ended in time" in busy.value.details()
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


def test_the_memory_budget_bounds_concurrency_below_the_request_count(tiny_model: TinyModel) -> None:
    """Six turns by count, but a budget that holds one request's reservation:
    the second stream waits, then is refused, and the metrics show the reservation."""
    one = reservation_bytes(1, 10_000, 15)
    server = start_sampler(
        tiny_model.store_dir,
        max_concurrent_samples=6,
        generation_memory_mb=(one * 3 // 2) // 2**20,
        queue_seconds=1.0,
        generation_workers=1,
    )
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = sampling_pb2_grpc.SamplingServiceStub(channel)
            big = sampling_pb2.SampleRowsRequest(model_id=tiny_model.model_id, row_count=5_000_000, seed=1)
            holder = stub.SampleRows(big, timeout=60)
            assert next(holder).WhichOneof("part") == "header"
            metrics = server.registry.get_sample_value("synth_sampler_reserved_bytes")
            assert metrics is not None and metrics >= 2 * PIECE_BYTES

            small = sampling_pb2.SampleRowsRequest(model_id=tiny_model.model_id, row_count=100, seed=2)
            with pytest.raises(grpc.RpcError) as busy:
                list(stub.SampleRows(small, timeout=30))
            assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "MB budget" in busy.value.details()
            holder.cancel()
    finally:
        server.stop(1)


def test_admission_counts_bytes_and_lets_an_oversized_request_run_alone() -> None:
    changes: list[tuple[int, int]] = []
    gate = Admission(max_concurrent=4, budget_bytes=100, on_change=lambda a, b: changes.append((a, b)))
    soon = time.monotonic() + 0.3
    held = gate.acquire(60, soon, lambda: True)
    with pytest.raises(ResourceExhausted):  # 60 + 60 > 100
        gate.acquire(60, time.monotonic() + 0.3, lambda: True)
    assert gate.acquire(40, soon, lambda: True) == 40  # 60 + 40 fits
    gate.release(40)
    with pytest.raises(Cancelled):  # a client that left stops waiting at once
        gate.acquire(60, time.monotonic() + 5, lambda: False)

    # A request bigger than the whole budget is capped to it: it waits for the
    # others to end, then runs alone.
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(gate.acquire(10_000, time.monotonic() + 5, lambda: True)))
    waiter.start()
    time.sleep(0.2)
    assert not got
    gate.release(held)
    waiter.join(5)
    assert got == [100]
    gate.release(100)
    assert changes[-1] == (0, 0)


def test_the_client_comes_back_when_a_busy_sampler_says_so(tiny_model: TinyModel) -> None:
    """SAMPLER_BUSY carries retry_after_seconds; the client waits and retries
    (nothing was received, so the rows are the same), within its retry budget."""
    server = start_sampler(tiny_model.store_dir, max_concurrent_samples=1, queue_seconds=0.5)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = sampling_pb2_grpc.SamplingServiceStub(channel)
            big = sampling_pb2.SampleRowsRequest(model_id=tiny_model.model_id, row_count=5_000_000, seed=1)
            holder = stub.SampleRows(big, timeout=60)
            assert next(holder).WhichOneof("part") == "header"

            with SynthClient(server.address, retry_wait_seconds=0) as impatient:
                with pytest.raises(SynthError) as busy:
                    list(impatient.sample(tiny_model.model_id, 100, seed=2))
            assert busy.value.reason == "SAMPLER_BUSY" and busy.value.retry_after_seconds == 5

            threading.Timer(2.0, holder.cancel).start()  # the turn frees while the client waits
            with SynthClient(server.address, retry_wait_seconds=30) as patient:
                began = time.monotonic()
                messages = list(patient.sample(tiny_model.model_id, 100, seed=2))
            assert messages[-1].summary.row_count == 100 and time.monotonic() - began >= 2.0
    finally:
        server.stop(1)
