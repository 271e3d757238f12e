"""The artifact store: a folder (local disk, a PVC in Kubernetes) holding
datasets, models, training jobs, reports and evaluation jobs, one sub-folder
per item.

Why the rules below:
- Ids are validated against one strict pattern before they touch a path, so an
  id from a client can never escape the store's folder (``../``, ``/etc``...).
- Items are built in ``.staging/`` on the same filesystem and appear with one
  ``os.rename``: a reader sees a whole item or none, and a crash mid-write leaves
  only staging debris, which its owner sweeps at start-up. Each service stages
  in its own ``.staging/<owner>/`` so one service's sweep never removes
  another's upload in progress (the store may be a volume several share).
- Deleting renames the item into ``.trash/`` first, so it disappears atomically.
- Every item gets an empty ``.created`` file when it is committed: its mtime
  is the item's creation time. The folder's own mtime is not: it changes each
  time a file inside is replaced (a job's record is rewritten at every epoch).
  Listings are ordered by it, newest first, and page by it (AIP-158 tokens
  that name the last item returned, so a page never shifts when items are
  added or deleted between calls).
- A create call that carries an idempotency key (AIP-155 ``request_id``) makes
  the item whose id is derived from the key, and stores the key and a digest of
  the request inside it (``request.json``), committed with it in the same
  rename. So a retry, in any process sharing the store, names the same folder
  (one read to find it); the rename lets only one of concurrent retries
  commit; a crash never leaves an item without its key or a key without its
  item; and deleting the item forgets the key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from services.common.errors import AlreadyExists, DataLoss, FieldViolation, InvalidArgument, NotFound

# "jobs" are training jobs (their ids came first); "evaluations" evaluation jobs.
KINDS = {"datasets": "ds", "models": "mdl", "jobs": "job", "reports": "rpt", "evaluations": "eval"}
_ID_PATTERN = re.compile(r"^(ds|mdl|job|rpt|eval)-[0-9a-f]{16}$")
REQUEST_FILE = "request.json"
CREATED_FILE = ".created"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class RequestKey:
    """A create call's idempotency key and a digest of what it asked for: a
    retry must ask for the same thing to get the same item back."""

    request_id: str
    digest: str


def request_key(request_id: str, digest: str, field: str = "request_id") -> RequestKey | None:
    """The key for a ``request_id`` as sent (None when it is empty). It must be
    a UUID (AIP-155); it is kept in canonical lower-case form."""
    if not request_id:
        return None
    try:
        canonical = str(uuid.UUID(request_id))
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(
            f"{field} must be a UUID such as {uuid.uuid4()}, got {request_id[:64]!r}",
            reason="MALFORMED_REQUEST_ID",
            violations=[FieldViolation(field, "not a UUID")],
        ) from None
    return RequestKey(canonical, digest)


class ArtifactStore:
    def __init__(self, root: Path, owner: str = "local") -> None:
        self.root = Path(root).resolve()
        for kind in KINDS:
            (self.root / kind).mkdir(parents=True, exist_ok=True)
        self._staging = self.root / ".staging" / owner
        self._trash = self.root / ".trash" / owner
        self._staging.mkdir(parents=True, exist_ok=True)
        self._trash.mkdir(parents=True, exist_ok=True)
        self._id_key = _id_key(self.root)

    # ---- ids and paths -------------------------------------------------
    def new_id(self, kind: str, key: RequestKey | None = None) -> str:
        """A fresh random id, or for a keyed request the id derived from its
        request id with the store's secret: every retry of it names the same
        item, in every service sharing the store, and no caller can tell an
        id in advance (sha256 of the request id alone let a web page do that)."""
        if key is None:
            return f"{KINDS[kind]}-{secrets.token_hex(8)}"
        digest = hmac.new(self._id_key, f"{kind}:{key.request_id}".encode(), hashlib.sha256).hexdigest()
        return f"{KINDS[kind]}-{digest[:16]}"

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
        """Ids of committed items, oldest first (by creation time, then id)."""
        return [item_id for _, item_id in sorted(self._created_keys(kind))]

    def page(self, kind: str, page_size: int = 0, page_token: str = "") -> tuple[list[str], str]:
        """One page of ids, newest first (AIP-158): ``(ids, next_page_token)``,
        the token ``""`` after the last page. ``page_size`` 0 means 50; at most
        1000. The token names the last id returned, so the next page starts
        right after it whatever was added or deleted in between."""
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 0:
            raise InvalidArgument(
                f"page_size must be 0 or more, got {page_size!r}",
                reason="INVALID_PAGE_SIZE",
                violations=[FieldViolation("page_size", "must be 0 or more")],
            )
        size = DEFAULT_PAGE_SIZE if page_size == 0 else min(page_size, MAX_PAGE_SIZE)
        keys = sorted(self._created_keys(kind), reverse=True)
        if page_token:
            after = _decode_page_token(page_token)
            keys = [key for key in keys if key < after]
        page = keys[:size]
        token = _encode_page_token(page[-1]) if len(keys) > size else ""
        return [item_id for _, item_id in page], token

    def _created_keys(self, kind: str) -> list[tuple[int, str]]:
        """(creation time, id) of every committed item."""
        keys = []
        for folder in (self.root / kind).iterdir():
            if not _ID_PATTERN.match(folder.name) or not folder.is_dir():
                continue
            # Items from before the marker fall back to the folder's mtime.
            created = _mtime_ns(folder / CREATED_FILE) or _mtime_ns(folder)
            if created is not None:  # None: deleted meanwhile
                keys.append((created, folder.name))
        return keys

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
        (staged / CREATED_FILE).touch()
        _fsync_tree(staged)
        try:
            os.rename(staged, target)
        except OSError as err:  # another process committed it since the check (items are never empty)
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise AlreadyExists(f"{kind[:-1]} {item_id} already exists") from None
            raise
        _fsync_dir(target.parent)
        return target

    # ---- idempotent creation (AIP-155) -------------------------------------
    def find_request(self, kind: str, key: RequestKey | None) -> str | None:
        """The id of the item that ``key``'s request already made, or None (one
        file read: the id is derived from the key). The same request id with
        another digest is an ``InvalidArgument``."""
        if key is None:
            return None
        item_id = self.new_id(kind, key)
        try:
            stored = read_json(self.path(kind, item_id) / REQUEST_FILE)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stored.get("request_id") != key.request_id or stored.get("digest") != key.digest:
            raise InvalidArgument(
                f"request_id {key.request_id} was already used for a different request "
                f"(it made {item_id}); use a new request_id for a new request",
                reason="REQUEST_ID_REUSED",
                violations=[FieldViolation("request_id", f"already used for a different request ({item_id})")],
            )
        return item_id

    def commit_once(self, staged: Path, kind: str, item_id: str, key: RequestKey | None) -> bool:
        """:meth:`commit` the item ``new_id(kind, key)`` names; False (and the
        staged folder left for its context to remove) when a retry of the same
        request committed it first, here or in another process: the rename
        decides, so concurrent calls with one key make one item."""
        if key is None:
            self.commit(staged, kind, item_id)
            return True
        if item_id != self.new_id(kind, key):
            raise ValueError(f"{item_id} is not the id of request {key.request_id}")
        write_json_atomic(staged / REQUEST_FILE, {"request_id": key.request_id, "digest": key.digest})
        try:
            self.commit(staged, kind, item_id)
        except AlreadyExists:
            if self.find_request(kind, key) is None:  # deleted again already: leave it so
                raise
            return False
        return True

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
        self._mark_created()
        return removed

    def _mark_created(self) -> None:
        """Give items from before the ``.created`` marker one, dated by their
        folder's mtime now, so their place in listings stops moving each time a
        file inside them is replaced (the folder's mtime would)."""
        for kind in KINDS:
            for folder in (self.root / kind).iterdir():
                if not _ID_PATTERN.match(folder.name) or not folder.is_dir():
                    continue
                marker = folder / CREATED_FILE
                when = _mtime_ns(folder)
                if when is None or marker.exists():
                    continue
                try:
                    marker.touch(exist_ok=False)
                    os.utime(marker, ns=(when, when))
                except (FileExistsError, FileNotFoundError):  # another service marked it, or it went
                    continue


_ID_KEY_FILE = ".id-key"


def _id_key(root: Path) -> bytes:
    """The store's secret for derived ids: made once, by whichever service starts
    first, and complete before anyone can see it (linked into place from a
    finished file, which fails if another process got there first)."""
    path = root / _ID_KEY_FILE
    if not path.exists():
        tmp = root / f".{_ID_KEY_FILE}.{secrets.token_hex(4)}.tmp"
        tmp.write_text(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise DataLoss(f"the store's id key ({_ID_KEY_FILE}) is damaged")
    return key.encode()


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


def load_page(ids: list[str], load: Callable[[str], T]) -> list[T]:
    """The items of a page of ids, skipping any deleted since it was listed
    (a page may then be one short, which AIP-158 allows)."""
    items = []
    for item_id in ids:
        try:
            items.append(load(item_id))
        except NotFound:
            continue
    return items


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return None


def _encode_page_token(key: tuple[int, str]) -> str:
    raw = json.dumps({"v": 1, "m": key[0], "i": key[1]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if data.get("v") != 1 or not isinstance(data["m"], int) or not isinstance(data["i"], str):
            raise ValueError(token)
        return data["m"], data["i"]
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeError, binascii.Error):
        raise InvalidArgument(
            "page_token is not valid (use the next_page_token of a previous list call)",
            reason="INVALID_PAGE_TOKEN",
            violations=[FieldViolation("page_token", "not a token this service issued")],
        ) from None
