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
- message-size limits and graceful shutdown (SIGTERM drains in-flight calls).

It serves with ``grpc.aio``, its event loop in a thread of its own, so the API
stays synchronous. Async behaviours (health, reflection, the trainer's
WatchTraining) run on the loop and hold no thread while they wait. Sync ones
(every other servicer) run in a pool of ``max_workers`` threads; a sync
stream's ``next()`` is one pool call, so a slow reader holds no thread between
messages.

Open streams are bounded, and one past a bound is refused at once with
RESOURCE_EXHAUSTED (``TOO_MANY_STREAMS``, retry after a second):
``max_streams`` in all (each costs memory), and ``stream_slots(max_workers)``
for sync streams, whose ``next()`` may wait long in a thread (a gateway relay
waiting for its backend, an upload waiting for its next chunk): a quarter of
the threads stay free, so unary calls always find one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from services.common import tls
from services.common.errors import ResourceExhausted, SynthError
from services.common.logs import bind
from services.common.rpc_status import status_proto
from services.common.settings import ServerSettings

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_INTERNAL_MESSAGE = "internal error; the server log has the details (search for the request id)"
_END = object()  # the end of a sync iterator, as returned by a pool call


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and how to add it: ``add`` is the generated
    ``add_XxxServicer_to_server`` and ``name`` the full service name."""

    servicer: Any
    add: Callable[[Any, Any], None]
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
    status = status_proto(
        err.code,
        err.message,
        reason=err.reason,
        metadata=err.metadata,
        violations=[(v.field, v.description) for v in err.violations],
    )
    return rpc_status.to_status(status)


def stream_slots(max_workers: int) -> int:
    """Sync streams a server with ``max_workers`` threads takes at once: a
    quarter of the threads (at least 2) stay free for unary calls."""
    return max(1, max_workers - max(2, max_workers // 4))


class StreamBounds:
    """Counts open streams against the two bounds. Used on the server's event
    loop only, so it needs no lock."""

    def __init__(self, max_streams: int, sync_streams: int) -> None:
        self.max_streams = max_streams
        self.sync_streams = sync_streams
        self.open = 0
        self.open_sync = 0

    @contextlib.contextmanager
    def hold(self, *, sync: bool) -> Iterator[None]:
        if self.open >= self.max_streams:
            raise _too_many(f"this server has {self.open} streams open, its limit")
        if sync and self.open_sync >= self.sync_streams:
            raise _too_many(f"this server has {self.open_sync} streams open that each hold a thread, its limit")
        self.open += 1
        self.open_sync += sync
        try:
            yield
        finally:
            self.open -= 1
            self.open_sync -= sync


def _too_many(message: str) -> ResourceExhausted:
    return ResourceExhausted(
        f"{message}; retry in a second", reason="TOO_MANY_STREAMS", metadata={"retry_after_seconds": "1"}
    )


class _Interceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: GrpcServerMetrics, bounds: StreamBounds, pool: futures.ThreadPoolExecutor) -> None:
        self._metrics = metrics
        self._bounds = bounds
        self._pool = pool

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        full = handler_call_details.method  # "/synth.v1.DatasetService/UploadDataset"
        service, _, method = full.lstrip("/").partition("/")
        metadata = dict(handler_call_details.invocation_metadata or ())
        request_id = str(metadata.get(REQUEST_ID_HEADER) or uuid.uuid4().hex[:16])
        labels = (_rpc_type(handler), service, method)
        # Every behaviour gets an async wrapper, so grpc.aio hands it the real
        # context; sync behaviours go to the pool from there (see _SyncContext).
        call = _Call(self._metrics, labels, method, request_id, self._bounds, self._pool, handler)
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if not handler.response_streaming:
            factory = (
                grpc.stream_unary_rpc_method_handler
                if handler.request_streaming
                else grpc.unary_unary_rpc_method_handler
            )
            return factory(call.unary, **codec)
        factory = (
            grpc.stream_stream_rpc_method_handler if handler.request_streaming else grpc.unary_stream_rpc_method_handler
        )
        if inspect.iscoroutinefunction(call.behaviour):  # it writes itself (aio health's Watch)
            return factory(call.unary, **codec)
        return factory(call.stream, **codec)


class _Call:
    """One RPC: log context, stream bounds, metrics, and error → status translation."""

    def __init__(
        self,
        metrics: GrpcServerMetrics,
        labels: tuple[str, str, str],
        method: str,
        request_id: str,
        bounds: StreamBounds,
        pool: futures.ThreadPoolExecutor,
        handler: grpc.RpcMethodHandler,
    ) -> None:
        self.m = metrics
        self.labels = labels
        self.method = method
        self.request_id = request_id
        self._bounds = bounds
        self._pool = pool
        self.behaviour = handler.unary_unary or handler.stream_unary or handler.unary_stream or handler.stream_stream
        self.is_async = inspect.iscoroutinefunction(self.behaviour) or inspect.isasyncgenfunction(self.behaviour)
        self.client_stream = bool(handler.request_streaming)
        self.streaming = bool(handler.request_streaming or handler.response_streaming)

    async def unary(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """A call with one response, or a stream its behaviour writes itself."""
        start = self._start(context)
        code = ""
        sync: _SyncContext | None = None
        try:
            with self._bounds.hold(sync=not self.is_async) if self.streaming else contextlib.nullcontext():
                if self.is_async:
                    return await self.behaviour(self._requests(request), context)
                sync = _SyncContext(context, self._pool)
                return await sync.call(self.behaviour, self._requests(request, sync), sync)
        except asyncio.CancelledError:  # the client went away (cancel, deadline) or the server stopped
            code = "CANCELLED"
            raise
        except grpc.aio.AbortError:  # the behaviour aborted: its status is sent
            raise
        except Exception as exc:  # noqa: BLE001 - every error is translated here
            await self._fail(exc, context)
        finally:
            if sync is not None:
                sync.end()
            self._finish(start, code or _code_name(context))

    async def stream(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        """A call with streamed responses, written here (grpc.aio's reader/writer
        API): the whole call stays in one task, and a write to a client that has
        gone ends it as cancelled instead of logging grpc's write error."""
        start = self._start(context)
        sent = self.m.msg_sent.labels(*self.labels)
        code = ""
        sync: _SyncContext | None = None
        try:
            with self._bounds.hold(sync=not self.is_async):
                if self.is_async:
                    responses = self.behaviour(self._requests(request), context)
                else:
                    sync = _SyncContext(context, self._pool)
                    responses = sync.iterate(self.behaviour, self._requests(request, sync))
                async with contextlib.aclosing(responses):
                    async for item in responses:
                        try:
                            await context.write(item)
                        except grpc.aio.AbortError:
                            raise
                        except grpc.aio.BaseError as exc:  # the call is over: cancelled, past its deadline, stopped
                            raise asyncio.CancelledError() from exc
                        sent.inc()
        except asyncio.CancelledError:  # the client went away (cancel, deadline) or the server stopped
            code = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await self._fail(exc, context)
        finally:
            if sync is not None:
                sync.end()
            self._finish(start, code or _code_name(context))

    def _requests(self, request: Any, sync: _SyncContext | None = None) -> Any:
        """The request, or for a client stream the counted messages (a plain
        iterator for a sync behaviour)."""
        if not self.client_stream:
            return request
        received = self.m.msg_received.labels(*self.labels)
        if sync is not None:
            return sync.requests(request, received.inc)

        async def counted() -> AsyncIterator[Any]:
            async for item in request:
                received.inc()
                yield item

        return counted()

    def _start(self, context: grpc.aio.ServicerContext) -> float:
        # Each call runs in its own asyncio task (its own copy of the context
        # variables), so the ids are bound for this call only.
        bind(rpc=self.method, request_id=self.request_id)
        self.m.started.labels(*self.labels).inc()
        context.set_trailing_metadata(((REQUEST_ID_HEADER, self.request_id),))
        return time.perf_counter()

    def _finish(self, start: float, code: str) -> None:
        self.m.handled.labels(*self.labels, code).inc()
        self.m.handling_seconds.labels(*self.labels).observe(time.perf_counter() - start)

    async def _fail(self, exc: Exception, context: grpc.aio.ServicerContext) -> NoReturn:
        """End the call with the status for ``exc``. Always raises (abort raises)."""
        if context.done():  # a status went out already (an abort the behaviour swallowed)
            raise exc
        already = context.code()
        if already not in (None, grpc.StatusCode.OK):
            # The servicer set its own status (e.g. the generated UNIMPLEMENTED
            # stubs): end the call with it, without a traceback.
            details = context.details() or getattr(already, "name", str(already))
            await context.abort(already, details.decode() if isinstance(details, bytes) else details)
        if isinstance(exc, SynthError):
            level = logging.ERROR if exc.code in ("INTERNAL", "DATA_LOSS") else logging.INFO
            log.log(level, "rpc failed", extra={"grpc_code": exc.code, "reason": exc.reason})
            status = error_to_status(exc)
            await context.abort_with_status(_with_trailer(status, (REQUEST_ID_HEADER, self.request_id)))
        log.error("unhandled error in rpc", exc_info=exc, extra={"grpc_code": "INTERNAL"})
        await context.abort(grpc.StatusCode.INTERNAL, f"{_INTERNAL_MESSAGE} (request id {self.request_id})")
        raise AssertionError("unreachable")  # pragma: no cover


