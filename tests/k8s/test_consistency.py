"""The manifests agree with the code: commands run modules that exist, every
SYNTH_* variable is a field of that service's settings (``env_names``) and
parses, container ports, probe ports and probe service names are the ones the
settings and servers use, Services and addresses line up, paths live on the
right volumes, and the mTLS settings of clients and servers match."""

from __future__ import annotations

import re

from gateway.backends import SERVICE_BACKENDS, SERVICE_NAMES
from services.common.settings import env_names
from services.sampler.app import generation_threads
from services.sampler.settings import SamplerSettings
from tests.k8s.manifests import EXTERNAL_SECRET_KEYS, Objects, Workload, selector_matches

MODULES = {
    "trainer": "services.trainer",
    "sampler": "services.sampler",
    "evaluator": "services.evaluator",
    "gateway": "gateway",
}
_ADDRESS = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?):(\d+)$")


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_commands_run_the_services_entry_points(objects: Objects) -> None:
    for workload in objects.workloads():
        assert workload.command == ["python", "-m", MODULES[workload.name]]
        assert workload.target.module == MODULES[workload.name]  # __main__.py and settings exist


def test_env_names_are_settings_fields_and_parse(objects: Objects) -> None:
    for workload in objects.workloads():
        target = workload.target
        known = set(env_names(target.settings_cls, target.prefix))
        env = workload.env
        unknown = sorted(set(env) - known)
        assert not unknown, f"{workload.name}: {unknown} are not settings of {target.settings_cls.__name__}"
        # Only its own prefix: another service's variable would be a misplaced setting.
        assert all(name.startswith(target.prefix) for name in env), workload.name
        workload.settings()  # types, TLS combinations: what the service itself checks at start


def test_container_ports_are_the_settings_ports(objects: Objects) -> None:
    for workload in objects.workloads():
        settings = workload.settings()
        assert settings.host == "0.0.0.0", f"{workload.name} must listen on the pod's address"
        expected = {"grpc": settings.port, "metrics": settings.metrics_port, "health": settings.health_port}
        if workload.name == "gateway":
            expected["http"] = settings.http_port  # type: ignore[attr-defined]
        assert workload.ports == expected, workload.name
        assert all(port > 0 for port in expected.values()), f"{workload.name}: fixed ports in a pod"
        annotations = workload.deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == settings.metrics_port


def test_probes_call_the_health_port_with_names_the_server_registers(objects: Objects) -> None:
    for workload in objects.workloads():
        settings = workload.settings()
        if workload.name == "gateway":
            names = {"", *SERVICE_NAMES}
        else:
            names = {"", *(s for s, backend in SERVICE_BACKENDS.items() if backend == workload.name)}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            grpc_probe = workload.container[probe]["grpc"]
            # The plaintext health-only port: the kubelet cannot present a client certificate.
            assert grpc_probe["port"] == settings.health_port, f"{workload.name} {probe}"
            assert grpc_probe.get("service", "") in names, f"{workload.name} {probe}: {grpc_probe}"
        # Readiness names the service itself where there is one to name.
        if workload.name != "gateway":
            assert workload.container["readinessProbe"]["grpc"]["service"] in names - {""}


def test_services_expose_the_container_ports_under_the_same_numbers(objects: Objects) -> None:
    for service in objects.of("Service"):
        name = service["metadata"]["name"]
        workload = objects.workload(name)
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in workload.ports, f"Service {name}: no container port {target}"
            # Same number as the container: "host:port" addresses mean the same
            # thing through a headless Service (no port mapping) as through a normal one.
            assert port["port"] == workload.ports[target], f"Service {name} port {port['name']}"


def _resolve(objects: Objects, address: str) -> tuple[Workload, str]:
    """``sampler:50052`` -> (the workload behind Service ``sampler``, the container port name)."""
    match = _ADDRESS.match(address)
    assert match, f"{address!r} is not a Service host:port"
    host, port = match.group(1), int(match.group(3))
    service = objects.find("Service", host)
    assert service is not None, f"{address}: no Service named {host}"
    ports = [p for p in service["spec"]["ports"] if p["port"] == port]
    assert ports, f"{address}: Service {host} has no port {port}"
    selected = [
        w for w in objects.workloads() if selector_matches({"matchLabels": service["spec"]["selector"]}, w.labels)
    ]
    assert len(selected) == 1
    return selected[0], ports[0]["targetPort"]


