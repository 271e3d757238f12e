"""An upload in progress: its bytes are streamed to a staging folder, checked
against the limits, decompressed if gzip, then validated, typed and published
in one step by :meth:`Upload.commit`.

A servicer drives it like this::

    intake = DatasetIntake(repository, IntakeLimits(max_bytes=...))
    with intake.begin_upload("adult", encoding="utf-8") as upload:
        for chunk in chunks:
            upload.write(chunk)          # may raise ResourceExhausted mid-stream
        info = upload.commit()           # validates, infers, stores atomically

Anything that goes wrong (a bad file, a cancelled stream, an exception in the
``with`` block) leaves nothing behind in the store.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from services.common.dataset_store import TABLE_FILE, DatasetRepository
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, ResourceExhausted
from services.common.schema import ColumnKind, DatasetInfo
from services.common.store import RequestKey, request_key
from services.trainer.datasets.inference import infer_schema
from services.trainer.datasets.scan import normalise_and_scan

__all__ = ["DEFAULT_MISSING_MARKERS", "DatasetIntake", "IntakeLimits", "Upload"]

DEFAULT_MISSING_MARKERS: tuple[str, ...] = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL")

_INCOMING = "incoming.bin"
_ENV_MAX_BYTES = "SYNTH_TRAINER_MAX_UPLOAD_BYTES"
_INFLATE_OUT = 1 << 20
_SNIFF_BYTES = 10
_MAX_DISPLAY_NAME = 256

# Magic numbers of formats people upload by mistake.
_NOT_CSV_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (or an .xlsx workbook)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel/Office (.xls) file"),
    (b"PAR1", "a Parquet file"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"BZh", "a bzip2 archive"),
)


@dataclass(frozen=True)
class IntakeLimits:
    # Enforced on the uploaded bytes and again on the decompressed bytes.
    max_bytes: int = 100 * 1024 * 1024
    # Fewer data rows are refused ("too few rows to learn from").
    min_rows: int = 10
    max_columns: int = 1000

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.min_rows < 1 or self.max_columns < 2:
            raise ValueError(f"invalid intake limits: {self}")


class DatasetIntake:
    """Uploads into a :class:`DatasetRepository`, within :class:`IntakeLimits`."""

    def __init__(self, datasets: DatasetRepository, limits: IntakeLimits = IntakeLimits()) -> None:
        self._datasets = datasets
        self.limits = limits

    def begin_upload(
        self,
        display_name: str,
        *,
        encoding: str = "utf-8",
        kind_overrides: Mapping[str, ColumnKind | str] | None = None,
        missing_markers: Sequence[str] | None = None,
        request_id: str = "",
    ) -> Upload:
        """Start an upload. The arguments are checked now (InvalidArgument);
        the table itself is checked by :meth:`Upload.commit`. With a
        ``request_id`` (a UUID, AIP-155) a retried upload returns the dataset
        the first one stored instead of storing it twice."""
        request_key(request_id, "", field="header.request_id")  # a malformed id fails now, before any bytes
        return Upload(
            self._datasets,
            self.limits,
            display_name=_check_display_name(display_name),
            codec=_check_encoding(encoding),
            overrides=_check_overrides(kind_overrides),
            markers=_check_markers(missing_markers),
            request_id=request_id,
        )


class Upload:
    """One upload in progress. Use it as a context manager: leaving the block
    without a successful :meth:`commit` aborts it and removes what was staged.
    Any error raised by :meth:`write` or :meth:`commit` aborts it as well."""

    def __init__(
        self,
        datasets: DatasetRepository,
        limits: IntakeLimits,
        *,
        display_name: str,
        codec: codecs.CodecInfo,
        overrides: dict[str, ColumnKind],
        markers: list[str],
        request_id: str = "",
    ) -> None:
        self._datasets = datasets
        self._request_id = request_id
        self._limits = limits
        self._display_name = display_name
        self._codec = codec
        self._overrides = overrides
        self._markers = markers
        self._stack = contextlib.ExitStack()
        self._dir: Path | None = None
        self._sink: IO[bytes] | None = None
        self._state = "open"
        self._received = 0
        self._decompressed = 0
        self._sha = hashlib.sha256()
        self._head = b""
        self._gzip: bool | None = None  # None until the first bytes are seen
        self._inflater: Any = None
        self._after = b""  # bytes after the end of a gzip member, not yet classified
        self._padding = False  # zero padding follows the last gzip member

    # ---- context manager --------------------------------------------------
    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "committed":
            self.abort()

    # ---- public -------------------------------------------------------------
    @property
    def bytes_received(self) -> int:
        """Bytes passed to :meth:`write` so far (as uploaded, before decompression)."""
        return self._received

    @property
    def sha256(self) -> str:
        """Hex sha256 of the bytes received so far (as uploaded)."""
        return self._sha.hexdigest()

    def write(self, chunk: bytes) -> None:
        """Append a chunk. Raises ResourceExhausted as soon as the upload, or
        what it decompresses to, exceeds ``IntakeLimits.max_bytes``."""
        self._require_open()
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"chunk must be bytes, not {type(chunk).__name__}")
        if not chunk:
            return
        try:
            self._received += len(chunk)
            if self._received > self._limits.max_bytes:
                raise _too_large(self._limits.max_bytes, decompressed=False)
            data = bytes(chunk)
            self._sha.update(data)
            self._ensure_staging()
            if self._gzip is None:
                self._head += data
                if len(self._head) < _SNIFF_BYTES:
                    return
                data, self._head = self._head, b""
                self._sniff(data)
            self._feed(data)
        except BaseException:
            self._fail()
            raise

    def commit(self) -> DatasetInfo:
        """Validate the table, infer its schema and store it atomically.
        On any error nothing is stored and the upload is aborted."""
        self._require_open()
        try:
            self._ensure_staging()
            if self._gzip is None:  # fewer than _SNIFF_BYTES arrived
                data, self._head = self._head, b""
                self._sniff(data)
                self._feed(data)
            self._finish_inflate()
            assert self._sink is not None and self._dir is not None
            self._sink.close()
            key = self._request_key()
            info = self._datasets.find_request(key)  # a retry: skip the parse
            if info is None:
                info = _build_dataset(
                    self._dir,
                    dataset_id=self._datasets.new_id(key),
                    display_name=self._display_name,
                    codec=self._codec,
                    overrides=self._overrides,
                    markers=self._markers,
                    limits=self._limits,
                )
                info = self._datasets.publish(self._dir, info, key)  # or what a concurrent retry stored first
            self._state = "committed"
            self._stack.close()  # the staging folder was moved away or is a duplicate: removed
            return info
        except BaseException:
            self._fail()
            raise

    def abort(self) -> None:
        """Forget the upload and remove what was staged. Idempotent."""
        if self._state == "committed":
            return
        if self._state == "open":
            self._state = "aborted"
        self._close()

    # ---- internals ------------------------------------------------------------
    def _request_key(self) -> RequestKey | None:
        """What a retry must repeat: the bytes as uploaded and every header option."""
        what = {
            "sha256": self._sha.hexdigest(),
            "display_name": self._display_name,
            "encoding": self._codec.name,
            "kind_overrides": {name: kind.value for name, kind in sorted(self._overrides.items())},
            "missing_markers": list(self._markers),
        }
        digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
        return request_key(self._request_id, digest, field="header.request_id")

    def _require_open(self) -> None:
        if self._state != "open":
            raise FailedPrecondition(f"this upload is already {self._state}", reason="UPLOAD_CLOSED")

    def _fail(self) -> None:
        self._state = "failed"
        self._close()

    def _close(self) -> None:
        if self._sink is not None and not self._sink.closed:
            self._sink.close()
        self._stack.close()

    def _ensure_staging(self) -> None:
        if self._dir is None:
            self._dir = self._stack.enter_context(self._datasets.staging())
            self._sink = open(self._dir / _INCOMING, "wb")  # noqa: SIM115 - closed in _close/commit

    def _sniff(self, head: bytes) -> None:
        if head.startswith(b"\x1f\x8b"):
            self._gzip = True
            self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            return
        self._gzip = False
        for magic, what in _NOT_CSV_MAGIC:
            if head.startswith(magic) and (magic != b"BZh" or head[4:10] == b"1AY&SY"):
                raise InvalidArgument(
                    f"the upload looks like {what}, not a CSV table; export the data as CSV "
                    "(optionally gzip-compressed) and upload that",
                    reason="UNSUPPORTED_FORMAT",
                    violations=[FieldViolation("file", f"looks like {what}")],
                )

    def _feed(self, data: bytes) -> None:
        if not self._gzip:
            self._emit(data)
            return
        while data:
            if self._inflater.eof:  # after a gzip member: another member, or zero padding
                self._after += data
                data = b""
                if self._padding or len(self._after) >= 2:
                    if not self._padding and self._after.startswith(b"\x1f\x8b"):
                        data, self._after = self._after, b""
                        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                        continue
                    if self._after.strip(b"\x00"):
                        raise _bad_gzip("there are stray bytes after the end of the compressed data")
                    self._padding, self._after = True, b""
                return
            out = self._inflate(data)
            # A full output block may leave more output inside zlib: drain it.
            while not self._inflater.unconsumed_tail and not self._inflater.eof and len(out) == _INFLATE_OUT:
                out = self._inflate(b"")
            data = self._inflater.unused_data if self._inflater.eof else self._inflater.unconsumed_tail

    def _inflate(self, data: bytes) -> bytes:
        try:
            out: bytes = self._inflater.decompress(data, _INFLATE_OUT)
        except zlib.error as exc:
            raise _bad_gzip(f"it is corrupt ({exc})") from exc
        self._emit(out)
        return out

    def _finish_inflate(self) -> None:
        if not self._gzip:
            return
        if not self._inflater.eof:
            try:
                self._emit(self._inflater.flush())
            except zlib.error as exc:
                raise _bad_gzip(f"it is corrupt ({exc})") from exc
            if not self._inflater.eof:
                raise _bad_gzip("it is truncated (the upload ended before the end of the compressed data)")
        if self._after.strip(b"\x00"):
            raise _bad_gzip("there are stray bytes after the end of the compressed data")

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self._decompressed += len(data)
        if self._decompressed > self._limits.max_bytes:
            raise _too_large(self._limits.max_bytes, decompressed=bool(self._gzip))
        assert self._sink is not None
        self._sink.write(data)


def _build_dataset(
    folder: Path,
    *,
    dataset_id: str,
    display_name: str,
    codec: codecs.CodecInfo,
    overrides: dict[str, ColumnKind],
    markers: list[str],
    limits: IntakeLimits,
) -> DatasetInfo:
    """Turn the staged upload in ``folder`` into the dataset's ``table.csv`` and its description."""
    incoming = folder / _INCOMING
    table = folder / TABLE_FILE
    scan = normalise_and_scan(incoming, table, codec, overrides, limits.max_columns)
    incoming.unlink()
    if scan.row_count < limits.min_rows:
        raise InvalidArgument(
            f"too few rows to learn from: the table has {scan.row_count} data rows, "
            f"at least {limits.min_rows} are needed",
            reason="TOO_FEW_ROWS",
            violations=[FieldViolation("rows", f"{scan.row_count} rows, at least {limits.min_rows} needed")],
        )
    columns = infer_schema(table, scan, markers, overrides)
    return DatasetInfo(
        id=dataset_id,
        display_name=display_name,
        row_count=scan.row_count,
        column_count=len(scan.header),
        size_bytes=scan.size_bytes,
        fingerprint=f"sha256:{scan.sha256}",
        columns=columns,
        missing_markers=list(markers),
        source_encoding=codec.name,
        created_at=time.time(),
    )


