"""API keys at the gateway, over gRPC and HTTP: missing, wrong and revoked keys
are refused (UNAUTHENTICATED / 401) while health stays open; revocation by
editing the key file needs no restart; keys are stored hashed and never logged;
no keys on a non-loopback address refuses to start."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synth.v1 import datasets_pb2, datasets_pb2_grpc

from gateway.app import Gateway
from gateway.auth import KeyStore, hash_key
from gateway.settings import GatewaySettings
from services.common.errors import FailedPrecondition, InvalidArgument
from synth_client import SynthClient, SynthError
from tests.integration.test_gateway_http import request

ROOT = Path(__file__).resolve().parents[2]
KEY_A = "sk-test-alpha-0123456789"
KEY_B = "sk-test-bravo-9876543210"


def write_keys(path: Path, *keys: str) -> None:
    # Write-then-rename, like a Kubernetes Secret update: readers never see half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# synth gateway keys\n" + "".join(f"user{i} {hash_key(k)}\n" for i, k in enumerate(keys)))
    os.replace(tmp, path)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    write_keys(path, KEY_A, KEY_B)
    return path


@pytest.fixture
def gateway(trainer, key_file, caplog):  # type: ignore[no-untyped-def]
    from tests.integration.test_gateway_fakes import start_gateway

    caplog.set_level(logging.INFO)
    gw = start_gateway(trainer=trainer.address, key_file=key_file)
    yield gw
    gw.stop(0)


def list_datasets(address: str, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as ch:
        try:
            datasets_pb2_grpc.DatasetServiceStub(ch).ListDatasets(
                datasets_pb2.ListDatasetsRequest(), metadata=metadata, timeout=10
            )
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_grpc_calls_need_a_valid_key_and_revocation_needs_no_restart(gateway, key_file, caplog) -> None:  # type: ignore[no-untyped-def]
    address = gateway.address
    assert list_datasets(address, []) == grpc.StatusCode.UNAUTHENTICATED
    assert list_datasets(address, [("authorization", "Bearer sk-wrong")]) == grpc.StatusCode.UNAUTHENTICATED
    assert list_datasets(address, [("authorization", f"Basic {KEY_A}")]) == grpc.StatusCode.UNAUTHENTICATED
    assert list_datasets(address, [("authorization", f"Bearer {KEY_A}")]) == grpc.StatusCode.OK
    assert list_datasets(address, [("x-api-key", KEY_B)]) == grpc.StatusCode.OK
    # Streams too: the upload is refused before any byte reaches the trainer.
    with SynthClient(address) as anonymous, pytest.raises(SynthError) as info:
        anonymous.upload_dataset(b"a,b\n" + b"1,2\n" * 20)
    assert info.value.code == "UNAUTHENTICATED" and "missing API key" in info.value.message
    with SynthClient(address, metadata=[("authorization", f"Bearer {KEY_A}")]) as client:
        assert client.upload_dataset(b"a,b\n" + b"1,2\n" * 20).row_count == 20

    write_keys(key_file, KEY_B)  # revoke A
    assert list_datasets(address, [("authorization", f"Bearer {KEY_A}")]) == grpc.StatusCode.UNAUTHENTICATED
    assert list_datasets(address, [("authorization", f"Bearer {KEY_B}")]) == grpc.StatusCode.OK
    key_file.unlink()  # a vanished key file revokes everything (fail closed)
    assert list_datasets(address, [("authorization", f"Bearer {KEY_B}")]) == grpc.StatusCode.UNAUTHENTICATED

    # Health stays open for Kubernetes probes.
    with grpc.insecure_channel(address) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    logged = caplog.text
    for secret in (KEY_A, KEY_B, hash_key(KEY_A), hash_key(KEY_B)):
        assert secret not in logged, "keys and their hashes never reach the log"
    assert "unauthenticated call refused" in logged


def test_http_calls_need_a_valid_key(gateway, key_file) -> None:  # type: ignore[no-untyped-def]
    missing = request(gateway, "GET", "/v1/datasets")
    assert missing.status == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
    assert request(gateway, "GET", "/v1/datasets", headers={"Authorization": "Bearer nope"}).status == 401
    assert request(gateway, "GET", "/v1/datasets", headers={"Authorization": f"Bearer {KEY_A}"}).status == 200
    assert request(gateway, "GET", "/v1/datasets", headers={"X-API-Key": KEY_B}).status == 200
    # An unauthenticated upload is refused before the body is read, and nothing is stored.
    upload = request(gateway, "POST", "/v1/datasets", b"a,b\n" + b"1,2\n" * 20, {"Content-Type": "text/csv"})
    assert upload.status == 401
    write_keys(key_file, KEY_B)
    assert request(gateway, "GET", "/v1/datasets", headers={"Authorization": f"Bearer {KEY_A}"}).status == 401
    # Public: the page, its assets, the API description, health, and what the page needs to ask for a key.
    for path in ("/", "/static/app.js", "/docs", "/v1/openapi.json"):
        assert request(gateway, "GET", path).status == 200, path
    health = request(gateway, "GET", "/healthz")  # no backends here: answered, 503 DEGRADED, not 401
    assert health.status == 503 and health.json()["status"] == "DEGRADED"
    info = request(gateway, "GET", "/v1/info").json()
    assert info["auth_required"] is True and info["authenticated"] is False
    assert request(gateway, "GET", "/v1/info", headers={"X-API-Key": KEY_B}).json()["authenticated"] is True


def test_keys_are_stored_hashed_and_bad_entries_refused(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.write_text(f"{KEY_A}\n")  # a raw key where a hash belongs
    with pytest.raises(InvalidArgument) as info:
        KeyStore(raw)
    assert KEY_A not in str(info.value) and "entry 1" in str(info.value)
    with pytest.raises(InvalidArgument):
        KeyStore(tmp_path / "absent")
    with pytest.raises(InvalidArgument):
        KeyStore(hashes=["sha256:xyz"])
    store = KeyStore(hashes=[hash_key(KEY_A)])
    assert store.check(KEY_A).ok and not store.check(KEY_B).ok and not store.check(None).ok
    assert not KeyStore().enabled and KeyStore().check(None).ok


def test_no_keys_on_a_public_address_refuses_to_start() -> None:
    with pytest.raises(FailedPrecondition) as info:
        Gateway(GatewaySettings(host="0.0.0.0", port=0, http_port=0, metrics_port=-1))
    assert "refusing to listen on 0.0.0.0 without API keys" in str(info.value)


def test_python_m_gateway_refuses_then_serves_and_hashes_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_GATEWAY_")}
    refused = subprocess.run(
        [sys.executable, "-m", "gateway"],
        env={**env, "SYNTH_GATEWAY_HOST": "0.0.0.0", "SYNTH_GATEWAY_PORT": "0", "SYNTH_GATEWAY_HTTP_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert refused.returncode == 2 and "without API keys" in refused.stderr
    typo = subprocess.run(
        [sys.executable, "-m", "gateway"],
        env={**env, "SYNTH_GATEWAY_API_KEYS": "x"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert typo.returncode == 2 and "unknown setting SYNTH_GATEWAY_API_KEYS" in typo.stderr
    hashed = subprocess.run(
        [sys.executable, "-m", "gateway", "hash-key"], input=KEY_A + "\n", capture_output=True, text=True, cwd=ROOT
    )
    assert hashed.stdout.strip() == hash_key(KEY_A)

    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        env={
            **env,
            "SYNTH_GATEWAY_PORT": "0",
            "SYNTH_GATEWAY_HTTP_PORT": "0",
            "SYNTH_GATEWAY_METRICS_PORT": "-1",
            "SYNTH_GATEWAY_LOG_FORMAT": "json",
        },
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if '"serving"' in line or not line:
                break
        text = "".join(lines)
        assert "API key authentication OFF" in text and "loopback only" in text
        assert '"message": "serving"' in text
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