def test_backend_addresses_reach_the_right_services(objects: Objects) -> None:
    gateway = objects.workload("gateway").settings()
    for backend in ("trainer", "sampler", "evaluator"):
        address = getattr(gateway, f"{backend}_address")
        workload, port_name = _resolve(objects, address)
        assert (workload.name, port_name) == (backend, "grpc"), address
        assert workload.target.module == MODULES[backend]
    evaluator = objects.workload("evaluator").settings()
    workload, port_name = _resolve(objects, evaluator.sampler_address)  # type: ignore[attr-defined]
    assert (workload.name, port_name) == ("sampler", "grpc")


def test_paths_live_on_the_right_volumes(objects: Objects) -> None:
    for workload in objects.workloads():
        settings = workload.settings()
        if workload.name != "gateway":
            found = workload.mount_for(str(settings.store_dir))
            assert found is not None, f"{workload.name}: STORE_DIR {settings.store_dir} is on the read-only root"
            mount, volume = found
            assert volume["persistentVolumeClaim"]["claimName"] == "synth-store"
            assert not mount.get("readOnly"), f"{workload.name}: the store is written (staging, sweeps)"
        files = {
            name: getattr(settings, name)
            for name in vars(settings)
            if name.endswith("_file") and getattr(settings, name)
        }
        for name, path in files.items():
            found = workload.mount_for(path)
            assert found is not None, f"{workload.name}: {name}={path} is on no volume"
            mount, volume = found
            assert "secret" in volume and mount.get("readOnly") is True, (
                f"{workload.name}: {name} not a read-only Secret"
            )
            key = path[len(mount["mountPath"].rstrip("/")) + 1 :]
            secret = objects.find("Secret", volume["secret"]["secretName"])
            if secret is not None:  # generated here; external ones are made by make-certs.sh or by hand
                assert key in {**secret.get("data", {}), **secret.get("stringData", {})}, f"{name}: no {key}"
            else:
                assert key in EXTERNAL_SECRET_KEYS[volume["secret"]["secretName"]], f"{name}: {key} is not documented"


def test_grace_period_covers_the_drain(objects: Objects) -> None:
    for workload in objects.workloads():
        settings = workload.settings()
        grace = workload.pod["terminationGracePeriodSeconds"]
        # Drain, then shutdown hooks (the trainer's checkpoint): leave room before SIGKILL.
        assert grace >= settings.grace_seconds + 15, f"{workload.name}: {grace}s for a {settings.grace_seconds}s drain"


def test_thread_counts_fit_the_cpu_limit(objects: Objects) -> None:
    for workload in objects.workloads():
        settings = workload.settings()
        limit = _cpu(workload.container["resources"]["limits"]["cpu"])
        if isinstance(settings, SamplerSettings):  # workers x torch threads each (0: automatic)
            workers, threads = generation_threads(settings, cpus=max(1, int(limit)))
            assert workers * threads <= max(1, limit), f"sampler: {workers} workers x {threads} threads"
            continue
        for name in ("torch_threads", "n_jobs"):
            if hasattr(settings, name):
                threads = getattr(settings, name)
                assert 1 <= threads <= limit, f"{workload.name}: {name}={threads} with a CPU limit of {limit}"


def test_client_and_server_tls_settings_match(objects: Objects) -> None:
    """A TLS client against a plaintext server (or the reverse) would be a dead link."""
    servers = {name: objects.workload(name).settings() for name in ("trainer", "sampler", "evaluator")}
    gateway = objects.workload("gateway").settings()
    for name, settings in servers.items():
        assert bool(settings.tls_cert_file) == bool(gateway.backend_tls_cert_file), name  # type: ignore[attr-defined]
        assert bool(settings.tls_client_ca_file) == bool(settings.tls_cert_file), f"{name}: TLS without client certs"
    evaluator = servers["evaluator"]
    assert bool(evaluator.sampler_tls_cert_file) == bool(servers["sampler"].tls_cert_file)  # type: ignore[attr-defined]
    # The gateway's own front door stays plaintext: TLS to clients ends at the Ingress.
    assert not gateway.tls_cert_file
