"""Open streams cannot starve a server: unary calls and health checks always find a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synth.v1 import datasets_pb2, datasets_pb2_grpc, training_pb2, training_pb2_grpc

from services.common.server import stream_slots
from services.trainer.app import build_server
from services.trainer.settings import TrainerSettings
from tests.conftest import adult_slice, upload_bytes

WORKERS = 8
SMALL = dict(synthesizer="ctgan", batch_size=100, generator_dims=[16], discriminator_dims=[16], embedding_dim=8)


@pytest.fixture
def trainer(tmp_path) -> Iterator:  # type: ignore[no-untyped-def]
    server = build_server(
        TrainerSettings(port=0, metrics_port=0, store_dir=tmp_path / "store", max_workers=WORKERS)
    ).start()
    server.set_serving()
    yield server
    server.stop(1)


def test_more_watch_streams_than_threads_leave_unary_calls_and_health_alone(trainer) -> None:  # type: ignore[no-untyped-def]
    slots = stream_slots(WORKERS)
    assert 0 < slots < WORKERS
    with grpc.insecure_channel(trainer.address) as channel:
        dataset = upload_bytes(channel, adult_slice(600))
        training = training_pb2_grpc.TrainingServiceStub(channel)
        config = training_pb2.TrainingConfig(epochs=100_000, seed=1, **SMALL)
        job = training.StartTraining(
            training_pb2.StartTrainingRequest(dataset_id=dataset.id, config=config), timeout=30
        ).job
        first_events = [threading.Event() for _ in range(slots)]
        ends: list[str] = []

        def follow(index: int) -> None:
            for event in training.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job.id), timeout=120):
                first_events[index].set()
                if event.WhichOneof("event") in ("succeeded", "failed", "cancelled"):
                    ends.append(event.WhichOneof("event"))

        watchers = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(slots)]
        for thread in watchers:
            thread.start()
        assert all(e.wait(30) for e in first_events), "every allowed stream is open"

        # one stream too many is refused at once, with a reason and a retry hint
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(training.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job.id), timeout=10)))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "streams open" in refused.value.details()

        # unary calls and the health check are served while every slot is taken
        datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
        for _ in range(WORKERS * 2):
            assert datasets.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=5).datasets
            check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert check.status == health_pb2.HealthCheckResponse.SERVING

        training.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(job_id=job.id), timeout=30)
        for thread in watchers:
            thread.join(60)
        assert ends == ["cancelled"] * slots
        # the slots are free again
        again = list(training.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job.id), timeout=30))
        assert again[-1].WhichOneof("event") == "cancelled"
