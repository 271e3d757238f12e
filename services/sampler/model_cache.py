"""Loaded models kept in memory, least recently used first out, bounded by bytes.

Every lookup asks the registry first (a small JSON read, checked against the
manifest), so a model deleted from the store is NOT_FOUND at once and dropped
from the cache, and a corrupt one is DATA_LOSS; then the folder's files are
compared (names, sizes, modification times) with those the loaded copy was read
from: any change reloads the model, which verifies every file again, so an
altered model is refused instead of served from memory. Only then is the loaded
copy reused.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.common.engine.artifact import load_model
from services.common.engine.model import SynthesisModel
from services.common.errors import NotFound
from services.common.models import ModelInfo, ModelRegistry

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    model: SynthesisModel
    info: ModelInfo
    size: int
    stamp: tuple[tuple[str, int, int], ...]  # the files it was loaded from


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of every file of a model folder."""
    out = []
    for path in folder.iterdir():
        stat = path.stat()
        out.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(out))


class ModelCache:
    def __init__(
        self,
        registry: ModelRegistry,
        max_bytes: int,
        *,
        device: str = "cpu",
        on_change: Callable[[int], None] | None = None,
        signing_key: bytes | None = None,
    ) -> None:
        self._registry = registry
        self._signing_key = signing_key
        self._max_bytes = max_bytes
        self._device = device
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._on_change = on_change
        self.loads = 0
        self.hits = 0

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values())

    def get(self, model_id: str) -> tuple[SynthesisModel, ModelInfo]:
        try:
            info = self._registry.get(model_id)
        except NotFound:
            self.evict(model_id)
            raise
        folder = self._registry.folder(model_id)
        stamp = _stamp(folder)
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is not None and entry.info.created_at == info.created_at and entry.stamp == stamp:
                self._entries.move_to_end(model_id)
                self.hits += 1
                return entry.model, entry.info
            gate = self._loading.setdefault(model_id, threading.Lock())
        with gate:  # one load per model, however many requests arrive at once
            with self._lock:
                entry = self._entries.get(model_id)
                if entry is not None and entry.info.created_at == info.created_at and entry.stamp == stamp:
                    return entry.model, entry.info
                self._entries.pop(model_id, None)  # stale: never served again
            model = load_model(folder, device=self._device, signing_key=self._signing_key)
            size = model.size_bytes()
            with self._lock:
                self._entries[model_id] = _Entry(model, info, size, stamp)
                self.loads += 1
                self._shrink()
            log.info("model loaded", extra={"model_id": model_id, "bytes": size})
        self._changed()
        return model, info

    def evict(self, model_id: str) -> None:
        with self._lock:
            removed = self._entries.pop(model_id, None)
        if removed is not None:
            self._changed()

    def _shrink(self) -> None:
        total = sum(e.size for e in self._entries.values())
        while total > self._max_bytes and len(self._entries) > 1:
            model_id, entry = self._entries.popitem(last=False)
            total -= entry.size
            log.info("model evicted", extra={"model_id": model_id, "bytes": entry.size})

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.size_bytes)
