"""The backends behind the gateway: which service lives where, and one gRPC
channel per backend with client-side round_robin and retries for reads only.

Routing is by service name: DatasetService, TrainingService and ModelService
live in the trainer, SamplingService in the sampler, EvaluationService in the
evaluator. Each backend address is resolved with ``dns:///`` so a headless
Kubernetes Service (one A record per pod) gives one subchannel per replica, and
``round_robin`` spreads calls over them instead of pinning one HTTP/2
connection. Only reads (Get*, List*, Preview*, Watch*) are retried, and only on
UNAVAILABLE; everything else is tried once (gRPC's transparent retry of calls
that never left the client aside). With the ``backend_tls_*`` settings the
channels use mutual TLS (the gateway's own certificate, the backends' CA).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import grpc
from synth.v1 import datasets_pb2, evaluation_pb2, models_pb2, sampling_pb2, training_pb2

from gateway.settings import GatewaySettings
from services.common import tls

# Service -> backend that hosts it.
SERVICE_BACKENDS = {
    "synth.v1.DatasetService": "trainer",
    "synth.v1.TrainingService": "trainer",
    "synth.v1.ModelService": "trainer",
    "synth.v1.SamplingService": "sampler",
    "synth.v1.EvaluationService": "evaluator",
}
_MODULES = (datasets_pb2, training_pb2, models_pb2, sampling_pb2, evaluation_pb2)
# Method-name prefixes of calls that only read, so may be retried.
IDEMPOTENT_PREFIXES = ("Get", "List", "Preview", "Watch")
RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


@dataclass(frozen=True)
class Method:
    """One synth.v1 RPC as the gateway routes it."""

    service: str  # "synth.v1.DatasetService"
    name: str  # "UploadDataset"
    backend: str  # "trainer"
    client_streaming: bool
    server_streaming: bool
    input_type: str  # full message names
    output_type: str

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def idempotent(self) -> bool:
        return self.name.startswith(IDEMPOTENT_PREFIXES)


def _methods() -> dict[str, Method]:
    out: dict[str, Method] = {}
    for module in _MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                method = Method(
                    service=service.full_name,
                    name=m.name,
                    backend=SERVICE_BACKENDS[service.full_name],
                    client_streaming=m.client_streaming,
                    server_streaming=m.server_streaming,
                    input_type=m.input_type.full_name,
                    output_type=m.output_type.full_name,
                )
                out[method.path] = method
    return out


METHODS: dict[str, Method] = _methods()
SERVICE_NAMES: tuple[str, ...] = tuple(SERVICE_BACKENDS)


def grpc_target(address: str) -> str:
    """A gRPC target for a configured address: ``host:port`` becomes
    ``dns:///host:port`` (every A record a subchannel); ``ip:port,ip:port`` a
    static ``ipv4:``/``ipv6:`` list; a full target (``dns:``, ``ipv4:``,
    ``unix:``, ``xds:``...) is kept."""
    address = address.strip()
    if ":///" in address or address.startswith(("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "xds:")):
        return address
    parts = [p.strip() for p in address.split(",") if p.strip()]
    if len(parts) > 1:
        hosts = [p.rsplit(":", 1)[0].strip("[]") for p in parts]
        try:
            versions = {ipaddress.ip_address(h).version for h in hosts}
        except ValueError:
            raise ValueError(f"a list of backend addresses must be IP:port pairs, got {address!r}") from None
        if len(versions) != 1:
            raise ValueError(f"mix of IPv4 and IPv6 backend addresses: {address!r}")
        return ("ipv4:" if versions == {4} else "ipv6:") + ",".join(parts)
    return f"dns:///{address}"


def service_config(backend: str) -> str:
    """Round robin, plus a retry policy for the backend's read methods."""
    names = [
        {"service": m.service, "method": m.name} for m in METHODS.values() if m.backend == backend and m.idempotent
    ]
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if names:
        config["methodConfig"] = [{"name": names, "retryPolicy": RETRY_POLICY}]
    return json.dumps(config)


class Backends:
    """Where each backend is, and how to reach it: one shared synchronous channel
    per backend (the gRPC pass-through), and a factory for ``grpc.aio`` channels
    with the same target, TLS credentials and options (the HTTP side, whose
    event loop owns and closes its own)."""

    NAMES = ("trainer", "sampler", "evaluator")

    def __init__(self, settings: GatewaySettings) -> None:
        self.addresses = {
            "trainer": settings.trainer_address,
            "sampler": settings.sampler_address,
            "evaluator": settings.evaluator_address,
        }
        self.targets = {name: grpc_target(address) for name, address in self.addresses.items()}
        self._credentials = tls.channel_credentials(
            settings.backend_tls_ca_file,
            settings.backend_tls_cert_file,
            settings.backend_tls_key_file,
            setting="SYNTH_GATEWAY_BACKEND_TLS_",
        )
        self._options = {name: channel_options(name, settings.max_message_bytes) for name in self.targets}
        self._channels: dict[str, grpc.Channel] = {
            name: tls.channel(target, self._credentials, self._options[name]) for name, target in self.targets.items()
        }

    def channel(self, backend: str) -> grpc.Channel:
        return self._channels[backend]

    def for_service(self, service: str) -> tuple[str, grpc.Channel]:
        backend = SERVICE_BACKENDS[service]
        return backend, self._channels[backend]

    def aio_channel(self, backend: str) -> grpc.aio.Channel:
        """A new ``grpc.aio`` channel to ``backend``, configured like the shared
        synchronous one. Call it inside the event loop that will use it; the
        caller closes it."""
        target, options = self.targets[backend], self._options[backend]
        if self._credentials is None:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self._credentials, options=options)

    def describe(self, backend: str) -> str:
        return f"the {backend} backend ({self.addresses[backend]})"

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def channel_options(backend: str, max_message_bytes: int) -> list[tuple[str, object]]:
    """The options of every channel to ``backend``, synchronous or asyncio."""
    return [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.service_config", service_config(backend)),
        # Ours, not whatever a DNS TXT record says.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.enable_retries", 1),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Notice dead connections under long watch streams.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # New replicas are found on reconnect; re-resolve at most this often.
        ("grpc.dns_min_time_between_resolutions_ms", 5_000),
    ]
