"""`synth up` supervises its services: one that dies is reaped and restarted
(no zombie, serving again, the gateway's /healthz sees it back); one that keeps
dying stops everything with a message naming it, its exit code and its last log
lines; and when `synth up` itself is killed with SIGKILL its services stop too,
so the ports are free for the next `synth up`. Real `synth up` processes, real
services, real signals (Linux: processes are read from /proc)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from synth_client.local import SERVICES

ROOT = Path(__file__).resolve().parents[2]
SYNTH = [sys.executable, "-m", "synth_client.cli"]
_LINE = re.compile(r"^\s+(\w+)\s+grpc (\S+)\s+metrics \S+\s+pid (\d+)$", re.M)
_WEB = re.compile(r"^\s+web\s+(http://\S+/)", re.M)


@dataclass
class Up:
    """A running `synth up` and what it printed."""

    process: subprocess.Popen[bytes]
    out: Path

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 180.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text(), re.M)
            if found:
                return found
            assert self.process.poll() is None, f"synth up exited ({self.process.returncode}):\n{self.text()}"
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.text()}")

    def services(self) -> dict[str, tuple[str, int]]:
        """name -> (gRPC address, pid), from the start-up table."""
        return {m.group(1): (m.group(2), int(m.group(3))) for m in _LINE.finditer(self.text())}

    @property
    def web_url(self) -> str:
        found = _WEB.search(self.text())
        assert found, self.text()
        return found.group(1)


def _start_up(tmp_path: Path, *flags: str, name: str = "up") -> Up:
    out = tmp_path / f"{name}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")}
    with open(out, "wb") as sink:
        process = subprocess.Popen(
            [*SYNTH, "up", "--data-dir", str(tmp_path / "var"), *flags],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    up = Up(process, out)
    up.wait_for(r"^all services SERVING")
    return up


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    """Running (a zombie has exited: it holds no port, only a process-table slot)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[1], []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _wait_gone(pids: set[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not [p for p in pids if _alive(p)], f"still running: {[p for p in pids if _alive(p)]}"


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(offset: int) -> list[int]:
    return [p + offset for s in SERVICES for p in (s.port, s.metrics_port, s.http_port) if p]


@pytest.fixture
def cleanup() -> Iterator[list[Up]]:
    """Whatever a failed test leaves running is killed, children first."""
    ups: list[Up] = []
    yield ups
    for up in ups:
        for pid in _descendants(up.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if up.process.poll() is None:
            up.process.kill()
        up.process.wait(30)


def test_a_killed_service_is_reaped_restarted_and_serving_again(tmp_path: Path, cleanup: list[Up]) -> None:
    up = _start_up(tmp_path, "--free-ports")
    cleanup.append(up)
    services = up.services()
    assert set(services) == {s.name for s in SERVICES}
    address, old_pid = services["sampler"]
    os.kill(old_pid, signal.SIGKILL)

    up.wait_for(r"supervisor: sampler exited with exit code -9 \(killed by SIGKILL\); restarting")
    new_pid = int(up.wait_for(r"supervisor: sampler is SERVING again \(pid (\d+)\)").group(1))
    assert new_pid != old_pid and _alive(new_pid)
    assert _proc_stat(old_pid) is None, "the killed sampler was left a zombie"
    assert _serving(address)
    with urllib.request.urlopen(up.web_url + "healthz", timeout=10) as reply:
        health = json.loads(reply.read())
    assert health["backends"]["sampler"] == "SERVING", health
    children = _descendants(up.process.pid)
    assert new_pid in children

    up.process.send_signal(signal.SIGTERM)  # a graceful stop of everything
    assert up.process.wait(120) == 0, up.text()
    _wait_gone(children)
    assert "Traceback" not in up.text()


def test_a_service_that_keeps_dying_stops_everything_with_a_clear_message(tmp_path: Path, cleanup: list[Up]) -> None:
    up = _start_up(tmp_path, "--free-ports", "--max-restarts", "1")
    cleanup.append(up)
    children = _descendants(up.process.pid)
    os.kill(up.services()["evaluator"][1], signal.SIGKILL)
    second = int(up.wait_for(r"supervisor: evaluator is SERVING again \(pid (\d+)\)").group(1))
    children |= _descendants(up.process.pid)
    os.kill(second, signal.SIGKILL)

    assert up.process.wait(120) == 1, up.text()
    text = up.text()
    assert re.search(
        r"^error: the evaluator exited with exit code -9 \(killed by SIGKILL\) after 1 restart\(s\) in the last "
        r"60 s \(the limit\); every service has been stopped\. Last lines of \S+evaluator\.log:$",
        text,
        re.M,
    ), text
    assert '"service": "evaluator"' in text.split("Last lines of", 1)[1]  # the log's own lines follow
    assert "Traceback" not in text
    _wait_gone(children, timeout=5)  # stopped before synth up exited


def test_killing_synth_up_leaves_no_service_and_the_ports_free(tmp_path: Path, cleanup: list[Up]) -> None:
    """The issue: a killed `synth up` left orphans holding the ports, so the next start failed."""
    offset = next(
        (o for o in range(2000, 6000, 37) if all(_bindable(p) for p in _ports(o))),
        None,
    )
    assert offset is not None, "no free block of ports"
    first = _start_up(tmp_path, "--port-offset", str(offset), name="first")
    cleanup.append(first)
    children = _descendants(first.process.pid)
    assert {pid for _, pid in first.services().values()} <= children

    first.process.kill()
    first.process.wait(30)
    _wait_gone(children, timeout=60)
    busy = [p for p in _ports(offset) if not _bindable(p)]
    assert not busy, f"ports still held: {busy}"
    log = (tmp_path / "var" / "logs" / "trainer.log").read_text()
    assert '"message": "shutting down", "signal": "SIGTERM"' in log  # a graceful stop, not a kill

    second = _start_up(tmp_path, "--port-offset", str(offset), name="second")
    cleanup.append(second)
    assert all(_serving(address) for address, _ in second.services().values())
    second.process.send_signal(signal.SIGINT)
    assert second.process.wait(120) == 0, second.text()
