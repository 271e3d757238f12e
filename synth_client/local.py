"""Run every service on this machine as separate processes, the way ``synth up``
does: one local store folder, loopback ports, health-checked start, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port: int
    metrics_port: int
    # HTTP port (the gateway's API and web page); 0: none.
    http_port: int = 0


# The local defaults; Kubernetes manifests use the same container ports. The
# gateway comes last: it starts once the backends are SERVING.
SERVICES = (
    ServiceSpec("trainer", "services.trainer", 50051, 9101),
    ServiceSpec("sampler", "services.sampler", 50052, 9102),
    ServiceSpec("evaluator", "services.evaluator", 50053, 9103),
    ServiceSpec("gateway", "gateway", 50050, 9100, 8080),
)
_BACKENDS = ("trainer", "sampler", "evaluator")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalPlatform:
    """Starts the services as child processes sharing ``data_dir/store``.

    ``ports="default"`` uses the documented ports; ``ports="free"`` picks free
    ones (tests, or a second platform beside a running one)."""

    def __init__(
        self,
        data_dir: str | Path = "var",
        *,
        host: str = "127.0.0.1",
        ports: str = "default",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.extra_env = dict(extra_env or {})
        self.specs = [
            spec
            if ports == "default"
            else ServiceSpec(
                spec.name, spec.module, free_port(host), free_port(host), free_port(host) if spec.http_port else 0
            )
            for spec in SERVICES
        ]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def address(self, name: str) -> str:
        spec = next(s for s in self.specs if s.name == name)
        return f"{self.host}:{spec.port}"

    def metrics_url(self, name: str) -> str:
        spec = next(s for s in self.specs if s.name == name)
        return f"http://{self.host}:{spec.metrics_port}/metrics"

    @property
    def web_url(self) -> str:
        """The gateway's web page (and HTTP API)."""
        spec = next(s for s in self.specs if s.name == "gateway")
        return f"http://{self.host}:{spec.http_port}/"

    def env_for(self, spec: ServiceSpec) -> dict[str, str]:
        """The service's environment: the caller's own ``SYNTH_<SERVICE>_`` settings
        pass through (API keys, TLS, limits: ``synth up`` must honour them), and the
        platform sets what it owns: host, ports, store and the other services' addresses."""
        prefix = f"SYNTH_{spec.name.upper()}_"
        env = dict(os.environ)
        env.update(
            {
                prefix + "HOST": self.host,
                prefix + "PORT": str(spec.port),
                prefix + "METRICS_PORT": str(spec.metrics_port),
                prefix + "STORE_DIR": str(self.store_dir),
            }
        )
        if spec.http_port:
            env[prefix + "HTTP_PORT"] = str(spec.http_port)
        if spec.name == "gateway":
            for backend in _BACKENDS:
                env[prefix + f"{backend.upper()}_ADDRESS"] = self.address(backend)
        if spec.name == "evaluator":  # it draws synthetic rows from the sampler
            env[prefix + "SAMPLER_ADDRESS"] = self.address("sampler")
        env.update({k: v for k, v in self.extra_env.items() if k.startswith(prefix)})
        return env

    def start(self, timeout: float = 60.0) -> LocalPlatform:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            _refuse_busy_port(self.host, spec)
        try:
            deadline = time.monotonic() + timeout
            # The backends first, then the gateway in front of them.
            backends = [s for s in self.specs if s.name != "gateway"]
            for group in (backends, [s for s in self.specs if s.name == "gateway"]):
                for spec in group:
                    self._launch(spec)
                for spec in group:
                    self._wait_serving(spec, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, spec: ServiceSpec) -> None:
        log_file = open(self.log_dir / f"{spec.name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.processes[spec.name] = subprocess.Popen(
            [sys.executable, "-m", spec.module],
            env=self.env_for(spec),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: a terminal's Ctrl-C reaches only us, and
            # we stop the children in order.
            start_new_session=True,
        )
        log_file.close()

    def _wait_serving(self, spec: ServiceSpec, deadline: float) -> None:
        with grpc.insecure_channel(f"{self.host}:{spec.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                process = self.processes[spec.name]
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{spec.name} exited with code {process.returncode} while starting; "
                        f"see {self.log_dir / (spec.name + '.log')}"
                    )
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{spec.name} did not report SERVING in time; see its log")
                time.sleep(0.2)

    def stop(self, grace: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every child, wait up to ``grace`` seconds, then SIGKILL.
        Returns each child's exit code."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        codes: dict[str, int | None] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        self.processes.clear()
        return codes

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _refuse_busy_port(host: str, spec: ServiceSpec) -> None:
    for port in (spec.port, spec.metrics_port, spec.http_port):
        if not port:
            continue
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                raise RuntimeError(
                    f"port {port} on {host} (the {spec.name}) is already in use: is another "
                    f"`synth up` running? Stop it, or use --free-ports."
                )