def _check_display_name(display_name: str) -> str:
    if not isinstance(display_name, str):
        raise InvalidArgument("display_name must be a string", reason="INVALID_DISPLAY_NAME")
    name = display_name.strip()
    if len(name) > _MAX_DISPLAY_NAME or any(ord(ch) < 32 for ch in name):
        raise InvalidArgument(
            f"display_name must be at most {_MAX_DISPLAY_NAME} characters, without control characters",
            reason="INVALID_DISPLAY_NAME",
            violations=[FieldViolation("display_name", "too long or has control characters")],
        )
    return name


def _check_encoding(encoding: str) -> codecs.CodecInfo:
    try:
        info = codecs.lookup(encoding) if isinstance(encoding, str) and encoding.strip() else None
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise InvalidArgument(
            f"unknown text encoding {encoding!r} (try utf-8, latin-1, cp1252, utf-16)",
            reason="UNKNOWN_ENCODING",
            violations=[FieldViolation("encoding", f"unknown text encoding {encoding!r}")],
        )
    return info


def _check_overrides(overrides: Mapping[str, ColumnKind | str] | None) -> dict[str, ColumnKind]:
    out: dict[str, ColumnKind] = {}
    for name, kind in (overrides or {}).items():
        try:
            out[str(name)] = ColumnKind(kind)
        except ValueError:
            raise InvalidArgument(
                f"kind_overrides[{name!r}]: unknown column kind {kind!r} "
                f"(one of {', '.join(k.value for k in ColumnKind)})",
                reason="UNKNOWN_COLUMN_KIND",
                violations=[FieldViolation(f"kind_overrides[{json.dumps(str(name))}]", "unknown column kind")],
            ) from None
    return out


