"""Each overlay, run as a "cluster on one machine" (tests/k8s/cluster.py): the
four services start from the rendered manifests' own commands and
environment, pass their own probes, and serve upload -> train -> sample ->
evaluate through the gateway, over gRPC and HTTP. The production overlay runs
with mutual TLS between every service (certificates from make-certs.sh), so
the gateway -> backend and evaluator -> sampler links are proven over mTLS."""

from __future__ import annotations

import json
import secrets as secrets_module
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.auth import hash_key, new_key
from synth_client import SynthClient
from tests.conftest import adult_slice
from tests.k8s.cluster import OneMachineCluster
from tests.k8s.manifests import OVERLAYS, Objects, make_certs

ROWS = 600
TRAINING = dict(
    synthesizer="ctgan",
    epochs=1,
    batch_size=100,
    generator_dims=[32, 32],
    discriminator_dims=[32, 32],
    embedding_dim=16,
    target_column="income",
    seed=7,
)
# Where this machine is not a cluster node: no GPU here (the production
# trainer asks for CUDA and would rightly fail its jobs without one).
REWRITES = {"production": {"trainer": {"SYNTH_TRAINER_DEVICE": "cpu"}}}


def _http(url: str, key: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(url, headers={"x-api-key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _external_secrets(
    objects: Objects, cluster: OneMachineCluster, workdir: Path
) -> tuple[str, dict[str, dict[str, bytes]]]:
    """What a user adds before applying: an API key's hash (the key is
    returned), and in production the service certificates and the artifact
    signing key. Here those also
    name the pods' loopback addresses, which stand in for the Service names."""
    key = new_key()
    secrets = {"synth-api-keys": {"api-keys.txt": f"ci-test {hash_key(key)}\n".encode()}}
    volumes = [v for w in objects.workloads() for v in w.pod.get("volumes", []) if "secret" in v]
    wanted = {v["secret"]["secretName"] for v in volumes} - {s["metadata"]["name"] for s in objects.of("Secret")}
    if "synth-artifact-key" in wanted:
        wanted.remove("synth-artifact-key")
        secrets["synth-artifact-key"] = {"artifact.key": secrets_module.token_hex(32).encode()}
    if wanted:
        certs = make_certs(workdir / "certs", tuple(f"IP:{ip}" for ip in cluster.ips))
        for name in wanted:
            service = name.removeprefix("synth-").removesuffix("-tls")
            secrets[name] = {f: (certs / service / f).read_bytes() for f in ("tls.crt", "tls.key", "ca.crt")}
    return key, secrets


def _listening(log: Path) -> dict:  # type: ignore[type-arg]
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("message") == "listening":
            return json.loads(line)
    raise AssertionError(f"no 'listening' line in {log}")


@pytest.mark.slow
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_runs_the_platform_on_one_machine(rendered: dict[str, Objects], overlay: str, tmp_path: Path) -> None:
    objects = rendered[overlay]
    cluster = OneMachineCluster(objects, tmp_path)
    key, secrets = _external_secrets(objects, cluster, tmp_path)
    cluster.start(secrets=secrets, rewrites=REWRITES.get(overlay, {}))
    try:
        cluster.wait_ready(timeout=240)
        http = "http://" + cluster.address("gateway", "http")

        # The gateway sees every backend (over mutual TLS in production).
        status, body = _http(http + "/healthz")
        assert status == 200 and body["backends"] == dict.fromkeys(("trainer", "sampler", "evaluator"), "SERVING")
        assert _http(http + "/v1/datasets")[0] == 401, "the placeholder key file must not open the API"

        with SynthClient(cluster.address("gateway", "grpc"), metadata=[("x-api-key", key)], timeout=60) as client:
            dataset = client.upload_dataset(adult_slice(ROWS), name="adult.csv")
            job = client.start_training(dataset.id, **TRAINING)  # type: ignore[arg-type]
            events = list(client.watch_job(job.id))
            assert events[-1].WhichOneof("event") == "succeeded", events[-1]
            model_id = events[-1].succeeded.model_id
            chunks = [m.chunk.data for m in client.sample(model_id, 250, seed=3) if m.WhichOneof("part") == "chunk"]
            assert len(b"".join(chunks).decode().splitlines()) == 251  # header + rows
            # The evaluator draws its synthetic rows from the sampler itself.
            replies = list(client.evaluate(dataset.id, model_id=model_id, target_column="income", synthetic_rows=300))
            report = replies[-1].report
            assert report.id.startswith("rpt-") and report.synthetic_rows == 300 and report.metrics

        status, body = _http(http + "/v1/datasets", key)
        assert status == 200 and [d["id"] for d in body["datasets"]] == [dataset.id]

        for pod in cluster.pods.values():
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert cluster.probe(pod, probe), f"{pod.name} {probe}"
            port = pod.workload.deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]
            with urllib.request.urlopen(f"http://{pod.ip}:{port}/metrics", timeout=10) as response:
                assert b"grpc_server_handled_total" in response.read(), pod.name

        for pod in cluster.pods.values():
            want = "mutual" if overlay == "production" and pod.name != "gateway" else "off"
            assert _listening(pod.log)["tls"] == want, pod.name
        if overlay == "production":
            # The backends' gRPC ports take no plaintext (and no certificate-less) client.
            for backend in ("trainer", "sampler", "evaluator"):
                with grpc.insecure_channel(cluster.address(backend, "grpc")) as channel:
                    with pytest.raises(grpc.RpcError) as info:
                        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, backend
            # Models are signed with the key from the Secret, and the sampler (which served
            # the rows above) checked that signature.
            (manifest,) = (tmp_path / "volumes").glob(f"*/models/{model_id}/manifest.json")
            assert len(json.loads(manifest.read_text())["hmac_sha256"]) == 64
    finally:
        codes = cluster.stop()
    assert codes == dict.fromkeys(cluster.pods, 0), f"not a clean SIGTERM exit: {codes}"
