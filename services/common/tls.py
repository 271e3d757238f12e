"""TLS for gRPC from PEM files: server credentials (TLS, or mutual TLS with a
client CA) and client channel credentials.

Empty file names mean plaintext, the local default. Files are checked before
gRPC sees them, so a missing file, a key that does not match its certificate or
a CA file that is not a certificate refuses the start with a message naming the
setting, instead of failing later in every handshake with an opaque error.
Certificates are read once at start: rotating them means restarting the pods
(docs/DEPLOY.md).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from services.common.errors import InvalidArgument
from services.common.settings import check_tls_files

_PEM = b"-----BEGIN "


def server_credentials(
    cert_file: str, key_file: str, client_ca_file: str = "", *, setting: str = "TLS_"
) -> grpc.ServerCredentials | None:
    """None for plaintext; TLS with ``cert_file``/``key_file``; mutual TLS (a
    client certificate signed by ``client_ca_file`` required) when a CA is given."""
    check_tls_files(setting, cert_file, key_file, client_ca_file)
    if not cert_file:
        return None
    cert, key = _pair(cert_file, key_file, setting)
    if not client_ca_file:
        return grpc.ssl_server_credentials([(key, cert)])
    ca = _ca(client_ca_file, f"{setting}CLIENT_CA_FILE")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(
    ca_file: str, cert_file: str, key_file: str, *, setting: str = "TLS_"
) -> grpc.ChannelCredentials | None:
    """None for plaintext. ``ca_file`` verifies the server (empty: the system
    roots); ``cert_file``/``key_file`` are this client's certificate for mutual TLS."""
    check_tls_files(setting, cert_file, key_file)
    if not (ca_file or cert_file):
        return None
    ca = _ca(ca_file, f"{setting}CA_FILE") if ca_file else None
    if not cert_file:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    cert, key = _pair(cert_file, key_file, setting)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def channel(
    target: str, credentials: grpc.ChannelCredentials | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A secure channel with ``credentials``, a plaintext one without."""
    if credentials is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, credentials, options=list(options))


def _read(path: str, setting: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(
            f"{setting} {path}: cannot read it ({exc.strerror or exc})", reason="TLS_FILE_UNREADABLE"
        ) from None
    if _PEM not in data:
        raise InvalidArgument(f"{setting} {path} is not a PEM file", reason="TLS_FILE_INVALID")
    return data


def _pair(cert_file: str, key_file: str, setting: str) -> tuple[bytes, bytes]:
    cert = _read(cert_file, f"{setting}CERT_FILE")
    key = _read(key_file, f"{setting}KEY_FILE")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise InvalidArgument(
            f"{setting}CERT_FILE {cert_file} and {setting}KEY_FILE {key_file} are not a matching "
            f"certificate and private key ({exc.reason or exc})",
            reason="TLS_FILE_INVALID",
        ) from None
    return cert, key


def _ca(ca_file: str, setting: str) -> bytes:
    data = _read(ca_file, setting)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise InvalidArgument(
            f"{setting} {ca_file} holds no usable CA certificate ({exc.reason or exc})", reason="TLS_FILE_INVALID"
        ) from None
    return data
