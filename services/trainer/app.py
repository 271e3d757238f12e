"""Assembles the trainer process: store, domain objects, servicers, server.

Used by ``__main__`` and by tests (which start it on 127.0.0.1:0)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from synth.v1 import (
    datasets_pb2,
    datasets_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from services.common.server import ServiceBinding, SynthServer
from services.common.store import ArtifactStore
from services.common.tables import DatasetRepository, IntakeLimits
from services.trainer.dataset_servicer import DatasetServicer
from services.trainer.settings import TrainerSettings


def _name(module, service: str) -> str:  # type: ignore[no-untyped-def]
    return module.DESCRIPTOR.services_by_name[service].full_name


def build_server(settings: TrainerSettings, registry: CollectorRegistry | None = None) -> SynthServer:
    """The trainer server. Call ``set_serving()`` after ``start()``.
    Training and the model registry are contracts only until the engine lands."""
    store = ArtifactStore(settings.store_dir, owner="trainer")
    store.sweep()
    datasets = DatasetRepository(store, IntakeLimits(max_bytes=settings.max_upload_bytes, min_rows=settings.min_rows))
    bindings = [
        ServiceBinding(
            DatasetServicer(datasets),
            datasets_pb2_grpc.add_DatasetServiceServicer_to_server,
            _name(datasets_pb2, "DatasetService"),
        ),
        ServiceBinding(
            training_pb2_grpc.TrainingServiceServicer(),
            training_pb2_grpc.add_TrainingServiceServicer_to_server,
            _name(training_pb2, "TrainingService"),
        ),
        ServiceBinding(
            models_pb2_grpc.ModelServiceServicer(),
            models_pb2_grpc.add_ModelServiceServicer_to_server,
            _name(models_pb2, "ModelService"),
        ),
    ]
    return SynthServer("trainer", settings, bindings, registry=registry)
