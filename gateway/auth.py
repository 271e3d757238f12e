"""API keys: who may call the gateway.

Keys are stored only as ``sha256:<hex>`` of the key (a file, one per line, and/or
the ``API_KEY_HASHES`` setting); a caller sends the key itself, as
``authorization: Bearer <key>`` or ``x-api-key: <key>`` (gRPC metadata or HTTP
headers). The key file is re-read when it changes, so deleting a line revokes
that key without a restart; a key file that disappears revokes every key in it.
Keys and their hashes are never logged.

With no keys configured at all, the gateway runs open, but only on a loopback
address (the laptop default); anything else refuses to start.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

AUTH_HEADERS = ("authorization", "x-api-key")
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")
# Seconds between forced re-reads even when the file looks unchanged (a rewrite
# within one mtime tick with the same size and inode).
_FORCE_RELOAD_SECONDS = 5.0


def hash_key(key: str) -> str:
    """The at-rest form of an API key: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits, URL-safe)."""
    return "sk-" + secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    # Why a call was refused, safe to show (never the key).
    reason: str = ""


class KeyStore:
    """The accepted key hashes, from a file (re-read on change) and fixed hashes."""

    def __init__(self, key_file: str | Path | None = None, hashes: Iterable[str] = ()) -> None:
        self._file = Path(key_file) if key_file else None
        self._fixed = frozenset(_parse_lines(list(hashes), "SYNTH_GATEWAY_API_KEY_HASHES", strict=True))
        self._lock = threading.Lock()
        self._file_hashes: frozenset[str] = frozenset()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        if self._file is not None:
            if not self._file.is_file():
                raise InvalidArgument(f"API key file {self._file} does not exist", reason="API_KEY_FILE_MISSING")
            self._reload(force=True, strict=True)

    @property
    def enabled(self) -> bool:
        """True when keys are configured (even if the file is now empty: fail closed)."""
        return self._file is not None or bool(self._fixed)

    def key_count(self) -> int:
        self._reload()
        return len(self._fixed | self._file_hashes)

    def check(self, key: str | None) -> AuthResult:
        if not self.enabled:
            return AuthResult(True)
        if not key:
            return AuthResult(False, "missing API key: send 'authorization: Bearer <key>' or 'x-api-key: <key>'")
        self._reload()
        digest = hash_key(key)
        # Compare against every hash in constant time per entry.
        found = False
        for known in self._fixed | self._file_hashes:
            found |= hmac.compare_digest(known, digest)
        return AuthResult(True) if found else AuthResult(False, "invalid or revoked API key")

    def check_headers(self, headers: Mapping[str, str]) -> AuthResult:
        return self.check(key_from_headers(headers))

    def _reload(self, force: bool = False, strict: bool = False) -> None:
        if self._file is None:
            return
        try:
            st = os.stat(self._file)
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        now = time.monotonic()
        with self._lock:
            if not force and stamp == self._stamp and now - self._checked < _FORCE_RELOAD_SECONDS:
                return
            self._checked = now
            if stamp is None:
                if self._file_hashes:
                    log.warning("API key file is gone: its keys are revoked", extra={"key_file": str(self._file)})
                self._file_hashes, self._stamp = frozenset(), None
                return
            try:
                lines = self._file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                log.error("cannot read the API key file; keeping no keys from it", extra={"error": str(exc)})
                self._file_hashes, self._stamp = frozenset(), stamp
                return
            hashes = frozenset(_parse_lines(lines, str(self._file), strict=strict))
            if hashes != self._file_hashes or self._stamp is None:
                log.info("API keys loaded", extra={"key_file": str(self._file), "keys": len(hashes)})
            self._file_hashes, self._stamp = hashes, stamp


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a caller sent, from lower-cased header names."""
    auth = headers.get("authorization", "")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def check_bind(host: str, keys: KeyStore) -> None:
    """Refuse to serve without keys on anything but loopback; say so when open."""
    if keys.enabled:
        log.info("API key authentication on", extra={"keys": keys.key_count()})
        return
    if not is_loopback(host):
        raise FailedPrecondition(
            f"refusing to listen on {host} without API keys: set SYNTH_GATEWAY_API_KEY_FILE or "
            "SYNTH_GATEWAY_API_KEY_HASHES (create one with `python -m gateway new-key`), "
            "or bind 127.0.0.1",
            reason="NO_API_KEYS",
        )
    log.warning(
        "API key authentication OFF: no keys configured, listening on loopback only (the local default)",
        extra={"host": host},
    )


def _parse_lines(lines: list[str], source: str, strict: bool = False) -> list[str]:
    """Hashes from ``lines``. A bad entry refuses the start (``strict``) or,
    on a re-read, is skipped with an error in the log."""
    hashes = []
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        # "name sha256:<hex>" is allowed: the last word is the hash.
        token = line.split()[-1].lower()
        match = _HASH.match(token)
        if match is None:
            # Never echo the line: it may be a raw key pasted by mistake.
            if strict:
                raise InvalidArgument(
                    f"{source}: entry {number} is not sha256:<64 hex digits> (store key hashes, not keys: "
                    "`python -m gateway hash-key`)",
                    reason="BAD_API_KEY_ENTRY",
                )
            log.error(
                "ignoring an API key entry that is not sha256:<64 hex> (store hashes, not keys)",
                extra={"source": source, "line": number},
            )
            continue
        hashes.append(token)
    return hashes
