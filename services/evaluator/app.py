"""Assembles the evaluator process: store, sampler client, evaluations (their
jobs recovered and workers started), server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from synth.v1 import evaluation_pb2, evaluation_pb2_grpc

from services.common import tls
from services.common.dataset_store import DatasetRepository
from services.common.models import ModelRegistry
from services.common.server import ServiceBinding, SynthServer
from services.common.store import ArtifactStore
from services.evaluator.evaluations import EvaluationMetrics, Evaluations
from services.evaluator.sampler_client import SamplerClient
from services.evaluator.servicer import EvaluationServicer
from services.evaluator.settings import EvaluatorSettings


def build_server(settings: EvaluatorSettings, registry: CollectorRegistry | None = None) -> SynthServer:
    """The evaluator server, with the evaluation jobs no live replica holds
    queued and its workers started. Call ``set_serving()`` after ``start()``."""
    registry = registry or CollectorRegistry()
    store = ArtifactStore(settings.store_dir, owner="evaluator")
    store.sweep()
    credentials = tls.channel_credentials(
        settings.sampler_tls_ca_file,
        settings.sampler_tls_cert_file,
        settings.sampler_tls_key_file,
        setting="SYNTH_EVALUATOR_SAMPLER_TLS_",
    )
    sampler = SamplerClient(settings.sampler_address, credentials=credentials)
    evaluations = Evaluations(
        store,
        DatasetRepository(store),
        ModelRegistry(store),
        sampler,
        max_synthetic_rows=settings.max_synthetic_rows,
        holdout_fraction=settings.holdout_fraction,
        max_concurrent=settings.max_concurrent,
        max_queued=settings.max_queued,
        n_jobs=settings.n_jobs,
        metrics=EvaluationMetrics(registry),
    )
    evaluations.jobs.recover()
    evaluations.jobs.start()

    def stop_jobs() -> None:
        # Running evaluations may finish within the grace period; the rest are
        # released, and computed again by whichever replica takes them next.
        evaluations.jobs.shutdown(timeout=settings.grace_seconds + 30.0, finish_within=settings.grace_seconds)

    bindings = [
        ServiceBinding(
            EvaluationServicer(evaluations),
            evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server,
            evaluation_pb2.DESCRIPTOR.services_by_name["EvaluationService"].full_name,
        ),
    ]
    return SynthServer("evaluator", settings, bindings, registry=registry, on_shutdown=[stop_jobs, sampler.close])
