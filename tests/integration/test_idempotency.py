"""AIP-155 request ids over real servers: a retried upload or training start
returns what the first call made, never a second item; a reused id with a
different request is INVALID_ARGUMENT; the client retries an unreachable
trainer under one id."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import grpc
import pytest
from synth.v1 import datasets_pb2, datasets_pb2_grpc, training_pb2, training_pb2_grpc

from services.trainer.app import build_server as build_trainer
from services.trainer.settings import TrainerSettings
from synth_client import SynthClient
from tests.conftest import adult_slice
from tests.integration.conftest import stored_items
from tests.integration.test_datasets_service import rpc_error, upload, violations

SMALL = adult_slice(300)
QUICK = training_pb2.TrainingConfig(
    synthesizer="ctgan",
    epochs=1,
    batch_size=100,
    generator_dims=[32],
    discriminator_dims=[32],
    embedding_dim=16,
    seed=3,
)


def start(channel, dataset_id: str, request_id: str, config=QUICK):  # type: ignore[no-untyped-def]
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    request = training_pb2.StartTrainingRequest(dataset_id=dataset_id, config=config, request_id=request_id)
    return stub.StartTraining(request, timeout=30).job


def test_a_retried_upload_returns_the_stored_dataset(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    request_id = str(uuid.uuid4())
    first = upload(channel, SMALL, request_id=request_id)
    again = upload(channel, SMALL, request_id=request_id.upper(), chunk=1000)  # same id, other spelling and chunks
    assert again == first
    assert stored_items(store_dir) == [first.id]
    assert upload(channel, SMALL).id != first.id, "without a request id every upload is new"


@pytest.mark.parametrize(
    "change",
    [
        {"data": SMALL + b"39,Private,1,HS-grad,9,Never-married,Sales,Own-child,White,Male,0,0,40,X,<=50K\n"},
        {"display_name": "other.csv"},
        {"missing_markers": ["?"]},
    ],
    ids=["other bytes", "other name", "other markers"],
)
def test_a_reused_upload_request_id_with_another_request_is_invalid(channel, store_dir, change) -> None:  # type: ignore[no-untyped-def]
    request_id = str(uuid.uuid4())
    first = upload(channel, SMALL, request_id=request_id)
    data = change.pop("data", SMALL)
    err = rpc_error(upload, channel, data, request_id=request_id, **change)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "already used for a different request" in err.details() and first.id in err.details()
    assert violations(err) == ["request_id"]
    assert stored_items(store_dir) == [first.id], "nothing new stored"


def test_a_malformed_request_id_is_refused_before_any_bytes(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    err = rpc_error(upload, channel, SMALL, request_id="retry-1")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be a UUID" in err.details() and violations(err) == ["header.request_id"]
    assert stored_items(store_dir) == []


def test_deleting_a_dataset_forgets_its_request_id(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    request_id = str(uuid.uuid4())
    first = upload(channel, SMALL, request_id=request_id)
    datasets_pb2_grpc.DatasetServiceStub(channel).DeleteDataset(datasets_pb2.DeleteDatasetRequest(dataset_id=first.id))
    assert stored_items(store_dir) == []
    again = upload(channel, SMALL, display_name="other.csv", request_id=request_id)  # no REQUEST_ID_REUSED now
    assert again.display_name == "other.csv" and stored_items(store_dir) == [again.id]


def test_concurrent_uploads_with_one_request_id_store_one_dataset(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    request_id = str(uuid.uuid4())
    results: list[str] = []

    def go() -> None:
        results.append(upload(channel, SMALL, request_id=request_id, chunk=4096).id)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4 and len(set(results)) == 1
    assert stored_items(store_dir) == results[:1]


def test_a_retried_training_start_returns_the_same_job(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    dataset = upload(channel, SMALL)
    request_id = str(uuid.uuid4())
    job = start(channel, dataset.id, request_id)
    again = start(channel, dataset.id, request_id)
    assert again.id == job.id and again.model_id == job.model_id
    assert stored_items(store_dir, "jobs") == [job.id]
    # Even once the dataset is gone, the retry is answered with the job it made.
    datasets_pb2_grpc.DatasetServiceStub(channel).DeleteDataset(
        datasets_pb2.DeleteDatasetRequest(dataset_id=dataset.id)
    )
    assert start(channel, dataset.id, request_id).id == job.id

    other = training_pb2.TrainingConfig()
    other.CopyFrom(QUICK)
    other.epochs = 2
    err = rpc_error(start, channel, dataset.id, request_id, other)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(err) == ["request_id"]
    assert stored_items(store_dir, "jobs") == [job.id]
    err = rpc_error(start, channel, dataset.id, "not-a-uuid")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "must be a UUID" in err.details()


def test_concurrent_training_starts_with_one_request_id_queue_one_job(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    dataset = upload(channel, SMALL)
    request_id = str(uuid.uuid4())
    jobs: list[str] = []
    threads = [
        threading.Thread(target=lambda: jobs.append(start(channel, dataset.id, request_id).id)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(jobs) == 4 and len(set(jobs)) == 1
    assert stored_items(store_dir, "jobs") == jobs[:1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_client_retries_an_unreachable_trainer_under_one_request_id(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The trainer comes up while the client is already retrying: the upload
    and the training start land once each."""
    port = _free_port()
    store = tmp_path / "store"
    servers = []

    def come_up_late() -> None:
        time.sleep(2.5)  # past gRPC's first reconnect backoff (1 s): fixed client sleeps would miss it
        server = build_trainer(TrainerSettings(port=port, metrics_port=-1, store_dir=store)).start()
        server.set_serving()
        servers.append(server)

    late = threading.Thread(target=come_up_late)
    late.start()
    try:
        with SynthClient(f"127.0.0.1:{port}") as client:  # the default retries
            dataset = client.upload_dataset(SMALL, name="late.csv")
            job = client.start_training(dataset.id, synthesizer="ctgan", epochs=1, batch_size=100, seed=3)
            late.join(30)
            assert [d.id for d in client.list_datasets()] == [dataset.id]
            assert [j.id for j in client.list_jobs()] == [job.id]
            # What a retry after a lost response sends: the same id again.
            request_id = str(uuid.uuid4())
            first = client.upload_dataset(SMALL, name="again.csv", request_id=request_id)
            assert client.upload_dataset(SMALL, name="again.csv", request_id=request_id).id == first.id
            assert len(client.list_datasets()) == 2
    finally:
        late.join(30)
        for server in servers:
            server.stop(1)


def test_the_client_gives_up_after_its_wait(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from synth_client.errors import SynthError

    began = time.monotonic()
    address = f"127.0.0.1:{_free_port()}"
    with SynthClient(address, retry_wait_seconds=1.5) as client, pytest.raises(SynthError) as info:
        client.upload_dataset(SMALL)
    assert info.value.code == "UNAVAILABLE"
    assert 1.4 < time.monotonic() - began < 20, "it waits for the server, then says it is unreachable"
    with SynthClient(address, retries=0) as client, pytest.raises(SynthError):
        began = time.monotonic()
        client.start_training("ds-0123456789abcdef")
    assert time.monotonic() - began < 5, "retries=0: no waiting"
