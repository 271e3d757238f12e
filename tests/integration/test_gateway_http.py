"""The gateway's HTTP/JSON API over real servers: uploads of a real CSV (raw,
chunked and multipart bodies), dataset routes, error codes through the one
gRPC→HTTP table (400/404/405/413/501/503), the OpenAPI document and page, the
web page's assets (all local), and the streamed routes — training events as
SSE, sample download as CSV, evaluation — against fake backends for now, with
a client that goes away cancelling the backend call."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.backends import METHODS
from gateway.codes import HTTP_STATUS
from gateway.http import WEB_DIR
from tests.integration.conftest import DATASETS, stored_items
from tests.integration.test_gateway_fakes import FakeBackend, start_fake_backend, start_gateway

PIMA = DATASETS / "pima_diabetes.csv"


@pytest.fixture
def fake() -> Iterator[FakeBackend]:
    backend = start_fake_backend(epochs=5)
    yield backend
    backend.stop()


@pytest.fixture
def gateway(trainer, fake):  # type: ignore[no-untyped-def]
    # The HTTP limit is below the trainer's 5 MB, so the gateway's own check answers.
    gw = start_gateway(trainer=trainer.address, sampler=fake.address, evaluator=fake.address, max_upload_bytes=200_000)
    yield gw
    gw.stop(0)


@pytest.fixture
def fake_trainer_gateway(fake):  # type: ignore[no-untyped-def]
    """A gateway whose trainer is the fake (for WatchTraining until it lands)."""
    gw = start_gateway(trainer=fake.address, sampler=fake.address, evaluator=fake.address)
    yield gw
    gw.stop(0)


class Response:
    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.status = raw.status
        self.headers = {k.lower(): v for k, v in raw.getheaders()}
        self.body = raw.read()

    def json(self) -> Any:
        return json.loads(self.body)


def request(gw, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, **kw):  # type: ignore[no-untyped-def]
    url = urllib.parse.urlsplit(gw.http_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {}, **kw)
        return Response(conn.getresponse())
    finally:
        conn.close()


def multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "----synthtest7d9f"
    out = b""
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    out += data + f"\r\n--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def sse_events(body: bytes) -> list[dict[str, Any]]:
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            events.append({"id": fields.get("id"), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_upload_a_real_csv_then_list_get_preview_delete(gateway) -> None:  # type: ignore[no-untyped-def]
    data = PIMA.read_bytes()
    up = request(
        gateway,
        "POST",
        "/v1/datasets?display_name=pima.csv&kind=Outcome%3Dcategorical",
        data,
        {"Content-Type": "text/csv", "X-Request-Id": "http-req-1"},
    )
    assert up.status == 200, up.body
    assert up.headers["x-request-id"] == "http-req-1"
    dataset = up.json()["dataset"]
    assert dataset["id"].startswith("ds-") and dataset["row_count"] == 768 and dataset["display_name"] == "pima.csv"
    kinds = {c["name"]: c["kind"] for c in dataset["schema"]["columns"]}
    assert kinds["Outcome"] == "COLUMN_KIND_CATEGORICAL" and kinds["Glucose"] == "COLUMN_KIND_CONTINUOUS"

    listed = request(gateway, "GET", "/v1/datasets?page_size=10").json()
    assert [d["id"] for d in listed["datasets"]] == [dataset["id"]]
    got = request(gateway, "GET", f"/v1/datasets/{dataset['id']}")
    assert got.status == 200 and got.json()["dataset"] == dataset
    preview = request(gateway, "GET", f"/v1/datasets/{dataset['id']}/preview?row_count=2").json()
    assert preview["column_names"][0] == "Pregnancies" and len(preview["rows"]) == 2
    assert request(gateway, "DELETE", f"/v1/datasets/{dataset['id']}").status == 200
    gone = request(gateway, "GET", f"/v1/datasets/{dataset['id']}")
    assert gone.status == 404
    error = gone.json()["error"]
    assert error["status"] == "NOT_FOUND" and error["code"] == 404 and dataset["id"] in error["message"]
    assert error["details"][0]["reason"] == "DATASET_NOT_FOUND"


def test_a_request_id_makes_http_uploads_and_job_starts_safe_to_retry(gateway) -> None:  # type: ignore[no-untyped-def]
    import uuid

    data = PIMA.read_bytes()
    upload_id = str(uuid.uuid4())
    path = f"/v1/datasets?display_name=pima.csv&request_id={upload_id}"
    first, again = (request(gateway, "POST", path, data, {"Content-Type": "text/csv"}) for _ in range(2))
    assert first.status == again.status == 200, first.body
    dataset_id = first.json()["dataset"]["id"]
    assert again.json()["dataset"]["id"] == dataset_id
    assert [d["id"] for d in request(gateway, "GET", "/v1/datasets").json()["datasets"]] == [dataset_id]

    start = {
        "dataset_id": dataset_id,
        "config": {"epochs": 1, "batch_size": 100, "generator_dims": [16], "discriminator_dims": [16]},
        "request_id": str(uuid.uuid4()),
    }
    jobs = [
        request(gateway, "POST", "/v1/jobs", json.dumps(start), {"Content-Type": "application/json"}) for _ in range(2)
    ]
    assert [j.status for j in jobs] == [200, 200], jobs[0].body
    assert jobs[0].json()["job"]["id"] == jobs[1].json()["job"]["id"]
    assert len(request(gateway, "GET", "/v1/jobs").json()["jobs"]) == 1
    start["config"]["epochs"] = 2
    reused = request(gateway, "POST", "/v1/jobs", json.dumps(start), {"Content-Type": "application/json"})
    assert reused.status == 400 and reused.json()["error"]["details"][0]["reason"] == "REQUEST_ID_REUSED"


def test_multipart_and_chunked_uploads(gateway) -> None:  # type: ignore[no-untyped-def]
    data = PIMA.read_bytes()
    body, content_type = multipart({"display_name": "form.csv", "missing_marker": "-"}, "pima_diabetes.csv", data)
    up = request(gateway, "POST", "/v1/datasets", body, {"Content-Type": content_type})
    assert up.status == 200, up.body
    first = up.json()["dataset"]
    assert first["display_name"] == "form.csv" and "-" in first["missing_markers"]

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(data), 7000):
            yield data[start : start + 7000]

    chunked = request(gateway, "POST", "/v1/datasets?display_name=chunked.csv", pieces(), encode_chunked=True)
    assert chunked.status == 200, chunked.body
    assert chunked.json()["dataset"]["fingerprint"] == first["fingerprint"]


def test_bad_input_gives_400_with_the_reason_and_field(gateway, store_dir) -> None:  # type: ignore[no-untyped-def]
    ragged = b"a,b\n" + b"1,2\n" * 20 + b"1,2,3\n"
    bad = request(gateway, "POST", "/v1/datasets?display_name=bad.csv", ragged, {"Content-Type": "text/csv"})
    assert bad.status == 400
    error = bad.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "22" in error["message"]
    violations = [d for d in error["details"] if d["@type"].endswith("BadRequest")][0]["field_violations"]
    assert violations[0]["field"].startswith("rows[")
    assert stored_items(store_dir) == []
    assert request(gateway, "POST", "/v1/jobs", b"{not json", {"Content-Type": "application/json"}).status == 400
    unknown_field = request(gateway, "POST", "/v1/jobs", b'{"dataset": "x"}', {"Content-Type": "application/json"})
    assert unknown_field.status == 400 and "dataset" in unknown_field.json()["error"]["message"]
    assert request(gateway, "GET", "/v1/datasets?page_size=abc").status == 400
    assert request(gateway, "GET", "/v1/datasets?page_size=-5").status == 400  # the trainer's own check
    missing = request(gateway, "GET", "/v1/nothing-here")
    assert missing.status == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    assert request(gateway, "PUT", "/v1/datasets").status == 405
    # TrainingService answers UNIMPLEMENTED until it lands: 501, not a crash.
    assert request(gateway, "GET", "/v1/jobs").status in (200, 501)


def test_uploads_over_the_limit_are_413_and_leave_nothing(gateway, store_dir) -> None:  # type: ignore[no-untyped-def]
    big = b"a,b\n" + b"12345,67890\n" * 30_000  # 360 kB > the 200 kB limit
    declared = request(gateway, "POST", "/v1/datasets", big, {"Content-Type": "text/csv"})
    assert declared.status == 413
    assert declared.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert declared.json()["error"]["details"][0]["reason"] == "UPLOAD_TOO_LARGE"

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(big), 50_000):
            yield big[start : start + 50_000]

    streamed = request(gateway, "POST", "/v1/datasets", pieces(), encode_chunked=True)
    assert streamed.status == 413
    body, content_type = multipart({}, "big.csv", big)
    assert request(gateway, "POST", "/v1/datasets", body, {"Content-Type": content_type}).status == 413
    assert stored_items(store_dir) == [], "a refused upload must leave nothing behind"

    # A client that stops half-way: the backend upload is cancelled, not committed short.
    url = urllib.parse.urlsplit(gateway.http_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + big[:20_000])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and stored_items(store_dir):
        time.sleep(0.05)
    time.sleep(0.3)
    assert stored_items(store_dir) == [], "an interrupted upload must leave nothing behind"
    # The connection-level refusal did not break the server.
    assert request(gateway, "GET", "/v1/datasets").status == 200


def test_a_backend_that_is_down_is_503_naming_it(trainer) -> None:  # type: ignore[no-untyped-def]
    gw = start_gateway(trainer=trainer.address)
    try:
        down = request(gw, "GET", "/v1/reports")
        assert down.status == 503
        assert "evaluator backend (127.0.0.1:1) is unavailable" in down.json()["error"]["message"]
        health = request(gw, "GET", "/healthz")
        assert health.status == 503 and health.json()["status"] == "DEGRADED"
        backends = health.json()["backends"]
        assert backends["trainer"] == "SERVING" and backends["evaluator"] == "UNAVAILABLE"
    finally:
        gw.stop(0)


def test_training_events_stream_as_sse_and_resume(fake_trainer_gateway, fake) -> None:  # type: ignore[no-untyped-def]
    events = sse_events(request(fake_trainer_gateway, "GET", "/v1/jobs/job-0123456789abcdef/events").body)
    assert [e["event"] for e in events] == ["queued", "started"] + ["epoch"] * 5 + ["succeeded"]
    assert [int(e["id"]) for e in events] == list(range(1, 9))
    assert events[2]["data"]["epoch"]["generator_loss"] == 1.0
    resumed = request(
        fake_trainer_gateway, "GET", "/v1/jobs/job-0123456789abcdef/events", headers={"Last-Event-ID": "6"}
    )
    assert resumed.headers["content-type"].startswith("text/event-stream")
    assert [int(e["id"]) for e in sse_events(resumed.body)] == [7, 8]
    after = request(fake_trainer_gateway, "GET", "/v1/jobs/job-0123456789abcdef/events?after_sequence=7")
    assert [e["event"] for e in sse_events(after.body)] == ["succeeded"]
    missing = request(fake_trainer_gateway, "GET", "/v1/jobs/job-missing/events")
    assert missing.status == 404, "an error before the first event is a plain HTTP error"


def test_an_sse_client_that_goes_away_cancels_the_backend_call() -> None:
    slow = start_fake_backend(epochs=1000, delay=0.05)
    gw = start_gateway(trainer=slow.address)
    try:
        url = urllib.parse.urlsplit(gw.http_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
        conn.request("GET", "/v1/jobs/job-0123456789abcdef/events")
        response = conn.getresponse()
        assert response.status == 200
        assert b"event: queued" in response.read1(4096)
        response.close()
        conn.close()
        assert slow.recorder.cancelled.wait(5), "the backend stream outlived the HTTP client"
        sent = slow.recorder.sent
        time.sleep(0.3)
        assert slow.recorder.sent <= sent + 1 and sent < 1000
    finally:
        gw.stop(0)
        slow.stop()


def test_a_quiet_event_stream_gets_heartbeats_and_a_client_leaving_it_cancels_at_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gateway.http import streams

    monkeypatch.setattr(streams, "HEARTBEAT_SECONDS", 0.1)
    quiet = start_fake_backend(epochs=3, delay=3.0)
    gw = start_gateway(trainer=quiet.address)
    try:
        url = urllib.parse.urlsplit(gw.http_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
        conn.request("GET", "/v1/jobs/job-0123456789abcdef/events")
        response = conn.getresponse()
        seen = b""
        while b"event: queued" not in seen or b": keep-alive" not in seen:
            seen += response.read1(4096)
        # the stream is idle (the next event is seconds away) when the client leaves
        response.close()
        conn.close()
        assert quiet.recorder.cancelled.wait(2), "the idle backend stream outlived the HTTP client"
    finally:
        gw.stop(0)
        quiet.stop()


def test_sample_download_streams_csv(gateway, fake) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"row_count": 25, "seed": 7}).encode()
    got = request(gateway, "POST", "/v1/models/mdl-0123456789abcdef:sample", body, {"Content-Type": "application/json"})
    assert got.status == 200
    assert got.headers["content-type"].startswith("text/csv")
    assert got.headers["transfer-encoding"] == "chunked"
    assert 'filename="mdl-0123456789abcdef.csv"' in got.headers["content-disposition"]
    assert got.headers["x-synth-seed"] == "7" and got.headers["x-synth-row-count"] == "25"
    lines = got.body.decode().splitlines()
    assert lines[0] == "a,b" and len(lines) == 26
    missing = request(gateway, "POST", "/v1/models/mdl-missing:sample", body, {"Content-Type": "application/json"})
    assert missing.status == 404
    # A failure after the first byte leaves the chunked body unterminated.
    with pytest.raises(http.client.IncompleteRead):
        request(gateway, "POST", "/v1/models/mdl-fails-late:sample", body, {"Content-Type": "application/json"})


def test_evaluate_as_events_or_as_the_final_report(gateway) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"dataset_id": "ds-0123456789abcdef", "model_id": "mdl-0123456789abcdef"}).encode()
    final = request(gateway, "POST", "/v1/reports", body, {"Content-Type": "application/json"})
    assert final.status == 200
    assert final.json()["report"]["verdict"] == "VERDICT_PASS"
    streamed = request(
        gateway, "POST", "/v1/reports", body, {"Content-Type": "application/json", "Accept": "text/event-stream"}
    )
    events = sse_events(streamed.body)
    assert [e["event"] for e in events] == ["progress", "progress", "progress", "report"]
    assert events[-1]["data"]["report"]["model_id"] == "mdl-0123456789abcdef"
    assert request(gateway, "GET", "/v1/reports/rpt-flaky").json()["report"]["id"] == "rpt-flaky"


def test_openapi_maps_every_rpc_and_the_docs_page_is_local(gateway) -> None:  # type: ignore[no-untyped-def]
    spec = request(gateway, "GET", "/v1/openapi.json").json()
    described = {
        op["description"].rsplit("gRPC: `", 1)[1].rstrip("`") for ops in spec["paths"].values() for op in ops.values()
    }
    assert described == set(METHODS), "one HTTP route per RPC"
    assert spec["components"]["schemas"]["Dataset"]["properties"]["schema"] == {"$ref": "#/components/schemas/Schema"}
    for code, status in HTTP_STATUS.items():
        assert f"| {code} | {status} |" in spec["info"]["description"]
    docs = request(gateway, "GET", "/docs")
    assert docs.status == 200 and b"openapi" in docs.body.lower()
    page = request(gateway, "GET", "/")
    assert page.status == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    referenced = re.findall(rb'(?:src|href)="([^"]+)"', page.body + docs.body)
    assert referenced, "the pages load their scripts and styles"
    for ref in referenced:
        assert not re.match(rb"^(https?:)?//", ref), f"external asset {ref!r}: a closed network must work"
        if ref.startswith(b"/static/"):
            assert request(gateway, "GET", ref.decode()).status == 200
    for asset in WEB_DIR.iterdir():
        text = asset.read_text()
        # The SVG namespace is a name, not a fetch; anything else absolute would be.
        urls = set(re.findall(r"(?:https?:)?//[a-z][\w.-]*\.[a-z]{2,}[^\s\"'`)]*", text)) - {
            "http://www.w3.org/2000/svg"
        }
        assert not urls, f"{asset.name} refers to the network: {urls}"
    assert request(gateway, "GET", "/static/../settings.py").status == 404
