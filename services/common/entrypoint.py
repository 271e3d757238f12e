"""The shared ``__main__`` body: settings from the environment, logging, serve."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from services.common.errors import SynthError
from services.common.logs import configure_logging
from services.common.server import SynthServer, stop_on_signals
from services.common.settings import BackendSettings, check_bind, from_env

S = TypeVar("S", bound=BackendSettings)


def serve(service: str, settings_cls: type[S], prefix: str, build: Callable[[S], SynthServer]) -> int:
    try:
        settings = from_env(settings_cls, prefix, os.environ)
    except SynthError as err:
        sys.stderr.write(f"{service}: bad configuration: {err}\n")
        return 2
    configure_logging(service, settings.log_level, settings.log_format)
    log = logging.getLogger(f"services.{service}")
    try:
        warning = check_bind(settings, prefix)
    except SynthError as err:  # open to any caller: a bind that needs mTLS or an explicit opt-in
        log.error("refusing to start", extra={"reason": err.reason})
        sys.stderr.write(f"{service}: refusing to start: {err}\n")
        return 2
    if warning:
        log.warning("insecure bind allowed", extra={"detail": warning})
    stop = stop_on_signals()
    try:
        server = build(settings)
        server.start()
    except SynthError as err:  # e.g. a TLS file that is missing or not a certificate
        log.error("refusing to start", extra={"reason": err.reason})
        sys.stderr.write(f"{service}: refusing to start: {err}\n")
        return 2
    except (OSError, RuntimeError) as err:  # e.g. a port in use
        log.error("cannot start", extra={"error": str(err)})
        sys.stderr.write(f"{service}: cannot start: {err}\n")
        return 2
    server.set_serving()
    log.info("serving", extra={"address": server.address, "store_dir": str(settings.store_dir)})
    stop.wait()
    server.stop()
    return 0
