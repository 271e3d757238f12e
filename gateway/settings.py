"""Gateway settings: env prefix SYNTH_GATEWAY_."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import ServerSettings

ENV_PREFIX = "SYNTH_GATEWAY_"


@dataclass(frozen=True)
class GatewaySettings(ServerSettings):
    # The gRPC front door (every synth.v1 service, forwarded to the backends).
    port: int = 50050
    metrics_port: int = 9100
    # HTTP/JSON API, OpenAPI page and the web page (0: pick a free one).
    http_port: int = 8080
    # Backends: "host:port" (a DNS name resolving to every replica, e.g. a
    # headless Kubernetes Service, is spread by client-side round_robin), a
    # comma-separated list of IP:port, or a full gRPC target ("dns:///...").
    trainer_address: str = "127.0.0.1:50051"
    sampler_address: str = "127.0.0.1:50052"
    evaluator_address: str = "127.0.0.1:50053"
    # Mutual TLS to the backends, PEM files; all empty (the local default): plaintext.
    # The CA verifies the backends' certificates (whose names must match the
    # addresses' host names); the certificate and key are the gateway's own.
    backend_tls_ca_file: str = ""
    backend_tls_cert_file: str = ""
    backend_tls_key_file: str = ""
    # File of API keys, one "sha256:<hex>" per line (`python -m gateway hash-key`);
    # empty: none. Re-read when it changes: removing a line revokes that key at once.
    api_key_file: str = ""
    # More key hashes, comma-separated "sha256:<hex>" (e.g. from a Secret).
    api_key_hashes: tuple[str, ...] = ()
    # Largest dataset upload over HTTP (413 beyond); the trainer has its own limit.
    max_upload_bytes: int = 100 * 1024 * 1024
    # Backend deadline for unary calls when the client sets none (or a longer one).
    backend_timeout_seconds: float = 60.0
    # Backend deadline for uploads when the client sets none.
    upload_timeout_seconds: float = 900.0
    # Backend deadline for streams (watch, sample, evaluate) when the client sets none.
    stream_timeout_seconds: float = 24 * 3600.0
