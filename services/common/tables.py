"""Dataset intake: validate an uploaded CSV table, infer its schema, store it.

Pure Python (pandas/numpy); no gRPC. A servicer drives it like this::

    with repo.begin_upload("adult", encoding="utf-8") as upload:
        for chunk in chunks:
            upload.write(chunk)          # may raise ResourceExhausted mid-stream
        info = upload.commit()           # validates, infers, stores atomically

Anything that goes wrong (a bad file, a cancelled stream, an exception in the
``with`` block) leaves nothing behind in the store.

What is stored (``datasets/<id>/`` in the artifact store):

- ``table.csv``: the table as uploaded, decompressed if it was gzip, decoded
  from the declared encoding and re-encoded as UTF-8 with any byte order mark
  removed. Cell text, quoting and line endings are kept as they were; nothing
  is dropped. ``DatasetInfo.fingerprint`` is the sha256 of these bytes.
- ``dataset.json``: ``DatasetInfo.to_dict()`` plus ``format_version``.

Conventions in errors: human messages count from 1 (``line 7``, ``column 3``,
``row 5`` = the fifth data row); field paths count from 0 as in protobuf field
paths (``rows[4]``, ``columns[2]``) or name the column (``columns["age"]``).
Line numbers are physical lines of the uploaded file, the header being line 1
(unless blank lines precede it).

Parsing: RFC 4180 CSV, comma separated, ``"`` quoting with doubled quotes,
strict (a quoted field must be followed by a comma or the end of the line).
Blank (empty or whitespace-only) lines are skipped, as pandas does; every other
line is a row and must have as many fields as the header. The csv module checks
the structure; pandas (reading every column as a categorical of strings) counts
values, so inference works on each column's distinct values and their counts.

Missing values: a cell whose whole text equals one of the missing-value markers
(``DEFAULT_MISSING_MARKERS`` or the caller's list; ``""`` is always one) is
missing. Missing cells are counted, never dropped.

Schema inference (per column, on the non-missing values; rules in this order,
the first that fits wins; ``distinct`` counts distinct cell texts, ``unique
ratio`` = distinct / non-missing). Every column records in ``kind_reason`` one
plain sentence saying which rule gave its kind (``"user override"`` for
overrides), so a surprising kind can be explained and corrected:

1. *numeric* if every value parses as a finite number (``pandas.to_numeric``;
   ``inf`` and ``nan`` text do not count as numbers). ``integer`` is set when all
   are whole numbers within +-2**53. Numbers with fractions -> ``continuous``.
   Whole numbers:

   - id-like name (``id``, ``uuid``, ``guid``, ``key``, ``pk`` as the last word:
     ``id``, ``user_id``, ``CustomerID``, ``order-key``) and unique ratio >= 0.95
     -> ``identifier``;
   - at most 10 distinct values -> ``categorical`` (flags, small codes);
   - at most 20 distinct values and unique ratio <= 0.5 -> ``categorical``.
     Integer codes such as UCI online-shoppers ``Browser`` (13 codes),
     ``TrafficType`` (20) or King County ``grade`` (12) are categories; a
     column with 20 values or fewer has too few levels for a continuous model to
     gain anything, and small counts (``bedrooms``, Pima ``Pregnancies``: 17)
     lose nothing as categories. The unique-ratio bound asks that values
     repeat: 13 distinct values in 23 rows (nycflights ``planes.speed``) are
     measurements, not codes. Real measurements start well above 20 distinct
     values (Adult ``age`` 73, ``hours_per_week`` 94, Pima ``BloodPressure`` 47);
   - a name whose last word says it is a code (``code``, ``zip``, ``zipcode``,
     ``postcode``, ``postal``, ``type``, ``category``, ``class``, ``region``,
     ``status``; words split as for ids, so ``TrafficType`` ends in ``type``),
     at most 200 distinct values and unique ratio <= 0.5 -> ``categorical``
     (King County ``zipcode``: 70 values, 98001..98199, whose order means
     nothing). When most values (>= 50%) are 0 the column is an amount with a
     misleading name, not codes, and stays ``continuous``, unless the last word
     is one of the unambiguous ``code``, ``zip``, ``zipcode``, ``postcode``,
     ``postal``. Zero-inflated amounts without such a name (Adult
     ``capital_gain``: 119 values, 92% zeros; King County ``yr_renovated``: 70
     values, 96% zeros) never reach this rule's categories;
   - otherwise -> ``continuous`` (``minimum``/``maximum`` recorded; so are Adult
     ``age``, King County ``yr_built`` with 116 values, Pima ``Glucose``).
2. *datetime* if every value parses with one format of ``DATETIME_FORMATS``
   (tried in order, so month-first ``%m/%d/%Y`` wins over day-first when both
   fit); the format is recorded and ``minimum``/``maximum`` are epoch seconds
   (times without an offset are taken as UTC; ``Z`` and ``%z`` offsets are
   converted to UTC).
3. other text:

   - id-like name and unique ratio >= 0.5 -> ``identifier``;
   - at least 50 values, unique ratio >= 0.95 and every value a single token
     (no whitespace, at most 64 characters) -> ``identifier``;
   - unique ratio >= 0.5 and (mean length > 30 or at least half the values hold
     several words) -> ``free_text``;
   - at least 20 values and unique ratio >= 0.5 -> ``identifier`` (near-unique
     text). Kaggle Titanic ``Ticket`` (681 distinct in 891 rows: ``A/5 21171``,
     ``PC 17599``, ``113803``) or ``Cabin`` (147 in 204) are not categories a
     model can learn: most values occur once, so a categorical model could only
     memorise them and re-emit real rare values, a privacy leak. Identifiers
     are not learned and the sampler makes fresh values. Ordinary categories
     repeat far more (Adult ``native_country``: 41 values in 32k rows, ratio
     0.001; nyc taxi zones: 203 in 6k). Small tables are judged by the same
     ratio: 20 distinct values in 30 rows become an identifier, because with
     most values seen once the model could only copy them; a user who knows
     the values are harmless categories overrides the kind. Below 20 values
     nothing is concluded (the column stays categorical);
   - otherwise -> ``categorical``.

``categories`` (categorical columns only) lists the distinct values, most
frequent first (ties by text), at most 1000. ``kind_overrides`` replace the
inferred kind; an override to ``continuous`` or ``datetime`` must fit every
value, else the upload is refused naming the first row that does not.
"""

