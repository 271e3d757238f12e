"""SynthClient's sampling calls."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from synth.v1 import sampling_pb2

from synth_client._base import _ClientBase
from synth_client._io import _ChunkReader, _write_parquet
from synth_client.conditions import parse_condition
from synth_client.errors import SynthError


class _SamplingMixin(_ClientBase):
    """Synthetic rows: streamed, as frames or into a file (the sampler)."""

    def sample(
        self,
        model_id: str,
        rows: int,
        *,
        seed: int | None = None,
        where: Sequence[str | sampling_pb2.Condition] = (),
        chunk_rows: int = 0,
        fmt: str = "csv",
        timeout: float | None = None,
    ) -> Iterator[sampling_pb2.SampleRowsResponse]:
        """The raw stream: a header, chunks of CSV or Arrow IPC bytes, a summary.
        ``where`` takes conditions like "age>=18", "sex=Female", "race in White,Black"."""
        request = sampling_pb2.SampleRowsRequest(
            model_id=model_id,
            row_count=rows,
            chunk_rows=chunk_rows,
            format=sampling_pb2.OUTPUT_FORMAT_ARROW_IPC if fmt == "arrow" else sampling_pb2.OUTPUT_FORMAT_CSV,
            conditions=[c if isinstance(c, sampling_pb2.Condition) else parse_condition(c) for c in where],
        )
        if seed is not None:
            request.seed = seed
        waited = 0.0
        while True:
            received = False
            try:
                for message in self._sampling.SampleRows(request, timeout=timeout, metadata=self._md()):
                    received = True
                    yield message
                return
            except grpc.RpcError as err:
                error = SynthError.from_rpc_error(err)
            # A busy sampler (every turn taken) says when to come back. Nothing was
            # received yet, so a retry gives the same rows; wait at most
            # retry_wait_seconds in all.
            pause = error.retry_after_seconds
            if received or error.code != "RESOURCE_EXHAUSTED" or pause is None or waited >= self.retry_wait_seconds:
                raise error
            time.sleep(pause)
            waited += pause

    def sample_frames(self, model_id: str, rows: int, **kwargs: Any) -> Iterator[Any]:
        """Synthetic rows as typed pandas DataFrames, one per chunk (memory stays flat)."""
        import pyarrow as pa

        stream = self.sample(model_id, rows, fmt="arrow", **kwargs)
        reader = pa.ipc.open_stream(_ChunkReader(m.chunk.data for m in stream if m.WhichOneof("part") == "chunk"))
        for batch in reader:
            yield batch.to_pandas()

    def sample_to_file(
        self,
        model_id: str,
        rows: int,
        path: str | Path,
        *,
        on_progress: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> sampling_pb2.SampleSummary:
        """Write rows to ``path``: .csv, .arrow (IPC stream) or .parquet, by
        extension. Written to a temporary name and renamed when complete, so a
        failed or cancelled call never leaves a partial file."""
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in (".csv", ".arrow", ".parquet"):
            raise SynthError("INVALID_ARGUMENT", f"unknown output type {suffix!r}: use .csv, .arrow or .parquet")
        partial = target.with_name(f".{target.name}.partial")
        summary = sampling_pb2.SampleSummary()
        try:
            stream = self.sample(model_id, rows, fmt="csv" if suffix == ".csv" else "arrow", **kwargs)
            if suffix == ".parquet":
                summary = _write_parquet(stream, partial, on_progress)
            else:
                with open(partial, "wb") as fh:
                    for message in stream:
                        part = message.WhichOneof("part")
                        if part == "chunk":
                            fh.write(message.chunk.data)
                            if on_progress:
                                on_progress(message.chunk.row_count)
                        elif part == "summary":
                            summary = message.summary
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return summary
