"""The artifact store: a folder (local disk, a PVC in Kubernetes) holding
datasets, models, jobs and reports, one sub-folder per item.

Why the rules below:
- Ids are validated against one strict pattern before they touch a path, so an
  id from a client can never escape the store's folder (``../``, ``/etc``...).
- Items are built in ``.staging/`` on the same filesystem and appear with one
  ``os.rename``: a reader sees a whole item or none, and a crash mid-write leaves
  only staging debris, which its owner sweeps at start-up. Each service stages
  in its own ``.staging/<owner>/`` so one service's sweep never removes
  another's upload in progress (the store may be a volume several share).
- Deleting renames the item into ``.trash/`` first, so it disappears atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.common.errors import AlreadyExists, InvalidArgument, NotFound

KINDS = {"datasets": "ds", "models": "mdl", "jobs": "job", "reports": "rpt"}
_ID_PATTERN = re.compile(r"^(ds|mdl|job|rpt)-[0-9a-f]{16}$")


class ArtifactStore:
    def __init__(self, root: Path, owner: str = "local") -> None:
        self.root = Path(root).resolve()
        for kind in KINDS:
            (self.root / kind).mkdir(parents=True, exist_ok=True)
        self._staging = self.root / ".staging" / owner
        self._trash = self.root / ".trash" / owner
        self._staging.mkdir(parents=True, exist_ok=True)
        self._trash.mkdir(parents=True, exist_ok=True)

    # ---- ids and paths -------------------------------------------------
    @staticmethod
    def new_id(kind: str) -> str:
        return f"{KINDS[kind]}-{secrets.token_hex(8)}"

    def path(self, kind: str, item_id: str) -> Path:
        """The folder of an item; raises InvalidArgument for a malformed id."""
        if kind not in KINDS:
            raise ValueError(f"unknown store kind {kind!r}")
        if not isinstance(item_id, str) or not _ID_PATTERN.match(item_id):
            raise InvalidArgument(
                f"{item_id!r} is not a valid id (expected like {KINDS[kind]}-0123456789abcdef)",
                reason="MALFORMED_ID",
            )
        if not item_id.startswith(KINDS[kind] + "-"):
            raise InvalidArgument(
                f"{item_id!r} is not a {kind[:-1]} id (it should start with {KINDS[kind]}-)",
                reason="MALFORMED_ID",
            )
        return self.root / kind / item_id

    def existing(self, kind: str, item_id: str) -> Path:
        """The folder of an item that must exist; raises NotFound otherwise."""
        folder = self.path(kind, item_id)
        if not folder.is_dir():
            raise NotFound(f"{kind[:-1]} {item_id} not found", reason=f"{kind[:-1].upper()}_NOT_FOUND")
        return folder

    def exists(self, kind: str, item_id: str) -> bool:
        try:
            return self.path(kind, item_id).is_dir()
        except InvalidArgument:
            return False

    def list_ids(self, kind: str) -> list[str]:
        """Ids of committed items, oldest first (by folder mtime, then id)."""
        folder = self.root / kind
        items = [p for p in folder.iterdir() if p.is_dir() and _ID_PATTERN.match(p.name)]
        items.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.name for p in items]

    # ---- atomic creation -----------------------------------------------
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private scratch folder on the store's filesystem, removed on exit
        unless it was committed (moved away) with :meth:`commit`."""
        tmp = Path(tempfile.mkdtemp(dir=self._staging))
        try:
            yield tmp
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, staged: Path, kind: str, item_id: str) -> Path:
        """Publish a staged folder as an item, atomically."""
        target = self.path(kind, item_id)
        if target.exists():
            raise AlreadyExists(f"{kind[:-1]} {item_id} already exists")
        _fsync_tree(staged)
        os.rename(staged, target)
        _fsync_dir(target.parent)
        return target

    def delete(self, kind: str, item_id: str) -> None:
        folder = self.existing(kind, item_id)
        doomed = self._trash / f"{item_id}-{secrets.token_hex(4)}"
        os.rename(folder, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def sweep(self) -> int:
        """Remove this owner's staging and trash debris left by a crash.
        Call at start-up, before serving."""
        removed = 0
        for folder in (self._staging, self._trash):
            for child in folder.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
                removed += 1
        return removed


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON next to ``path`` then rename over it (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _fsync_tree(folder: Path) -> None:
    for child in folder.rglob("*"):
        if child.is_file():
            fd = os.open(child, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