from __future__ import annotations

import bisect
import builtins
import codecs
import contextlib
import csv
import enum
import hashlib
import json
import re
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import pandas as pd

from services.common.errors import (
    DataLoss,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from services.common.store import ArtifactStore, RequestKey, load_page, read_json, request_key, write_json_atomic

__all__ = [
    "DATETIME_FORMATS",
    "DEFAULT_MISSING_MARKERS",
    "ColumnInfo",
    "ColumnKind",
    "DatasetInfo",
    "DatasetRepository",
    "IntakeLimits",
    "Upload",
]

DEFAULT_MISSING_MARKERS: tuple[str, ...] = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL")

# Tried in this order; the first format that parses every value wins.
DATETIME_FORMATS: tuple[str, ...] = (
    "%Y-%m-%dT%H:%M:%S.%fZ",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%MZ",
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y%m%dT%H%M%SZ",
    "%Y%m%dT%H%M%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%d %b %Y",
    "%b %d, %Y",
    # Only reachable through a datetime override: such columns are numeric first.
    "%Y%m%d",
    "%Y",
)

_MAX_CATEGORIES = 1000
_MAX_VIOLATIONS = 10
# Integer codes (see the module docstring for the reasoning behind each number).
_SMALL_INT_CATEGORIES = 10
_INT_CODE_MAX_DISTINCT = 20
_NAMED_CODE_MAX_DISTINCT = 200
_CODE_MAX_UNIQUE = 0.5
_ZERO_INFLATED = 0.5
_CODE_WORDS = frozenset(
    {"code", "zip", "zipcode", "postcode", "postal", "type", "category", "class", "region", "status"}
)
_STRONG_CODE_WORDS = frozenset({"code", "zip", "zipcode", "postcode", "postal"})
_ID_UNIQUE_NUMERIC = 0.95
_ID_UNIQUE_NAMED_TEXT = 0.5
_ID_UNIQUE_TOKENS = 0.95
_ID_MIN_VALUES = 50
_ID_MAX_TOKEN_LEN = 64
_FREE_TEXT_UNIQUE = 0.5
_FREE_TEXT_MEAN_LEN = 30
_FREE_TEXT_MULTIWORD = 0.5
_NEAR_UNIQUE_TEXT = 0.5
_NEAR_UNIQUE_MIN_VALUES = 20
_NOT_LEARNED = "treated as an identifier and not learned, so no real value is copied"
_MAX_EXACT_INT = 2**53
_ID_WORDS = frozenset({"id", "uuid", "guid", "key", "pk"})

_TABLE = "table.csv"
_META = "dataset.json"
_INCOMING = "incoming.bin"
_FORMAT_VERSION = 1
_ENV_MAX_BYTES = "SYNTH_TRAINER_MAX_UPLOAD_BYTES"
_READ_BLOCK = 1 << 20
_INFLATE_OUT = 1 << 20
_PANDAS_CHUNK_ROWS = 100_000
_SNIFF_BYTES = 10
_MAX_PREVIEW_ROWS = 1000
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


class ColumnKind(enum.StrEnum):
    CONTINUOUS = "continuous"
    CATEGORICAL = "categorical"
    DATETIME = "datetime"
    IDENTIFIER = "identifier"
    FREE_TEXT = "free_text"


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


@dataclass
class ColumnInfo:
    name: str
    kind: ColumnKind
    missing_count: int
    distinct_count: int
    # Numeric values that are all whole numbers (so sampling can keep ints).
    integer: bool = False
    # strftime format of a datetime column, e.g. "%Y%m%dT%H%M%S".
    datetime_format: str | None = None
    # The kind came from a user override.
    overridden: bool = False
    # Numeric columns (any kind); datetime columns: epoch seconds.
    minimum: float | None = None
    maximum: float | None = None
    # Categorical columns: distinct values, most frequent first, at most 1000.
    categories: list[str] = field(default_factory=list)
    # One plain sentence on why the column got its kind ("" in schemas stored
    # before it was recorded).
    kind_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "missing_count": self.missing_count,
            "distinct_count": self.distinct_count,
            "integer": self.integer,
            "datetime_format": self.datetime_format,
            "overridden": self.overridden,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "categories": list(self.categories),
            "kind_reason": self.kind_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnInfo:
        return cls(
            name=str(data["name"]),
            kind=ColumnKind(data["kind"]),
            missing_count=int(data["missing_count"]),
            distinct_count=int(data["distinct_count"]),
            integer=bool(data.get("integer", False)),
            datetime_format=data.get("datetime_format"),
            overridden=bool(data.get("overridden", False)),
            minimum=None if data.get("minimum") is None else float(data["minimum"]),
            maximum=None if data.get("maximum") is None else float(data["maximum"]),
            categories=[str(c) for c in data.get("categories", [])],
            kind_reason=str(data.get("kind_reason") or ""),
        )


@dataclass
class DatasetInfo:
    id: str
    display_name: str
    row_count: int
    column_count: int
    # Bytes of the stored normalised UTF-8 CSV.
    size_bytes: int
    # "sha256:<hex>" of the stored normalised UTF-8 CSV bytes.
    fingerprint: str
    columns: list[ColumnInfo]
    missing_markers: list[str]
    # Python codec name of the declared encoding, e.g. "utf-8", "iso8859-1".
    source_encoding: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "display_name": self.display_name,
            "row_count": self.row_count,
            "column_count": self.column_count,
            "size_bytes": self.size_bytes,
            "fingerprint": self.fingerprint,
            "columns": [c.to_dict() for c in self.columns],
            "missing_markers": list(self.missing_markers),
            "source_encoding": self.source_encoding,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetInfo:
        return cls(
            id=str(data["id"]),
            display_name=str(data["display_name"]),
            row_count=int(data["row_count"]),
            column_count=int(data["column_count"]),
            size_bytes=int(data["size_bytes"]),
            fingerprint=str(data["fingerprint"]),
            columns=[ColumnInfo.from_dict(c) for c in data["columns"]],
            missing_markers=[str(m) for m in data["missing_markers"]],
            source_encoding=str(data["source_encoding"]),
            created_at=float(data["created_at"]),
        )

    def column(self, name: str) -> ColumnInfo:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


# --------------------------------------------------------------------------
# Repository
# --------------------------------------------------------------------------


_Names = list[str]
_Rows = list[list[str | None]]


class DatasetRepository:
    """Datasets in an :class:`ArtifactStore`: upload, read, list, delete."""

    def __init__(self, store: ArtifactStore, limits: IntakeLimits = IntakeLimits()) -> None:
        self._store = store
        self.limits = limits

    # ---- upload -----------------------------------------------------------
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
            self._store,
            self.limits,
            display_name=_check_display_name(display_name),
            codec=_check_encoding(encoding),
            overrides=_check_overrides(kind_overrides),
            markers=_check_markers(missing_markers),
            request_id=request_id,
        )

    # ---- read ---------------------------------------------------------------
    def get(self, dataset_id: str) -> DatasetInfo:
        folder = self._store.existing("datasets", dataset_id)
        return _read_info(folder, dataset_id)

    def list(self, page_size: int = 50, page_token: str = "") -> tuple[builtins.list[DatasetInfo], str]:
        """Datasets newest first: ``(items, next_page_token)``, ``""`` at the end
        (see :meth:`ArtifactStore.page`)."""
        ids, token = self._store.page("datasets", page_size, page_token)
        return load_page(ids, self.get), token

    def delete(self, dataset_id: str) -> None:
        self._store.delete("datasets", dataset_id)

    def preview(self, dataset_id: str, rows: int = 10) -> tuple[_Names, _Rows]:
        """Column names and the first ``rows`` rows (at most 1000) as text;
        missing cells are ``None``."""
        if not isinstance(rows, int) or isinstance(rows, bool) or rows <= 0:
            raise InvalidArgument(
                f"rows must be 1 or more, got {rows!r}",
                reason="INVALID_PREVIEW_ROWS",
                violations=[FieldViolation("rows", "must be 1 or more")],
            )
        rows = min(rows, _MAX_PREVIEW_ROWS)
        info = self.get(dataset_id)
        table = self._table_path(dataset_id)
        markers = set(info.missing_markers)
        names = [c.name for c in info.columns]
        out: builtins.list[builtins.list[str | None]] = []
        with _open_table(table, dataset_id) as fh:
            reader = csv.reader(fh, strict=True)
            header = _next_nonblank(reader)
            if header != names:
                raise _corrupt(dataset_id, "its table header does not match its schema")
            for row in reader:
                if _is_blank(row):
                    continue
                out.append([None if v in markers else v for v in row])
                if len(out) == rows:
                    break
        return names, out

    def load_frame(self, dataset_id: str) -> pd.DataFrame:
        """The whole table, typed by its stored schema: continuous -> float64
        (nullable Int64 when integer), datetime -> datetime64[ns] (UTC, naive),
        categorical / identifier / free text -> object (str). Missing cells are
        NaN / <NA> / NaT / None. The table's sha256 is checked first (DataLoss)."""
        info = self.get(dataset_id)
        table = self._table_path(dataset_id)
        digest = _sha256_file(table, dataset_id)
        if f"sha256:{digest}" != info.fingerprint:
            raise _corrupt(dataset_id, "its table does not match its fingerprint (tampered or damaged)")
        names = [c.name for c in info.columns]
        dtypes: dict[str, Any] = {
            c.name: ("float64" if c.kind is ColumnKind.CONTINUOUS else object) for c in info.columns
        }
        try:
            frame = pd.read_csv(
                table,
                header=0,
                names=names,
                dtype=dtypes,
                keep_default_na=False,
                na_values=list(info.missing_markers),
                encoding="utf-8",
                engine="c",
            )
            for col in info.columns:
                series = frame[col.name]
                if col.kind is ColumnKind.CONTINUOUS:
                    if col.integer:
                        frame[col.name] = _to_int64(series)
                elif col.kind is ColumnKind.DATETIME:
                    frame[col.name] = _parse_datetimes(series, col.datetime_format or "", errors="raise")
                elif col.missing_count:
                    frame[col.name] = series.astype(object).where(series.notna(), None)
        except (ValueError, TypeError, pd.errors.ParserError) as exc:
            raise _corrupt(dataset_id, f"its table does not match its schema ({exc})") from exc
        if len(frame) != info.row_count:
            raise _corrupt(dataset_id, f"its table has {len(frame)} rows, its schema says {info.row_count}")
        return frame

    def _table_path(self, dataset_id: str) -> Path:
        return self._store.existing("datasets", dataset_id) / _TABLE


