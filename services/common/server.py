"""The server factory every service uses.

It adds, around a service's own servicers:
- one interceptor that maps the error tree to gRPC status codes with
  google.rpc details (ErrorInfo, BadRequest), turns unknown exceptions into
  INTERNAL with a fixed message (traceback to the log only), sets the log
  context (rpc, request id) and records the standard ``grpc_server_*`` metrics;
- standard ``grpc.health.v1`` health, NOT_SERVING until :meth:`set_serving`;
- reflection for grpcurl;
- a Prometheus ``/metrics`` HTTP port (always plaintext, for scrapers);
- optional TLS or mutual TLS on the gRPC port (``tls_*`` settings), and an
  optional plaintext port serving only health (``health_port``) for Kubernetes
  probes, which cannot present a client certificate;
- message-size limits and graceful shutdown (SIGTERM drains in-flight calls);
- a bound on open streams (``stream_slots``): a streaming call holds a worker
  thread for its whole life, so without one, as many idle watch streams as
  there are threads would leave none for unary calls and health checks. Past
  the bound a new stream is refused at once with RESOURCE_EXHAUSTED
  (``TOO_MANY_STREAMS``, retry after a second); unary calls always find a thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from services.common import tls
from services.common.errors import ResourceExhausted, SynthError
from services.common.logs import log_context
from services.common.settings import ServerSettings

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_INTERNAL_MESSAGE = "internal error; the server log has the details (search for the request id)"
_MAX_VIOLATIONS = 20
_MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and how to add it: ``add`` is the generated
    ``add_XxxServicer_to_server`` and ``name`` the full service name."""

    servicer: Any
    add: Callable[[Any, grpc.Server], None]
    name: str


