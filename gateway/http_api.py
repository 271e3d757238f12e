"""The HTTP side of the gateway: the JSON API (one route per RPC, see
``routes``), the OpenAPI document and page, and the web page's files.

Stdlib only (``http.server.ThreadingHTTPServer``): every request is a thread,
every API call goes to a backend over gRPC through the shared channels. No
model logic lives here. Streams (training events, sample downloads, evaluation
progress) are pumped from the gRPC call through a small bounded queue, so memory
stays flat and a client that goes away cancels the backend call within half a
second.
"""

from __future__ import annotations

import email.message
import email.utils
import json
import logging
import mimetypes
import queue
import select
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, symbol_database
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Counter, Histogram
from synth.v1 import common_pb2, datasets_pb2

from gateway.auth import KeyStore
from gateway.backends import Backends
from gateway.codes import HttpError
from gateway.openapi import openapi_document
from gateway.proxy import backend_error
from gateway.routes import Route, match
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
UPLOAD_CHUNK = 1 << 20  # bytes per gRPC upload message: well under the message limit
_MAX_JSON_BODY = 1 << 20
_MULTIPART_SLACK = 64 * 1024  # boundaries and form fields around the file
_HEARTBEAT_SECONDS = 15.0
_POLL_SECONDS = 0.5
_TERMINAL_EVENTS = ("succeeded", "failed", "cancelled")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Every asset is local: a closed network works, and nothing else may load.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
_PAGES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/docs": "docs.html",
    "/docs/": "docs.html",
}


def message_to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def _message_class(full_name: str) -> type[Message]:
    return symbol_database.Default().GetSymbol(full_name)  # type: ignore[no-any-return]


class _HttpMetrics:
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


