"""Hundreds of idle WatchTraining streams on a trainer with 8 threads: unary
calls and health checks stay fast, and a stop ends every stream at once.

Before the server moved to grpc.aio each stream held a thread for its life, so
this trainer took 6 streams and refused the rest (TOO_MANY_STREAMS).
bench/bench_streams.py measures the same with 1,000 streams."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synth.v1 import datasets_pb2, datasets_pb2_grpc, training_pb2, training_pb2_grpc

from services.trainer.app import build_server
from services.trainer.settings import TrainerSettings
from tests.conftest import adult_slice, upload_bytes
from tests.resilience.watchers import IdleWatchers

STREAMS = 300
WORKERS = 8
CALLS = 200
# Measured p99 is about 1 ms with 1,000 streams (bench/bench_streams.py); the
# bound leaves room for a loaded CI machine and still catches a starved server.
P99_LIMIT_SECONDS = 0.25


def _p99(call: Callable[[], object]) -> float:
    seconds = []
    for _ in range(CALLS):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return sorted(seconds)[int(0.99 * (len(seconds) - 1))]


def test_idle_watch_streams_leave_unary_calls_and_health_fast(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = TrainerSettings(
        port=0,
        metrics_port=-1,
        store_dir=tmp_path / "store",
        max_workers=WORKERS,
        max_concurrent_jobs=0,  # no training worker: the job stays queued, its watchers idle
    )
    server = build_server(settings).start()
    server.set_serving()
    stopped = False
    try:
        with grpc.insecure_channel(server.address) as channel:
            dataset = upload_bytes(channel, adult_slice(200))
            training = training_pb2_grpc.TrainingServiceStub(channel)
            request = training_pb2.StartTrainingRequest(
                dataset_id=dataset.id, config=training_pb2.TrainingConfig(epochs=1)
            )
            job = training.StartTraining(request, timeout=30).job
            datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)

            with IdleWatchers(server.address, job.id, STREAMS) as watchers:
                watchers.open(timeout=60)  # every stream has its first event: none was refused
                assert server.bounds.open == STREAMS and server.bounds.open_sync == 0

                list_p99 = _p99(lambda: datasets.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=5))
                health_p99 = _p99(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5))
                assert list_p99 < P99_LIMIT_SECONDS, f"ListDatasets p99 {list_p99 * 1000:.1f} ms"
                assert health_p99 < P99_LIMIT_SECONDS, f"health p99 {health_p99 * 1000:.1f} ms"

                # A stop ends every idle stream at once (they can reattach
                # elsewhere), not after the grace period.
                began = time.monotonic()
                server.stop(grace=10)
                stopped = True
                assert time.monotonic() - began < 5
                assert watchers.ends(timeout=10) == ["UNAVAILABLE"] * STREAMS
    finally:
        if not stopped:
            server.stop(1)


def test_idle_watch_streams_through_the_gateway_hold_no_gateway_thread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The gateway relays server streams on its event loop: with 8 threads it
    carries a hundred idle watches (it took 6 when each relay held a thread),
    its unary relays stay fast, and leaving the watches ends the backend's
    streams too."""
    from tests.integration.test_gateway_fakes import start_gateway

    trainer = build_server(
        TrainerSettings(
            port=0, metrics_port=-1, store_dir=tmp_path / "store", max_workers=WORKERS, max_concurrent_jobs=0
        )
    ).start()
    trainer.set_serving()
    gateway = start_gateway(trainer=trainer.address, max_workers=WORKERS)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            dataset = upload_bytes(channel, adult_slice(200))
            request = training_pb2.StartTrainingRequest(
                dataset_id=dataset.id, config=training_pb2.TrainingConfig(epochs=1)
            )
            job = training_pb2_grpc.TrainingServiceStub(channel).StartTraining(request, timeout=30).job
            datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
            with IdleWatchers(gateway.address, job.id, 100) as watchers:
                watchers.open(timeout=60)
                assert gateway.grpc.bounds.open == 100 and gateway.grpc.bounds.open_sync == 0
                assert trainer.bounds.open == 100
                list_p99 = _p99(lambda: datasets.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=5))
                assert list_p99 < P99_LIMIT_SECONDS, f"ListDatasets p99 through the gateway {list_p99 * 1000:.1f} ms"
            # The watchers left: the gateway cancelled each backend stream.
            deadline = time.monotonic() + 10
            while trainer.bounds.open and time.monotonic() < deadline:
                time.sleep(0.05)
            assert trainer.bounds.open == 0 and gateway.grpc.bounds.open == 0
    finally:
        gateway.stop(1)
        trainer.stop(1)
