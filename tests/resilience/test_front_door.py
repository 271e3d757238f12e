"""A keyless gateway on loopback cannot be driven by another web site (DNS rebinding,
cross-site forms and fetches) and takes JSON only as application/json."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.test_gateway_fakes import FakeBackend, start_fake_backend, start_gateway
from tests.integration.test_gateway_http import request


@pytest.fixture
def gateway() -> Iterator:  # type: ignore[no-untyped-def]
    fake: FakeBackend = start_fake_backend(epochs=2)
    gw = start_gateway(trainer=fake.address, sampler=fake.address, evaluator=fake.address)
    yield gw
    gw.stop()
    fake.stop()


SAMPLE = "/v1/models/mdl-0123456789abcdef:sample"  # a POST the fake sampler answers
BODY = json.dumps({"row_count": 5, "seed": 1})


def reason(response) -> str:  # type: ignore[no-untyped-def]
    details = json.loads(response.body)["error"]["details"]
    return next(d["reason"] for d in details if d["@type"].endswith("ErrorInfo"))


def test_a_rebound_host_name_is_refused(gateway) -> None:  # type: ignore[no-untyped-def]
    # DNS rebinding: attacker.example resolves to 127.0.0.1, and its page calls "its own" server
    rebound = request(gateway, "GET", "/v1/datasets", headers={"Host": "attacker.example:8080"})
    assert rebound.status == 403 and reason(rebound) == "HOST_NOT_ALLOWED"
    page = request(gateway, "GET", "/", headers={"Host": "attacker.example"})
    assert page.status == 403
    for host in ("localhost:8080", "127.0.0.1", "[::1]:8080"):
        assert request(gateway, "GET", "/healthz", headers={"Host": host}).status == 200, host


def test_a_cross_site_request_cannot_change_anything(gateway) -> None:  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json", "Origin": "https://attacker.example"}
    crossed = request(gateway, "POST", SAMPLE, BODY, headers)
    assert crossed.status == 403 and reason(crossed) == "CROSS_ORIGIN"
    host = gateway.http_url.split("://", 1)[1]
    same = request(gateway, "POST", SAMPLE, BODY, {**headers, "Origin": f"http://{host}"})
    assert same.status == 200, same.body
    # reading is not changing: a cross-site GET is answered (the browser keeps it from the page: no CORS)
    assert request(gateway, "GET", "/healthz", headers={"Origin": "https://attacker.example"}).status == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_json_bodies_only_as_application_json(gateway, content_type) -> None:  # type: ignore[no-untyped-def]
    # a cross-site <form> can post text/plain with a JSON-looking body, no preflight asked
    headers = {"Content-Type": content_type} if content_type else {}
    refused = request(gateway, "POST", SAMPLE, BODY, headers)
    assert refused.status == 415 and reason(refused) == "UNSUPPORTED_MEDIA_TYPE"
    accepted = request(gateway, "POST", SAMPLE, BODY, {"Content-Type": "application/json; charset=utf-8"})
    assert accepted.status == 200


@pytest.mark.parametrize("depth", [100_000, 5_000])
def test_deeply_nested_json_is_a_clear_error_not_a_500(gateway, depth) -> None:  # type: ignore[no-untyped-def]
    # the JSON parser (depth 100,000) or the protobuf one (5,000 levels inside a field) ran out of stack
    nested = '{"row_count": 5, "conditions": [' + '{"a":' * depth + "1" + "}" * depth + "]}"
    answer = request(gateway, "POST", SAMPLE, nested, {"Content-Type": "application/json"})
    assert answer.status == 400 and reason(answer) == "BAD_JSON"
    assert "nested too deeply" in json.loads(answer.body)["error"]["message"]
