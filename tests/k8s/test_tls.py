"""Mutual TLS between the services, with certificates made by the shipped
k8s/scripts/make-certs.sh: a backend (the real trainer) refuses clients without
a certificate from its CA, the gateway reaches it with its own certificate and
not with a stranger's, probes still work on the plaintext health-only port,
and half-configured TLS refuses to start."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synth.v1 import datasets_pb2, datasets_pb2_grpc

from gateway.app import Gateway
from gateway.settings import GatewaySettings
from services.common.errors import InvalidArgument
from services.common.server import SynthServer
from services.common.settings import ServerSettings, from_env
from services.trainer.app import build_server as build_trainer
from services.trainer.settings import ENV_PREFIX as TRAINER_PREFIX
from services.trainer.settings import TrainerSettings
from synth_client import SynthClient, SynthError
from tests.conftest import adult_slice
from tests.k8s.manifests import make_certs

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our CA and service certificates (also valid for localhost)."""
    return make_certs(tmp_path_factory.mktemp("certs"), ("DNS:localhost", "IP:127.0.0.1"))


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA's certificates with the very same names: trusted by nobody here."""
    return make_certs(tmp_path_factory.mktemp("rogue"), ("DNS:localhost", "IP:127.0.0.1"))


@pytest.fixture(scope="module")
def trainer(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthServer]:
    """The real trainer with mutual TLS and a plaintext health-only port."""
    settings = TrainerSettings(
        port=0,
        metrics_port=0,
        health_port=0,
        store_dir=tmp_path_factory.mktemp("store"),
        tls_cert_file=str(certs / "trainer" / "tls.crt"),
        tls_key_file=str(certs / "trainer" / "tls.key"),
        tls_client_ca_file=str(certs / "trainer" / "ca.crt"),
    )
    server = build_trainer(settings).start()
    server.set_serving()
    yield server
    server.stop(1)


def _credentials(ca: Path, identity: Path | None = None) -> grpc.ChannelCredentials:
    if identity is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=(identity / "tls.key").read_bytes(),
        certificate_chain=(identity / "tls.crt").read_bytes(),
    )


def _check(channel: grpc.Channel) -> grpc.StatusCode | int:
    try:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    except grpc.RpcError as err:
        return err.code()


def test_backend_refuses_clients_without_a_valid_certificate(trainer: SynthServer, certs: Path, rogue: Path) -> None:
    assert trainer.tls == "mutual"
    target = f"localhost:{trainer.port}"
    with grpc.insecure_channel(target) as plaintext:
        assert _check(plaintext) == grpc.StatusCode.UNAVAILABLE
    ca = certs / "ca.crt"
    with grpc.secure_channel(target, _credentials(ca)) as no_client_cert:
        assert _check(no_client_cert) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(target, _credentials(ca, rogue / "gateway")) as other_ca_cert:
        assert _check(other_ca_cert) == grpc.StatusCode.UNAVAILABLE
    # A client that trusts another CA refuses the server too (server authentication).
    with grpc.secure_channel(target, _credentials(rogue / "ca.crt", certs / "gateway")) as wrong_trust:
        assert _check(wrong_trust) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(target, _credentials(ca, certs / "gateway")) as good:
        assert _check(good) == SERVING
        reply = datasets_pb2_grpc.DatasetServiceStub(good).ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=10)
        assert list(reply.datasets) == []


