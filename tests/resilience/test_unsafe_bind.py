"""A backend started on its own on a non-loopback address without mutual TLS
refuses to start (it has no API keys: anyone reaching the port could call it),
unless SYNTH_<SERVICE>_ALLOW_INSECURE_BIND says something else keeps callers
out. Real processes, started as ``python -m services.<service>``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.errors import FailedPrecondition
from services.common.settings import check_bind
from services.sampler.settings import SamplerSettings
from tests.k8s.manifests import make_certs

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING


def _env(service: str, tmp_path: Path, **settings: str) -> dict[str, str]:
    prefix = f"SYNTH_{service.upper()}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")}
    env.update(
        {
            prefix + "PORT": "0",
            prefix + "METRICS_PORT": "-1",
            prefix + "STORE_DIR": str(tmp_path / "store"),
            prefix + "GRACE_SECONDS": "1",
        }
    )
    env.update({prefix + k.upper(): v for k, v in settings.items()})
    return env


def _refused(service: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"services.{service}"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def _serves(service: str, env: dict[str, str], check: str = "plain", certs: Path | None = None) -> str:
    """Start the service, wait for its "serving" log line, call its health check
    through 127.0.0.1 (plaintext, or mutual TLS with the gateway's certificate),
    stop it with SIGTERM; returns its log."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        address = ""
        for line in process.stderr:
            lines.append(line)
            if '"serving"' in line:
                address = json.loads(line)["address"]
                break
        assert address, "".join(lines[-20:])
        port = int(address.rsplit(":", 1)[1])
        if check == "mtls":
            assert certs is not None
            credentials = grpc.ssl_channel_credentials(
                (certs / "gateway" / "ca.crt").read_bytes(),
                (certs / "gateway" / "tls.key").read_bytes(),
                (certs / "gateway" / "tls.crt").read_bytes(),
            )
            channel = grpc.secure_channel(f"localhost:{port}", credentials)
        else:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == SERVING
    finally:
        process.terminate()
        _, rest = process.communicate(timeout=60)
        lines.append(rest)
    assert process.returncode == 0, "".join(lines[-20:])
    return "".join(lines)


@pytest.mark.parametrize("service", ["trainer", "sampler", "evaluator"])
def test_a_backend_on_every_address_without_mtls_refuses_to_start(service: str, tmp_path: Path) -> None:
    prefix = f"SYNTH_{service.upper()}_"
    stderr = _refused(service, _env(service, tmp_path, host="0.0.0.0"))
    assert f"{service}: refusing to start: refusing to listen on 0.0.0.0 with plaintext" in stderr, stderr
    # It says what to do: mutual TLS, loopback, or the explicit opt-in.
    for setting in ("TLS_CLIENT_CA_FILE", "HOST", "ALLOW_INSECURE_BIND=true"):
        assert prefix + setting in stderr, stderr


def test_the_explicit_opt_in_starts_it(tmp_path: Path) -> None:
    log = _serves("sampler", _env("sampler", tmp_path, host="0.0.0.0", allow_insecure_bind="true"))
    assert "insecure bind allowed" in log and "SYNTH_SAMPLER_ALLOW_INSECURE_BIND=true" in log


def test_mutual_tls_starts_it_and_server_only_tls_does_not(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs", ("DNS:localhost", "IP:127.0.0.1"))
    tls = {
        "host": "0.0.0.0",
        "tls_cert_file": str(certs / "sampler" / "tls.crt"),
        "tls_key_file": str(certs / "sampler" / "tls.key"),
    }
    stderr = _refused("sampler", _env("sampler", tmp_path, **tls))
    assert "with TLS that accepts any client (no SYNTH_SAMPLER_TLS_CLIENT_CA_FILE)" in stderr, stderr
    tls["tls_client_ca_file"] = str(certs / "sampler" / "ca.crt")
    log = _serves("sampler", _env("sampler", tmp_path, **tls), check="mtls", certs=certs)
    assert "insecure bind allowed" not in log


def test_loopback_always_starts(tmp_path: Path) -> None:
    log = _serves("sampler", _env("sampler", tmp_path, host="localhost"))
    assert "insecure bind allowed" not in log
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"):
        assert check_bind(SamplerSettings(host=host), "SYNTH_SAMPLER_") == ""
    for host in ("0.0.0.0", "::", "", "10.0.0.5", "sampler.synth.svc"):
        with pytest.raises(FailedPrecondition):
            check_bind(SamplerSettings(host=host), "SYNTH_SAMPLER_")
    assert check_bind(SamplerSettings(host="0.0.0.0", allow_insecure_bind=True), "SYNTH_SAMPLER_")
