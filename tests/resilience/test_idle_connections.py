"""Hundreds of idle HTTP connections cost the gateway no threads.

Before, the HTTP side was a thread per connection: 800 half-open connections
made 842 gateway threads. Now one event loop serves them all; this test runs
the real ``python -m gateway`` process and counts its threads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 400
MAX_THREADS = 60


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:  # type: ignore[type-arg]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_GATEWAY_")}
    env.update(
        SYNTH_GATEWAY_PORT="0",
        SYNTH_GATEWAY_HTTP_PORT="0",
        SYNTH_GATEWAY_METRICS_PORT="-1",
        SYNTH_GATEWAY_LOG_FORMAT="json",
        # no backends: /healthz reports them down at once
        SYNTH_GATEWAY_TRAINER_ADDRESS="127.0.0.1:1",
        SYNTH_GATEWAY_SAMPLER_ADDRESS="127.0.0.1:1",
        SYNTH_GATEWAY_EVALUATOR_ADDRESS="127.0.0.1:1",
    )
    log_path = tmp_path / "gateway.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stderr=log, cwd=ROOT)
    try:
        url = ""
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline and proc.poll() is None:
            for line in log_path.read_text().splitlines():
                if '"message": "serving"' in line:
                    url = json.loads(line)["http"]
            time.sleep(0.1)
        assert url, log_path.read_text()[-3000:]
        yield proc, url
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log_path.read_text()[-3000:]


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_hundreds_of_idle_connections_cost_no_threads(gateway_process) -> None:  # type: ignore[no-untyped-def]
    proc, url = gateway_process
    parts = urllib.parse.urlsplit(url)
    address = (parts.hostname, parts.port)
    before = threads_of(proc.pid)
    sockets: list[socket.socket] = []
    try:
        for i in range(CONNECTIONS):
            sock = socket.create_connection(address, timeout=10)
            sockets.append(sock)
            if i % 2:
                # half-open: a request whose headers never end
                sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: localhost\r\n")
            else:
                # keep-alive: one request answered, then the connection sits idle
                sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: localhost\r\n\r\n")
        for sock in sockets[::2]:
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        time.sleep(0.5)
        during = threads_of(proc.pid)
        with pytest.raises(urllib.error.HTTPError) as answer:  # fast, and honest: no backend is up
            urllib.request.urlopen(url + "/healthz", timeout=5)
        health = json.loads(answer.value.read())
        assert answer.value.code == 503
        assert health["status"] == "DEGRADED" and health["backends"]["trainer"] == "UNAVAILABLE"
    finally:
        for sock in sockets:
            sock.close()
    assert during < MAX_THREADS, f"{during} gateway threads with {CONNECTIONS} idle connections (before: {before})"
    assert during - before < 5, f"{before} threads before {CONNECTIONS} idle connections, {during} with them"
    # the connections are gone and the gateway still answers
    with urllib.request.urlopen(url + "/v1/info", timeout=5) as response:
        assert json.loads(response.read())["auth_required"] is False