def test_probes_use_the_plaintext_health_port_which_serves_nothing_else(trainer: SynthServer) -> None:
    assert trainer.health_port and trainer.health_port != trainer.port
    with grpc.insecure_channel(f"127.0.0.1:{trainer.health_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "synth.v1.TrainingService", "synth.v1.DatasetService"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == SERVING
        with pytest.raises(grpc.RpcError) as info:
            datasets_pb2_grpc.DatasetServiceStub(channel).ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # no way around mutual TLS
    # The metrics port stays plaintext HTTP for Prometheus.
    with urllib.request.urlopen(f"http://127.0.0.1:{trainer.metrics_port}/metrics", timeout=5) as response:
        assert b"grpc_server_handled_total" in response.read()


def _gateway(trainer: SynthServer, identity: Path | None, ca: Path | None) -> Gateway:
    settings = GatewaySettings(
        port=0,
        http_port=0,
        metrics_port=-1,
        trainer_address=f"localhost:{trainer.port}",
        # Not started here: only the trainer is called.
        sampler_address="localhost:9",
        evaluator_address="localhost:9",
        backend_tls_ca_file=str(ca) if ca else "",
        backend_tls_cert_file=str(identity / "tls.crt") if identity else "",
        backend_tls_key_file=str(identity / "tls.key") if identity else "",
    )
    gateway = Gateway(settings).start()
    gateway.set_serving()
    return gateway


def _healthz(gateway: Gateway) -> dict[str, str]:
    """Each backend's health as the gateway sees it (503 DEGRADED when one is down)."""
    try:
        with urllib.request.urlopen(gateway.http_url + "/healthz", timeout=10) as response:
            return json.loads(response.read())["backends"]
    except urllib.error.HTTPError as err:
        assert err.code == 503
        body = json.loads(err.read())
        assert body["status"] == "DEGRADED"
        return body["backends"]


def test_gateway_reaches_the_backend_with_its_certificate(trainer: SynthServer, certs: Path) -> None:
    gateway = _gateway(trainer, certs / "gateway", certs / "ca.crt")
    try:
        assert _healthz(gateway)["trainer"] == "SERVING"
        with SynthClient(gateway.address) as client:
            dataset = client.upload_dataset(adult_slice(200), name="adult.csv")
            assert dataset.id in [d.id for d in client.list_datasets()]
    finally:
        gateway.stop(1)


@pytest.mark.parametrize("who", ["no TLS", "another CA's certificate", "no client certificate"])
def test_gateway_without_a_valid_certificate_is_refused(
    trainer: SynthServer, certs: Path, rogue: Path, who: str
) -> None:
    identity, ca = {
        "no TLS": (None, None),
        "another CA's certificate": (rogue / "gateway", certs / "ca.crt"),
        "no client certificate": (None, certs / "ca.crt"),
    }[who]
    gateway = _gateway(trainer, identity, ca)
    try:
        assert _healthz(gateway)["trainer"] == "UNAVAILABLE"
        with SynthClient(gateway.address) as client, pytest.raises(SynthError) as info:
            client.list_datasets()
        assert info.value.code == "UNAVAILABLE"
    finally:
        gateway.stop(1)


def test_server_tls_without_client_ca_is_plain_tls(certs: Path) -> None:
    settings = ServerSettings(
        port=0, tls_cert_file=str(certs / "sampler" / "tls.crt"), tls_key_file=str(certs / "sampler" / "tls.key")
    )
    server = SynthServer("tls-only", settings, []).start()
    server.set_serving()
    try:
        assert server.tls == "tls"
        with grpc.secure_channel(f"localhost:{server.port}", _credentials(certs / "ca.crt")) as channel:
            assert _check(channel) == SERVING
    finally:
        server.stop(0)


def test_plaintext_stays_the_default() -> None:
    server = SynthServer("plain", ServerSettings(port=0), [])
    try:
        assert server.tls == "off" and server.health_port is None
    finally:
        server.stop(0)


def test_half_configured_or_broken_tls_refuses_to_start(certs: Path, tmp_path: Path) -> None:
    cert, key = str(certs / "trainer" / "tls.crt"), str(certs / "trainer" / "tls.key")
    with pytest.raises(InvalidArgument, match="TLS_CERT_FILE and TLS_KEY_FILE must be set together"):
        from_env(TrainerSettings, TRAINER_PREFIX, {"SYNTH_TRAINER_TLS_CERT_FILE": cert})
    with pytest.raises(InvalidArgument, match="TLS_CLIENT_CA_FILE needs"):
        from_env(TrainerSettings, TRAINER_PREFIX, {"SYNTH_TRAINER_TLS_CLIENT_CA_FILE": cert})
    wrong_key = str(certs / "sampler" / "tls.key")
    with pytest.raises(InvalidArgument, match="not a matching certificate and private key"):
        SynthServer("x", ServerSettings(port=0, tls_cert_file=cert, tls_key_file=wrong_key), [])
    with pytest.raises(InvalidArgument, match="cannot read"):
        SynthServer("x", ServerSettings(port=0, tls_cert_file=str(tmp_path / "gone.crt"), tls_key_file=key), [])
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("hello")
    with pytest.raises(InvalidArgument, match="is not a PEM file"):
        SynthServer(
            "x", ServerSettings(port=0, tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=str(not_pem)), []
        )
    with pytest.raises(InvalidArgument, match="holds no usable CA certificate"):
        SynthServer("x", ServerSettings(port=0, tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=key), [])
    with pytest.raises(InvalidArgument, match="SYNTH_GATEWAY_BACKEND_TLS_CERT_FILE and"):
        Gateway(GatewaySettings(port=0, http_port=0, backend_tls_cert_file=cert))
