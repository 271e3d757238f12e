"""``HttpApi``: the aiohttp server on its own event loop thread, behind a small
synchronous API (``start``, ``stop``, ``wait_idle``, ``close``) that the
gateway's lifecycle (``gateway.app``) and the tests use.

One thread serves every connection: an idle keep-alive connection, a
half-sent request or an event stream waiting for the next epoch is a few
kilobytes in the loop, not a thread. The listening socket is bound in the
constructor, so a port in use fails there, before anything starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import socket
import sys
import threading
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry

from gateway.auth import KeyStore
from gateway.backends import Backends
from gateway.http.api import dispatch
from gateway.http.context import CONTEXT, HttpContext
from gateway.http.frontdoor import HttpMetrics, InFlight, add_headers, front_door, is_loopback
from gateway.openapi import openapi_document
from gateway.settings import GatewaySettings

log = logging.getLogger("gateway.http")

# Seconds an idle keep-alive connection (or one that never sends a request) is kept.
KEEPALIVE_SECONDS = 75.0
# After an answer sent before its request body was read (an error), seconds
# spent reading and dropping the rest before closing, so the client gets to read it.
_LINGER_SECONDS = 5.0
_BACKLOG = 1024
# At close, seconds the requests still running get before they are cancelled.
_CLOSE_SECONDS = 1.0


class HttpApi:
    """The HTTP API and web page: ``start()``, ``stop()`` (no new connections),
    ``wait_idle()`` (the drain), ``close()``; ``port``/``url`` once constructed."""

    def __init__(
        self, settings: GatewaySettings, backends: Backends, keys: KeyStore, registry: CollectorRegistry
    ) -> None:
        self.settings = settings
        self.context = HttpContext(
            settings=settings,
            keys=keys,
            backends=backends,
            openapi=openapi_document(),
            csrf_token=secrets.token_urlsafe(32),
            loopback=is_loopback(settings.host),
        )
        self._metrics = HttpMetrics(registry)
        self._in_flight = InFlight()
        self._socket = _listen(settings.host, settings.http_port)
        self._port = int(self._socket.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._closed = False

    @property
    def csrf_token(self) -> str:
        return self.context.csrf_token

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = self.settings.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def start(self) -> HttpApi:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="gateway-http", daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        return self

    def stop(self) -> None:
        """Take no new connections and close idle ones; requests in flight go on (see ``wait_idle``)."""
        if self._thread is not None and not self._closed:
            self._call(self._stop_listening())

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being answered (a download, an event stream), at most ``timeout`` s."""
        with self._in_flight.condition:
            return self._in_flight.condition.wait_for(lambda: self._in_flight.count == 0, timeout=timeout)

    def close(self) -> None:
        """Cancel what is still running, close the backend channels, end the loop thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            self._socket.close()
            self._loop.close()
            return
        try:
            self._call(self._shutdown(), timeout=_CLOSE_SECONDS + 10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # ---- the loop thread -------------------------------------------------------
    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._setup())
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _setup(self) -> None:
        app = web.Application(middlewares=[front_door(self._metrics, self._in_flight)])
        app[CONTEXT] = self.context
        app.router.add_route("*", "/{path:.*}", dispatch)
        app.on_response_prepare.append(add_headers)
        self.context.open_channels()
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,  # one JSON line per request from the front door instead
            # A client that goes away cancels its handler, and so its backend call.
            handler_cancellation=True,
            keepalive_timeout=KEEPALIVE_SECONDS,
            lingering_time=_LINGER_SECONDS,
            shutdown_timeout=_CLOSE_SECONDS,
            logger=_ServerLog(logging.getLogger("aiohttp.server")),
        )
        await self._runner.setup()
        self._site = web.SockSite(self._runner, self._socket, backlog=_BACKLOG)
        await self._site.start()

    async def _stop_listening(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            self._runner.server.pre_shutdown()  # idle keep-alive connections close now

    async def _shutdown(self) -> None:
        try:
            if self._runner is not None:
                await self._runner.cleanup()
        finally:
            await self.context.close_channels()
            self._socket.close()


class _ServerLog(logging.LoggerAdapter):
    """aiohttp's server log, with a request it cannot parse (aiohttp answers it
    with a plain 400) as one warning line instead of a traceback."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(error, HttpProcessingError):
            log.warning("malformed HTTP request refused", extra={"error": error.message.splitlines()[0][:200]})
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=_BACKLOG)
    sock.setblocking(False)
    return sock
