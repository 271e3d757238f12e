"""The server factory every service uses.

It adds, around a service's own servicers:
- the per-call handling of ``rpc_calls`` (error tree → status with google.rpc
  details, log context, ``grpc_server_*`` metrics, stream bounds);
- standard ``grpc.health.v1`` health, NOT_SERVING until :meth:`set_serving`;
- reflection for grpcurl;
- a Prometheus ``/metrics`` HTTP port (always plaintext, for scrapers);
- optional TLS or mutual TLS on the gRPC port (``tls_*`` settings), and an
  optional plaintext port serving only health (``health_port``) for Kubernetes
  probes, which cannot present a client certificate;
- message-size limits and graceful shutdown (SIGTERM drains in-flight calls).

It serves with ``grpc.aio``, its event loop in a thread of its own, so the API
stays synchronous; sync servicers run in a pool of ``max_workers`` threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from services.common import tls
from services.common.rpc_calls import (
    REQUEST_ID_HEADER,
    CallInterceptor,
    GrpcServerMetrics,
    StreamBounds,
    error_to_status,
    stream_slots,
)
from services.common.settings import ServerSettings

# Re-exported: callers know them as the server's.
__all__ = ["REQUEST_ID_HEADER", "ServiceBinding", "SignalStop", "SynthServer", "error_to_status", "stream_slots"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and how to add it: ``add`` is the generated
    ``add_XxxServicer_to_server`` and ``name`` the full service name."""

    servicer: Any
    add: Callable[[Any, Any], None]
    name: str


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
            interceptors=[CallInterceptor(GrpcServerMetrics(self.registry), self.bounds, self._pool)],
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
