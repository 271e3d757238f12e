"""The state SynthClient's resource mixins share."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
from synth.v1 import (
    common_pb2,
    datasets_pb2_grpc,
    evaluation_pb2_grpc,
    models_pb2_grpc,
    sampling_pb2_grpc,
    training_pb2_grpc,
)

DEFAULT_ADDRESSES = {
    "trainer": "127.0.0.1:50051",
    "sampler": "127.0.0.1:50052",
    "evaluator": "127.0.0.1:50053",
}
CHUNK_BYTES = 1 << 20  # 1 MiB: well under the 4 MiB default message limit
_KINDS = {
    "continuous": common_pb2.COLUMN_KIND_CONTINUOUS,
    "categorical": common_pb2.COLUMN_KIND_CATEGORICAL,
    "datetime": common_pb2.COLUMN_KIND_DATETIME,
    "identifier": common_pb2.COLUMN_KIND_IDENTIFIER,
    "free_text": common_pb2.COLUMN_KIND_FREE_TEXT,
}


class _ClientBase:
    """What every resource mixin of :class:`SynthClient` relies on: the stubs,
    the settings and the per-call metadata, all set by ``SynthClient.__init__``."""

    targets: dict[str, str]
    timeout: float
    retries: int
    retry_wait_seconds: float
    _metadata: tuple[tuple[str, str], ...]
    _channels: dict[str, grpc.Channel]
    _datasets: datasets_pb2_grpc.DatasetServiceStub
    _training: training_pb2_grpc.TrainingServiceStub
    _models: models_pb2_grpc.ModelServiceStub
    _sampling: sampling_pb2_grpc.SamplingServiceStub
    _evaluation: evaluation_pb2_grpc.EvaluationServiceStub

    def _md(self) -> tuple[tuple[str, str], ...]:
        return (*self._metadata, ("x-request-id", uuid.uuid4().hex[:16]))

    @staticmethod
    def _all_pages(fetch: Callable[[str], Any], field: str) -> list[Any]:
        items: list[Any] = []
        token = ""
        while True:
            page = fetch(token)
            items.extend(getattr(page, field))
            token = page.next_page_token
            if not token:
                return items