# --------------------------------------------------------------------------
# Upload
# --------------------------------------------------------------------------


class Upload:
    """One upload in progress. Use it as a context manager: leaving the block
    without a successful :meth:`commit` aborts it and removes what was staged.
    Any error raised by :meth:`write` or :meth:`commit` aborts it as well."""

    def __init__(
        self,
        store: ArtifactStore,
        limits: IntakeLimits,
        *,
        display_name: str,
        codec: codecs.CodecInfo,
        overrides: dict[str, ColumnKind],
        markers: list[str],
        request_id: str = "",
    ) -> None:
        self._store = store
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
            earlier = self._store.find_request("datasets", key)  # a retry: skip the parse
            if earlier is None:
                info = _build_dataset(
                    self._dir,
                    dataset_id=self._store.new_id("datasets", key),
                    display_name=self._display_name,
                    codec=self._codec,
                    overrides=self._overrides,
                    markers=self._markers,
                    limits=self._limits,
                )
                if not self._store.commit_once(self._dir, "datasets", info.id, key):
                    earlier = info.id  # a concurrent retry stored it first
            if earlier is not None:
                info = _read_info(self._store.existing("datasets", earlier), earlier)
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
            self._dir = self._stack.enter_context(self._store.staging())
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


# --------------------------------------------------------------------------
# Building a dataset from a staged upload
# --------------------------------------------------------------------------


