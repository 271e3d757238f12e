"""SynthClient's dataset calls."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from synth.v1 import datasets_pb2

from synth_client._base import _KINDS, CHUNK_BYTES, _ClientBase
from synth_client._io import _chunks
from synth_client._retry import _retry_unavailable, _translate_errors
from synth_client.errors import SynthError


class _DatasetsMixin(_ClientBase):
    """Datasets: upload, get, list, preview, delete (the trainer's DatasetService)."""

    @_translate_errors
    def upload_dataset(
        self,
        source: str | Path | bytes,
        *,
        name: str | None = None,
        encoding: str = "",
        kinds: Mapping[str, str] | None = None,
        missing_markers: Sequence[str] = (),
        chunk_bytes: int = CHUNK_BYTES,
        on_progress: Callable[[int, int], None] | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> datasets_pb2.Dataset:
        """Upload a CSV (optionally gzip-compressed) file or bytes; returns the
        stored dataset with its inferred schema. ``kinds`` overrides column kinds
        (continuous, categorical, datetime, identifier, free_text).

        An unreachable trainer is retried with the whole file under one
        ``request_id`` (a new UUID unless given), so a retry of an upload that
        was in fact stored returns that dataset instead of a second copy."""
        overrides = {}
        for column, kind in (kinds or {}).items():
            if kind not in _KINDS:
                raise SynthError("INVALID_ARGUMENT", f"unknown kind {kind!r} for column {column!r}")
            overrides[column] = _KINDS[kind]
        if isinstance(source, bytes):
            total, display = len(source), name or "dataset.csv"
        else:
            path = Path(source)
            total, display = path.stat().st_size, name or path.name
        header = datasets_pb2.UploadDatasetHeader(
            display_name=display,
            encoding=encoding,
            kind_overrides=overrides,
            missing_markers=list(missing_markers),
            total_bytes=total,
            request_id=request_id or str(uuid.uuid4()),
            expect_end=True,
        )

        def messages() -> Iterator[datasets_pb2.UploadDatasetRequest]:
            yield datasets_pb2.UploadDatasetRequest(header=header)
            sent = 0
            for chunk in _chunks(source, chunk_bytes):
                sent += len(chunk)
                yield datasets_pb2.UploadDatasetRequest(chunk=chunk)
                if on_progress:
                    on_progress(sent, total)
            # Only a complete upload says so: a cancelled stream must not be stored short.
            yield datasets_pb2.UploadDatasetRequest(end=datasets_pb2.UploadDatasetEnd(total_bytes=sent))

        response = _retry_unavailable(
            lambda: self._datasets.UploadDataset(
                messages(), timeout=timeout or max(self.timeout, 600.0), metadata=self._md()
            ),
            self._channels["trainer"],
            self.retries,
            self.retry_wait_seconds,
        )
        return response.dataset

    @_translate_errors
    def get_dataset(self, dataset_id: str) -> datasets_pb2.Dataset:
        request = datasets_pb2.GetDatasetRequest(dataset_id=dataset_id)
        return self._datasets.GetDataset(request, timeout=self.timeout, metadata=self._md()).dataset

    @_translate_errors
    def list_datasets(self, page_size: int = 100) -> list[datasets_pb2.Dataset]:
        """Every dataset, newest first (follows page tokens)."""
        return self._all_pages(
            lambda token: self._datasets.ListDatasets(
                datasets_pb2.ListDatasetsRequest(page_size=page_size, page_token=token),
                timeout=self.timeout,
                metadata=self._md(),
            ),
            "datasets",
        )

    @_translate_errors
    def delete_dataset(self, dataset_id: str) -> None:
        request = datasets_pb2.DeleteDatasetRequest(dataset_id=dataset_id)
        self._datasets.DeleteDataset(request, timeout=self.timeout, metadata=self._md())

    @_translate_errors
    def preview_dataset(self, dataset_id: str, rows: int = 10) -> tuple[list[str], list[list[str | None]]]:
        """Column names and the first rows; missing cells are None, rare values "***"."""
        request = datasets_pb2.PreviewDatasetRequest(dataset_id=dataset_id, row_count=rows)
        response = self._datasets.PreviewDataset(request, timeout=self.timeout, metadata=self._md())
        return list(response.column_names), [
            [None if missing else value for value, missing in zip(row.values, row.missing, strict=True)]
            for row in response.rows
        ]