class _CallEnded(Exception):
    """A sync behaviour used the context of a call that has ended."""


class _SyncContext:
    """The ``grpc.ServicerContext`` a sync behaviour gets, over grpc.aio's.

    Its pool calls run one at a time in the call's copy of the context
    variables (the log ids). grpc.aio's own sync adapter is not used: it has no
    ``is_active``, ``code``, ``details`` or ``abort_with_status``, and runs
    ``add_callback`` callbacks only after a unary call returns, never when the
    client cancels (the gateway relies on them to cancel its backend call).
    """

    def __init__(self, context: grpc.aio.ServicerContext, pool: futures.ThreadPoolExecutor) -> None:
        self._context = context
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._vars = contextvars.copy_context()
        self._active = True
        self._callbacks: list[Callable[[], Any]] = []
        self._lock = threading.Lock()
        self._running: futures.Future[Any] | None = None  # the pool call in flight
        self._reading: futures.Future[Any] | None = None  # the request read a behaviour waits for

    # ---- driven from the event loop ------------------------------------------
    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the pool. Cancelled while queued, it never runs."""
        self._running = self._pool.submit(self._vars.run, fn, *args)
        return await asyncio.wrap_future(self._running)

    async def iterate(self, behaviour: Callable[..., Any], request: Any) -> AsyncIterator[Any]:
        """A sync stream behaviour's responses, each ``next()`` a pool call."""
        iterator = await self.call(lambda: iter(behaviour(request, self)))
        finished = False
        try:
            while (item := await self.call(next, iterator, _END)) is not _END:
                yield item
            finished = True
        finally:
            if not finished:
                self._close_after_running(iterator)

    def _close_after_running(self, iterator: Any) -> None:
        """Close a generator the client left, once its ``next()`` in flight
        returns (a running generator cannot be closed), so its ``finally``
        runs: that is how a sync stream stops working when the client goes."""
        close = getattr(iterator, "close", None)
        if close is None:
            return

        def run(_: Any = None) -> None:
            try:
                self._vars.run(close)
            except Exception:  # noqa: BLE001 - the call is over; nobody to tell
                log.debug("closing a stream's iterator failed", exc_info=True)

        running = self._running
        if running is not None and not running.done():
            running.add_done_callback(run)
            return
        try:
            self._pool.submit(run)
        except RuntimeError:  # the pool is shut down
            run()

    def end(self) -> None:
        """The call is over: ``is_active()`` turns false, a read the behaviour
        waits for fails, and the ``add_callback`` callbacks run."""
        with self._lock:
            self._active = False
            callbacks, self._callbacks = self._callbacks, []
        if self._reading is not None:
            self._reading.cancel()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - one failing callback must not stop the others
                log.exception("call callback failed")

    def requests(self, messages: Any, count: Callable[[], None]) -> Iterator[Any]:
        """A client stream as a plain iterator: each message read on the loop."""

        async def read() -> Any:
            try:
                return await anext(messages)
            except StopAsyncIteration:
                return _END

        def generate() -> Iterator[Any]:
            while True:
                try:
                    message = self._on_loop(read(), reading=True)
                except (_CallEnded, futures.CancelledError):
                    raise grpc.RpcError("the call ended") from None  # what grpc's sync server raises
                if message is _END:
                    return
                count()
                yield message

        return generate()

    # ---- grpc.ServicerContext, called from the pool ---------------------------
    def _on_loop(self, coroutine: Coroutine[Any, Any, Any], *, reading: bool = False) -> Any:
        """Run ``coroutine`` on the loop and wait for it; give up once the call
        has ended (a stopping server's loop may never run it)."""
        if not self._active:
            coroutine.close()
            raise _CallEnded("the call has ended")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        if reading:
            self._reading = future
        while True:
            try:
                return future.result(timeout=1.0)
            except TimeoutError:
                if not self._active:
                    future.cancel()
                    raise _CallEnded("the call has ended") from None

    def is_active(self) -> bool:
        return self._active

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        with self._lock:
            if not self._active:
                return False
            self._callbacks.append(callback)
            return True

    def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        self._on_loop(self._context.abort(code, details))
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self._on_loop(self._context.abort(status.code, status.details, tuple(status.trailing_metadata)))
        raise AssertionError("unreachable")  # pragma: no cover

    def send_initial_metadata(self, metadata: Any) -> None:
        self._on_loop(self._context.send_initial_metadata(tuple(metadata)))

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._context.set_trailing_metadata(tuple(metadata))

    def trailing_metadata(self) -> Any:
        return self._context.trailing_metadata()

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    def set_code(self, code: grpc.StatusCode) -> None:
        self._context.set_code(code)

    def code(self) -> Any:
        return self._context.code()

    def set_details(self, details: str) -> None:
        self._context.set_details(details)

    def details(self) -> Any:
        return self._context.details()

    def set_compression(self, compression: grpc.Compression) -> None:
        self._context.set_compression(compression)

    def disable_next_message_compression(self) -> None:
        self._context.disable_next_message_compression()

    def peer(self) -> str:
        return self._context.peer()

    def peer_identities(self) -> Any:
        return self._context.peer_identities()

    def peer_identity_key(self) -> Any:
        return self._context.peer_identity_key()

    def auth_context(self) -> Any:
        return self._context.auth_context()


