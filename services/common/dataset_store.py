"""Stored datasets: the on-disk format and the repository that reads it.

Shared by the trainer (which also publishes datasets) and the evaluator
(which reads them). Validating an upload and inferring its schema is the
trainer's business (``services.trainer.datasets``); this module only knows
how a finished dataset is laid out and read back.

What is stored (``datasets/<id>/`` in the artifact store):

- ``table.csv``: the table as uploaded, decompressed if it was gzip, decoded
  from the declared encoding and re-encoded as UTF-8 with any byte order mark
  removed. Cell text, quoting and line endings are kept as they were; nothing
  is dropped. ``DatasetInfo.fingerprint`` is the sha256 of these bytes.
- ``dataset.json``: ``DatasetInfo.to_dict()`` plus ``format_version``.

A dataset is built in a staging folder (:meth:`DatasetRepository.staging`)
and appears with one rename (:meth:`DatasetRepository.publish`), so a reader
sees a whole dataset or none.
"""

from __future__ import annotations

import builtins
import contextlib
import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from services.common.errors import DataLoss, FieldViolation, InvalidArgument, NotFound
from services.common.schema import ColumnInfo, ColumnKind, DatasetInfo
from services.common.store import ArtifactStore, RequestKey, load_page, read_json, write_json_atomic

__all__ = ["FORMAT_VERSION", "INFO_FILE", "MASK", "TABLE_FILE", "DatasetRepository", "is_blank_row", "parse_datetimes"]

TABLE_FILE = "table.csv"
INFO_FILE = "dataset.json"
FORMAT_VERSION = 1
_KIND = "datasets"
_READ_BLOCK = 1 << 20
_MAX_PREVIEW_ROWS = 1000

_Names = list[str]
_Rows = list[list[str | None]]
_Masks = list[list[bool]]
# The text of a masked preview cell (a rare value; see DatasetRepository.preview).
MASK = "***"


class DatasetRepository:
    """Datasets in an :class:`ArtifactStore`: read, list, delete, and publish
    one built in a staging folder. It validates no upload: see
    ``services.trainer.datasets`` for that."""

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    # ---- publish ----------------------------------------------------------
    def staging(self) -> contextlib.AbstractContextManager[Path]:
        """A private folder to build a dataset in, removed on exit unless it
        was published."""
        return self._store.staging()

    def new_id(self, key: RequestKey | None = None) -> str:
        """The id a new dataset gets: fresh, or derived from ``key`` (AIP-155)."""
        return self._store.new_id(_KIND, key)

    def find_request(self, key: RequestKey | None) -> DatasetInfo | None:
        """The dataset ``key``'s request already stored, or None. The same
        request id with another digest is an ``InvalidArgument``."""
        earlier = self._store.find_request(_KIND, key)
        return None if earlier is None else self.get(earlier)

    def publish(self, staged: Path, info: DatasetInfo, key: RequestKey | None = None) -> DatasetInfo:
        """Store the dataset built in ``staged`` (which holds its ``table.csv``):
        write its ``dataset.json`` and commit the folder with one rename. When a
        concurrent retry of the same keyed request committed first, return
        what it stored (``staged`` is then left for its context to remove)."""
        write_json_atomic(staged / INFO_FILE, {"format_version": FORMAT_VERSION, **info.to_dict()})
        if self._store.commit_once(staged, _KIND, info.id, key):
            return info
        return self.get(info.id)

    # ---- read ---------------------------------------------------------------
    def get(self, dataset_id: str) -> DatasetInfo:
        folder = self._store.existing(_KIND, dataset_id)
        return _read_info(folder, dataset_id)

    def list(self, page_size: int = 50, page_token: str = "") -> tuple[builtins.list[DatasetInfo], str]:
        """Datasets newest first: ``(items, next_page_token)``, ``""`` at the end
        (see :meth:`ArtifactStore.page`)."""
        ids, token = self._store.page(_KIND, page_size, page_token)
        return load_page(ids, self.get), token

    def delete(self, dataset_id: str) -> None:
        self._store.delete(_KIND, dataset_id)

    def preview(self, dataset_id: str, rows: int = 10) -> tuple[_Names, _Rows, _Masks]:
        """Column names, the first ``rows`` rows (at most 1000) as text, and which
        cells are masked. Missing cells are ``None``. A cell is masked (its text
        replaced by ``MASK``) when it holds a rare value: a category the schema
        withholds (seen in fewer than ``RARE_MIN_COUNT`` rows), or any value of an
        identifier or free-text column (near-unique by definition)."""
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
        keep = [_shown_values(c) for c in info.columns]
        out: builtins.list[builtins.list[str | None]] = []
        masks: builtins.list[builtins.list[bool]] = []
        with _open_table(table, dataset_id) as fh:
            reader = csv.reader(fh, strict=True)
            header = _next_nonblank(reader)
            if header != names:
                raise _corrupt(dataset_id, "its table header does not match its schema")
            for row in reader:
                if is_blank_row(row):
                    continue
                values: builtins.list[str | None] = [None if v in markers else v for v in row]
                masked = [
                    v is not None and shown is not None and v not in shown
                    for v, shown in zip(values, keep, strict=True)
                ]
                out.append([MASK if m else v for v, m in zip(values, masked, strict=True)])
                masks.append(masked)
                if len(out) == rows:
                    break
        return names, out, masks

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
                    frame[col.name] = parse_datetimes(series, col.datetime_format or "", errors="raise")
                elif col.missing_count:
                    frame[col.name] = series.astype(object).where(series.notna(), None)
        except (ValueError, TypeError, pd.errors.ParserError) as exc:
            raise _corrupt(dataset_id, f"its table does not match its schema ({exc})") from exc
        if len(frame) != info.row_count:
            raise _corrupt(dataset_id, f"its table has {len(frame)} rows, its schema says {info.row_count}")
        return frame

    def _table_path(self, dataset_id: str) -> Path:
        return self._store.existing(_KIND, dataset_id) / TABLE_FILE