class HttpApi:
    """Owns the HTTP server thread. ``start()``/``stop()``; ``port`` once started."""

    def __init__(
        self, settings: GatewaySettings, backends: Backends, keys: KeyStore, registry: CollectorRegistry
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.keys = keys
        self.metrics = _HttpMetrics(registry)
        self.openapi = openapi_document()
        self.loopback = _is_loopback(settings.host)
        api = self

        class Handler(_Handler):
            gateway = api

        self._active = 0  # requests being answered, for the drain
        self._idle = threading.Condition()
        self._server = ThreadingHTTPServer((settings.host, settings.http_port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.settings.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def start(self) -> HttpApi:
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take no new connections (requests in flight go on: see ``wait_idle``)."""
        self._server.shutdown()
        self._server.server_close()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being answered (a download, an event stream), at most ``timeout`` s."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout=timeout)

    def _request_started(self) -> None:
        with self._idle:
            self._active += 1

    def _request_ended(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()


class _ClientGone(Exception):
    """The HTTP client closed its connection."""


class _Handler(BaseHTTPRequestHandler):
    gateway: HttpApi
    protocol_version = "HTTP/1.1"
    # Seconds a connection may sit idle (keep-alive, a stalled body) before its thread is freed.
    timeout = 300
    server_version = "synth-gateway"
    sys_version = ""

    # ---- plumbing ---------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # one JSON access-log line per request instead (in _dispatch)

    def do_GET(self) -> None:  # noqa: N802 - stdlib names
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        self.gateway._request_started()
        try:
            self._answer()
        finally:
            self.gateway._request_ended()

    def _answer(self) -> None:
        started = time.perf_counter()
        self._status = 0
        self._route_label = "other"
        url = urllib.parse.urlsplit(self.path)
        self._query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        path = url.path
        self._request_id = (self.headers.get("x-request-id") or "").strip()[:64] or uuid.uuid4().hex[:16]
        # Until a handler reads it all, a request body makes the connection unusable after an error.
        length = (self.headers.get("Content-Length") or "0").strip()
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        self._body_unread = chunked or length not in ("", "0")
        if not length.isdigit():
            self._status = 0
            self._send_error(HttpError("INVALID_ARGUMENT", "Content-Length must be a number of bytes"))
            self.close_connection = True
            return
        try:
            self._serve(path)
        except HttpError as err:
            err.request_id = err.request_id or self._request_id
            self._send_error(err)
        except _ClientGone:
            self.close_connection = True
            self._status = self._status or 499
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self._status = self._status or 499
        except Exception:  # noqa: BLE001 - never a traceback to the client
            log.exception("unhandled error in HTTP handler", extra={"request_id": self._request_id})
            self._send_error(
                HttpError(
                    "INTERNAL",
                    f"internal error; the gateway log has the details (request id {self._request_id})",
                    request_id=self._request_id,
                )
            )
        finally:
            if self._body_unread:
                self.close_connection = True
            elapsed = time.perf_counter() - started
            m = self.gateway.metrics
            m.requests.labels(self.command, self._route_label, str(self._status)).inc()
            m.seconds.labels(self.command, self._route_label).observe(elapsed)
            log.info(
                "http request",
                extra={
                    "method": self.command,
                    "route": self._route_label,
                    "status": self._status,
                    "seconds": round(elapsed, 4),
                    "request_id": self._request_id,
                },
            )

    def _check_front_door(self) -> None:
        """Refuse what a web page on another site could make a browser send: a
        loopback gateway answers only to loopback host names (DNS rebinding
        points another name at 127.0.0.1), and a request that changes something
        must come from this gateway's own page when a browser says where it
        comes from (Origin)."""
        host = (self.headers.get("Host") or "").strip().lower()
        if self.gateway.loopback and not _is_loopback(_host_name(host)):
            raise HttpError(
                "PERMISSION_DENIED",
                f"this gateway listens on a loopback address and answers only to localhost, not to Host {host!r}",
                reason="HOST_NOT_ALLOWED",
            )
        origin = (self.headers.get("Origin") or "").strip().lower()
        if origin and self.command not in ("GET", "HEAD") and urllib.parse.urlsplit(origin).netloc != host:
            raise HttpError(
                "PERMISSION_DENIED",
                f"a request from another site (Origin {origin!r}) may not change anything here",
                reason="CROSS_ORIGIN",
            )

    def _serve(self, path: str) -> None:
        self._check_front_door()
        if self.command in ("GET", "HEAD"):
            if path in _PAGES:
                self._route_label = path
                self._send_file(_PAGES[path])
                return
            if path.startswith("/static/"):
                self._route_label = "/static/"
                self._send_file(path.removeprefix("/static/"))
                return
            if path in ("/v1/openapi.json", "/openapi.json"):
                self._route_label = "/v1/openapi.json"
                self._send_json(200, self.gateway.openapi)
                return
            if path == "/healthz":
                self._route_label = path
                self._send_json(200, {"status": "SERVING", "backends": self.gateway.backends.health(timeout=1.0)})
                return
            if path == "/v1/info":
                # Public: what the web page needs before it has a key.
                self._route_label = path
                keys = self.gateway.keys
                self._send_json(
                    200,
                    {
                        "auth_required": keys.enabled,
                        "authenticated": keys.check_headers(self._lower_headers()).ok,
                        "max_upload_bytes": self.gateway.settings.max_upload_bytes,
                    },
                )
                return
        route, params, allowed = match(self.command, path)
        if route is None:
            if allowed:
                raise HttpError(
                    "UNIMPLEMENTED",
                    f"{self.command} is not allowed on {path}; use {', '.join(allowed)}",
                    reason="METHOD_NOT_ALLOWED",
                )
            raise HttpError("NOT_FOUND", f"no such endpoint: {self.command} {path}", reason="NO_SUCH_ROUTE")
        self._route_label = route.pattern
        self._authenticate()
        if route.kind == "upload":
            self._upload(route)
        elif route.kind == "events":
            self._watch(route, params)
        elif route.kind == "download":
            self._download(route, params)
        elif route.kind == "evaluate":
            self._evaluate(route, params)
        else:
            self._unary(route, params)

    def _lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _authenticate(self) -> None:
        result = self.gateway.keys.check_headers(self._lower_headers())
        if not result.ok:
            log.warning("unauthenticated HTTP request refused", extra={"reason": result.reason})
            raise HttpError("UNAUTHENTICATED", result.reason, reason="API_KEY_INVALID")

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-request-id", self._request_id),)

    # ---- responses --------------------------------------------------------------
    def _start_response(self, status: int, content_type: str, length: int | None, extra: dict[str, str]) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Request-Id", self._request_id)
        for key, value in {**_SECURITY_HEADERS, **extra}.items():
            self.send_header(key, value)
        self.end_headers()

    def _send_bytes(self, status: int, content_type: str, data: bytes, extra: dict[str, str] | None = None) -> None:
        self._start_response(status, content_type, len(data), extra or {})
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body, indent=1).encode()
        self._send_bytes(status, "application/json", data, {"Cache-Control": "no-store", **(extra or {})})

    def _send_error(self, err: HttpError) -> None:
        if self._status:
            # The response had started (a stream): all we can do is end the connection.
            self.close_connection = True
            return
        extra = {}
        if err.status == 401:
            extra["WWW-Authenticate"] = 'Bearer realm="synth"'
        if self._body_unread:
            # The rest of the body was never read: the connection cannot be reused.
            self.close_connection = True
            extra["Connection"] = "close"
        if err.status >= 500 and err.code != "UNIMPLEMENTED":
            log.warning("HTTP request failed", extra={"status": err.status, "grpc_code": err.code})
        try:
            self._send_json(err.status, err.body(), extra)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_file(self, name: str) -> None:
        root = WEB_DIR.resolve()
        target = (root / name).resolve()
        if root not in target.parents or not target.is_file():
            raise HttpError("NOT_FOUND", f"no such file: {name}")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
            kind += "; charset=utf-8"
        self._send_bytes(200, kind, target.read_bytes(), {"Cache-Control": "no-cache"})

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ---- request bodies ---------------------------------------------------------
    def _read_json_body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if not length and not chunked:
            return {}
        media = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if media != "application/json" and length != "0":
            # text/plain and form bodies are what a cross-site form can send without asking
            raise HttpError(
                "INVALID_ARGUMENT",
                "a JSON body must be sent with Content-Type: application/json",
                reason="UNSUPPORTED_MEDIA_TYPE",
            )
        reader = _BodyReader(self.rfile, int(length) if length else None, chunked, _MAX_JSON_BODY)
        if reader.declared_too_large:
            raise HttpError("RESOURCE_EXHAUSTED", f"JSON bodies are limited to {_MAX_JSON_BODY} bytes")
        try:
            raw = b"".join(iter(lambda: reader.read(65536), b""))
        except _TooLarge:
            raise HttpError("RESOURCE_EXHAUSTED", f"JSON bodies are limited to {_MAX_JSON_BODY} bytes") from None
        self._body_unread = False
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError("INVALID_ARGUMENT", f"the body is not valid JSON: {exc}", reason="BAD_JSON") from None
        except RecursionError:
            raise _too_deep() from None
        if not isinstance(body, dict):
            raise HttpError("INVALID_ARGUMENT", "the body must be a JSON object", reason="BAD_JSON")
        return body

    def _request_message(self, route: Route, params: dict[str, str]) -> Message:
        cls = _message_class(route.method.input_type)
        body = self._read_json_body() if route.body else {}
        for name in route.query:
            values = self._query.get(name)
            if values:
                body[name] = _query_value(cls.DESCRIPTOR.fields_by_name[name], values)
        body.update(params)
        message = cls()
        try:
            json_format.ParseDict(body, message)
        except json_format.ParseError as exc:
            raise HttpError("INVALID_ARGUMENT", str(exc), reason="BAD_REQUEST_FIELDS") from None
        except RecursionError:
            raise _too_deep() from None
        return message

    # ---- unary ------------------------------------------------------------------
    def _stub_call(self, route: Route, kind: str) -> Any:
        channel = self.gateway.backends.channel(route.method.backend)
        cls_in = _message_class(route.method.input_type)
        cls_out = _message_class(route.method.output_type)
        factory = getattr(channel, kind)
        return factory(  # type: ignore[no-any-return]
            route.rpc, request_serializer=cls_in.SerializeToString, response_deserializer=cls_out.FromString
        )

    def _rpc_error(self, route: Route, err: grpc.RpcError) -> HttpError:
        code, message, _ = backend_error(err, self.gateway.backends.describe(route.method.backend))
        out = HttpError.from_rpc_error(err, message)
        out.request_id = out.request_id or self._request_id
        return out

    def _unary(self, route: Route, params: dict[str, str]) -> None:
        request = self._request_message(route, params)
        call = self._stub_call(route, "unary_unary")
        try:
            response = call(request, timeout=self.gateway.settings.backend_timeout_seconds, metadata=self._metadata())
        except grpc.RpcError as err:
            raise self._rpc_error(route, err) from None
        self._send_json(200, message_to_json(response))

    # ---- upload -----------------------------------------------------------------
    def _upload(self, route: Route) -> None:
        limit = self.gateway.settings.max_upload_bytes
        content_type = self.headers.get("Content-Type") or "application/octet-stream"
        length_header = self.headers.get("Content-Length")
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if length_header is None and not chunked:
            raise HttpError("INVALID_ARGUMENT", "send the file as the body (Content-Length or chunked)")
        multipart = content_type.lower().startswith("multipart/form-data")
        length = int(length_header) if length_header else None
        too_large = HttpError(
            "RESOURCE_EXHAUSTED",
            f"the upload is larger than the limit of {limit} bytes ({limit / 1e6:.3g} MB)",
            reason="UPLOAD_TOO_LARGE",
        )
        slack = _MULTIPART_SLACK if multipart else 0
        if length is not None and length > limit + slack:
            raise too_large
        reader = _BodyReader(self.rfile, length, chunked, limit + slack)
        fields: dict[str, list[str]] = {k: list(v) for k, v in self._query.items()}
        if multipart:
            boundary = _param(content_type, "boundary")
            if not boundary:
                raise HttpError("INVALID_ARGUMENT", "multipart/form-data without a boundary")
            parts = _Multipart(reader.read, boundary.encode())
            body: Iterator[bytes] | None = None
            filename = ""
            try:
                while (headers := parts.next_part()) is not None:
                    disposition = headers.get("content-disposition", "")
                    name = _param(disposition, "name", "content-disposition") or ""
                    if name == "file" or _param(disposition, "filename", "content-disposition"):
                        filename = _param(disposition, "filename", "content-disposition") or ""
                        body = parts.part_body()
                        break
                    value = b"".join(parts.part_body())
                    if len(value) > 64 * 1024:
                        raise HttpError("INVALID_ARGUMENT", f"form field {name!r} is too long")
                    fields.setdefault(name, []).append(value.decode("utf-8", "replace"))
            except _Truncated:
                raise HttpError("INVALID_ARGUMENT", "the multipart body ended early") from None
            except _TooLarge:
                raise too_large from None
            if body is None:
                raise HttpError(
                    "INVALID_ARGUMENT",
                    "no file in the form: send it in a part named 'file' (after the other fields)",
                    violations=[{"field": "file", "description": "missing"}],
                )
            fields.setdefault("display_name", [filename or "upload.csv"])
        else:
            body = _read_all(reader.read)
        header = _upload_header(fields, None if multipart else length)  # a form's length is not the file's
        state: dict[str, Any] = {"error": None, "sent": 0}
        future_box: list[Any] = []
        ready = threading.Event()

        def fail(error: HttpError) -> None:
            # Cancel, never half-close: a half-close would commit a truncated table.
            state["error"] = error
            ready.wait(10)
            future_box[0].cancel()

        def messages() -> Iterator[datasets_pb2.UploadDatasetRequest]:
            yield datasets_pb2.UploadDatasetRequest(header=header)
            buffer = bytearray()
            try:
                for piece in body:
                    buffer += piece
                    state["sent"] += len(piece)
                    if state["sent"] > limit:
                        raise _TooLarge()
                    while len(buffer) >= UPLOAD_CHUNK:
                        yield datasets_pb2.UploadDatasetRequest(chunk=bytes(buffer[:UPLOAD_CHUNK]))
                        del buffer[:UPLOAD_CHUNK]
            except _TooLarge:
                fail(too_large)
                return
            except (_Truncated, OSError):
                fail(_interrupted())
                return
            except HttpError as err:
                fail(err)
                return
            if buffer:
                yield datasets_pb2.UploadDatasetRequest(chunk=bytes(buffer))
            # The body arrived whole: say so, or the trainer could store a cut-off stream.
            yield datasets_pb2.UploadDatasetRequest(end=datasets_pb2.UploadDatasetEnd(total_bytes=state["sent"]))

        call = self._stub_call(route, "stream_unary")
        future = call.future(
            messages(), timeout=self.gateway.settings.upload_timeout_seconds, metadata=self._metadata()
        )
        future_box.append(future)
        ready.set()
        try:
            response = future.result()
        except (grpc.RpcError, grpc.FutureCancelledError) as err:
            if state["error"] is not None:
                raise state["error"] from None
            if isinstance(err, grpc.RpcError):
                raise self._rpc_error(route, err) from None
            raise _interrupted() from None
        self._body_unread = not reader.finished
        if multipart and not reader.finished:
            # Drain the closing boundary so the connection stays usable.
            for _ in iter(lambda: reader.read(65536), b""):
                pass
            self._body_unread = False
        self._send_json(200, message_to_json(response))

    # ---- streams ----------------------------------------------------------------
    def _open_stream(self, route: Route, request: Message) -> _Pump:
        call = self._stub_call(route, "unary_stream")(
            request, timeout=self.gateway.settings.stream_timeout_seconds, metadata=self._metadata()
        )
        return _Pump(call)

    def _first(self, route: Route, pump: _Pump, wait: float | None) -> tuple[str, Any]:
        """The stream's first item, waiting at most ``wait`` seconds (None: as
        long as it takes): errors before it become ordinary HTTP errors."""
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            item = pump.get(_POLL_SECONDS)
            if item is not None:
                if item[0] == "error":
                    raise self._rpc_error(route, item[1])
                return item
            self._check_connected(pump)
            if deadline is not None and time.monotonic() > deadline:
                return ("idle", None)

    def _check_connected(self, pump: _Pump) -> None:
        if _peer_closed(self.connection):
            pump.cancel()
            raise _ClientGone()

    def _events(self, route: Route, pump: _Pump, first: tuple[str, Any]) -> Iterator[tuple[str, Any]]:
        """Items after the response has started; heartbeats while idle."""
        if first[0] != "idle":
            yield first
        last_write = time.monotonic()
        while True:
            item = pump.get(_POLL_SECONDS)
            if item is None:
                self._check_connected(pump)
                if time.monotonic() - last_write > _HEARTBEAT_SECONDS:
                    yield ("heartbeat", None)
                    last_write = time.monotonic()
                continue
            last_write = time.monotonic()
            yield item
            if item[0] in ("end", "error"):
                return

    def _sse_headers(self) -> None:
        self._start_response(200, "text/event-stream; charset=utf-8", None, {"Cache-Control": "no-store"})

    def _sse(self, event: str, data: Any, event_id: int | None = None) -> None:
        text = ""
        if event_id is not None:
            text += f"id: {event_id}\n"
        text += f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        self._chunk(text.encode())

    def _stream_failed(self, route: Route, err: grpc.RpcError) -> None:
        self._sse("error", self._rpc_error(route, err).body())

    def _watch(self, route: Route, params: dict[str, str]) -> None:
        request = self._request_message(route, params)
        last_id = (self.headers.get("Last-Event-ID") or "").strip()
        if last_id.isdigit() and int(last_id) > request.after_sequence:  # type: ignore[attr-defined]
            request.after_sequence = int(last_id)  # type: ignore[attr-defined]
        pump = self._open_stream(route, request)
        try:
            first = self._first(route, pump, wait=2.0)
            self._sse_headers()
            for kind, item in self._events(route, pump, first):
                if kind == "heartbeat":
                    self._chunk(b": keep-alive\n\n")
                elif kind == "message":
                    event = item.WhichOneof("event") or "unknown"
                    self._sse(event, message_to_json(item), item.sequence)
                    if event in _TERMINAL_EVENTS:
                        break
                elif kind == "error":
                    self._stream_failed(route, item)
                    break
                else:
                    break
            self._end_chunks()
        finally:
            pump.cancel()

    def _evaluate(self, route: Route, params: dict[str, str]) -> None:
        request = self._request_message(route, params)
        pump = self._open_stream(route, request)
        wants_events = "text/event-stream" in (self.headers.get("Accept") or "")
        try:
            if not wants_events:
                final = None
                while True:
                    item = self._first(route, pump, wait=None)
                    if item[0] == "end":
                        break
                    final = item[1]
                if final is None:
                    raise HttpError("INTERNAL", "the evaluator ended without a report")
                self._send_json(200, message_to_json(final))
                return
            first = self._first(route, pump, wait=2.0)
            self._sse_headers()
            for kind, item in self._events(route, pump, first):
                if kind == "heartbeat":
                    self._chunk(b": keep-alive\n\n")
                elif kind == "message":
                    self._sse(item.WhichOneof("event") or "unknown", message_to_json(item), item.sequence)
                elif kind == "error":
                    self._stream_failed(route, item)
                    break
                else:
                    break
            self._end_chunks()
        finally:
            pump.cancel()

    def _download(self, route: Route, params: dict[str, str]) -> None:
        from synth.v1 import sampling_pb2

        request = self._request_message(route, params)
        pump = self._open_stream(route, request)
        try:
            kind, first = self._first(route, pump, wait=None)
            if kind == "end":
                raise HttpError("INTERNAL", "the sampler ended the stream without a header")
            header = first.header if first.WhichOneof("part") == "header" else None
            arrow = header is not None and header.format == sampling_pb2.OUTPUT_FORMAT_ARROW_IPC
            model = params.get("model_id", "model")
            extra = {
                "Content-Disposition": f'attachment; filename="{model}.{"arrows" if arrow else "csv"}"',
                "Cache-Control": "no-store",
            }
            if header is not None:
                extra["X-Synth-Seed"] = str(header.seed)
                extra["X-Synth-Row-Count"] = str(header.row_count)
            self._start_response(
                200, "application/vnd.apache.arrow.stream" if arrow else "text/csv; charset=utf-8", None, extra
            )
            for item_kind, item in self._events(route, pump, (kind, first)):
                if item_kind == "message":
                    if item.WhichOneof("part") == "chunk":
                        self._chunk(item.chunk.data)
                elif item_kind == "error":
                    # Leave the chunked body unterminated: the client sees a failed transfer.
                    code, message, _ = backend_error(item, self.gateway.backends.describe(route.method.backend))
                    log.warning("sample stream failed mid-way", extra={"grpc_code": code.name})
                    self.close_connection = True
                    return
                elif item_kind == "end":
                    break
            self._end_chunks()
        finally:
            pump.cancel()


# ---- helpers ----------------------------------------------------------------------
def _is_loopback(name: str) -> bool:
    name = name.strip().lower()
    return name in ("localhost", "::1") or name.startswith("127.")


def _host_name(host: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _too_deep() -> HttpError:
    # the parsers recurse once per level; no request of this API nests more than a few
    return HttpError("INVALID_ARGUMENT", "the JSON body is nested too deeply", reason="BAD_JSON")


def _interrupted() -> HttpError:
    return HttpError("CANCELLED", "the upload was interrupted before the end of the body; nothing was stored")


def _param(value: str, name: str, header: str = "content-type") -> str | None:
    msg = email.message.Message()
    msg[header] = value
    found = msg.get_param(name, header=header)
    if isinstance(found, tuple):
        found = email.utils.collapse_rfc2231_value(found)
    return None if found is None else str(found)


def _query_value(field: FieldDescriptor, values: list[str]) -> Any:
    value = values[-1]
    if field.type in (FieldDescriptor.TYPE_BOOL,):
        return value.lower() in ("1", "true", "yes", "on")
    if field.cpp_type in (
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    ):
        try:
            return int(value)
        except ValueError:
            raise HttpError(
                "INVALID_ARGUMENT",
                f"query parameter {field.name} must be an integer",
                violations=[{"field": field.name, "description": "not an integer"}],
            ) from None
    return value


_KIND_NAMES = {
    name.removeprefix("COLUMN_KIND_").lower(): value
    for name, value in common_pb2.ColumnKind.items()
    if value != common_pb2.COLUMN_KIND_UNSPECIFIED
}


def _upload_header(fields: dict[str, list[str]], length: int | None) -> datasets_pb2.UploadDatasetHeader:
    def one(name: str) -> str:
        values = fields.get(name) or [""]
        return values[-1].strip()

    header = datasets_pb2.UploadDatasetHeader(
        display_name=one("display_name") or "upload.csv",
        encoding=one("encoding"),
        missing_markers=[m for m in fields.get("missing_marker", [])],
        total_bytes=length or 0,
        request_id=one("request_id"),
        expect_end=True,  # messages() sends the end message once the whole body is read
    )
    for item in fields.get("kind", []):
        column, sep, kind = item.partition("=")
        value = _KIND_NAMES.get(kind.strip().lower().removeprefix("column_kind_"))
        if not sep or value is None:
            raise HttpError(
                "INVALID_ARGUMENT",
                f"kind {item!r}: expected COLUMN=KIND with KIND one of {', '.join(_KIND_NAMES)}",
                violations=[{"field": "kind", "description": "expected COLUMN=KIND"}],
            )
        header.kind_overrides[column.strip()] = value
    return header


def _peer_closed(sock: socket.socket) -> bool:
    """True when the client has closed its side (readable with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Pump:
    """Reads a gRPC response stream on its own thread into a small queue, so the
    HTTP thread can wait with a timeout (heartbeats, disconnect checks)."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=8)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-pump", daemon=True)
        self._thread.start()

    def _put(self, item: tuple[str, Any]) -> None:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            for message in self._call:
                self._put(("message", message))
            self._put(("end", None))
        except grpc.RpcError as err:
            self._put(("error", err))

    def get(self, timeout: float) -> tuple[str, Any] | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def cancel(self) -> None:
        self._stopped.set()
        self._call.cancel()


class _TooLarge(Exception):
    pass


class _Truncated(Exception):
    pass


class _BodyReader:
    """A request body from ``rfile``: Content-Length or chunked, counted
    against ``limit`` (raises _TooLarge), _Truncated if the client stops early."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool, limit: int) -> None:
        self._rfile = rfile
        self._remaining = length if not chunked else None
        self._chunked = chunked
        self._chunk_left = 0
        self._limit = limit
        self._count = 0
        self.finished = length == 0 and not chunked
        self.declared_too_large = length is not None and not chunked and length > limit

    def read(self, size: int) -> bytes:
        if self.finished:
            return b""
        if self._chunked:
            data = self._read_chunked(size)
        else:
            assert self._remaining is not None
            data = self._rfile.read1(min(size, self._remaining)) if self._remaining else b""
            if not data and self._remaining:
                raise _Truncated()
            self._remaining -= len(data)
            if self._remaining == 0:
                self.finished = True
        self._count += len(data)
        if self._count > self._limit:
            raise _TooLarge()
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise _Truncated()
            try:
                self._chunk_left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError("INVALID_ARGUMENT", "malformed chunked body") from None
            if self._chunk_left == 0:
                while self._rfile.readline(1024).strip():
                    pass  # trailers
                self.finished = True
                return b""
        data = self._rfile.read1(min(size, self._chunk_left))
        if not data:
            raise _Truncated()
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._rfile.readline(8) not in (b"\r\n", b"\n"):
            raise HttpError("INVALID_ARGUMENT", "malformed chunked body")
        return data


def _read_all(read: Callable[[int], bytes]) -> Iterator[bytes]:
    while data := read(256 * 1024):
        yield data


class _Multipart:
    """A streaming multipart/form-data reader: the file part is never held in
    memory whole."""

    def __init__(self, read: Callable[[int], bytes], boundary: bytes) -> None:
        self._read = read
        self._delim = b"\r\n--" + boundary
        self._buf = b"\r\n"  # so the first boundary line matches the delimiter
        for _ in self._until_delimiter():
            pass  # the preamble

    def _fill(self) -> None:
        data = self._read(256 * 1024)
        if not data:
            raise _Truncated()
        self._buf += data

    def _until_delimiter(self) -> Iterator[bytes]:
        keep = len(self._delim) - 1
        while True:
            found = self._buf.find(self._delim)
            if found >= 0:
                if found:
                    yield self._buf[:found]
                self._buf = self._buf[found + len(self._delim) :]
                return
            if len(self._buf) > keep:
                yield self._buf[:-keep]
                self._buf = self._buf[-keep:]
            self._fill()

    def next_part(self) -> dict[str, str] | None:
        """The next part's headers (lower-case names), or None after the last."""
        while len(self._buf) < 2:
            self._fill()
        if self._buf.startswith(b"--"):
            return None
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            if len(self._buf) > 16 * 1024:
                raise HttpError("INVALID_ARGUMENT", "multipart part headers are too long")
            self._fill()
        raw, self._buf = self._buf[:end], self._buf[end + 4 :]
        headers = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return headers

    def part_body(self) -> Iterator[bytes]:
        return self._until_delimiter()


__all__ = ["HttpApi", "HTTPStatus", "message_to_json"]