class GrpcServerMetrics:
    """The standard gRPC server metric names (as go-grpc-prometheus uses)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter("grpc_server_started_total", "RPCs started on the server.", labels, registry=registry)
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end (streams: the whole stream).",
            labels,
            buckets=(0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 120, 600, 3600),
            registry=registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received_total", "Stream messages received.", labels, registry=registry
        )
        self.msg_sent = Counter("grpc_server_msg_sent_total", "Stream messages sent.", labels, registry=registry)


def error_to_status(err: SynthError) -> grpc.Status:
    """The gRPC status (with google.rpc details) for a domain error."""
    message = err.message if len(err.message) <= _MAX_MESSAGE_CHARS else err.message[:_MAX_MESSAGE_CHARS] + "…"
    status = status_pb2.Status(code=getattr(code_pb2, err.code, code_pb2.UNKNOWN), message=message)
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain="synth.v1", metadata=err.metadata)
    status.details.add().Pack(info)
    if err.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in err.violations[:_MAX_VIOLATIONS]
            ]
        )
        status.details.add().Pack(bad)
    return rpc_status.to_status(status)


def stream_slots(max_workers: int) -> int:
    """Streams a server with ``max_workers`` threads takes at once: a quarter of
    the threads (at least 2) stay free for unary calls."""
    return max(1, max_workers - max(2, max_workers // 4))


class _Interceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: GrpcServerMetrics, slots: int) -> None:
        self._metrics = metrics
        self._slots = threading.BoundedSemaphore(slots)
        self._slot_count = slots

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full = handler_call_details.method  # "/synth.v1.DatasetService/UploadDataset"
        service, _, method = full.lstrip("/").partition("/")
        metadata = dict(handler_call_details.invocation_metadata or ())
        request_id = str(metadata.get(REQUEST_ID_HEADER) or uuid.uuid4().hex[:16])
        kind = _rpc_type(handler)
        labels = (kind, service, method)
        observe = _CallObserver(self._metrics, labels, method, request_id, self._slots, self._slot_count)

        if handler.unary_unary:
            inner_uu = handler.unary_unary
            return grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: observe.unary(lambda: inner_uu(req, ctx), ctx),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            inner_su = handler.stream_unary
            return grpc.stream_unary_rpc_method_handler(
                lambda it, ctx: observe.unary(lambda: inner_su(observe.count_in(it), ctx), ctx, streaming=True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            inner_us = handler.unary_stream
            return grpc.unary_stream_rpc_method_handler(
                lambda req, ctx: observe.stream(lambda: inner_us(req, ctx), ctx),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner_ss = handler.stream_stream
        return grpc.stream_stream_rpc_method_handler(
            lambda it, ctx: observe.stream(lambda: inner_ss(observe.count_in(it), ctx), ctx),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _CallObserver:
    """Wraps one RPC: log context, metrics, and error → status translation."""

    def __init__(
        self,
        metrics: GrpcServerMetrics,
        labels: tuple[str, str, str],
        method: str,
        request_id: str,
        slots: threading.BoundedSemaphore,
        slot_count: int,
    ):
        self.m = metrics
        self.labels = labels
        self.method = method
        self.request_id = request_id
        self._slots = slots
        self._slot_count = slot_count

    @contextlib.contextmanager
    def _stream_slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise ResourceExhausted(
                f"this server has {self._slot_count} streams open, its limit; retry in a second",
                reason="TOO_MANY_STREAMS",
                metadata={"retry_after_seconds": "1"},
            )
        try:
            yield
        finally:
            self._slots.release()

    def count_in(self, iterator: Iterator[Any]) -> Iterator[Any]:
        received = self.m.msg_received.labels(*self.labels)
        for item in iterator:
            received.inc()
            yield item

    def unary(self, call: Callable[[], Any], context: grpc.ServicerContext, *, streaming: bool = False) -> Any:
        """``streaming``: a client stream, which holds a thread as long as it sends, takes a slot."""
        start = self._start(context)
        with log_context(rpc=self.method, request_id=self.request_id):
            try:
                if streaming:
                    with self._stream_slot():
                        return call()
                return call()
            except Exception as exc:  # noqa: BLE001 - every error is translated here
                self._fail(exc, context)
            finally:
                self._finish(start, _code_name(context))

    def stream(self, call: Callable[[], Iterator[Any]], context: grpc.ServicerContext) -> Iterator[Any]:
        start = self._start(context)
        sent = self.m.msg_sent.labels(*self.labels)
        code = "OK"
        with log_context(rpc=self.method, request_id=self.request_id):
            try:
                with self._stream_slot():
                    for item in call():
                        sent.inc()
                        yield item
            except GeneratorExit:
                # The client went away (cancel, deadline) while we were yielding.
                code = "CANCELLED"
                raise
            except Exception as exc:  # noqa: BLE001
                self._fail(exc, context)
            finally:
                if code == "OK":
                    code = _code_name(context)
                    if code == "OK" and not context.is_active():
                        code = "CANCELLED"
                self._finish(start, code)

    def _start(self, context: grpc.ServicerContext) -> float:
        self.m.started.labels(*self.labels).inc()
        context.set_trailing_metadata(((REQUEST_ID_HEADER, self.request_id),))
        return time.perf_counter()

    def _finish(self, start: float, code: str) -> None:
        self.m.handled.labels(*self.labels, code).inc()
        self.m.handling_seconds.labels(*self.labels).observe(time.perf_counter() - start)

    def _fail(self, exc: Exception, context: grpc.ServicerContext) -> None:
        """Translate ``exc`` into an aborted call. Always raises (abort raises)."""
        already = context.code()
        if already not in (None, grpc.StatusCode.OK):
            # The servicer set or aborted with its own status (e.g. the generated
            # UNIMPLEMENTED stubs): end the call with it, without a traceback.
            details = context.details() or already.name
            context.abort(already, details.decode() if isinstance(details, bytes) else details)
        if not context.is_active():
            log.info("client cancelled the call", extra={"grpc_code": "CANCELLED"})
            raise exc
        if isinstance(exc, SynthError):
            level = logging.ERROR if exc.code in ("INTERNAL", "DATA_LOSS") else logging.INFO
            log.log(level, "rpc failed", extra={"grpc_code": exc.code, "reason": exc.reason})
            status = error_to_status(exc)
            context.abort_with_status(_with_trailer(status, (REQUEST_ID_HEADER, self.request_id)))
        log.exception("unhandled error in rpc", extra={"grpc_code": "INTERNAL"})
        context.abort(grpc.StatusCode.INTERNAL, f"{_INTERNAL_MESSAGE} (request id {self.request_id})")
        raise AssertionError("unreachable")  # pragma: no cover


class _Status(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, Any], ...]


def _with_trailer(status: grpc.Status, pair: tuple[str, str]) -> grpc.Status:
    """``status`` with one more trailing metadata entry (the request id)."""
    value = _Status(status.code, status.details, (*status.trailing_metadata, pair))
    return value  # type: ignore[return-value]  # duck-typed like grpc_status's own


def _code_name(context: grpc.ServicerContext) -> str:
    code = context.code()
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    return str(code)


def _rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


class SynthServer:
    """A started-or-startable gRPC server with health, reflection and metrics."""

    def __init__(
        self,
        service_name: str,
        settings: ServerSettings,
        bindings: Sequence[ServiceBinding],
        registry: CollectorRegistry | None = None,
        on_shutdown: Sequence[Callable[[], None]] = (),
        after_drain: Sequence[Callable[[], None]] = (),
        generic_handlers: Sequence[grpc.GenericRpcHandler] = (),
        service_names: Sequence[str] = (),
    ) -> None:
        """``generic_handlers`` serve calls no binding has (the gateway's
        pass-through); ``service_names`` are the services they serve, listed in
        reflection and health like the bindings' own."""
        self.service_name = service_name
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self._on_shutdown = list(on_shutdown)
        self._after_drain = list(after_drain)
        self._bindings = list(bindings)
        limit = settings.max_message_bytes
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix=service_name),
            interceptors=[_Interceptor(GrpcServerMetrics(self.registry), stream_slots(settings.max_workers))],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # Let clients keep long watch streams alive with pings.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                *_connection_age_options(settings.max_connection_age_seconds),
            ],
        )
        for binding in self._bindings:
            binding.add(binding.servicer, self.server)
        if generic_handlers:
            self.server.add_generic_rpc_handlers(tuple(generic_handlers))
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [b.name for b in self._bindings]
        names += [n for n in service_names if n not in names]
        self._names = names
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        for name in ["", *names]:
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        credentials = tls.server_credentials(
            settings.tls_cert_file,
            settings.tls_key_file,
            settings.tls_client_ca_file,
            setting=f"SYNTH_{service_name.upper()}_TLS_",
        )
        # "off", "tls" or "mutual" (client certificates required).
        self.tls = "off" if credentials is None else "mutual" if settings.tls_client_ca_file else "tls"
        bind = f"{settings.host}:{settings.port}"
        if credentials is None:
            self.port = self.server.add_insecure_port(bind)
        else:
            self.port = self.server.add_secure_port(bind, credentials)
        if self.port == 0:
            raise RuntimeError(f"could not bind {settings.host}:{settings.port}")
        # Probes: the same health servicer (so the same statuses) on a plaintext
        # port that serves nothing else.
        self.health_port: int | None = None
        self._health_server: grpc.Server | None = None
        if settings.health_port >= 0:
            self._health_server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{service_name}-health")
            )
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
            self.health_port = self._health_server.add_insecure_port(f"{settings.host}:{settings.health_port}")
            if self.health_port == 0:
                raise RuntimeError(f"could not bind the health port {settings.host}:{settings.health_port}")
        self.metrics_port: int | None = None
        self._metrics_http: Any = None
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def start(self) -> SynthServer:
        self.server.start()
        if self._health_server is not None:
            self._health_server.start()
        if self.settings.metrics_port >= 0:
            http_server, _thread = start_http_server(
                self.settings.metrics_port, addr=self.settings.host, registry=self.registry
            )
            self._metrics_http = http_server
            self.metrics_port = http_server.server_port
        log.info(
            "listening",
            extra={
                "address": self.address,
                "tls": self.tls,
                "metrics_port": self.metrics_port,
                "health_port": self.health_port,
            },
        )
        return self

    def set_serving(self) -> None:
        """Report SERVING: call once the service can answer (store opened, jobs resumed)."""
        for name in ["", *self._names]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, run the shutdown hooks (e.g. the trainer's checkpoint,
        which also ends its watch streams), let in-flight calls finish for
        ``grace`` seconds, then run the ``after_drain`` hooks (e.g. the gateway
        closing its backend channels, which its in-flight calls still use) and close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        grace = self.settings.grace_seconds if grace is None else grace
        done = self.server.stop(grace)
        for hook in self._on_shutdown:
            try:
                hook()
            except Exception:  # noqa: BLE001 - one failing hook must not block the others
                log.exception("shutdown hook failed")
        done.wait(grace + 5)
        for hook in self._after_drain:
            try:
                hook()
            except Exception:  # noqa: BLE001
                log.exception("after-drain hook failed")
        if self._health_server is not None:
            # Last: probes saw NOT_SERVING for the whole drain.
            self._health_server.stop(0)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        log.info("stopped")


