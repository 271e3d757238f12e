"""A job's event log (``services.common.jobs``): the events, their lines in
``events.jsonl``, the log read and appended, and the wakeups of async watchers.
Domain code: no protobuf, no grpc."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

from services.common.errors import DataLoss

_ENVELOPE = ("sequence", "time", "type")


@dataclass(frozen=True)
class JobEvent:
    """Base of a job's events (frozen dataclasses): ``KIND`` names the event
    (its ``type`` in the log, its case of the watch response's oneof), and a
    ``TERMINAL`` one is a job's last. Fields with a default may be missing
    from lines written before they were added."""

    KIND: ClassVar[str] = ""
    TERMINAL: ClassVar[bool] = False

    def to_fields(self) -> dict[str, Any]:
        """The event's fields as JSON values (its line in the log, beside the
        envelope). A field with a default (one added later) is left out while it
        holds the default, so the lines of events without it read as they were."""
        return {
            f.name: value
            for f in dataclasses.fields(self)
            if (value := _json_value(getattr(self, f.name))) != f.default or f.default is dataclasses.MISSING
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_fields` (an event with nested values overrides both)."""
        return cls(**fields)


E = TypeVar("E", bound=JobEvent)


def _json_value(value: Any) -> Any:
    """Nested dataclasses (a Failure) as dicts, tuples as lists: what JSON holds."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class LoggedEvent(Generic[E]):
    """An event as the log holds it: numbered 1, 2, 3... per job, and timed."""

    sequence: int
    time: float
    event: E

    @property
    def terminal(self) -> bool:
        return self.event.TERMINAL

    def to_dict(self) -> dict[str, Any]:
        """One line of ``events.jsonl``."""
        return {"sequence": self.sequence, "time": self.time, "type": self.event.KIND, **self.event.to_fields()}


def decode_event(data: dict[str, Any], kinds: Mapping[str, type[E]]) -> tuple[int, float, E]:
    """One line of ``events.jsonl``: (sequence, time, event). Keys the event does
    not have are ignored (a later version may add fields); an unknown type or
    a missing field without a default is ``DataLoss``."""
    kind = data.get("type")
    event_type = kinds.get(kind) if isinstance(kind, str) else None
    if event_type is None:
        raise DataLoss(f"event log: unknown event type {kind!r}", reason="EVENT_LOG_CORRUPT")
    fields = dataclasses.fields(event_type)
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in (*_ENVELOPE, *required) if n not in data]
    if missing:
        raise DataLoss(f"event log: a {kind} event lacks {', '.join(missing)}", reason="EVENT_LOG_CORRUPT")
    event = event_type.from_fields({f.name: data[f.name] for f in fields if f.name in data})
    return int(data["sequence"]), float(data["time"]), event


class EventLog(Generic[E]):
    """One job's events in memory, backed by its ``events.jsonl`` (sequence =
    index + 1). Only complete lines are read: a line cut short by a crash is
    left out, with anything after it, until the job's next writer cuts it off
    and appends in its place."""

    def __init__(self, path: Path, kinds: Mapping[str, type[E]]) -> None:
        self.path = path
        self._kinds = kinds
        self.events: list[LoggedEvent[E]] = []
        self._offset = 0  # bytes of the file read into ``events``
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> bool:
        """Read the lines appended since (here or by another process); True if there were any."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return False
        complete = data[: data.rfind(b"\n") + 1]
        added = False
        for line in complete.splitlines(keepends=True):
            try:
                parsed = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break  # a torn line from a crash: the events before it stand
            sequence, when, event = decode_event(parsed, self._kinds)
            self.events.append(LoggedEvent(sequence=sequence, time=when, event=event))
            self._offset += len(line)
            added = True
        return added

    def append(self, event: E) -> LoggedEvent[E]:
        """Log ``event`` after the last one on file (called by the job's one writer)."""
        with self._lock:
            self._refresh()
            logged = LoggedEvent(sequence=len(self.events) + 1, time=time.time(), event=event)
            line = (json.dumps(logged.to_dict()) + "\n").encode()
            with open(self.path, "ab") as fh:
                if fh.tell() > self._offset:  # a torn tail: what follows it could never be read
                    fh.truncate(self._offset)
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._offset += len(line)
            self.events.append(logged)
            return logged

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1].terminal


class Wakeups:
    """Wakes async watchers, each waiting on an event of its own event loop,
    from any thread: one ``call_soon_threadsafe`` per loop, not per watcher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # never held across I/O: the loops take it too
        self._events: dict[asyncio.AbstractEventLoop, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Event]:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            self._events.setdefault(loop, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                waiting = self._events.get(loop, set())
                waiting.discard(event)
                if not waiting:
                    self._events.pop(loop, None)

    def notify(self) -> None:
        with self._lock:
            loops = list(self._events)
        for loop in loops:
            with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                loop.call_soon_threadsafe(self._wake, loop)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            events = list(self._events.get(loop, ()))
        for event in events:
            event.set()
