"""Assembles the trainer process: store, domain objects, servicers, server.

Used by ``__main__`` and by tests (which start it on 127.0.0.1:0)."""

from __future__ import annotations

from types import ModuleType

from prometheus_client import CollectorRegistry
from synth.v1 import datasets_pb2, datasets_pb2_grpc, models_pb2, models_pb2_grpc, training_pb2, training_pb2_grpc

from services.common.dataset_store import DatasetRepository
from services.common.engine.artifact import read_signing_key
from services.common.models import ModelRegistry
from services.common.server import ServiceBinding, SynthServer
from services.common.store import ArtifactStore
from services.trainer.dataset_servicer import DatasetServicer
from services.trainer.datasets import DatasetIntake, IntakeLimits
from services.trainer.model_servicer import ModelServicer
from services.trainer.settings import ENV_PREFIX, TrainerSettings
from services.trainer.training import Trainer, TrainingMetrics
from services.trainer.training_servicer import TrainingServicer


def _name(module: ModuleType, service: str) -> str:
    return module.DESCRIPTOR.services_by_name[service].full_name


def build_server(settings: TrainerSettings, registry: CollectorRegistry | None = None) -> SynthServer:
    """The trainer server with unfinished jobs recovered and its workers
    started. Call ``set_serving()`` after ``start()``."""
    registry = registry or CollectorRegistry()
    store = ArtifactStore(settings.store_dir, owner="trainer")
    store.sweep()
    datasets = DatasetRepository(store)
    intake = DatasetIntake(datasets, IntakeLimits(max_bytes=settings.max_upload_bytes, min_rows=settings.min_rows))
    models = ModelRegistry(store)
    trainer = Trainer(
        store,
        datasets,
        models,
        concurrency=settings.max_concurrent_jobs,
        max_queued=settings.max_queued_jobs,
        default_device=settings.device,
        threads=settings.torch_threads or None,
        signing_key=read_signing_key(settings.artifact_key_file, f"{ENV_PREFIX}ARTIFACT_KEY_FILE"),
        metrics=TrainingMetrics(registry),
    )
    trainer.jobs.recover()
    trainer.jobs.start()
    bindings = [
        ServiceBinding(
            DatasetServicer(datasets, intake),
            datasets_pb2_grpc.add_DatasetServiceServicer_to_server,
            _name(datasets_pb2, "DatasetService"),
        ),
        ServiceBinding(
            TrainingServicer(trainer),
            training_pb2_grpc.add_TrainingServiceServicer_to_server,
            _name(training_pb2, "TrainingService"),
        ),
        ServiceBinding(
            ModelServicer(models),
            models_pb2_grpc.add_ModelServiceServicer_to_server,
            _name(models_pb2, "ModelService"),
        ),
    ]
    return SynthServer("trainer", settings, bindings, registry=registry, on_shutdown=[trainer.jobs.shutdown])
