"""Assembles the gateway: API keys, backend channels, the gRPC front door (our
SynthServer with the pass-through handler) and the HTTP API and web page.

Used by ``__main__`` and by tests (which start it on 127.0.0.1:0)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from gateway.auth import KeyStore, check_bind
from gateway.backends import SERVICE_NAMES, Backends
from gateway.http import HttpApi
from gateway.proxy import PassThrough
from gateway.settings import GatewaySettings
from services.common.server import SynthServer


class Gateway:
    """The gRPC server and the HTTP server, started and stopped together."""

    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.keys = KeyStore(settings.api_key_file or None, settings.api_key_hashes)
        # Before binding anything: no keys on a non-loopback address refuses to start.
        check_bind(settings.host, self.keys)
        self.backends = Backends(settings)
        self.proxy = PassThrough(self.backends, self.keys, settings)
        self.grpc = SynthServer(
            "gateway",
            settings,
            bindings=[],
            registry=registry,
            generic_handlers=[self.proxy],
            service_names=SERVICE_NAMES,
            # after the drain: in-flight calls still use the channels
            after_drain=[self._wait_for_http, self.backends.close, self.proxy.aclose],
        )
        self._http_deadline = 0.0
        try:
            self.http = HttpApi(settings, self.backends, self.keys, self.grpc.registry)
        except OSError:
            self.backends.close()
            raise

    @property
    def address(self) -> str:
        """The gRPC address."""
        return self.grpc.address

    @property
    def http_url(self) -> str:
        return self.http.url

    @property
    def metrics_port(self) -> int | None:
        return self.grpc.metrics_port

    def start(self) -> Gateway:
        self.http.start()
        self.grpc.start()
        return self

    def set_serving(self) -> None:
        self.grpc.set_serving()

    def stop(self, grace: float | None = None) -> None:
        """Take no new connections, let gRPC calls and HTTP requests in flight finish
        within the grace period, then close the backend channels they use."""
        grace = self.settings.grace_seconds if grace is None else grace
        self._http_deadline = time.monotonic() + grace
        self.http.stop()
        self.grpc.stop(grace)

    def _wait_for_http(self) -> None:
        """Let HTTP requests in flight finish until the grace period ends, then
        cancel what is left and close the HTTP side's own backend channels."""
        self.http.wait_idle(max(0.0, self._http_deadline - time.monotonic()))
        self.http.close()


def build_gateway(settings: GatewaySettings, registry: CollectorRegistry | None = None) -> Gateway:
    return Gateway(settings, registry)
