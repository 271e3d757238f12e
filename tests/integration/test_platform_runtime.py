"""What every service process offers: health (NOT_SERVING until ready), reflection
listing the synth.v1 services, Prometheus /metrics counting RPCs, error details,
graceful shutdown — in-process and as separate processes started like `synth up`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from synth.v1 import datasets_pb2, datasets_pb2_grpc, sampling_pb2, sampling_pb2_grpc

from services.evaluator.app import build_server as build_evaluator
from services.evaluator.settings import EvaluatorSettings
from services.sampler.app import build_server as build_sampler
from services.sampler.settings import SamplerSettings
from services.trainer.app import build_server as build_trainer
from services.trainer.settings import TrainerSettings
from synth_client import LocalPlatform, SynthClient, SynthError
from tests.integration.conftest import DATASETS

ALL_SERVICES = {
    "synth.v1.DatasetService",
    "synth.v1.TrainingService",
    "synth.v1.ModelService",
    "synth.v1.SamplingService",
    "synth.v1.EvaluationService",
}


def health_status(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def reflected_services(address: str) -> set[str]:
    with grpc.insecure_channel(address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        return {s.name for r in replies for s in r.list_services_response.service}


def metrics_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_health_is_not_serving_until_ready_then_serving(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = build_trainer(TrainerSettings(port=0, metrics_port=0, store_dir=tmp_path)).start()
    try:
        assert health_status(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING
        server.set_serving()
        assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
        assert health_status(server.address, "synth.v1.DatasetService") == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(1)


def test_reflection_lists_every_service_and_metrics_count_rpcs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    servers = [
        build_trainer(TrainerSettings(port=0, metrics_port=0, store_dir=tmp_path)),
        build_sampler(SamplerSettings(port=0, metrics_port=0, store_dir=tmp_path)),
        build_evaluator(EvaluatorSettings(port=0, metrics_port=0, store_dir=tmp_path)),
    ]
    for s in servers:
        s.start().set_serving()
    try:
        listed = set().union(*(reflected_services(s.address) for s in servers))
        assert ALL_SERVICES <= listed
        assert "grpc.health.v1.Health" in listed

        trainer = servers[0]
        with grpc.insecure_channel(trainer.address) as ch:
            stub = datasets_pb2_grpc.DatasetServiceStub(ch)
            for _ in range(3):
                stub.ListDatasets(datasets_pb2.ListDatasetsRequest())
            with pytest.raises(grpc.RpcError):
                stub.GetDataset(datasets_pb2.GetDatasetRequest(dataset_id="ds-0000000000000000"))
        text = metrics_text(f"http://127.0.0.1:{trainer.metrics_port}/metrics")
        assert (
            'grpc_server_handled_total{grpc_code="OK",grpc_method="ListDatasets",'
            'grpc_service="synth.v1.DatasetService",grpc_type="unary"} 3.0' in text
        )
        assert 'grpc_code="NOT_FOUND",grpc_method="GetDataset"' in text
        assert "grpc_server_handling_seconds_bucket" in text
    finally:
        for s in servers:
            s.stop(1)


def test_stream_validation_errors_come_before_any_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = build_sampler(SamplerSettings(port=0, metrics_port=0, store_dir=tmp_path)).start()
    try:
        with grpc.insecure_channel(server.address) as ch:
            stream = sampling_pb2_grpc.SamplingServiceStub(ch).SampleRows(sampling_pb2.SampleRowsRequest())
            with pytest.raises(grpc.RpcError) as info:
                list(stream)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop(1)


def test_errors_carry_details_and_the_request_id(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = build_trainer(TrainerSettings(port=0, metrics_port=0, store_dir=tmp_path)).start()
    try:
        with SynthClient(trainer=server.address) as client:
            with pytest.raises(SynthError) as info:
                client.get_dataset("ds-0123456789abcdef")
        assert info.value.code == "NOT_FOUND"
        assert info.value.reason == "DATASET_NOT_FOUND"
        with grpc.insecure_channel(server.address) as ch:
            call = datasets_pb2_grpc.DatasetServiceStub(ch).GetDataset.with_call
            with pytest.raises(grpc.RpcError) as err:
                call(datasets_pb2.GetDatasetRequest(dataset_id="nope"), metadata=[("x-request-id", "req-42")])
        assert ("x-request-id", "req-42") in tuple(err.value.trailing_metadata())
    finally:
        server.stop(1)


@pytest.mark.slow
def test_separate_processes_like_synth_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    platform = LocalPlatform(tmp_path / "var", ports="free").start()
    try:
        for spec in platform.specs:
            assert health_status(platform.address(spec.name)) == health_pb2.HealthCheckResponse.SERVING
        listed = set().union(*(reflected_services(platform.address(s.name)) for s in platform.specs))
        assert ALL_SERVICES <= listed
        with SynthClient(trainer=platform.address("trainer")) as client:
            for path in [DATASETS / "pima_diabetes.csv", DATASETS / "nyc_taxis.csv"]:
                dataset = client.upload_dataset(path)
                assert dataset.row_count > 0
            assert len(client.list_datasets(page_size=1)) == 2  # two pages, followed
        text = metrics_text(platform.metrics_url("trainer"))
        assert 'grpc_method="UploadDataset"' in text
        # Logs are JSON lines with the service name.
        first = (platform.log_dir / "trainer.log").read_text().splitlines()[0]
        assert json.loads(first)["service"] == "trainer"
    finally:
        codes = platform.stop()
    assert {"trainer", "sampler", "evaluator"} <= set(codes) and set(codes.values()) == {0}, codes


@pytest.mark.slow
def test_cli_upload_list_show_delete_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    platform = LocalPlatform(tmp_path / "var", ports="free").start()
    try:
        base = [
            sys.executable,
            "-m",
            "synth_client.cli",
            "--trainer",
            platform.address("trainer"),
            "datasets",
        ]

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)

        up = run("upload", str(DATASETS / "pima_diabetes.csv"), "--kind", "Outcome=categorical", "--json")
        assert up.returncode == 0, up.stderr
        dataset = json.loads(up.stdout)
        kinds = {c["name"]: c["kind"] for c in dataset["schema"]["columns"]}
        assert kinds["Outcome"] == "COLUMN_KIND_CATEGORICAL"
        listed = json.loads(run("list", "--json").stdout)
        assert [d["id"] for d in listed] == [dataset["id"]]
        shown = run("show", dataset["id"])
        assert "Glucose" in shown.stdout and "continuous" in shown.stdout
        bad = run("upload", str(Path(__file__)))  # a Python file is not a table
        assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr
        assert run("delete", dataset["id"]).returncode == 0
        missing = run("show", dataset["id"])
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    finally:
        platform.stop()


def test_a_bad_tls_file_refuses_to_start_cleanly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    not_pem = tmp_path / "cert.pem"
    not_pem.write_text("not a certificate\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "SYNTH_SAMPLER_PORT": "0",
        "SYNTH_SAMPLER_METRICS_PORT": "-1",
        "SYNTH_SAMPLER_STORE_DIR": str(tmp_path / "store"),
        "SYNTH_SAMPLER_TLS_CERT_FILE": str(not_pem),
        "SYNTH_SAMPLER_TLS_KEY_FILE": str(not_pem),
    }
    run = subprocess.run(
        [sys.executable, "-m", "services.sampler"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2, run.stderr
    assert "sampler: refusing to start" in run.stderr and "TLS_CERT_FILE" in run.stderr
    assert "Traceback" not in run.stderr


def test_sigterm_right_after_serving_is_a_graceful_exit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The handler is installed before the process says it serves."""
    env = {
        "PATH": "/usr/bin:/bin",
        "SYNTH_SAMPLER_PORT": "0",
        "SYNTH_SAMPLER_METRICS_PORT": "-1",
        "SYNTH_SAMPLER_STORE_DIR": str(tmp_path / "store"),
        "SYNTH_SAMPLER_GRACE_SECONDS": "1",
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.sampler"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if '"serving"' in line:
            proc.terminate()
            break
    assert proc.wait(60) == 0


def test_max_connection_age_moves_clients_to_a_new_connection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """After the age the server sends GOAWAY: the channel leaves READY (and would
    re-resolve DNS), while a stream that was running finishes on the old connection."""
    import threading
    import time

    server = build_sampler(
        SamplerSettings(port=0, metrics_port=-1, store_dir=tmp_path / "store", max_connection_age_seconds=1)
    ).start()
    server.set_serving()
    states: list[grpc.ChannelConnectivity] = []
    left_ready = threading.Event()

    def seen(state: grpc.ChannelConnectivity) -> None:
        if states and states[-1] == grpc.ChannelConnectivity.READY and state != state.READY:
            left_ready.set()
        states.append(state)

    try:
        with grpc.insecure_channel(server.address) as channel:
            channel.subscribe(seen, try_to_connect=True)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            assert left_ready.wait(10), states
            time.sleep(1.5)
            assert watch.is_active(), "a call in flight is never cut by the age"
            assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
            channel.unsubscribe(seen)
    finally:
        server.stop(1)