class _Status(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, Any], ...]


def _with_trailer(status: grpc.Status, pair: tuple[str, str]) -> grpc.Status:
    """``status`` with one more trailing metadata entry (the request id)."""
    value = _Status(status.code, status.details, (*status.trailing_metadata, pair))
    return value  # duck-typed like grpc_status's own


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
        after_drain: Sequence[Callable[[], Any]] = (),
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
        names = [b.name for b in self._bindings]
        names += [n for n in service_names if n not in names]
        self._names = names
        credentials = tls.server_credentials(
            settings.tls_cert_file,
            settings.tls_key_file,
            settings.tls_client_ca_file,
            setting=f"SYNTH_{service_name.upper()}_TLS_",
        )
        # "off", "tls" or "mutual" (client certificates required).
        self.tls = "off" if credentials is None else "mutual" if settings.tls_client_ca_file else "tls"
        self._pool = futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix=service_name)
        self.bounds = StreamBounds(settings.max_streams, stream_slots(settings.max_workers))
        # Until start() gives the loop a thread of its own, it runs only for each setup step.
        self._loop = asyncio.new_event_loop()
        self._loop_thread: threading.Thread | None = None
        self.health_port: int | None = None
        self._health_server: grpc.aio.Server | None = None
        try:
            self._on_loop(self._build(credentials, generic_handlers))
        except BaseException:
            self._loop.close()
            self._pool.shutdown(wait=False)
            raise
        self.metrics_port: int | None = None
        self._metrics_http: Any = None
        self._stopped = threading.Event()

    async def _build(
        self, credentials: grpc.ServerCredentials | None, generic: Sequence[grpc.GenericRpcHandler]
    ) -> None:
        settings = self.settings
        limit = settings.max_message_bytes
        self.server = grpc.aio.server(
            migration_thread_pool=self._pool,
            interceptors=[_Interceptor(GrpcServerMetrics(self.registry), self.bounds, self._pool)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # Let clients keep long watch streams alive with pings.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                # Calls arrive faster than the loop takes them in a burst (clients
                # reattaching after a restart); past this queue gRPC cancels them.
                ("grpc.server.max_pending_requests", max(1000, settings.max_streams)),
                ("grpc.server.max_pending_requests_hard_limit", max(3000, settings.max_streams)),
                *_connection_age_options(settings.max_connection_age_seconds),
            ],
        )
        for binding in self._bindings:
            binding.add(binding.servicer, self.server)
        if generic:
            self.server.add_generic_rpc_handlers(tuple(generic))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self._names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        bind = f"{settings.host}:{settings.port}"
        if credentials is None:
            self.port = self.server.add_insecure_port(bind)
        else:
            self.port = self.server.add_secure_port(bind, credentials)
        if self.port == 0:
            raise RuntimeError(f"could not bind {settings.host}:{settings.port}")
        # Probes: the same health servicer (so the same statuses) on a plaintext
        # port that serves nothing else.
        if settings.health_port >= 0:
            self._health_server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
            self.health_port = self._health_server.add_insecure_port(f"{settings.host}:{settings.health_port}")
            if self.health_port == 0:
                raise RuntimeError(f"could not bind the health port {settings.host}:{settings.health_port}")

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def start(self) -> SynthServer:
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name=f"{self.service_name}-grpc", daemon=True
        )
        self._loop_thread.start()
        self._on_loop(self.server.start())
        if self._health_server is not None:
            self._on_loop(self._health_server.start())
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
        self._on_loop(self._set_health(health_pb2.HealthCheckResponse.SERVING))

    async def _set_health(self, status: int) -> None:
        for name in ["", *self._names]:
            await self.health.set(name, status)

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, run the shutdown hooks (e.g. the trainer's checkpoint,
        which also ends its watch streams), let in-flight calls finish for
        ``grace`` seconds, then run the ``after_drain`` hooks (e.g. the gateway
        closing its backend channels, which its in-flight calls still use) and close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._on_loop(self.health.enter_graceful_shutdown())
        grace = self.settings.grace_seconds if grace is None else grace
        stopping = self._on_loop(self._begin_stop(grace))
        for hook in self._on_shutdown:
            try:
                hook()
            except Exception:  # noqa: BLE001 - one failing hook must not block the others
                log.exception("shutdown hook failed")
        self._on_loop(_wait(stopping, grace + 5))
        for hook in self._after_drain:
            try:
                # A coroutine function runs on the server's loop (e.g. closing
                # grpc.aio channels its handlers made there).
                self._on_loop(hook()) if inspect.iscoroutinefunction(hook) else hook()
            except Exception:  # noqa: BLE001
                log.exception("after-drain hook failed")
        if self._health_server is not None:
            # Last: probes saw NOT_SERVING for the whole drain.
            self._on_loop(self._health_server.stop(0))
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        self._close_loop()
        log.info("stopped")

    async def _begin_stop(self, grace: float) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self.server.stop(grace))
        await asyncio.sleep(0)  # its first step refuses new calls: the hooks run after that, as before
        return task

    def _on_loop(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the server's loop and wait for its result."""
        if self._loop_thread is None:
            # Not started: run the loop for this alone, in a thread (the caller's
            # may run an event loop of its own).
            with futures.ThreadPoolExecutor(1, thread_name_prefix=f"{self.service_name}-setup") as once:
                return once.submit(self._loop.run_until_complete, coroutine).result()
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _close_loop(self) -> None:
        if self._loop_thread is not None:
            self._on_loop(_finish_loop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(10)
        else:
            self._on_loop(_finish_loop())
        if not self._loop.is_running():
            self._loop.close()
        # Threads still in a sync behaviour end with it; none is waited for here.
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _wait(task: asyncio.Task[None], timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout)


async def _finish_loop() -> None:
    """Cancel what still runs on a stopped server's loop (e.g. a health Watch)."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=5)
    await asyncio.get_running_loop().shutdown_asyncgens()


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
