"""Broken upload bodies sent raw over a socket get a clear 400, never a 500, and
store nothing: multipart forms with a bad, missing or foreign boundary, cut
short, without their closing delimiter or without a file part; malformed
chunked encoding; a client that hangs up half-way through a form."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.http import convert
from services.trainer.app import build_server
from services.trainer.settings import TrainerSettings
from tests.integration.conftest import stored_items
from tests.integration.test_gateway_fakes import start_gateway
from tests.integration.test_gateway_http import request

CSV = b"a,b\n" + b"1,2\n" * 40
BOUNDARY = b"----synthBroken42"
FILE_HEAD = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\n'
CLOSE = b"\r\n--" + BOUNDARY + b"--\r\n"
FORM = b"multipart/form-data; boundary=" + BOUNDARY


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def gateway(store: Path) -> Iterator:  # type: ignore[no-untyped-def]
    trainer = build_server(TrainerSettings(port=0, metrics_port=0, store_dir=store)).start()
    trainer.set_serving()
    gw = start_gateway(trainer=trainer.address)
    yield gw
    gw.stop(0)
    trainer.stop(0)


def send_raw(gw, content_type: bytes | None, body: bytes, framing: bytes | None = None) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    """POST /v1/datasets with exactly these bytes; the status and the body of the answer."""
    url = urllib.parse.urlsplit(gw.http_url)
    head = b"POST /v1/datasets HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    if content_type is not None:
        head += b"Content-Type: " + content_type + b"\r\n"
    head += framing if framing is not None else b"Content-Length: %d\r\n" % len(body)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """One answer with a Content-Length: its status and body."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), body[:length]


def error_of(body: bytes) -> dict:  # type: ignore[type-arg]
    error = json.loads(body)["error"]
    error["reason"] = next((d["reason"] for d in error.get("details", []) if d["@type"].endswith("ErrorInfo")), "")
    return error  # type: ignore[no-any-return]


BROKEN_FORMS = {
    "no boundary parameter": (b"multipart/form-data", FILE_HEAD + CSV + CLOSE, "boundary"),
    "a boundary the body does not use": (
        b"multipart/form-data; boundary=somethingElse",
        FILE_HEAD + CSV + CLOSE,
        "boundary",
    ),
    "a boundary longer than 70 characters": (
        b"multipart/form-data; boundary=" + b"b" * 100,
        FILE_HEAD + CSV + CLOSE,
        "too long",
    ),
    "not a form at all": (FORM, b"just some text, no boundary anywhere\r\n", "boundary"),
    "no closing delimiter": (FORM, FILE_HEAD + CSV, "boundary"),
    "a delimiter without its closing dashes": (FORM, FILE_HEAD + CSV + b"\r\n--" + BOUNDARY + b"\r\n", "ends"),
    "cut inside the part headers": (FORM, b"--" + BOUNDARY + b"\r\nContent-Disposition: form-da", "ends"),
    "cut inside a field": (
        FORM,
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="display_name"\r\n\r\nx.csv',
        "ends",
    ),
    "no file part": (
        FORM,
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="display_name"\r\n\r\nx.csv' + CLOSE,
        "no file",
    ),
}


@pytest.mark.parametrize("case", BROKEN_FORMS)
def test_a_broken_multipart_body_is_a_clear_400_and_stores_nothing(gateway, store, case) -> None:  # type: ignore[no-untyped-def]
    content_type, body, words = BROKEN_FORMS[case]
    status, answer = send_raw(gateway, content_type, body)
    assert status == 400, answer
    error = error_of(answer)
    assert error["status"] == "INVALID_ARGUMENT" and error["reason"] == "BAD_MULTIPART", error
    assert words in error["message"], error["message"]
    assert stored_items(store) == []
    # and the same file in a well-formed form is stored
    status, answer = send_raw(gateway, FORM, FILE_HEAD + CSV + CLOSE)
    assert status == 200, answer
    assert json.loads(answer)["dataset"]["row_count"] == 40


def test_malformed_framing_is_a_400(gateway, store) -> None:  # type: ignore[no-untyped-def]
    chunked = b"Transfer-Encoding: chunked\r\n"
    assert send_raw(gateway, b"text/csv", b"zz\r\nabc\r\n0\r\n\r\n", chunked)[0] == 400  # not a chunk size
    assert send_raw(gateway, b"text/csv", b"abc", b"Content-Length: abc\r\n")[0] == 400
    assert send_raw(gateway, FORM, b"3\r\nabcdef\r\n0\r\n\r\n", chunked)[0] == 400  # a chunk longer than said
    assert stored_items(store) == []
    assert request(gateway, "GET", "/v1/datasets").status == 200


def test_a_body_that_stops_arriving_is_a_408(gateway, store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(convert, "BODY_IDLE_SECONDS", 0.5)
    url = urllib.parse.urlsplit(gateway.http_url)
    stalled = b"POST /v1/datasets HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\na,b\n1,2\n"
    # framing that breaks after the body began: aiohttp's parser stops feeding the body without a word
    broken = b"POST /v1/datasets HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na,b\n\r\n"
    for first, then in ((stalled, b""), (broken, b"zz\r\nabc\r\n0\r\n\r\n")):
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            sock.sendall(first)
            time.sleep(0.2)
            sock.sendall(then)
            status, body = read_answer(sock)
        assert status == 408, body
        assert error_of(body)["reason"] == "REQUEST_BODY_TIMEOUT"
    assert stored_items(store) == []


def test_a_client_that_hangs_up_mid_form_stores_nothing(gateway, store) -> None:  # type: ignore[no-untyped-def]
    url = urllib.parse.urlsplit(gateway.http_url)
    big = b"a,b\n" + b"12345,67890\n" * 20_000
    body = FILE_HEAD + big + CLOSE
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        head = b"POST /v1/datasets HTTP/1.1\r\nHost: localhost\r\nContent-Type: " + FORM
        sock.sendall(head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[: len(body) // 2])
        time.sleep(0.3)  # the file is on its way to the trainer
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and stored_items(store):
        time.sleep(0.05)
    time.sleep(0.3)
    assert stored_items(store) == [], "an interrupted upload must leave nothing behind"
    assert request(gateway, "GET", "/v1/datasets").json()["datasets"] == []
