"""How the server factory handles one RPC (``server.SynthServer`` installs it).

- One interceptor (:class:`CallInterceptor`) maps the error tree to gRPC
  status codes with google.rpc details (ErrorInfo, BadRequest), turns unknown
  exceptions into INTERNAL with a fixed message (traceback to the log only),
  sets the log context (rpc, request id) and records the standard
  ``grpc_server_*`` metrics.
- Every behaviour gets an async wrapper, so grpc.aio hands it the real
  context. Async behaviours (health, reflection, the trainer's WatchTraining,
  the gateway's stream relays) run on the loop and hold no thread while they
  wait. Sync ones run in the server's pool through :class:`_SyncContext`, an
  adapter with the sync context API our servicers use (``is_active``,
  ``abort_with_status``, ``add_callback`` on cancel…); a sync stream's
  ``next()`` is one pool call, so a slow reader holds no thread between
  messages.
- Open streams are bounded (:class:`StreamBounds`), and one past a bound is
  refused at once with RESOURCE_EXHAUSTED (``TOO_MANY_STREAMS``, retry after a
  second): ``max_streams`` in all (each costs memory), and
  ``stream_slots(max_workers)`` for sync streams, whose ``next()`` may wait
  long in a thread (an upload waiting for its next chunk, a sample waiting for
  its turn): a quarter of the threads stay free, so unary calls always find one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent import futures
from typing import Any, NamedTuple, NoReturn

import grpc
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.errors import ResourceExhausted, SynthError
from services.common.logs import bind
from services.common.rpc_status import status_proto

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_INTERNAL_MESSAGE = "internal error; the server log has the details (search for the request id)"
_END = object()  # the end of a sync iterator, as returned by a pool call


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


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every behaviour: see the module docstring."""

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
