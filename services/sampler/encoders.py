"""Typed synthetic rows (Arrow record batches) into the bytes of a stream's chunks.

CSV: RFC 4180 with minimal quoting (a field is quoted only when it holds a
comma, a quote, ``\\n`` or ``\\r``; quotes are doubled: what Python's ``csv``
module writes, except that it leaves a lone ``\\r`` unquoted), ``\\n`` line
ends, missing values as empty fields, numbers in Arrow's shortest round-trip
form (``39``, ``0.1``, ``1e+20``), datetimes in the column's own format, the
header in the first chunk. Each column is turned into
text by an Arrow kernel and the rows are joined by another, so no Python runs
per row or per cell: about ten times faster than ``DataFrame.to_csv``.

Arrow IPC: one stream cut into chunks, the schema in the first chunk, a record
batch per chunk, the end-of-stream marker in the last.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import ipc

from services.common.schema import ColumnInfo, ColumnKind

_NEEDS_QUOTES = r'[",\r\n]'
_DEFAULT_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class CsvEncoder:
    def __init__(self, columns: Sequence[ColumnInfo]) -> None:
        self._columns = list(columns)
        self._header = (",".join(_quoted(c.name) for c in self._columns) + "\n").encode("utf-8")
        self._formats = {c.name: datetime_format_for_arrow(c.datetime_format) for c in self._columns}
        # Quoting is looked for only where a value may need it: not in a
        # categorical column whose complete list of values needs none (most),
        # nor in generated identifiers.
        self._may_need_quotes = {c.name: _may_need_quotes(c) for c in self._columns}

    def encode(self, batch: pa.RecordBatch, *, first: bool, last: bool) -> bytes:
        del last  # CSV needs no trailer
        body = b""
        if batch.num_rows:
            texts = [self._text(col, batch.column(col.name)) for col in self._columns]
            rows = pc.binary_join_element_wise(*texts, ",", null_handling="replace", null_replacement="")
            body = _joined_bytes(pc.binary_join_element_wise(rows, "\n", ""))
        return self._header + body if first else body

    def _text(self, col: ColumnInfo, values: pa.Array) -> pa.Array:
        if pa.types.is_timestamp(values.type):
            seconds = pc.cast(values, pa.timestamp("s"), safe=False)  # whole seconds: no fraction in %S
            return pc.strftime(seconds, format=self._formats[col.name])
        if pa.types.is_string(values.type):
            return _quote_where_needed(values) if self._may_need_quotes[col.name] else values
        return pc.cast(values, pa.string())  # shortest round-trip text for floats: 0.1, 39, 1e+20


class ArrowEncoder:
    def __init__(self, schema: pa.Schema) -> None:
        self._sink = io.BytesIO()
        self._writer = ipc.new_stream(self._sink, schema)

    def encode(self, batch: pa.RecordBatch, *, first: bool, last: bool) -> bytes:
        del first  # the writer puts the schema before the first batch
        self._writer.write_batch(batch)
        if last:
            self._writer.close()
        data = self._sink.getvalue()
        self._sink.seek(0)
        self._sink.truncate()
        return data


def datetime_format_for_arrow(python_format: str | None) -> str:
    """The column's strftime format for Arrow's ``strftime`` on naive UTC
    seconds: ``%z`` is ``+0000`` (synthetic datetimes are UTC) and ``%f`` is
    ``000000`` (whole seconds); every other directive the intake detects
    (``schema.DATETIME_FORMATS``) prints as Python's does (tested)."""
    if not python_format:
        return _DEFAULT_DATETIME_FORMAT
    return python_format.replace("%z", "+0000").replace("%f", "000000")


def _may_need_quotes(col: ColumnInfo) -> bool:
    if col.kind == ColumnKind.IDENTIFIER or col.kind == ColumnKind.FREE_TEXT:
        # fakes may hold commas ("Smith, Mr. John"); numbered ids ("syn-000000001") and empty cells never do
        return col.policy == "fake"
    if col.kind == ColumnKind.CATEGORICAL and len(col.categories) == col.distinct_count:
        return any(re.search(_NEEDS_QUOTES, value) for value in col.categories)
    return True


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if re.search(_NEEDS_QUOTES, text) else text


def _quote_where_needed(values: pa.Array) -> pa.Array:
    needs = pc.match_substring_regex(values, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return values
    escaped = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, escaped, values)


def _joined_bytes(lines: pa.Array | pa.ChunkedArray) -> bytes:
    """All strings of a null-free string array, end to end (its data buffer)."""
    chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
    parts = []
    for array in chunks:
        if not pa.types.is_string(array.type):  # 32-bit offsets below
            raise TypeError(f"expected a string array, got {array.type}")
        if not len(array):
            continue
        _, offsets, data = array.buffers()
        bounds = np.frombuffer(offsets, dtype=np.int32, count=len(array) + 1, offset=array.offset * 4)
        parts.append(data[int(bounds[0]) : int(bounds[-1])].to_pybytes())
    return b"".join(parts)
