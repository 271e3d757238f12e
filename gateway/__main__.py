"""``python -m gateway``: the gateway process (gRPC front door, HTTP API, web page).

python -m gateway              serve (settings from SYNTH_GATEWAY_* variables)
python -m gateway new-key      print a new API key and the line for the key file
python -m gateway hash-key     read a key on stdin, print its "sha256:..." line
"""

from __future__ import annotations

import logging
import os
import sys

from gateway.auth import hash_key, new_key
from gateway.settings import ENV_PREFIX, GatewaySettings
from services.common.errors import SynthError
from services.common.logs import configure_logging
from services.common.server import stop_on_signals
from services.common.settings import from_env


def serve() -> int:
    """Like ``services.common.entrypoint.serve``, plus the HTTP side."""
    from gateway.app import Gateway

    try:
        settings = from_env(GatewaySettings, ENV_PREFIX, os.environ)
    except SynthError as err:
        sys.stderr.write(f"gateway: bad configuration: {err}\n")
        return 2
    configure_logging("gateway", settings.log_level, settings.log_format)
    log = logging.getLogger("gateway")
    stop = stop_on_signals()  # before "serving": a stop right after it must be graceful
    try:
        gateway = Gateway(settings)
    except SynthError as err:
        log.error("refusing to start", extra={"reason": err.reason})
        sys.stderr.write(f"gateway: refusing to start: {err}\n")
        return 2
    except (OSError, RuntimeError) as err:  # a port in use
        log.error("cannot start", extra={"error": str(err)})
        sys.stderr.write(f"gateway: cannot start: {err}\n")
        return 2
    gateway.start()
    gateway.set_serving()
    log.info(
        "serving",
        extra={
            "address": gateway.address,
            "http": gateway.http_url,
            "backends": gateway.backends.addresses,
        },
    )
    stop.wait()
    gateway.stop()
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        return serve()
    if argv == ["new-key"]:
        key = new_key()
        sys.stdout.write(f"key (give to the caller, store nowhere): {key}\nkey file line: {hash_key(key)}\n")
        return 0
    if argv == ["hash-key"]:
        key = sys.stdin.readline().strip()
        if not key:
            sys.stderr.write("hash-key: no key on stdin\n")
            return 2
        sys.stdout.write(hash_key(key) + "\n")
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
