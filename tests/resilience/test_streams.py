"""Open streams cannot starve a server: past its bounds a new stream is refused
at once (TOO_MANY_STREAMS), and unary calls and health checks are still served.

Two bounds: ``max_streams`` for every stream (async ones, like WatchTraining,
hold no thread), and ``stream_slots(max_workers)`` for sync streams, which may
wait in a thread for long (here an upload waiting for its next chunk)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synth.v1 import datasets_pb2, datasets_pb2_grpc, training_pb2, training_pb2_grpc

from services.common.server import SynthServer, stream_slots
from services.trainer.app import build_server
from services.trainer.settings import TrainerSettings
from tests.conftest import adult_slice, upload_bytes
from tests.resilience.watchers import IdleWatchers, wait_until

WORKERS = 8
MAX_STREAMS = 12


@pytest.fixture
def trainer(tmp_path) -> Iterator[SynthServer]:  # type: ignore[no-untyped-def]
    # No training worker: jobs stay queued, so their watch streams stay open and idle.
    settings = TrainerSettings(
        port=0,
        metrics_port=0,
        store_dir=tmp_path / "store",
        max_workers=WORKERS,
        max_streams=MAX_STREAMS,
        max_concurrent_jobs=0,
    )
    server = build_server(settings).start()
    server.set_serving()
    yield server
    server.stop(1)


def _queued_job(channel: grpc.Channel) -> str:
    dataset = upload_bytes(channel, adult_slice(200))
    training = training_pb2_grpc.TrainingServiceStub(channel)
    request = training_pb2.StartTrainingRequest(dataset_id=dataset.id, config=training_pb2.TrainingConfig(epochs=1))
    return training.StartTraining(request, timeout=30).job.id


def _assert_unary_and_health_served(channel: grpc.Channel) -> None:
    datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
    for _ in range(WORKERS * 2):
        assert datasets.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=5).datasets
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING


def _refused(call: grpc.RpcError) -> None:
    assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "streams open" in (call.details() or "")


def test_more_watch_streams_than_threads_then_the_stream_bound(trainer: SynthServer) -> None:
    assert MAX_STREAMS > WORKERS  # watch streams are async: threads are not their limit
    with grpc.insecure_channel(trainer.address) as channel:
        job_id = _queued_job(channel)
        training = training_pb2_grpc.TrainingServiceStub(channel)
        with IdleWatchers(trainer.address, job_id, MAX_STREAMS) as watchers:
            watchers.open(timeout=30)

            # one stream too many is refused at once, with a reason and a retry hint
            with pytest.raises(grpc.RpcError) as refused:
                next(iter(training.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job_id), timeout=10)))
            _refused(refused.value)

            _assert_unary_and_health_served(channel)

            training.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(job_id=job_id), timeout=30)
            assert watchers.ends(timeout=30) == ["cancelled"] * MAX_STREAMS
        # the streams are free again
        wait_until(lambda: trainer.bounds.open == 0, timeout=10)
        again = list(training.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job_id), timeout=30))
        assert again[-1].WhichOneof("event") == "cancelled"


def test_sync_streams_that_hold_a_thread_have_their_own_bound(trainer: SynthServer) -> None:
    slots = stream_slots(WORKERS)
    assert 0 < slots < WORKERS
    with grpc.insecure_channel(trainer.address) as channel:
        job_id = _queued_job(channel)
        datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
        release = threading.Event()

        def stalled() -> Iterator[datasets_pb2.UploadDatasetRequest]:
            # A header, then nothing: the sync UploadDataset waits in its thread.
            yield datasets_pb2.UploadDatasetRequest(header=datasets_pb2.UploadDatasetHeader(display_name="slow.csv"))
            release.wait(60)

        uploads = [datasets.UploadDataset.future(stalled(), timeout=60) for _ in range(slots)]
        try:
            wait_until(lambda: trainer.bounds.open_sync == slots, timeout=30)

            with pytest.raises(grpc.RpcError) as refused:
                upload_bytes(channel, adult_slice(50))
            _refused(refused.value)
            assert "hold a thread" in (refused.value.details() or "")

            # an async stream is still taken, and unary calls and health are served
            training = training_pb2_grpc.TrainingServiceStub(channel)
            watch = training.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job_id), timeout=30)
            assert next(watch).WhichOneof("event") == "queued"
            watch.cancel()
            _assert_unary_and_health_served(channel)
        finally:
            for upload in uploads:
                upload.cancel()
            release.set()
        # cancelled uploads give their threads back
        wait_until(lambda: trainer.bounds.open_sync == 0, timeout=30)
        assert upload_bytes(channel, adult_slice(50)).row_count == 50
