"""Loaded models kept in memory, least recently used first out, bounded by bytes.

Every lookup asks the registry first (a small JSON read, checked against the
manifest), so a model deleted from the store is NOT_FOUND at once and dropped
from the cache, and a corrupt one is DATA_LOSS; then the folder's files are
compared (names, sizes, modification times) with those the loaded copy was read
from: any change reloads the model, which verifies every file again, so an
altered model is refused instead of served from memory. Only then is the loaded
copy reused.

A freshly loaded model is also checked against its metadata: every file can pass
its checksum (a manifest re-hashed after an edit, a faulty migration) and the
files still name different columns. That is DATA_LOSS, naming the columns, before
a row is generated, not a KeyError deep in the row typing (INTERNAL).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.common.codec import NOT_LEARNED
from services.common.engine.artifact import CALIBRATION_FILE, SUPPORT_FILE, load_model
from services.common.engine.model import SynthesisModel
from services.common.errors import DataLoss, NotFound
from services.common.models import ModelInfo, ModelRegistry
from services.common.schema import ColumnInfo, ColumnKind

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


def check_columns_agree(model_id: str, model: SynthesisModel, info: ModelInfo) -> None:
    """``DataLoss`` unless the model's metadata (model.json) and its artifact
    (transformer or copula state, support and calibration) name the same columns:
    the engine learned exactly the metadata's learned columns, every categorical
    one as discrete, and the support and calibration rules cover only learned ones."""
    try:
        columns = [ColumnInfo.from_dict(c) for c in info.columns]
    except (KeyError, TypeError, ValueError) as err:
        raise DataLoss(
            f"model {model_id}: model.json describes its columns unreadably ({type(err).__name__}: {err})",
            reason="MODEL_CORRUPT",
        ) from None
    names = [c.name for c in columns]
    meta = {c.name for c in columns if c.kind not in NOT_LEARNED}
    categorical = {c.name for c in columns if c.kind == ColumnKind.CATEGORICAL}
    learned, discrete = set(model.columns), set(model.discrete_columns)
    problems = []
    if len(set(names)) != len(names):
        problems.append("model.json lists a column twice")
    if learned - meta:
        problems.append(f"the engine's state has {_names(learned - meta)}, which model.json does not list as learned")
    if meta - learned:
        problems.append(f"model.json lists {_names(meta - learned)}, which the engine's state does not have")
    if (categorical & learned) - discrete:
        problems.append(
            f"model.json says {_names((categorical & learned) - discrete)} categorical; the engine learned numbers"
        )
    for label, rules in ((SUPPORT_FILE, model.support), (CALIBRATION_FILE, model.calibration)):
        unknown = set(rules or ()) - learned
        if unknown:
            problems.append(f"{label} has rules for {_names(unknown)}, which the model did not learn")
    if problems:
        raise DataLoss(
            f"model {model_id}: its files disagree about the columns ({'; '.join(problems)}), so it cannot be "
            "sampled; train it again or restore its folder from a backup",
            reason="MODEL_INCONSISTENT",
        )


def _names(names: set[str]) -> str:
    return ", ".join(repr(n) for n in sorted(names))


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
            check_columns_agree(model_id, model, info)
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
