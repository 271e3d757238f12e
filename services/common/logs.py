"""Structured logs: stdlib logging, one JSON object per line.

Request-scoped ids live in context variables set by the server interceptor (or
by a job runner) and are added to every record logged while they are set.
Row values never go into logs: log ids, counts and column names only.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

# Immutable default; every change sets a new dict, so contexts never share one.
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "synth_log_context", default=MappingProxyType({})
)

# Attributes every LogRecord has; anything else passed via ``extra=`` is ours.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextlib.contextmanager
def log_context(**ids: str) -> Iterator[None]:
    """Add ids (request_id, dataset_id, job_id...) to every log record inside."""
    merged = {**_context.get(), **{k: v for k, v in ids.items() if v}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**ids: str) -> None:
    """Add ids to the current context (until the enclosing log_context ends)."""
    _context.set({**_context.get(), **{k: v for k, v in ids.items() if v}})


def current_context() -> dict[str, str]:
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get())
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{k}={v}" for k, v in _context.get().items())
        base = super().format(record)
        return f"{base} {ids}".rstrip()


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send all logs to stderr in the chosen format. Called once from ``__main__``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(_TextFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
