"""DatasetService: translate requests, call the dataset intake or repository, translate back."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from synth.v1 import datasets_pb2, datasets_pb2_grpc

from services.common.convert import dataset_to_proto, kind_from_proto
from services.common.dataset_store import DatasetRepository
from services.common.errors import Cancelled, FieldViolation, InvalidArgument
from services.common.logs import bind
from services.trainer.datasets import DatasetIntake


class DatasetServicer(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, repository: DatasetRepository, intake: DatasetIntake) -> None:
        self._repo = repository
        self._intake = intake

    def UploadDataset(
        self, request_iterator: Iterator[datasets_pb2.UploadDatasetRequest], context: grpc.ServicerContext
    ) -> datasets_pb2.UploadDatasetResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument(
                "the first message of an upload must carry the header",
                violations=[FieldViolation("header", "missing: send UploadDatasetHeader first")],
            )
        header = first.header
        overrides = {
            name: kind_from_proto(kind, f"header.kind_overrides[{name!r}]")
            for name, kind in header.kind_overrides.items()
        }
        with self._intake.begin_upload(
            header.display_name or "dataset.csv",
            encoding=header.encoding or "utf-8",
            kind_overrides=overrides,
            missing_markers=list(header.missing_markers) or None,
            request_id=header.request_id,
        ) as upload:
            ended = False
            for index, message in enumerate(request_iterator, start=1):
                part = message.WhichOneof("part")
                if ended or part not in ("chunk", "end"):
                    raise InvalidArgument(
                        f"message {index} of the upload is out of place: only the first message is a header "
                        "and only the last one the end",
                        violations=[FieldViolation(f"messages[{index}]", "expected a chunk")],
                    )
                if part == "end":
                    _check_size(upload.bytes_received, message.end.total_bytes, f"messages[{index}].end.total_bytes")
                    ended = True
                    continue
                upload.write(message.chunk)
            if header.expect_end and not ended:
                raise InvalidArgument(
                    f"the upload stopped after {upload.bytes_received} bytes without its end message; "
                    "nothing was stored (an interrupted upload: send it again)",
                    reason="UPLOAD_INCOMPLETE",
                    violations=[FieldViolation("end", "missing: the header expects it")],
                )
            if not context.is_active():  # the caller went away: what arrived may be a cut-off file
                raise Cancelled("the upload was cancelled by the caller; nothing was stored")
            info = upload.commit()
        bind(dataset_id=info.id)
        return datasets_pb2.UploadDatasetResponse(dataset=dataset_to_proto(info))

    def GetDataset(
        self, request: datasets_pb2.GetDatasetRequest, context: grpc.ServicerContext
    ) -> datasets_pb2.GetDatasetResponse:
        return datasets_pb2.GetDatasetResponse(dataset=dataset_to_proto(self._repo.get(request.dataset_id)))

    def ListDatasets(
        self, request: datasets_pb2.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> datasets_pb2.ListDatasetsResponse:
        items, token = self._repo.list(request.page_size, request.page_token)
        return datasets_pb2.ListDatasetsResponse(datasets=[dataset_to_proto(i) for i in items], next_page_token=token)

    def DeleteDataset(
        self, request: datasets_pb2.DeleteDatasetRequest, context: grpc.ServicerContext
    ) -> datasets_pb2.DeleteDatasetResponse:
        self._repo.delete(request.dataset_id)
        return datasets_pb2.DeleteDatasetResponse()

    def PreviewDataset(
        self, request: datasets_pb2.PreviewDatasetRequest, context: grpc.ServicerContext
    ) -> datasets_pb2.PreviewDatasetResponse:
        columns, rows, masks = self._repo.preview(request.dataset_id, request.row_count or 10)
        return datasets_pb2.PreviewDatasetResponse(
            column_names=columns,
            rows=[
                datasets_pb2.PreviewRow(
                    values=["" if v is None else v for v in row], missing=[v is None for v in row], masked=masked
                )
                for row, masked in zip(rows, masks, strict=True)
            ],
        )


def _check_size(received: int, declared: int, field: str) -> None:
    """A stream that ends short is a cut-off upload (or a wrong size): store nothing."""
    if received != declared:
        raise InvalidArgument(
            f"the upload ended after {received} bytes but declared {declared}; nothing was stored "
            "(an interrupted upload: send it again)",
            reason="UPLOAD_INCOMPLETE",
            violations=[FieldViolation(field, f"{declared} declared, {received} arrived")],
        )
