"""Bytes in and out of the client: upload chunks, Arrow streams written as Parquet."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from synth.v1 import sampling_pb2


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for Arrow's stream reader)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _write_parquet(
    stream: Iterator[sampling_pb2.SampleRowsResponse], path: Path, on_progress: Callable[[int], None] | None
) -> sampling_pb2.SampleSummary:
    import pyarrow as pa
    import pyarrow.parquet as pq

    summary = sampling_pb2.SampleSummary()

    def chunks() -> Iterator[bytes]:
        nonlocal summary
        for message in stream:
            part = message.WhichOneof("part")
            if part == "chunk":
                yield message.chunk.data
            elif part == "summary":
                summary = message.summary

    source = chunks()
    reader = pa.ipc.open_stream(_ChunkReader(source))
    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            if on_progress:
                on_progress(batch.num_rows)
    for _ in source:  # Arrow stops at its end-of-stream marker; the summary follows it
        pass
    return summary


def _chunks(source: str | Path | bytes, size: int) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, len(source), size):
            yield source[start : start + size]
        return
    with open(source, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk
