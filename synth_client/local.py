"""Run every service on this machine as separate processes, the way ``synth up``
does: one local store folder, loopback ports, health-checked start, clean stop.

Supervision (``supervise``): a thread reaps children that exit (no zombies) and
restarts each, after a short backoff, up to ``restart_limit`` times in
``restart_window`` seconds; beyond that it stops every service and reports
which one died, how, and the last lines of its log (``ServiceFailed``).

The services never outlive the platform process, even when it is killed with
SIGKILL: each child holds the read end of a "lifeline" pipe whose write end only
the platform holds, and stops itself when the pipe closes
(``synth_client._service``). A process group alone would not do it: nobody is
left to signal the group when the parent is killed.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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


class ServiceFailed(RuntimeError):
    """A service died more often than the restart budget allows (or could not be
    brought back); every service has been stopped."""

    def __init__(self, name: str, code: int, detail: str, log_path: Path, log_tail: str) -> None:
        self.name, self.code, self.log_path, self.log_tail = name, code, log_path, log_tail
        super().__init__(
            f"the {name} exited with {describe_exit(code)} {detail}; every service has been stopped. "
            f"Last lines of {log_path}:\n{log_tail}"
        )


def describe_exit(code: int | None) -> str:
    """``exit code 3``, or ``exit code -9 (killed by SIGKILL)``."""
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"exit code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exit code {code}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalPlatform:
    """Starts the services as child processes sharing ``data_dir/store``.

    ``ports="default"`` uses the documented ports, each plus ``port_offset``
    (a second platform beside a running one, on ports you can predict);
    ``ports="free"`` picks free ones (tests).

    ``restart_limit``/``restart_window``: how often ``supervise`` restarts a
    service that dies (0: never; the first death stops everything).
    ``on_event``: told, in a sentence, when a service dies and is restarted."""

    def __init__(
        self,
        data_dir: str | Path = "var",
        *,
        host: str = "127.0.0.1",
        ports: str = "default",
        port_offset: int = 0,
        extra_env: dict[str, str] | None = None,
        restart_limit: int = 3,
        restart_window: float = 60.0,
        on_event: Callable[[str], object] | None = None,
    ) -> None:
        if ports not in ("default", "free"):
            raise ValueError(f"ports must be 'default' or 'free', not {ports!r}")
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.extra_env = dict(extra_env or {})
        self.specs = [
            ServiceSpec(
                spec.name,
                spec.module,
                spec.port + port_offset,
                spec.metrics_port + port_offset,
                spec.http_port + port_offset if spec.http_port else 0,
            )
            if ports == "default"
            else ServiceSpec(
                spec.name, spec.module, free_port(host), free_port(host), free_port(host) if spec.http_port else 0
            )
            for spec in SERVICES
        ]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restart_limit = restart_limit
        self.restart_window = restart_window
        self._on_event = on_event or (lambda _message: None)
        self._restarts: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        # The supervisor and stop() both change ``processes``: one at a time.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._lifeline: tuple[int, int] | None = None  # (read end for the children, write end we hold)
        # Set when the supervisor gave up on a service (everything is then stopped).
        self.failure: ServiceFailed | None = None

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
        self._stopping.clear()
        self.failure = None
        if self._lifeline is None:
            self._lifeline = os.pipe()  # not inheritable: children get the read end through pass_fds only
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
        assert self._lifeline is not None
        lifeline = self._lifeline[0]
        log_file = open(self.log_path(spec.name), "ab")  # noqa: SIM115 - owned by the child
        self.processes[spec.name] = subprocess.Popen(
            # As `python -m <module>`, stopping itself when our lifeline pipe closes.
            [sys.executable, "-m", "synth_client._service", str(lifeline), spec.module],
            env=self.env_for(spec),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(lifeline,),
            # Own process group: a terminal's Ctrl-C reaches only us, and
            # we stop the children in order.
            start_new_session=True,
        )
        log_file.close()

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pids(self) -> dict[str, int]:
        """Each running service's process id."""
        with self._lock:
            return {name: p.pid for name, p in self.processes.items() if p.poll() is None}

    def _wait_serving(self, spec: ServiceSpec, deadline: float) -> None:
        with grpc.insecure_channel(f"{self.host}:{spec.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self._stopping.is_set():
                    raise RuntimeError(f"stopping: {spec.name} was not waited for")
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

    # ---- supervision ----------------------------------------------------------

    def supervise(self, interval: float = 0.5, on_failure: Callable[[ServiceFailed], None] | None = None) -> None:
        """Start the supervisor thread: every ``interval`` seconds it reaps the
        services that exited and restarts them (``poll``). When it gives up it
        stops everything, sets ``failure`` and calls ``on_failure``."""
        if self._supervisor is not None and self._supervisor.is_alive():
            return

        def run() -> None:
            while not self._stopping.wait(interval):
                try:
                    self.poll()
                except ServiceFailed as failure:
                    self.failure = failure
                    self.stop()
                    if on_failure is not None:
                        on_failure(failure)
                    return

        self._supervisor = threading.Thread(target=run, name="platform-supervisor", daemon=True)
        self._supervisor.start()

    def poll(self) -> None:
        """Reap every service that exited and restart it, within the restart
        budget; past it, raise ``ServiceFailed`` (the caller stops the rest)."""
        with self._lock:
            for spec in self.specs:
                process = self.processes.get(spec.name)
                if self._stopping.is_set():
                    return
                if process is not None and process.poll() is not None:  # poll() reaps it
                    self._restart(spec, process.returncode)

    def _restart(self, spec: ServiceSpec, code: int) -> None:
        now = time.monotonic()
        recent = self._restarts[spec.name]
        while recent and now - recent[0] > self.restart_window:
            recent.popleft()
        if len(recent) >= self.restart_limit:
            detail = (
                f"after {len(recent)} restart(s) in the last {self.restart_window:.0f} s (the limit)"
                if self.restart_limit
                else "(restarts are off)"
            )
            raise ServiceFailed(spec.name, code, detail, self.log_path(spec.name), _tail(self.log_path(spec.name)))
        recent.append(now)
        backoff = min(0.5 * 2 ** (len(recent) - 1), 10.0)
        self._on_event(
            f"{spec.name} exited with {describe_exit(code)}; restarting it in {backoff:.1f} s "
            f"(restart {len(recent)} of {self.restart_limit} allowed in {self.restart_window:.0f} s)"
        )
        if self._stopping.wait(backoff):
            return
        self._launch(spec)
        try:
            self._wait_serving(spec, time.monotonic() + 60.0)
        except (RuntimeError, TimeoutError) as err:
            if self._stopping.is_set():
                return  # stop() stops it with the others
            # Not back: the next poll sees it dead (killed here if it hangs) and counts another restart.
            self._on_event(f"{spec.name} did not come back: {err}")
            process = self.processes[spec.name]
            if process.poll() is None:
                process.kill()
            process.wait()
            return
        self._on_event(f"{spec.name} is SERVING again (pid {self.processes[spec.name].pid})")

    def stop(self, grace: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every child, wait up to ``grace`` seconds, then SIGKILL.
        Returns each child's exit code."""
        self._stopping.set()  # the supervisor lets go of the lock at its next step
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join()
            self._supervisor = None
        with self._lock:
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
            if self._lifeline is not None:  # every child is gone: nothing reads it any more
                for fd in self._lifeline:
                    os.close(fd)
                self._lifeline = None
            return codes

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path, lines: int = 8) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (empty log)"


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
