"""Normalise an uploaded table to UTF-8 CSV, check its structure, count its values.

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
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import csv
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from services.common.dataset_store import is_blank_row
from services.common.errors import FieldViolation, InvalidArgument
from services.common.schema import ColumnKind

__all__ = [
    "MAX_VIOLATIONS",
    "PANDAS_CHUNK_ROWS",
    "Profile",
    "RowLines",
    "Scan",
    "col_path",
    "normalise_and_scan",
    "profile_columns",
    "quote_list",
    "row_path",
]

MAX_VIOLATIONS = 10
PANDAS_CHUNK_ROWS = 100_000
_READ_BLOCK = 1 << 20


@dataclass
class Scan:
    header: list[str]
    row_count: int
    sha256: str
    size_bytes: int
    lines: RowLines


class RowLines:
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
class Profile:
    """A column's distinct non-missing values and their counts, most frequent first."""

    values: np.ndarray  # object array of str
    counts: np.ndarray  # int64
    missing: int

    @property
    def present(self) -> int:
        return int(self.counts.sum())


def normalise_and_scan(
    incoming: Path,
    table: Path,
    codec: codecs.CodecInfo,
    overrides: Mapping[str, ColumnKind],
    max_columns: int,
) -> Scan:
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

        reader = _LineReader(_decoded_lines(src, codec, sink))
        try:
            header = _read_header(reader)
            _check_header(header, overrides, max_columns)
            body = _Body(ncols=len(header))
            for start, row in reader:
                body.add(start, row)
        except csv.Error as exc:
            raise _malformed(exc, reader.last_line + 1) from exc
    body.check()
    return Scan(header=header, row_count=body.rows, sha256=sha.hexdigest(), size_bytes=size, lines=body.lines)


class _LineReader:
    """The csv module's rows of the decoded text, each with the line it starts on."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._reader = csv.reader(lines, strict=True)
        self.last_line = 0  # the line the last row read ends on

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        for row in self._reader:
            start, self.last_line = self.last_line + 1, self._reader.line_num
            yield start, row


def _read_header(reader: _LineReader) -> list[str]:
    for _, row in reader:
        if not is_blank_row(row):
            return row
    raise InvalidArgument(
        "empty table: no data rows (the file is empty)",
        reason="EMPTY_TABLE",
        violations=[FieldViolation("header", "the file is empty")],
    )


@dataclass
class _Body:
    """The data rows seen so far: how many, which are ragged, where each starts."""

    ncols: int
    rows: int = 0
    ragged: int = 0
    violations: list[FieldViolation] = field(default_factory=list)
    first_bad: tuple[int, int] | None = None  # (line, fields) of the first ragged row
    lines: RowLines = field(default_factory=RowLines)
    expected_start: int = 2  # what RowLines assumes when nothing was noted

    def add(self, start: int, row: list[str]) -> None:
        if len(row) != self.ncols:
            if is_blank_row(row):
                return
            self.ragged += 1
            if self.first_bad is None:
                self.first_bad = (start, len(row))
            if len(self.violations) < MAX_VIOLATIONS:
                self.violations.append(
                    FieldViolation(
                        f"rows[{self.rows}]", f"line {start}: expected {self.ncols} fields, found {len(row)}"
                    )
                )
        if start != self.expected_start:
            self.lines.note(self.rows, start)
        self.expected_start = start + 1
        self.rows += 1

    def check(self) -> None:
        """Refuse ragged rows, then a table without data rows."""
        if self.first_bad is not None:
            line, found = self.first_bad
            more = (
                f" ({self.ragged} rows in all; the first {len(self.violations)} are listed)" if self.ragged > 1 else ""
            )
            raise InvalidArgument(
                f"row at line {line} has {found} field{'' if found == 1 else 's'}, "
                f"but the header has {self.ncols}{more}; check for unquoted commas or missing cells",
                reason="RAGGED_ROWS",
                violations=self.violations,
            )
        if self.rows == 0:
            raise InvalidArgument(
                "empty table: no data rows (only a header line)",
                reason="EMPTY_TABLE",
                violations=[FieldViolation("rows", "no data rows after the header")],
            )


def _malformed(exc: csv.Error, line: int) -> InvalidArgument:
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
    return InvalidArgument(
        f"malformed CSV at line {line}: {text}",
        reason="MALFORMED_CSV",
        violations=[FieldViolation(f"lines[{line - 1}]", text)],
    )


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


def _check_header(header: list[str], overrides: Mapping[str, ColumnKind], max_columns: int) -> None:
    if len(header) > max_columns:
        raise InvalidArgument(
            f"the table has {len(header)} columns; at most {max_columns} are allowed",
            reason="TOO_MANY_COLUMNS",
            violations=[FieldViolation("header", f"{len(header)} columns > {max_columns}")],
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
        where = ", ".join(str(i + 1) for i in blanks[:MAX_VIOLATIONS])
        problems.append(
            f"column{'s' if len(blanks) > 1 else ''} {where} {'have' if len(blanks) > 1 else 'has'} no name"
        )
        violations += [FieldViolation(f"columns[{i}]", "blank column name") for i in blanks[:MAX_VIOLATIONS]]
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
            f"bad header: {'; '.join(problems[:MAX_VIOLATIONS])}; every column needs a unique name",
            reason="BAD_HEADER",
            violations=violations[:MAX_VIOLATIONS] or [FieldViolation("header", "bad header")],
        )
    unknown = [name for name in overrides if name not in seen]
    if unknown:
        raise InvalidArgument(
            f"kind_overrides name{'s' if len(unknown) == 1 else ''} {quote_list(unknown)}, "
            f"which {'is' if len(unknown) == 1 else 'are'} not a column of the table "
            f"(columns: {quote_list(header[:20])}{', ...' if len(header) > 20 else ''})",
            reason="UNKNOWN_COLUMN",
            violations=[FieldViolation(f"kind_overrides[{json.dumps(n)}]", "no such column") for n in unknown],
        )


def profile_columns(table: Path, scan: Scan, markers: list[str]) -> list[Profile]:
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
            chunksize=PANDAS_CHUNK_ROWS,
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
            Profile(
                values=order["v"].to_numpy(dtype=object),
                counts=order["c"].to_numpy(dtype=np.int64),
                missing=missing[j],
            )
        )
    return profiles


def col_path(name: str) -> str:
    return f"columns[{json.dumps(name, ensure_ascii=False)}]"


def row_path(row: int, name: str) -> str:
    if name.isidentifier():
        return f"rows[{row}].{name}"
    return f"rows[{row}][{json.dumps(name, ensure_ascii=False)}]"


def quote_list(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)