@dataclass
class _Scan:
    header: list[str]
    row_count: int
    sha256: str
    size_bytes: int
    lines: _RowLines


class _RowLines:
    """Maps a data row index to the line it starts on, storing only the rows
    where the simple ``previous + 1`` rule breaks (blank lines, multi-line cells)."""

    def __init__(self) -> None:
        self._rows: list[int] = []
        self._starts: list[int] = []

    def note(self, row: int, start: int) -> None:
        self._rows.append(row)
        self._starts.append(start)

    def line_of(self, row: int) -> int:
        i = bisect.bisect_right(self._rows, row) - 1
        if i < 0:
            return row + 2
        return self._starts[i] + (row - self._rows[i])


@dataclass
class _Profile:
    """A column's distinct non-missing values and their counts, most frequent first."""

    values: np.ndarray  # object array of str
    counts: np.ndarray  # int64
    missing: int

    @property
    def present(self) -> int:
        return int(self.counts.sum())


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
    incoming = folder / _INCOMING
    table = folder / _TABLE
    scan = _normalise_and_scan(incoming, table, codec, overrides, limits)
    incoming.unlink()
    if scan.row_count < limits.min_rows:
        raise InvalidArgument(
            f"too few rows to learn from: the table has {scan.row_count} data rows, "
            f"at least {limits.min_rows} are needed",
            reason="TOO_FEW_ROWS",
            violations=[FieldViolation("rows", f"{scan.row_count} rows, at least {limits.min_rows} needed")],
        )
    profiles = _profile_columns(table, scan, markers)
    empty = [name for name, p in zip(scan.header, profiles, strict=True) if p.present == 0]
    if empty:
        raise InvalidArgument(
            f"column{'s' if len(empty) > 1 else ''} {_quote_list(empty)} "
            f"{'are' if len(empty) > 1 else 'is'} empty or missing in every row; remove "
            f"{'them' if len(empty) > 1 else 'it'} or fill in values",
            reason="EMPTY_COLUMN",
            violations=[FieldViolation(_col_path(n), "empty or missing in every row") for n in empty],
        )
    columns: list[ColumnInfo] = []
    for index, (name, prof) in enumerate(zip(scan.header, profiles, strict=True)):
        if name in overrides:
            columns.append(_apply_override(name, index, overrides[name], prof, table, scan))
        else:
            columns.append(_infer_column(name, prof))
    info = DatasetInfo(
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
    write_json_atomic(folder / _META, {"format_version": _FORMAT_VERSION, **info.to_dict()})
    return info


def _normalise_and_scan(
    incoming: Path,
    table: Path,
    codec: codecs.CodecInfo,
    overrides: Mapping[str, ColumnKind],
    limits: IntakeLimits,
) -> _Scan:
    """One streaming pass: decode, write the UTF-8 copy (hashing it) and check
    the CSV structure with the csv module."""
    sha = hashlib.sha256()
    size = 0
    with open(incoming, "rb") as src, open(table, "wb") as dst:

        def sink(text: str) -> None:
            nonlocal size
            data = text.encode("utf-8")
            size += len(data)
            sha.update(data)
            dst.write(data)

        reader = csv.reader(_decoded_lines(src, codec, sink), strict=True)
        prev_line = 0
        try:
            header: list[str] | None = None
            for row in reader:
                start, prev_line = prev_line + 1, reader.line_num
                if not _is_blank(row):
                    header = row
                    break
            if header is None:
                raise InvalidArgument(
                    "empty table: no data rows (the file is empty)",
                    reason="EMPTY_TABLE",
                    violations=[FieldViolation("header", "the file is empty")],
                )
            _check_header(header, overrides, limits)
            ncols = len(header)
            lines = _RowLines()
            rows = ragged = 0
            violations: list[FieldViolation] = []
            first_bad: tuple[int, int] | None = None
            expected_start = 2  # what _RowLines assumes when nothing was noted
            for row in reader:
                start, prev_line = prev_line + 1, reader.line_num
                if len(row) != ncols:
                    if _is_blank(row):
                        continue
                    ragged += 1
                    if first_bad is None:
                        first_bad = (start, len(row))
                    if len(violations) < _MAX_VIOLATIONS:
                        violations.append(
                            FieldViolation(f"rows[{rows}]", f"line {start}: expected {ncols} fields, found {len(row)}")
                        )
                if start != expected_start:
                    lines.note(rows, start)
                expected_start = start + 1
                rows += 1
        except csv.Error as exc:
            line = prev_line + 1
            text = str(exc)
            if "unexpected end of data" in text:
                text = "a quoted field that starts here is never closed"
            elif "new-line character seen in unquoted field" in text:
                text = (
                    "a carriage return (\\r) inside an unquoted field; lines must end with \\n or \\r\\n "
                    "(old Mac \\r-only line endings are not supported)"
                )
            elif "field larger than field limit" in text:
                text = f"a cell is longer than {csv.field_size_limit()} characters"
            raise InvalidArgument(
                f"malformed CSV at line {line}: {text}",
                reason="MALFORMED_CSV",
                violations=[FieldViolation(f"lines[{line - 1}]", text)],
            ) from exc
    if first_bad is not None:
        line, found = first_bad
        more = f" ({ragged} rows in all; the first {len(violations)} are listed)" if ragged > 1 else ""
        raise InvalidArgument(
            f"row at line {line} has {found} field{'' if found == 1 else 's'}, but the header has {ncols}{more}; "
            "check for unquoted commas or missing cells",
            reason="RAGGED_ROWS",
            violations=violations,
        )
    if rows == 0:
        raise InvalidArgument(
            "empty table: no data rows (only a header line)",
            reason="EMPTY_TABLE",
            violations=[FieldViolation("rows", "no data rows after the header")],
        )
    return _Scan(header=header, row_count=rows, sha256=sha.hexdigest(), size_bytes=size, lines=lines)


def _decoded_lines(src: IO[bytes], codec: codecs.CodecInfo, sink: Any) -> Iterator[str]:
    """Decode ``src`` block by block, hand each block's text to ``sink`` and
    yield it line by line (each line keeps its ``\\n``) for the csv module."""
    decoder = codec.incrementaldecoder("strict")
    offset = 0  # bytes of src consumed before the current block
    newlines = 0  # "\n" seen in the decoded text so far
    carry = ""
    first = True
    while True:
        block = src.read(_READ_BLOCK)
        final = not block
        state = decoder.getstate()
        try:
            text = decoder.decode(block, final)
        except UnicodeDecodeError as exc:
            raise _decode_error(codec, exc, state, block, offset, newlines) from exc
        offset += len(block)
        if first and text:
            first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if "\x00" in text:
            line = newlines + text.count("\n", 0, text.index("\x00")) + 1
            raise InvalidArgument(
                f"line {line} contains a NUL character: this looks like a binary file, not CSV text",
                reason="BINARY_CONTENT",
                violations=[FieldViolation(f"lines[{line - 1}]", "NUL character")],
            )
        if text:
            sink(text)
            newlines += text.count("\n")
            parts = (carry + text).split("\n")
            carry = parts.pop()
            yield from [p + "\n" for p in parts]
        if final:
            break
    if carry:
        yield carry


def _decode_error(
    codec: codecs.CodecInfo,
    exc: UnicodeDecodeError,
    state: tuple[bytes, int],
    block: bytes,
    offset: int,
    newlines: int,
) -> InvalidArgument:
    pending = state[0] if isinstance(state, tuple) and isinstance(state[0], bytes) else b""
    position = max(0, offset - len(pending) + exc.start)
    line = newlines + 1
    with contextlib.suppress(Exception):  # the valid text before the bad byte
        replay = codec.incrementaldecoder("strict")
        replay.setstate(state)
        line += replay.decode(block[: max(0, exc.start - len(pending))]).count("\n")
    bad = exc.object[exc.start : exc.end].hex(" ")
    hint = (
        ' if the file is in another encoding, declare it (for example encoding="latin-1" or "cp1252")'
        if codec.name == "utf-8"
        else " check the declared encoding"
    )
    return InvalidArgument(
        f"the file is not valid {codec.name}: byte offset {position} (line {line}) has bytes {bad} "
        f"({exc.reason});{hint}",
        reason="INVALID_ENCODING",
        violations=[FieldViolation("encoding", f"not valid {codec.name} at byte offset {position}, line {line}")],
        metadata={"byte_offset": str(position), "line": str(line)},
    )


def _check_header(header: list[str], overrides: Mapping[str, ColumnKind], limits: IntakeLimits) -> None:
    if len(header) > limits.max_columns:
        raise InvalidArgument(
            f"the table has {len(header)} columns; at most {limits.max_columns} are allowed",
            reason="TOO_MANY_COLUMNS",
            violations=[FieldViolation("header", f"{len(header)} columns > {limits.max_columns}")],
        )
    if len(header) < 2:
        hint = ""
        if header and any(sep in header[0] for sep in (";", "\t", "|")):
            hint = " (the header looks separated by ';', tab or '|': only commas separate fields)"
        raise InvalidArgument(
            f"the table has {len(header)} column; at least two columns are needed{hint}",
            reason="TOO_FEW_COLUMNS",
            violations=[FieldViolation("header", "at least two columns are needed")],
        )
    violations: list[FieldViolation] = []
    problems: list[str] = []
    blanks = [i for i, name in enumerate(header) if not name.strip()]
    if blanks:
        where = ", ".join(str(i + 1) for i in blanks[:_MAX_VIOLATIONS])
        problems.append(
            f"column{'s' if len(blanks) > 1 else ''} {where} {'have' if len(blanks) > 1 else 'has'} no name"
        )
        violations += [FieldViolation(f"columns[{i}]", "blank column name") for i in blanks[:_MAX_VIOLATIONS]]
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        if name.strip():
            seen.setdefault(name, []).append(i)
    for name, where_list in seen.items():
        if len(where_list) > 1:
            positions = ", ".join(str(i + 1) for i in where_list)
            problems.append(f"column name {name!r} is used more than once (columns {positions})")
            violations += [FieldViolation(f"columns[{i}]", f"duplicate column name {name!r}") for i in where_list[1:]]
    if problems:
        raise InvalidArgument(
            f"bad header: {'; '.join(problems[:_MAX_VIOLATIONS])}; every column needs a unique name",
            reason="BAD_HEADER",
            violations=violations[:_MAX_VIOLATIONS] or [FieldViolation("header", "bad header")],
        )
    unknown = [name for name in overrides if name not in seen]
    if unknown:
        raise InvalidArgument(
            f"kind_overrides name{'s' if len(unknown) == 1 else ''} {_quote_list(unknown)}, "
            f"which {'is' if len(unknown) == 1 else 'are'} not a column of the table "
            f"(columns: {_quote_list(header[:20])}{', ...' if len(header) > 20 else ''})",
            reason="UNKNOWN_COLUMN",
            violations=[FieldViolation(f"kind_overrides[{json.dumps(n)}]", "no such column") for n in unknown],
        )


def _profile_columns(table: Path, scan: _Scan, markers: list[str]) -> list[_Profile]:
    """Count each column's distinct values with pandas, chunk by chunk (memory
    stays flat): every column is read as a categorical of strings."""
    ncols = len(scan.header)
    parts: list[list[pd.Series]] = [[] for _ in range(ncols)]
    missing = [0] * ncols
    total = 0
    try:
        chunks = pd.read_csv(
            table,
            header=0,
            names=list(range(ncols)),
            dtype="category",
            keep_default_na=False,
            na_values=markers,
            encoding="utf-8",
            engine="c",
            chunksize=_PANDAS_CHUNK_ROWS,
        )
        with chunks as reader:
            for chunk in reader:
                total += len(chunk)
                for j in range(ncols):
                    cat = chunk[j]
                    codes = cat.cat.codes.to_numpy()
                    present = codes >= 0
                    missing[j] += int(len(codes) - present.sum())
                    categories = cat.cat.categories
                    counts = np.bincount(codes[present], minlength=len(categories))
                    parts[j].append(pd.Series(counts, index=categories.astype(object), dtype="int64"))
    except (pd.errors.ParserError, ValueError) as exc:
        raise InvalidArgument(f"the table could not be parsed: {exc}", reason="MALFORMED_CSV") from exc
    if total != scan.row_count:  # the csv module and pandas disagree: refuse rather than guess
        raise InvalidArgument(
            f"the table could not be parsed consistently ({scan.row_count} rows by one reader, "
            f"{total} by another); check its quoting",
            reason="MALFORMED_CSV",
        )
    profiles = []
    for j in range(ncols):
        merged = parts[j][0] if len(parts[j]) == 1 else pd.concat(parts[j]).groupby(level=0, sort=False).sum()
        merged = merged[merged > 0]
        order = pd.DataFrame({"v": merged.index.to_numpy(dtype=object), "c": merged.to_numpy()}).sort_values(
            ["c", "v"], ascending=[False, True], kind="mergesort"
        )
        profiles.append(
            _Profile(
                values=order["v"].to_numpy(dtype=object),
                counts=order["c"].to_numpy(dtype=np.int64),
                missing=missing[j],
            )
        )
    return profiles


# --------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------


@dataclass
class _Numbers:
    ok: np.ndarray  # bool per distinct value: parses as a finite number
    numbers: np.ndarray  # float64 per distinct value (NaN where not ok)

    @property
    def all_ok(self) -> bool:
        return bool(self.ok.all())

    def integer(self) -> bool:
        nums = self.numbers
        return bool(np.all(nums == np.floor(nums)) and np.all(np.abs(nums) <= _MAX_EXACT_INT))


def _numbers(values: np.ndarray) -> _Numbers:
    parsed = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    return _Numbers(ok=np.isfinite(parsed), numbers=parsed)


def _last_word(name: str) -> str:
    """The last word of a column name, lower case: camelCase, snake_case,
    kebab-case and spaces all split (``TrafficType`` -> ``type``)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name.strip())
    words = [w for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]
    return words[-1].lower() if words else ""


def _is_id_name(name: str) -> bool:
    return _last_word(name) in _ID_WORDS


def _infer_column(name: str, prof: _Profile) -> ColumnInfo:
    present = prof.present
    distinct = len(prof.values)
    unique_ratio = distinct / present
    nums = _numbers(prof.values)
    seen = f"{distinct} distinct in {present} {'rows' if prof.missing == 0 else 'non-missing rows'}"
    if nums.all_ok:
        if not nums.integer():
            return _column(name, ColumnKind.CONTINUOUS, prof, nums, reason=f"numbers with {_values(distinct)}")
        if _is_id_name(name) and unique_ratio >= _ID_UNIQUE_NUMERIC:
            why = f"whole numbers named like an identifier ({seen}): {_NOT_LEARNED}"
            return _column(name, ColumnKind.IDENTIFIER, prof, nums, reason=why)
        word = _last_word(name)
        if distinct <= _SMALL_INT_CATEGORIES or (
            distinct <= _INT_CODE_MAX_DISTINCT and unique_ratio <= _CODE_MAX_UNIQUE
        ):
            return _column(name, ColumnKind.CATEGORICAL, prof, nums, reason=f"integer codes: {_values(distinct)}")
        if word in _CODE_WORDS and distinct <= _NAMED_CODE_MAX_DISTINCT and unique_ratio <= _CODE_MAX_UNIQUE:
            zeros = float(prof.counts[nums.numbers == 0].sum()) / present
            if zeros < _ZERO_INFLATED or word in _STRONG_CODE_WORDS:
                why = f"integer codes named like a code ({word!r}): {_values(distinct)}"
                return _column(name, ColumnKind.CATEGORICAL, prof, nums, reason=why)
            why = f"whole numbers with {_values(distinct)}, mostly 0 (an amount, not codes, despite the name)"
            return _column(name, ColumnKind.CONTINUOUS, prof, nums, reason=why)
        return _column(name, ColumnKind.CONTINUOUS, prof, nums, reason=f"whole numbers with {_values(distinct)}")
    fmt = _detect_datetime(prof.values)
    if fmt is not None:
        why = f"dates/times in the format {fmt}"
        return _column(name, ColumnKind.DATETIME, prof, nums, datetime_format=fmt, reason=why)
    if _is_id_name(name) and unique_ratio >= _ID_UNIQUE_NAMED_TEXT:
        why = f"text named like an identifier ({seen}): {_NOT_LEARNED}"
        return _column(name, ColumnKind.IDENTIFIER, prof, nums, reason=why)
    text = pd.Series(prof.values, dtype=object).astype(str)
    lengths = text.str.len().to_numpy()
    near_unique = f"near-unique text ({seen}): {_NOT_LEARNED}"
    if (
        present >= _ID_MIN_VALUES
        and unique_ratio >= _ID_UNIQUE_TOKENS
        and int(lengths.max()) <= _ID_MAX_TOKEN_LEN
        and not bool(text.str.contains(r"\s", regex=True).any())
    ):
        return _column(name, ColumnKind.IDENTIFIER, prof, nums, reason=near_unique)
    if unique_ratio >= _FREE_TEXT_UNIQUE:
        mean_length = float((lengths * prof.counts).sum()) / present
        multiword = text.str.strip().str.contains(r"\s", regex=True).to_numpy(dtype=bool)
        multiword_share = float(prof.counts[multiword].sum()) / present
        if mean_length > _FREE_TEXT_MEAN_LEN or multiword_share >= _FREE_TEXT_MULTIWORD:
            why = (
                f"free text ({_share(multiword_share)} of values have several words, "
                f"mean length {mean_length:.0f} characters): not learned"
            )
            return _column(name, ColumnKind.FREE_TEXT, prof, nums, reason=why)
    if present >= _NEAR_UNIQUE_MIN_VALUES and unique_ratio >= _NEAR_UNIQUE_TEXT:
        return _column(name, ColumnKind.IDENTIFIER, prof, nums, reason=near_unique)
    return _column(name, ColumnKind.CATEGORICAL, prof, nums, reason=f"text with {_values(distinct)}")


def _share(part: float) -> str:
    return f"{100 * part:.0f}%"


def _values(distinct: int) -> str:
    return f"{distinct} distinct value{'' if distinct == 1 else 's'}"


def _apply_override(name: str, index: int, kind: ColumnKind, prof: _Profile, table: Path, scan: _Scan) -> ColumnInfo:
    nums = _numbers(prof.values)
    if kind is ColumnKind.CONTINUOUS and not nums.all_ok:
        bad = set(prof.values[~nums.ok].tolist())
        raise _override_mismatch(name, index, kind, "is not a finite number", bad, table, scan)
    fmt: str | None = None
    if kind is ColumnKind.DATETIME:
        fmt, ok = _best_datetime_format(prof)
        if not ok.all():
            bad = set(prof.values[~ok].tolist())
            what = f"does not parse as a date/time (closest format {fmt!r})"
            raise _override_mismatch(name, index, kind, what, bad, table, scan)
    return _column(name, kind, prof, nums, datetime_format=fmt, overridden=True, reason="user override")


def _column(
    name: str,
    kind: ColumnKind,
    prof: _Profile,
    nums: _Numbers,
    *,
    reason: str,
    datetime_format: str | None = None,
    overridden: bool = False,
) -> ColumnInfo:
    """A column's summary. Numeric stats are kept for any kind whose values are
    all numbers; datetimes get epoch-second bounds instead."""
    info = ColumnInfo(
        name=name,
        kind=kind,
        missing_count=prof.missing,
        distinct_count=len(prof.values),
        overridden=overridden,
        kind_reason=reason,
    )
    if kind is ColumnKind.DATETIME:
        assert datetime_format is not None
        parsed = _parse_datetimes(pd.Series(prof.values, dtype=object), datetime_format, errors="coerce")
        seconds = parsed.dropna().astype("int64").to_numpy() / 1e9
        info.datetime_format = datetime_format
        info.minimum, info.maximum = float(seconds.min()), float(seconds.max())
    elif nums.all_ok:
        info.integer = nums.integer()
        info.minimum, info.maximum = float(nums.numbers.min()), float(nums.numbers.max())
    if kind is ColumnKind.CATEGORICAL:
        info.categories = [str(v) for v in prof.values[:_MAX_CATEGORIES]]
    return info


def _parse_datetimes(values: pd.Series, fmt: str, *, errors: str) -> pd.Series:
    """Parse with ``fmt`` into naive UTC datetime64[ns]; NaN stays NaT."""
    parsed = pd.to_datetime(values, format=fmt, errors=errors, utc=True)  # type: ignore[call-overload]
    return parsed.dt.tz_localize(None)


def _detect_datetime(values: np.ndarray) -> str | None:
    sample = pd.Series(values[:64], dtype=object)
    if not sample.str.contains(r"\d", regex=True).all() or int(sample.str.len().max()) > 40:
        return None
    full = pd.Series(values, dtype=object)
    for fmt in DATETIME_FORMATS:
        if _parse_datetimes(sample, fmt, errors="coerce").isna().any():
            continue
        if not _parse_datetimes(full, fmt, errors="coerce").isna().any():
            return fmt
    return None


def _best_datetime_format(prof: _Profile) -> tuple[str, np.ndarray]:
    """The format that parses the most cells, and which distinct values it parses."""
    full = pd.Series(prof.values, dtype=object)
    best: tuple[int, str, np.ndarray] | None = None
    for fmt in DATETIME_FORMATS:
        ok = _parse_datetimes(full, fmt, errors="coerce").notna().to_numpy()
        score = int(prof.counts[ok].sum())
        if best is None or score > best[0]:
            best = (score, fmt, ok)
        if ok.all():
            break
    assert best is not None
    return best[1], best[2]


def _override_mismatch(
    name: str, index: int, kind: ColumnKind, what: str, bad: set[str], table: Path, scan: _Scan
) -> InvalidArgument:
    row, value = _first_row_with(table, index, len(scan.header), bad)
    line = scan.lines.line_of(row)
    return InvalidArgument(
        f"column {name!r} cannot be {kind.value}: row {row + 1} (line {line}) has {value!r}, which {what}",
        reason="OVERRIDE_MISMATCH",
        violations=[
            FieldViolation(_col_path(name), f"cannot be {kind.value}"),
            FieldViolation(_row_path(row, name), f"{value!r} {what}"),
        ],
    )


def _first_row_with(table: Path, index: int, ncols: int, bad: set[str]) -> tuple[int, str]:
    offset = 0
    with pd.read_csv(
        table,
        header=0,
        names=list(range(ncols)),
        usecols=[index],
        dtype=object,
        na_filter=False,
        encoding="utf-8",
        chunksize=_PANDAS_CHUNK_ROWS,
    ) as reader:
        for chunk in reader:
            hits = np.flatnonzero(chunk[index].isin(bad).to_numpy())
            if len(hits):
                return offset + int(hits[0]), str(chunk[index].iloc[hits[0]])
            offset += len(chunk)
    return 0, next(iter(bad))  # unreachable: the values came from this table


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


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


def _is_blank(row: list[str]) -> bool:
    """An empty or whitespace-only line (pandas skips those too). A lone quoted
    empty field (``""``) is not blank: it is a row with one field."""
    return not row or (len(row) == 1 and row[0] != "" and not row[0].strip(" \t\r"))


def _next_nonblank(reader: Iterator[list[str]]) -> list[str] | None:
    for row in reader:
        if not _is_blank(row):
            return row
    return None


def _col_path(name: str) -> str:
    return f"columns[{json.dumps(name, ensure_ascii=False)}]"


def _row_path(row: int, name: str) -> str:
    if name.isidentifier():
        return f"rows[{row}].{name}"
    return f"rows[{row}][{json.dumps(name, ensure_ascii=False)}]"


def _quote_list(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _corrupt(dataset_id: str, why: str) -> DataLoss:
    return DataLoss(f"dataset {dataset_id} is damaged: {why}", reason="DATASET_CORRUPT")


def _read_info(folder: Path, dataset_id: str) -> DatasetInfo:
    try:
        data = read_json(folder / _META)
        info = DatasetInfo.from_dict(data)
    except FileNotFoundError as exc:
        if not folder.is_dir():  # deleted between the check and the read
            raise NotFound(f"dataset {dataset_id} not found", reason="DATASET_NOT_FOUND") from exc
        raise _corrupt(dataset_id, f"its {_META} is missing") from exc
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise _corrupt(dataset_id, f"its {_META} cannot be read ({exc})") from exc
    if info.id != dataset_id:
        raise _corrupt(dataset_id, f"its {_META} belongs to {info.id}")
    return info


@contextlib.contextmanager
def _open_table(table: Path, dataset_id: str) -> Iterator[IO[str]]:
    try:
        fh = open(table, encoding="utf-8", newline="")
    except FileNotFoundError as exc:
        raise _corrupt(dataset_id, f"its {_TABLE} is missing") from exc
    with fh:
        try:
            yield fh
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _corrupt(dataset_id, f"its {_TABLE} cannot be read ({exc})") from exc


def _to_int64(series: pd.Series) -> pd.Series:
    """float64 -> nullable Int64, fast (pandas' own safe cast is slow on wide
    tables). The schema promises whole numbers within +-2**53; check it."""
    values = series.to_numpy(dtype=np.float64)
    mask = np.isnan(values)
    ints = np.where(mask, 0.0, values).astype(np.int64)
    if not np.array_equal(ints[~mask], values[~mask]):
        raise ValueError(f"column {series.name!r} holds non-integer numbers")
    return pd.Series(pd.arrays.IntegerArray(ints, mask), index=series.index, name=series.name)


def _sha256_file(path: Path, dataset_id: str) -> str:
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(_READ_BLOCK):
                sha.update(block)
    except FileNotFoundError as exc:
        raise _corrupt(dataset_id, f"its {_TABLE} is missing") from exc
    return sha.hexdigest()
