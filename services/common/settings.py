"""Settings objects: one dataclass per service, read once from the environment
in ``__main__`` (prefix ``SYNTH_<SERVICE>_``) and passed down. Nothing reads the
environment at import time. Defaults run locally with no setup.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from services.common.errors import FailedPrecondition, InvalidArgument

T = TypeVar("T")


@dataclass(frozen=True)
class ServerSettings:
    """What every gRPC service has. Subclasses add their own fields."""

    # Address to bind. 127.0.0.1 locally; 0.0.0.0 in a container.
    host: str = "127.0.0.1"
    port: int = 0
    # Prometheus /metrics HTTP port (0: pick a free one; -1: disabled).
    metrics_port: int = -1
    # Largest gRPC message accepted or sent, in bytes.
    max_message_bytes: int = 16 * 1024 * 1024
    # Threads running the (sync) servicers. A sync stream may wait in one for
    # long (a gateway relay, an upload), so sync streams take at most three
    # quarters of them; async streams (training watches) hold none.
    max_workers: int = 32
    # Streams open at once, of every kind (each costs memory, not a thread).
    # Past either bound a new stream is refused with RESOURCE_EXHAUSTED.
    max_streams: int = 5000
    # Seconds in-flight calls get to finish after SIGTERM.
    grace_seconds: float = 10.0
    # Seconds after which a client connection is asked to reconnect (GOAWAY;
    # calls in flight finish on it). Clients re-resolve DNS when they reconnect,
    # which is how round-robin clients find replicas added by an autoscaler.
    # 0: never.
    max_connection_age_seconds: float = 0.0
    # The artifact store folder (a PVC mount in Kubernetes).
    store_dir: Path = Path("var/store")
    log_level: str = "INFO"
    # Log format: "json" (one object per line) or "text".
    log_format: str = "json"
    # TLS on the gRPC port, PEM files. All empty (the local default): plaintext.
    # Certificate and key: TLS. Plus a client CA: mutual TLS, and a client
    # without a certificate signed by that CA is refused during the handshake.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # A second, plaintext port that serves only grpc.health.v1, for Kubernetes'
    # gRPC probes (they cannot present a client certificate). -1: none; 0: pick one.
    health_port: int = -1

    def __post_init__(self) -> None:
        check_tls_files("TLS_", self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file)
        for name in ("max_workers", "max_streams"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name.upper()} must be at least 1")


@dataclass(frozen=True)
class BackendSettings(ServerSettings):
    """What the backends (trainer, sampler, evaluator) add: they have no API keys
    of their own, so off loopback only mutual TLS keeps unknown callers out."""

    # Serve on a non-loopback address without mutual TLS. Refused unless true:
    # set it only where something else admits nothing but the gateway (and the
    # evaluator, for the sampler), e.g. a Kubernetes NetworkPolicy (k8s/base).
    allow_insecure_bind: bool = False


def check_bind(settings: BackendSettings, prefix: str) -> str:
    """Refuse (``FailedPrecondition``) a backend that would accept calls from any
    host: bound to a non-loopback address without mutual TLS and without
    ``<prefix>ALLOW_INSECURE_BIND``. Returns "" when safe, or a warning to log
    when the opt-in let an insecure bind through."""
    if is_loopback(settings.host) or (settings.tls_cert_file and settings.tls_client_ca_file):
        return ""
    what = (
        f"TLS that accepts any client (no {prefix}TLS_CLIENT_CA_FILE)"
        if settings.tls_cert_file
        else "plaintext, with no client authentication"
    )
    if settings.allow_insecure_bind:
        return f"listening on {settings.host} with {what}: {prefix}ALLOW_INSECURE_BIND=true says callers are restricted"
    raise FailedPrecondition(
        f"refusing to listen on {settings.host} with {what}: any host that reaches the port could call it. "
        f"Serve mutual TLS ({prefix}TLS_CERT_FILE, {prefix}TLS_KEY_FILE and {prefix}TLS_CLIENT_CA_FILE; "
        f"docs/DEPLOY.md), bind 127.0.0.1 ({prefix}HOST), or, where a firewall or NetworkPolicy admits only "
        f"the gateway, set {prefix}ALLOW_INSECURE_BIND=true",
        reason="INSECURE_BIND",
    )


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP (127.0.0.0/8, ::1); "" and 0.0.0.0 are every address."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_tls_files(prefix: str, cert: str, key: str, client_ca: str = "") -> None:
    """Refuse half-configured TLS settings at start-up instead of silently
    running in plaintext: ``<prefix>CERT_FILE`` and ``<prefix>KEY_FILE`` go
    together, and a server's ``<prefix>CLIENT_CA_FILE`` needs both."""
    if bool(cert) != bool(key):
        raise InvalidArgument(
            f"{prefix}CERT_FILE and {prefix}KEY_FILE must be set together (or both left empty for plaintext)",
            reason="TLS_SETTINGS_INCOMPLETE",
        )
    if client_ca and not cert:
        raise InvalidArgument(
            f"{prefix}CLIENT_CA_FILE needs {prefix}CERT_FILE and {prefix}KEY_FILE (mutual TLS is TLS first)",
            reason="TLS_SETTINGS_INCOMPLETE",
        )


def from_env(cls: type[T], prefix: str, environ: Mapping[str, str], **overrides: Any) -> T:
    """Build settings ``cls`` from ``environ``: field ``max_workers`` is read
    from ``<prefix>MAX_WORKERS``. Unknown ``<prefix>*`` variables are refused so
    a typo in a manifest fails loudly instead of being ignored."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :].lower()
        if name not in names:
            raise InvalidArgument(
                f"unknown setting {key}; known: {', '.join(prefix + n.upper() for n in sorted(names))}"
            )
        values[name] = _convert(key, raw, hints[name])
    values.update(overrides)
    return cls(**values)


def env_names(cls: type, prefix: str) -> list[str]:
    """Every environment variable ``cls`` understands (docs and manifest tests use this)."""
    return [prefix + f.name.upper() for f in dataclasses.fields(cls)]


def _convert(key: str, raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(raw)
        if kind is str:
            return raw
        if origin is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        raise InvalidArgument(f"setting {key}={raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None
    raise TypeError(f"unsupported settings type {kind!r} for {key}")
