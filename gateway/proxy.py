"""The gRPC front door: a generic handler that forwards every synth.v1 call, as
raw bytes, to the backend hosting its service.

Per call it:
- checks the API key (UNAUTHENTICATED without a valid one);
- forwards the caller's metadata minus the auth headers, adding ``x-request-id``
  when absent (the same id the server interceptor logs with);
- gives the backend the caller's remaining deadline, capped by the gateway's
  own backend timeout for the kind of call;
- cancels the backend call as soon as the caller goes away, so a cancelled
  watch or sample stops the backend;
- relays server streams (watch, sample, evaluate) on the server's event loop
  over ``grpc.aio`` channels, so an idle stream holds no thread: only the
  server's MAX_STREAMS bounds them, as on the backends;
- relays the backend's status, message, details (``grpc-status-details-bin``)
  and trailing metadata unchanged; a backend that cannot be reached becomes
  UNAVAILABLE with a message naming it;
- stops an upload (``UploadDataset``) whose file bytes pass the gateway's
  ``MAX_UPLOAD_BYTES``, as the HTTP API does: RESOURCE_EXHAUSTED, and the
  backend's call is cancelled, so nothing is stored.
Messages are never decoded: the gateway stays correct for fields it has never
heard of.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NamedTuple

import grpc
from synth.v1 import datasets_pb2

from gateway.auth import AUTH_HEADERS, KeyStore
from gateway.backends import METHODS, Backends, Method
from gateway.settings import GatewaySettings
from services.common.errors import ResourceExhausted
from services.common.logs import current_context
from services.common.server import REQUEST_ID_HEADER

log = logging.getLogger(__name__)

# Never forwarded: credentials, and what the HTTP/2 transport sets itself.
_DROP = frozenset(AUTH_HEADERS) | {"user-agent", "te", "content-type", "host", "connection"}
# The first byte of an UploadDatasetRequest carrying a `chunk`: its field
# number and wire type 2 (length-delimited), read from the contract.
_CHUNK_TAG = (datasets_pb2.UploadDatasetRequest.DESCRIPTOR.fields_by_name["chunk"].number << 3) | 2


class _Status(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, Any], ...]


def forward_metadata(pairs: Any, request_id: str | None = None) -> tuple[tuple[str, Any], ...]:
    """The caller's metadata for the backend: no auth headers, no transport
    headers, and an ``x-request-id`` (the caller's, or ``request_id``, or new)."""
    out: list[tuple[str, Any]] = []
    has_id = False
    for key, value in pairs or ():
        k = key.lower()
        if k in _DROP or k.startswith((":", "grpc-")):
            continue
        has_id |= k == REQUEST_ID_HEADER
        out.append((k, value))
    if not has_id:
        out.append((REQUEST_ID_HEADER, request_id or uuid.uuid4().hex[:16]))
    return tuple(out)


def request_id_of(metadata: tuple[tuple[str, Any], ...]) -> str:
    return next((str(v) for k, v in metadata if k == REQUEST_ID_HEADER), "")


def backend_error(err: grpc.RpcError, where: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]:
    """A backend call's failure as (code, message, trailers), naming the
    backend when it could not be reached at all."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (err.details() if callable(getattr(err, "details", None)) else None) or ""
    trailers = tuple(err.trailing_metadata() or ()) if callable(getattr(err, "trailing_metadata", None)) else ()
    answered = any(k in ("grpc-status-details-bin", REQUEST_ID_HEADER) for k, _ in trailers)
    if code == grpc.StatusCode.UNAVAILABLE and not answered:
        details = f"{where} is unavailable: {details or 'no connection'}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and not answered:
        details = f"deadline exceeded waiting for {where}"
    return code or grpc.StatusCode.UNKNOWN, details, trailers


class PassThrough(grpc.GenericRpcHandler):
    """Serves every synth.v1 method by forwarding it to its backend."""

    def __init__(self, backends: Backends, keys: KeyStore, settings: GatewaySettings) -> None:
        self._backends = backends
        self._keys = keys
        self._settings = settings
        # The server loop's channels for streamed relays, made there on first use.
        self._aio_channels: dict[str, grpc.aio.Channel] = {}
        self._handlers = {path: self._build(method) for path, method in METHODS.items()}
        self._refusals: dict[str, grpc.RpcMethodHandler] = {}

    def _aio_channel(self, backend: str) -> grpc.aio.Channel:
        """The ``grpc.aio`` channel to ``backend`` (call on the server's loop)."""
        channel = self._aio_channels.get(backend)
        if channel is None:
            channel = self._aio_channels[backend] = self._backends.aio_channel(backend)
        return channel

    async def aclose(self) -> None:
        """Close the streamed relays' channels (on the server's loop, after the drain)."""
        channels, self._aio_channels = list(self._aio_channels.values()), {}
        for channel in channels:
            await channel.close()

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        path = handler_call_details.method
        handler = self._handlers.get(path)
        if handler is None:
            return None  # not ours: health, reflection, or UNIMPLEMENTED
        headers = {k.lower(): v for k, v in handler_call_details.invocation_metadata or () if isinstance(v, str)}
        result = self._keys.check_headers(headers)
        if not result.ok:
            return _refusal(METHODS[path], result.reason)
        return handler

    # ---- one handler per method ------------------------------------------------
    def _build(self, method: Method) -> grpc.RpcMethodHandler:
        channel = self._backends.channel(method.backend)
        where = self._backends.describe(method.backend)
        s = self._settings
        if method.client_streaming:
            cap = s.upload_timeout_seconds if not method.server_streaming else s.stream_timeout_seconds
        else:
            cap = s.stream_timeout_seconds if method.server_streaming else s.backend_timeout_seconds

        def call_args(context: grpc.ServicerContext) -> dict[str, Any]:
            remaining = context.time_remaining()
            timeout = cap if remaining is None else min(cap, max(remaining, 0.0))
            metadata = forward_metadata(context.invocation_metadata(), current_context().get("request_id"))
            return {"timeout": timeout, "metadata": metadata}

        if not method.client_streaming and not method.server_streaming:
            unary = channel.unary_unary(method.path)

            def unary_unary(request: bytes, context: grpc.ServicerContext) -> bytes:
                args = call_args(context)
                future = unary.future(request, **args)
                context.add_callback(future.cancel)
                return _finish_unary(future, context, where, args["metadata"])

            return grpc.unary_unary_rpc_method_handler(unary_unary)

        if method.client_streaming and not method.server_streaming:
            upload = channel.stream_unary(method.path)
            limit = s.max_upload_bytes if method.name == "UploadDataset" else None

            def stream_unary(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
                args = call_args(context)
                counted = _CountedUpload(requests, limit)
                future = upload.future(iter(counted), **args)
                counted.started(future)
                context.add_callback(future.cancel)
                with contextlib.suppress(grpc.FutureCancelledError):
                    future.exception()  # wait for the end, whichever way it goes
                if counted.too_large:  # the backend saw a failed request stream; say why
                    raise _upload_too_large(limit or 0)
                return _finish_unary(future, context, where, args["metadata"])

            return grpc.stream_unary_rpc_method_handler(stream_unary)

        if not method.client_streaming:

            async def unary_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
                args = call_args(context)  # the aio context has the same accessors
                call = self._aio_channel(method.backend).unary_stream(method.path)(request, **args)
                async for message in _relay_stream_async(call, context, where, args["metadata"]):
                    yield message

            return grpc.unary_stream_rpc_method_handler(unary_stream)

        bidi = channel.stream_stream(method.path)

        def stream_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            args = call_args(context)
            return _relay_stream(lambda: bidi(requests, **args), context, where, args["metadata"])

        return grpc.stream_stream_rpc_method_handler(stream_stream)


class _CountedUpload:
    """The caller's messages, counting the file bytes their chunks carry (read
    from the wire format: the gateway decodes nothing). Past ``limit`` it
    cancels the backend call (never a half-close, which would let the backend
    store a cut-off file) and stops."""

    def __init__(self, requests: Iterator[bytes], limit: int | None) -> None:
        self._requests = requests
        self._limit = limit
        self._future: Any = None
        self._has_future = threading.Event()
        self.too_large = False

    def started(self, future: Any) -> None:
        self._future = future
        self._has_future.set()

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for message in self._requests:
            seen += _chunk_size(message)
            if self._limit is not None and seen > self._limit:
                self.too_large = True
                self._has_future.wait(10)
                if self._future is not None:
                    self._future.cancel()
                return
            yield message


def _chunk_size(message: bytes) -> int:
    """Length of the ``chunk`` payload of a serialized UploadDatasetRequest (0 for the header and end)."""
    if not message or message[0] != _CHUNK_TAG:
        return 0
    size, shift = 0, 0
    for byte in message[1:11]:  # a varint
        size |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return size
        shift += 7
    return len(message)


def _upload_too_large(limit: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"the upload is larger than the gateway's limit of {limit} bytes ({limit / 1e6:.3g} MB)",
        reason="UPLOAD_TOO_LARGE",
        metadata={"max_bytes": str(limit)},
    )


def _finish_unary(
    future: Any, context: grpc.ServicerContext, where: str, metadata: tuple[tuple[str, Any], ...]
) -> bytes:
    try:
        response = future.result()
    except grpc.FutureCancelledError:
        context.abort(grpc.StatusCode.CANCELLED, "the caller cancelled the call")
    except grpc.RpcError as err:
        _abort_with(context, err, where, metadata)
    _relay_metadata(context, future.initial_metadata(), future.trailing_metadata(), metadata)
    return response


def _relay_stream(
    start: Callable[[], Any], context: grpc.ServicerContext, where: str, metadata: tuple[tuple[str, Any], ...]
) -> Iterator[bytes]:
    call = start()
    context.add_callback(call.cancel)
    first = True
    try:
        for message in call:
            if first:
                first = False
                _send_initial(context, call.initial_metadata())
            yield message
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.CANCELLED and not context.is_active():
            return  # the caller went away and we cancelled the backend
        _abort_with(context, err, where, metadata)
    finally:
        # Closed early (the caller cancelled while we were yielding): stop the backend now.
        call.cancel()
    if first:
        _send_initial(context, call.initial_metadata())
    context.set_trailing_metadata(_trailers(call.trailing_metadata(), metadata))


async def _relay_stream_async(
    call: Any, context: grpc.aio.ServicerContext, where: str, metadata: tuple[tuple[str, Any], ...]
) -> AsyncIterator[bytes]:
    """The backend stream's messages, then its trailers; its failure becomes
    ours. The backend call is cancelled however this ends (the caller leaving
    closes this generator)."""
    first = True
    try:
        async for message in call:
            if first:
                first = False
                await _send_initial_async(context, await call.initial_metadata())
            yield message
    except grpc.aio.AioRpcError as err:
        code, details, trailers = backend_error(err, where)
        if code == grpc.StatusCode.UNAVAILABLE:
            log.warning("backend unavailable", extra={"backend": where, "grpc_code": code.name})
        await context.abort(code, details, _trailers(trailers, metadata))
    finally:
        call.cancel()
    if first:
        await _send_initial_async(context, await call.initial_metadata())
    context.set_trailing_metadata(_trailers(tuple(await call.trailing_metadata() or ()), metadata))


async def _send_initial_async(context: grpc.aio.ServicerContext, initial: Any) -> None:
    pairs = tuple((k, v) for k, v in initial or () if not k.startswith(("grpc-", ":")))
    if pairs:
        await context.send_initial_metadata(pairs)


def _relay_metadata(context: grpc.ServicerContext, initial: Any, trailing: Any, sent: Any) -> None:
    _send_initial(context, initial)
    context.set_trailing_metadata(_trailers(trailing, sent))


def _send_initial(context: grpc.ServicerContext, initial: Any) -> None:
    pairs = tuple((k, v) for k, v in initial or () if not k.startswith(("grpc-", ":")))
    if pairs:
        context.send_initial_metadata(pairs)


def _trailers(trailing: Any, sent: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    pairs = tuple(trailing or ())
    if not any(k == REQUEST_ID_HEADER for k, _ in pairs):
        pairs += ((REQUEST_ID_HEADER, request_id_of(sent)),)
    return pairs


def _abort_with(context: grpc.ServicerContext, err: grpc.RpcError, where: str, sent: Any) -> None:
    code, details, trailers = backend_error(err, where)
    if code == grpc.StatusCode.UNAVAILABLE:
        log.warning("backend unavailable", extra={"backend": where, "grpc_code": code.name})
    context.abort_with_status(_Status(code, details, _trailers(trailers, sent)))


def _refusal(method: Method, reason: str) -> grpc.RpcMethodHandler:
    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        log.warning("unauthenticated call refused", extra={"reason": reason, "grpc_code": "UNAUTHENTICATED"})
        context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    if method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