def _check_markers(markers: Iterable[str] | None) -> list[str]:
    if markers is None:
        return list(DEFAULT_MISSING_MARKERS)
    if isinstance(markers, str | bytes):
        raise InvalidArgument("missing_markers must be a list of strings", reason="INVALID_MISSING_MARKERS")
    out = [""]  # an empty cell is always missing
    for marker in markers:
        if not isinstance(marker, str) or "\n" in marker or "\r" in marker or len(marker) > 64:
            raise InvalidArgument(
                f"bad missing-value marker {marker!r}: markers are one-line strings of at most 64 characters",
                reason="INVALID_MISSING_MARKERS",
                violations=[FieldViolation("missing_markers", f"bad marker {marker!r}")],
            )
        if marker not in out:
            out.append(marker)
    return out


def _too_large(limit: int, *, decompressed: bool) -> ResourceExhausted:
    what = "the decompressed upload" if decompressed else "the upload"
    return ResourceExhausted(
        f"{what} is larger than the limit of {limit / 1048576:g} MB ({limit} bytes); "
        f"an operator can raise it with the environment variable {_ENV_MAX_BYTES}",
        reason="UPLOAD_TOO_LARGE",
        metadata={"max_bytes": str(limit)},
    )


def _bad_gzip(why: str) -> InvalidArgument:
    return InvalidArgument(
        f"the upload starts like gzip, but {why}",
        reason="BAD_GZIP",
        violations=[FieldViolation("file", f"bad gzip data: {why}")],
    )