# --------------------------------------------------------------------------
# The format's helpers (the trainer's intake parses with the same rules)
# --------------------------------------------------------------------------


def _shown_values(col: ColumnInfo) -> frozenset[str] | None:
    """The values of a column a preview may show (None: any)."""
    if col.kind in (ColumnKind.IDENTIFIER, ColumnKind.FREE_TEXT):
        return frozenset()
    if col.kind is ColumnKind.CATEGORICAL and col.withheld_categories:
        return frozenset(col.categories)
    return None


def is_blank_row(row: list[str]) -> bool:
    """An empty or whitespace-only line (pandas skips those too). A lone quoted
    empty field (``""``) is not blank: it is a row with one field."""
    return not row or (len(row) == 1 and row[0] != "" and not row[0].strip(" \t\r"))


def parse_datetimes(values: pd.Series, fmt: str, *, errors: str) -> pd.Series:
    """Parse with ``fmt`` into naive UTC datetime64[ns]; NaN stays NaT."""
    parsed = pd.to_datetime(values, format=fmt, errors=errors, utc=True)
    return parsed.dt.tz_localize(None)


def _next_nonblank(reader: Iterator[list[str]]) -> list[str] | None:
    for row in reader:
        if not is_blank_row(row):
            return row
    return None


def _corrupt(dataset_id: str, why: str) -> DataLoss:
    return DataLoss(f"dataset {dataset_id} is damaged: {why}", reason="DATASET_CORRUPT")


def _read_info(folder: Path, dataset_id: str) -> DatasetInfo:
    try:
        data = read_json(folder / INFO_FILE)
        info = DatasetInfo.from_dict(data)
    except FileNotFoundError as exc:
        if not folder.is_dir():  # deleted between the check and the read
            raise NotFound(f"dataset {dataset_id} not found", reason="DATASET_NOT_FOUND") from exc
        raise _corrupt(dataset_id, f"its {INFO_FILE} is missing") from exc
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise _corrupt(dataset_id, f"its {INFO_FILE} cannot be read ({exc})") from exc
    if info.id != dataset_id:
        raise _corrupt(dataset_id, f"its {INFO_FILE} belongs to {info.id}")
    return info


@contextlib.contextmanager
def _open_table(table: Path, dataset_id: str) -> Iterator[IO[str]]:
    try:
        fh = open(table, encoding="utf-8", newline="")
    except FileNotFoundError as exc:
        raise _corrupt(dataset_id, f"its {TABLE_FILE} is missing") from exc
    with fh:
        try:
            yield fh
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _corrupt(dataset_id, f"its {TABLE_FILE} cannot be read ({exc})") from exc


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
        raise _corrupt(dataset_id, f"its {TABLE_FILE} is missing") from exc
    return sha.hexdigest()
