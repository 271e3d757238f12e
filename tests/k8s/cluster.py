"""A "cluster on one machine": runs each Deployment of a rendered overlay as a
local process, from the manifest's own command and environment, the way a
kubelet would, with these stand-ins:

- each pod gets its own loopback address (127.a.b.c, random per run so that
  concurrent runs cannot collide) in place of a pod IP; a ``*_HOST`` of
  ``0.0.0.0`` binds that address, and a ``service:port`` value is resolved
  through the Service (selector, port, targetPort) to the pod's address and
  container port, as cluster DNS with a headless Service would;
- volumes are folders: an emptyDir is a new folder, a PersistentVolumeClaim
  one folder shared by every pod that claims it, a Secret a folder of its
  keys (from the rendered Secret, or given by the test for the external
  ones); values under a mountPath are rewritten to the folder;
- ``python`` is this interpreter, run from the repository root (the image's
  /app), with HOME and TMPDIR on the pod's /tmp volume;
- ``rewrites`` changes named values where this machine differs from a
  cluster node (e.g. no GPU: SYNTH_TRAINER_DEVICE=cpu), listed by the test.

Probes are run as the kubelet runs them (gRPC health Check on the probe's
port and service), and stopping sends SIGTERM and waits up to the pod's
terminationGracePeriodSeconds.
"""

from __future__ import annotations

import base64
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.k8s.manifests import ROOT, Objects, Workload, selector_matches

_ADDRESS = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?):(\d+)$")


@dataclass
class Pod:
    workload: Workload
    ip: str
    env: dict[str, str] = field(default_factory=dict)
    log: Path = Path()
    tmp: Path = Path()
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.workload.name

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _loopback_block(ports: list[list[int]]) -> tuple[int, int]:
    """A random 127.a.b.0/24 block where pod ``i`` can bind ``ports[i]`` on 127.a.b.(10+i)."""
    for _ in range(50):
        a, b = random.randint(100, 250), random.randint(1, 250)
        try:
            for i, pod_ports in enumerate(ports):
                for port in pod_ports:
                    with socket.socket() as sock:
                        sock.bind((f"127.{a}.{b}.{10 + i}", port))
            return a, b
        except OSError:  # taken (or a wildcard bind holds the port): another block
            continue
    raise RuntimeError("no free loopback block")


