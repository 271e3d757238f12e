"""The gateway's gRPC front door over real servers: unary, client-stream and
server-stream calls pass through; request ids and metadata reach the backend
(auth headers do not); deadlines propagate; a cancelled call stops the backend;
reads are retried, writes are not; round robin spreads calls; a backend that is
down gives UNAVAILABLE naming it. The client only ever knows the gateway."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from synth.v1 import datasets_pb2, datasets_pb2_grpc, evaluation_pb2, evaluation_pb2_grpc, sampling_pb2
from synth.v1 import sampling_pb2_grpc as sampling_grpc

from gateway.backends import grpc_target, service_config
from synth_client import SynthClient, SynthError
from tests.integration.conftest import DATASETS
from tests.integration.test_gateway_fakes import CLOSED_PORT_ADDRESS, FakeBackend, start_fake_backend, start_gateway

PIMA = DATASETS / "pima_diabetes.csv"


@pytest.fixture
def fake() -> Iterator[FakeBackend]:
    backend = start_fake_backend()
    yield backend
    backend.stop()


@pytest.fixture
def gateway(trainer, fake):  # type: ignore[no-untyped-def]
    gw = start_gateway(trainer=trainer.address, sampler=fake.address, evaluator=fake.address)
    yield gw
    gw.stop(0)


def sample(channel: grpc.Channel, rows: int, delay_ms: int = 0, **kwargs):  # type: ignore[no-untyped-def]
    request = sampling_pb2.SampleRowsRequest(model_id="mdl-0123456789abcdef", row_count=rows, chunk_rows=delay_ms)
    return sampling_grpc.SamplingServiceStub(channel).SampleRows(request, **kwargs)


def test_unary_and_client_stream_calls_pass_through(gateway) -> None:  # type: ignore[no-untyped-def]
    # The client knows one address: the gateway's. No backend port is needed.
    with SynthClient(gateway.address) as client:
        dataset = client.upload_dataset(PIMA, chunk_bytes=4096)  # client stream: header + many chunks
        assert dataset.id.startswith("ds-") and dataset.row_count == 768
        assert [c.name for c in dataset.schema.columns][:2] == ["Pregnancies", "Glucose"]
        assert client.get_dataset(dataset.id) == dataset
        assert [d.id for d in client.list_datasets()] == [dataset.id]
        columns, rows = client.preview_dataset(dataset.id, 3)
        assert len(rows) == 3 and columns[-1] == "Outcome"
        # Rich error details (ErrorInfo reason) come back unchanged.
        with pytest.raises(SynthError) as info:
            client.get_dataset("ds-0123456789abcdef")
        assert info.value.code == "NOT_FOUND" and info.value.reason == "DATASET_NOT_FOUND"
        with pytest.raises(SynthError) as bad:
            client.upload_dataset(b"only_one_column\n1\n2\n")
        assert bad.value.code == "INVALID_ARGUMENT" and bad.value.violations


def test_request_id_is_kept_or_added_and_auth_headers_are_not_forwarded(gateway, fake) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(gateway.address) as ch:
        stub = datasets_pb2_grpc.DatasetServiceStub(ch)
        _, call = stub.ListDatasets.with_call(datasets_pb2.ListDatasetsRequest(), metadata=[("x-request-id", "req-42")])
        assert ("x-request-id", "req-42") in tuple(call.trailing_metadata())
        with pytest.raises(grpc.RpcError) as err:
            stub.GetDataset(datasets_pb2.GetDatasetRequest(dataset_id="ds-0123456789abcdef"))
        generated = dict(err.value.trailing_metadata())["x-request-id"]
        assert generated

        replies = list(
            sample(ch, 3, metadata=[("x-request-id", "req-7"), ("x-trace", "t-1"), ("authorization", "Bearer s3cret")])
        )
        assert [r.sequence for r in replies] == [1, 2, 3, 4, 5, 6]
        seen = fake.recorder.metadata[-1]
        assert seen["x-request-id"] == "req-7" and seen["x-trace"] == "t-1"
        assert "authorization" not in seen
        list(sample(ch, 1))
        assert fake.recorder.metadata[-1]["x-request-id"], "an id is added when the caller sends none"


def test_server_stream_passes_every_message_in_order(gateway) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(gateway.address) as ch:
        replies = list(sample(ch, 50, timeout=10))
    assert [r.sequence for r in replies] == list(range(1, 54))
    assert replies[0].WhichOneof("part") == "header" and replies[-1].WhichOneof("part") == "summary"
    body = b"".join(r.chunk.data for r in replies if r.WhichOneof("part") == "chunk")
    assert body.splitlines()[0] == b"a,b" and len(body.splitlines()) == 51


def test_cancelling_a_stream_cancels_the_backend_call(gateway, fake) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(gateway.address) as ch:
        call = sample(ch, 10_000, delay_ms=20)
        got = [next(call) for _ in range(4)]
        assert got[-1].WhichOneof("part") == "chunk"
        call.cancel()
        assert fake.recorder.cancelled.wait(5), "the backend never saw the cancellation"
        sent = fake.recorder.sent
        time.sleep(0.3)
        assert fake.recorder.sent <= sent + 1, "the backend kept streaming after the cancel"
        assert sent < 1000


def test_deadline_propagates_to_the_backend(gateway, fake) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(gateway.address) as ch:
        stub = evaluation_pb2_grpc.EvaluationServiceStub(ch)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.GetReport(evaluation_pb2.GetReportRequest(report_id="rpt-slow"), timeout=1.0)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5
    remaining = fake.recorder.time_remaining[-1]
    # The caller's 1 s, not the gateway's default (60 s). The grpc-timeout header
    # is rounded up to its unit, so the backend may see a few ms more than 1 s.
    assert remaining is not None and 0.2 < remaining < 1.1, remaining
    assert fake.recorder.cancelled.wait(3), "the backend call outlived the caller's deadline"


def test_reads_are_retried_and_writes_are_not(gateway, fake) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(gateway.address) as ch:
        stub = evaluation_pb2_grpc.EvaluationServiceStub(ch)
        report = stub.GetReport(evaluation_pb2.GetReportRequest(report_id="rpt-flaky"), timeout=10).report
        assert report.id == "rpt-flaky"
        assert fake.recorder.calls["GetReport"] == 2, "GetReport is a read: retried once after UNAVAILABLE"
        with pytest.raises(grpc.RpcError) as err:
            stub.DeleteReport(evaluation_pb2.DeleteReportRequest(report_id="rpt-flaky"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert fake.recorder.calls["DeleteReport"] == 1, "a write is never retried"


def test_a_backend_that_is_down_gives_unavailable_naming_it(trainer) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(trainer=trainer.address, sampler=CLOSED_PORT_ADDRESS)
    try:
        with grpc.insecure_channel(gw.address) as ch:
            with pytest.raises(grpc.RpcError) as err:
                list(sample(ch, 3, timeout=10))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "sampler backend (127.0.0.1:1) is unavailable" in err.value.details()
            # The other backends are unaffected.
            datasets_pb2_grpc.DatasetServiceStub(ch).ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=10)
    finally:
        gw.stop(0)


def test_round_robin_spreads_calls_over_replicas() -> None:
    replicas = [start_fake_backend(name=f"replica{i}") for i in range(2)]
    gw = start_gateway(sampler=",".join(r.address for r in replicas))
    try:
        with grpc.insecure_channel(gw.address) as ch:
            for _ in range(40):
                list(sample(ch, 1, timeout=10))
        counts = [r.recorder.calls.get("SampleRows", 0) for r in replicas]
        # Once both replicas are connected, calls alternate between them.
        assert sum(counts) == 40 and min(counts) >= 10, counts
    finally:
        gw.stop(0)
        for r in replicas:
            r.stop()


def test_health_reflection_and_metrics(gateway) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(gateway.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        check = health_pb2.HealthCheckRequest(service="synth.v1.SamplingService")
        assert health.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        listed = {s.name for r in replies for s in r.list_services_response.service}
    assert {
        "synth.v1.DatasetService",
        "synth.v1.TrainingService",
        "synth.v1.ModelService",
        "synth.v1.SamplingService",
        "synth.v1.EvaluationService",
        "grpc.health.v1.Health",
    } <= listed
    with grpc.insecure_channel(gateway.address) as ch:
        datasets_pb2_grpc.DatasetServiceStub(ch).ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=10)
    urllib.request.urlopen(gateway.http_url + "/v1/datasets", timeout=10).close()
    http_line = 'synth_gateway_http_requests_total{code="200",method="GET",route="/v1/datasets"} 1.0'
    deadline = time.monotonic() + 5  # the HTTP handler counts a request once its response is out
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        if http_line in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="ListDatasets",'
        'grpc_service="synth.v1.DatasetService",grpc_type="unary"} 1.0' in text
    )
    assert http_line in text


def test_targets_and_retry_config() -> None:
    assert grpc_target("trainer:50051") == "dns:///trainer:50051"
    assert grpc_target("127.0.0.1:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert grpc_target("dns:///x:1") == "dns:///x:1"
    with pytest.raises(ValueError):
        grpc_target("a:1,b:2")
    import json

    config = json.loads(service_config("trainer"))
    retried = {n["method"] for n in config["methodConfig"][0]["name"]}
    assert {"GetDataset", "ListDatasets", "PreviewDataset", "WatchTraining", "GetModel"} <= retried
    assert not retried & {"UploadDataset", "DeleteDataset", "StartTraining", "CancelTrainingJob", "DeleteModel"}
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]


def test_grpc_uploads_over_the_gateway_limit_are_refused_and_leave_nothing(trainer, fake, store_dir) -> None:  # type: ignore[no-untyped-def]
    """The trainer allows 5 MB; the gateway's own 200 kB applies over gRPC as over HTTP."""
    from tests.integration.conftest import stored_items

    gw = start_gateway(trainer=trainer.address, sampler=fake.address, evaluator=fake.address, max_upload_bytes=200_000)
    big = b"a,b\n" + b"12345,67890\n" * 40_000  # 480 kB
    try:
        with SynthClient(gw.address) as client:
            with pytest.raises(SynthError) as info:
                client.upload_dataset(big, name="big.csv", chunk_bytes=50_000)
            assert info.value.code == "RESOURCE_EXHAUSTED"
            assert "gateway's limit of 200000 bytes" in info.value.message
            assert info.value.reason == "UPLOAD_TOO_LARGE"
            deadline = time.monotonic() + 10  # the trainer sees the cancellation a moment later
            while stored_items(store_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert stored_items(store_dir) == [], "the backend's upload was cancelled, not committed"
            small = client.upload_dataset(big[:150_000].rsplit(b"\n", 1)[0] + b"\n", name="small.csv")
            assert [d.id for d in client.list_datasets()] == [small.id], "under the limit it passes"
    finally:
        gw.stop(0)
