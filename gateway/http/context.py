"""What every HTTP handler shares (``HttpContext``, one per server), and the
backend calls they make over ``grpc.aio`` channels owned by the server's event
loop: no thread waits on a backend, and a cancelled handler (the client went
away) cancels its call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message

from gateway.auth import KeyStore
from gateway.backends import Backends
from gateway.codes import HttpError
from gateway.http.convert import message_class
from gateway.proxy import backend_error
from gateway.routes import Route
from gateway.settings import GatewaySettings

REQUEST_ID = web.RequestKey("request_id", str)
# The route pattern a request matched, for metrics and logs ("other" when none).
ROUTE_LABEL = web.RequestKey("route_label", str)


class _End:
    """The end of a server stream."""


END = _End()


@dataclass
class HttpContext:
    settings: GatewaySettings
    keys: KeyStore
    backends: Backends
    openapi: dict[str, Any]
    # Per process: the page carries it, state-changing browser requests send it back.
    csrf_token: str
    loopback: bool
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    def open_channels(self) -> None:
        """In the event loop that will use them."""
        self.channels = {name: self.backends.aio_channel(name) for name in self.backends.NAMES}

    async def close_channels(self) -> None:
        channels, self.channels = self.channels, {}
        for channel in channels.values():
            await channel.close()

    def callable(self, route: Route, kind: str) -> Any:
        """``kind``: unary_unary, unary_stream or stream_unary, on the route's backend."""
        factory = getattr(self.channels[route.method.backend], kind)
        return factory(
            route.rpc,
            request_serializer=message_class(route.method.input_type).SerializeToString,
            response_deserializer=message_class(route.method.output_type).FromString,
        )

    def rpc_error(self, request: web.BaseRequest, route: Route, err: grpc.RpcError) -> HttpError:
        """A failed backend call as the HTTP error to answer with, naming the
        backend when it could not be reached."""
        _, message, _ = backend_error(err, self.backends.describe(route.method.backend))
        out = HttpError.from_rpc_error(err, message)
        out.request_id = out.request_id or request[REQUEST_ID]
        return out


CONTEXT = web.AppKey("synth_http", HttpContext)


def context(request: web.BaseRequest) -> HttpContext:
    # aiohttp hands handlers a web.Request, which has .app; the BaseRequest this module takes has not
    return request.app[CONTEXT]  # type: ignore[attr-defined]


def metadata(request: web.BaseRequest) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", request[REQUEST_ID]),)


class ServerStream:
    """A server-streaming backend call, read with a timeout that never cancels
    the read in progress (so a quiet stream can send heartbeats in between)."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._next: asyncio.Future[Any] | None = None

    async def next(self, timeout: float | None) -> Message | _End | None:
        """The next message, ``END``, or None if nothing came within ``timeout``
        seconds. A failed call raises its ``grpc.aio.AioRpcError``."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._call.read())
        done, _ = await asyncio.wait({self._next}, timeout=timeout)
        if not done:
            return None
        read, self._next = self._next, None
        message = read.result()
        return END if message is grpc.aio.EOF else message

    def cancel(self) -> None:
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self._call.cancel()


def open_stream(request: web.BaseRequest, route: Route, message: Message) -> ServerStream:
    ctx = context(request)
    call = ctx.callable(route, "unary_stream")(
        message, timeout=ctx.settings.stream_timeout_seconds, metadata=metadata(request)
    )
    return ServerStream(call)