def _connection_age_options(seconds: float) -> list[tuple[str, int]]:
    if seconds <= 0:
        return []
    # No grace limit: a long sampling stream or training watch is never cut,
    # only new calls move to a new connection.
    return [("grpc.max_connection_age_ms", int(seconds * 1000))]


class SignalStop:
    """Waits for SIGTERM or SIGINT.

    Install it before the process says it is serving: a supervisor that stops
    it right after must get a graceful exit (status 0), not the default
    handler's kill. The handler only writes the signal number to a pipe. A
    handler that takes a lock (``Event.set``, logging) can deadlock: Python runs
    it in the main thread, which may hold that very lock inside ``Event.wait``
    when the signal lands (CI saw a SIGTERM right after "serving" hang).
    """

    def __init__(self, signums: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        for signum in signums:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        try:
            os.write(self._write_fd, bytes([signum]))
        except BlockingIOError:  # the pipe is full of earlier signals: one is enough
            pass

    def wait(self) -> str:
        """Block until a signal arrives; log it and return its name."""
        name = signal.Signals(os.read(self._read_fd, 1)[0]).name
        log.info("shutting down", extra={"signal": name})
        return name


def stop_on_signals() -> SignalStop:
    """A :class:`SignalStop` for SIGTERM and SIGINT."""
    return SignalStop()
