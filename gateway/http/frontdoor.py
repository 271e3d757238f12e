"""The front door every HTTP request goes through (one aiohttp middleware):

- a request id (the caller's ``X-Request-Id`` or a new one) in the logs and on
  the answer;
- what a web page on another site could make a browser send is refused: a
  loopback gateway answers only to loopback host names (DNS rebinding points
  another name at 127.0.0.1), a state-changing request with another site's
  ``Origin`` is refused (CROSS_ORIGIN), and a state-changing request from a
  browser (``Origin``, ``Sec-Fetch-*`` or a cookie) must carry the page's CSRF
  token in ``X-Synth-CSRF`` (CSRF_TOKEN_MISSING / CSRF_TOKEN_INVALID);
  callers that are not browsers (the CLI, the client library, curl) send none
  of those headers and need no token;
- errors become the JSON error body (``gateway.codes``), never a traceback;
- one metrics sample and one access-log line per request, and the security
  headers on every answer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.codes import HttpError
from gateway.http.context import REQUEST_ID, ROUTE_LABEL, context
from services.common.logs import log_context

log = logging.getLogger("gateway.http")

CSRF_HEADER = "X-Synth-CSRF"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Headers only a browser sends on its own: their presence means a page made the request.
_BROWSER_HEADERS = ("Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Cookie")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Every asset is local: a closed network works, and nothing else may load.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
# The answer a handler has started (a stream): an error after it can only end the connection.
STARTED = web.RequestKey("started_response", web.StreamResponse)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "synth_gateway_http_requests_total",
            "HTTP requests answered, by route pattern and status code.",
            ["method", "route", "code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "synth_gateway_http_request_duration_seconds",
            "Time to answer an HTTP request (streams: the whole stream).",
            ["method", "route"],
            buckets=(0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 120, 600, 3600),
            registry=registry,
        )


class InFlight:
    """Requests being answered, for the drain: counted in the loop, awaited from other threads."""

    def __init__(self) -> None:
        self.count = 0
        self.condition = threading.Condition()

    def started(self) -> None:
        with self.condition:
            self.count += 1

    def ended(self) -> None:
        with self.condition:
            self.count -= 1
            self.condition.notify_all()


def front_door(metrics: HttpMetrics, in_flight: InFlight) -> Middleware:
    """The middleware."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = (request.headers.get("X-Request-Id") or "").strip()[:64] or uuid.uuid4().hex[:16]
        request[REQUEST_ID] = request_id
        request[ROUTE_LABEL] = "other"
        status = 0
        in_flight.started()
        with log_context(request_id=request_id):
            try:
                response = await _answer(request, handler)
                status = response.status
                return response
            except asyncio.CancelledError:
                status = 499  # the client went away
                raise
            finally:
                in_flight.ended()
                elapsed = time.perf_counter() - started
                route = request[ROUTE_LABEL]
                metrics.requests.labels(request.method, route, str(status)).inc()
                metrics.seconds.labels(request.method, route).observe(elapsed)
                log.info(
                    "http request",
                    extra={"method": request.method, "route": route, "status": status, "seconds": round(elapsed, 4)},
                )

    return middleware


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        check_front_door(request)
        return await handler(request)
    except HttpError as err:
        err.request_id = err.request_id or request[REQUEST_ID]
        return _error_answer(request, err)
    except ConnectionError:
        # The client went away while we wrote: nothing more can reach it.
        return request.get(STARTED) or web.Response(status=499)
    except HttpProcessingError as exc:
        # aiohttp's parser refused the body (a malformed chunked encoding...).
        error = HttpError("INVALID_ARGUMENT", f"malformed request body: {exc.message}", reason="BAD_BODY")
        error.request_id = request[REQUEST_ID]
        return _error_answer(request, error)
    except Exception:  # noqa: BLE001 - never a traceback to the client
        log.exception("unhandled error in HTTP handler")
        rid = request[REQUEST_ID]
        message = f"internal error; the gateway log has the details (request id {rid})"
        return _error_answer(request, HttpError("INTERNAL", message, request_id=rid))


def check_front_door(request: web.Request) -> None:
    """Refuse what a web page on another site could make a browser send."""
    ctx = context(request)
    host = (request.headers.get("Host") or "").strip().lower()
    if ctx.loopback and not is_loopback(host_name(host)):
        raise HttpError(
            "PERMISSION_DENIED",
            f"this gateway listens on a loopback address and answers only to localhost, not to Host {host!r}",
            reason="HOST_NOT_ALLOWED",
        )
    if request.method not in STATE_CHANGING:
        return
    origin = (request.headers.get("Origin") or "").strip().lower()
    if origin and urllib.parse.urlsplit(origin).netloc != host:
        raise HttpError(
            "PERMISSION_DENIED",
            f"a request from another site (Origin {origin!r}) may not change anything here",
            reason="CROSS_ORIGIN",
        )
    if not any(name in request.headers for name in _BROWSER_HEADERS):
        return  # not a browser: a page cannot have sent it
    sent = (request.headers.get(CSRF_HEADER) or "").strip()
    if not sent:
        raise HttpError(
            "PERMISSION_DENIED",
            f"a browser request that changes something must carry this gateway's page token in {CSRF_HEADER}",
            reason="CSRF_TOKEN_MISSING",
        )
    if not hmac.compare_digest(sent.encode(), ctx.csrf_token.encode()):
        raise HttpError(
            "PERMISSION_DENIED",
            f"the {CSRF_HEADER} token is not this gateway's (it restarted since the page was loaded: reload it)",
            reason="CSRF_TOKEN_INVALID",
        )


def _error_answer(request: web.Request, err: HttpError) -> web.StreamResponse:
    started = request.get(STARTED)
    if started is not None:
        # The answer had started (a stream): all that is left is to end the connection.
        if request.transport is not None:
            request.transport.close()
        return started
    if err.status >= 500 and err.code != "UNIMPLEMENTED":
        log.warning("HTTP request failed", extra={"status": err.status, "grpc_code": err.code})
    response = json_response(err.status, err.body())
    if err.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="synth"'
    if request.body_exists and not request.content.at_eof():
        # The rest of the body is never read: the connection is not reused
        # (aiohttp reads and drops what is left for a moment, so the client sees this answer).
        response.force_close()
    return response


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    data = json.dumps(body, indent=1).encode()
    return web.Response(
        status=status,
        body=data,
        content_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the request id and security headers on every answer."""
    request_id = request.get(REQUEST_ID)
    if request_id:
        response.headers["X-Request-Id"] = request_id
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Server"] = "synth-gateway"


def is_loopback(name: str) -> bool:
    name = name.strip().lower()
    return name in ("localhost", "::1") or name.startswith("127.")


def host_name(host: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
