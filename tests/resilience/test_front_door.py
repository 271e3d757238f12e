"""A keyless gateway on loopback cannot be driven by another web site (DNS rebinding,
cross-site forms and fetches, requests from a browser without the page's CSRF
token) and takes JSON only as application/json."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.auth import hash_key
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
        # answered (503: the fake backends serve no health), not refused
        assert request(gateway, "GET", "/healthz", headers={"Host": host}).status in (200, 503), host


def page_token(gw) -> str:  # type: ignore[no-untyped-def]
    """The CSRF token the gateway put into its page, as the page's script reads it."""
    page = request(gw, "GET", "/").body.decode()
    found = re.search(r'<meta name="synth-csrf" content="([^"]*)">', page)
    assert found is not None, "the page carries the token"
    return found.group(1)


def test_a_cross_site_request_cannot_change_anything(gateway) -> None:  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json", "Origin": "https://attacker.example"}
    crossed = request(gateway, "POST", SAMPLE, BODY, headers)
    assert crossed.status == 403 and reason(crossed) == "CROSS_ORIGIN"
    # even with the token (read by some other means): another site's Origin is refused
    crossed = request(gateway, "POST", SAMPLE, BODY, {**headers, "X-Synth-CSRF": page_token(gateway)})
    assert crossed.status == 403 and reason(crossed) == "CROSS_ORIGIN"
    host = gateway.http_url.split("://", 1)[1]
    same = request(
        gateway, "POST", SAMPLE, BODY, {**headers, "Origin": f"http://{host}", "X-Synth-CSRF": page_token(gateway)}
    )
    assert same.status == 200, same.body
    # reading is not changing: a cross-site GET is answered (the browser keeps it from the page: no CORS)
    assert request(gateway, "GET", "/healthz", headers={"Origin": "https://attacker.example"}).status in (200, 503)


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


def test_a_browser_request_that_changes_something_needs_the_page_token(gateway) -> None:  # type: ignore[no-untyped-def]
    token = page_token(gateway)
    assert len(token) >= 32, "a per-process secret, not a constant"
    host = gateway.http_url.split("://", 1)[1]
    json_type = {"Content-Type": "application/json"}
    # What a browser adds on its own marks a request as coming from a page.
    for browser in (
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},  # a cross-site form or fetch, Origin stripped
        {"Sec-Fetch-Mode": "cors"},
        {"Cookie": "session=1"},
        {"Origin": f"http://{host}"},  # even this gateway's own origin sends the token
    ):
        refused = request(gateway, "POST", SAMPLE, BODY, {**json_type, **browser})
        assert refused.status == 403 and reason(refused) == "CSRF_TOKEN_MISSING", browser
        wrong = request(gateway, "POST", SAMPLE, BODY, {**json_type, **browser, "X-Synth-CSRF": token[::-1]})
        assert wrong.status == 403 and reason(wrong) == "CSRF_TOKEN_INVALID", browser
    # every state-changing method; an upload is refused before its body is read
    deleted = request(gateway, "DELETE", "/v1/reports/rpt-0123456789abcdef", headers={"Sec-Fetch-Site": "same-site"})
    assert deleted.status == 403 and reason(deleted) == "CSRF_TOKEN_MISSING"
    upload = request(gateway, "POST", "/v1/datasets", b"a,b\n1,2\n", {"Content-Type": "text/csv", "Cookie": "x=1"})
    assert upload.status == 403 and reason(upload) == "CSRF_TOKEN_MISSING"

    # The page's own requests: what Chromium sends, plus the token from the page.
    page_headers = {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    own = request(gateway, "POST", SAMPLE, BODY, {**json_type, **page_headers, "X-Synth-CSRF": token})
    assert own.status == 200, own.body
    # Reading is not changing: no token needed.
    assert request(gateway, "GET", "/v1/reports", headers=page_headers).status == 200
    # Callers that are not browsers (CLI, client library, curl) need no token.
    assert request(gateway, "POST", SAMPLE, BODY, json_type).status == 200


def test_the_token_is_per_process_and_api_keys_do_not_replace_it(tmp_path: Path) -> None:
    key = "sk-test-csrf-0123456789"
    key_file = tmp_path / "keys"
    key_file.write_text(hash_key(key) + "\n")
    fake = start_fake_backend(epochs=2)
    first = start_gateway(sampler=fake.address, key_file=key_file)
    second = start_gateway(sampler=fake.address, key_file=key_file)
    try:
        assert page_token(first) != page_token(second)
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        # a key without a browser: works as before
        assert request(first, "POST", SAMPLE, BODY, auth).status == 200
        # a browser with a key (pasted into the page) still needs the page's token, and this gateway's
        browser = {**auth, "Sec-Fetch-Site": "same-origin"}
        assert reason(request(first, "POST", SAMPLE, BODY, browser)) == "CSRF_TOKEN_MISSING"
        other = request(first, "POST", SAMPLE, BODY, {**browser, "X-Synth-CSRF": page_token(second)})
        assert other.status == 403 and reason(other) == "CSRF_TOKEN_INVALID"
        assert "reload" in json.loads(other.body)["error"]["message"]
        assert request(first, "POST", SAMPLE, BODY, {**browser, "X-Synth-CSRF": page_token(first)}).status == 200
        # the token is not a key: without one the call is still unauthenticated
        keyless = {
            "Content-Type": "application/json",
            "Sec-Fetch-Site": "same-origin",
            "X-Synth-CSRF": page_token(first),
        }
        assert request(first, "POST", SAMPLE, BODY, keyless).status == 401
    finally:
        first.stop(0)
        second.stop(0)
        fake.stop()