class OneMachineCluster:
    def __init__(self, objects: Objects, workdir: Path) -> None:
        """Pods get their addresses here (certificates may need them); volumes
        and environments are made by :meth:`start`."""
        self.objects = objects
        self.workdir = workdir
        workloads = list(objects.workloads())
        a, b = _loopback_block([list(w.ports.values()) for w in workloads])
        self.pods = {w.name: Pod(w, f"127.{a}.{b}.{10 + i}") for i, w in enumerate(workloads)}
        self._secrets: dict[str, dict[str, bytes]] = {}
        self._rewrites: dict[str, dict[str, str]] = {}
        self._claims: dict[str, Path] = {}

    @property
    def ips(self) -> list[str]:
        return [pod.ip for pod in self.pods.values()]

    # ---- planning: what the kubelet and cluster DNS would provide --------------
    def _secret_files(self, name: str) -> dict[str, bytes]:
        if name in self._secrets:
            return self._secrets[name]
        secret = self.objects.find("Secret", name)
        assert secret is not None, f"Secret {name} is neither rendered nor given by the test"
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
        return data

    def _volume_dir(self, pod: Pod, volume: dict[str, Any]) -> Path:
        if "emptyDir" in volume:
            folder = self.workdir / "pods" / pod.name / volume["name"]
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            assert self.objects.find("PersistentVolumeClaim", claim) is not None, f"no claim {claim}"
            folder = self._claims.setdefault(claim, self.workdir / "volumes" / claim)
        elif "secret" in volume:
            folder = self.workdir / "pods" / pod.name / volume["name"]
            folder.mkdir(parents=True, exist_ok=True)
            for key, data in self._secret_files(volume["secret"]["secretName"]).items():
                (folder / key).write_bytes(data)
        else:
            raise AssertionError(f"{pod.name}: volume kind not emulated: {volume}")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def resolve(self, address: str) -> str:
        """``sampler:50052`` -> the sampler pod's loopback address and container port."""
        match = _ADDRESS.match(address)
        assert match, address
        host, port = match.group(1), int(match.group(3))
        service = self.objects.get("Service", host)
        ports = [p for p in service["spec"]["ports"] if p["port"] == port]
        assert ports, f"Service {host} has no port {port}"
        selector = {"matchLabels": service["spec"]["selector"]}
        pods = [p for p in self.pods.values() if selector_matches(selector, p.workload.labels)]
        assert len(pods) == 1, f"Service {host} selects {[p.name for p in pods]}"
        target = ports[0]["targetPort"]
        container_port = pods[0].workload.ports[target] if isinstance(target, str) else int(target)
        return f"{pods[0].ip}:{container_port}"

    def _plan(self, pod: Pod) -> None:
        mounts = {}
        for mount in pod.workload.container.get("volumeMounts", []):
            mounts[mount["mountPath"].rstrip("/")] = self._volume_dir(pod, pod.workload.volume(mount["name"]))
        env = {}
        for name, value in pod.workload.env.items():
            if name.endswith("_HOST") and value == "0.0.0.0":
                value = pod.ip
            elif _ADDRESS.match(value) and self.objects.find("Service", value.split(":")[0]) is not None:
                value = self.resolve(value)
            else:
                for root, folder in sorted(mounts.items(), key=lambda item: -len(item[0])):
                    if value == root or value.startswith(root + "/"):
                        value = str(folder) + value[len(root) :]
                        break
            env[name] = value
        env.update(self._rewrites.get(pod.name, {}))
        assert "/tmp" in mounts, f"{pod.name}: no /tmp volume"
        pod.env, pod.tmp = env, mounts["/tmp"]
        pod.log = self.workdir / "logs" / f"{pod.name}.log"

    # ---- running ----------------------------------------------------------------
    def address(self, service: str, port_name: str) -> str:
        """Where a Service's named port is, from outside (for the test as client)."""
        spec = self.objects.get("Service", service)
        port = next(p["port"] for p in spec["spec"]["ports"] if p["name"] == port_name)
        return self.resolve(f"{service}:{port}")

    def start(
        self,
        secrets: Mapping[str, Mapping[str, bytes]] | None = None,
        rewrites: Mapping[str, Mapping[str, str]] | None = None,
    ) -> OneMachineCluster:
        """``secrets``: Secret name -> key -> bytes, for Secrets the overlay does
        not render, or in place of a placeholder one (as a user would fill it).
        ``rewrites``: workload -> variable -> value."""
        self._secrets = {name: dict(data) for name, data in (secrets or {}).items()}
        self._rewrites = {name: dict(env) for name, env in (rewrites or {}).items()}
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for pod in self.pods.values():
            self._plan(pod)
        for pod in self.pods.values():
            command = pod.workload.command
            assert command[0] == "python", command
            # The image's environment (HOME=/tmp), then the manifest's.
            env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(pod.tmp), "TMPDIR": str(pod.tmp)}
            env.update(pod.env)
            with open(pod.log, "wb") as log:
                pod.process = subprocess.Popen(
                    [sys.executable, *command[1:]],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        return self

    def probe(self, pod: Pod, probe: str) -> bool:
        spec = pod.workload.container[probe]["grpc"]
        with grpc.insecure_channel(f"{pod.ip}:{spec['port']}") as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=spec.get("service", "")),
                    timeout=pod.workload.container[probe].get("timeoutSeconds", 1),
                )
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until every pod's startup and readiness probes pass."""
        deadline = time.monotonic() + timeout
        waiting = set(self.pods)
        while waiting:
            for name in sorted(waiting):
                pod = self.pods[name]
                assert pod.process is not None
                if pod.process.poll() is not None:
                    raise AssertionError(f"{name} exited with {pod.process.returncode}:\n{pod.log_tail()}")
                if self.probe(pod, "startupProbe") and self.probe(pod, "readinessProbe"):
                    waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                tails = "\n".join(f"--- {n}\n{self.pods[n].log_tail()}" for n in sorted(waiting))
                raise AssertionError(f"not ready in {timeout}s: {sorted(waiting)}\n{tails}")
            time.sleep(0.3)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM, then each pod's grace period; the exit codes."""
        for pod in self.pods.values():
            if pod.process is not None and pod.process.poll() is None:
                pod.process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        started = time.monotonic()
        for pod in self.pods.values():
            if pod.process is None:
                continue
            grace = pod.workload.pod.get("terminationGracePeriodSeconds", 30)
            try:
                codes[pod.name] = pod.process.wait(max(0.1, grace - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                pod.process.kill()  # what the kubelet does after the grace period
                codes[pod.name] = pod.process.wait()
        return codes
