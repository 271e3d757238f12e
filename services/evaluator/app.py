"""Assembles the evaluator process: store, servicers, server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from synth.v1 import evaluation_pb2, evaluation_pb2_grpc

from services.common.server import ServiceBinding, SynthServer
from services.common.store import ArtifactStore
from services.evaluator.settings import EvaluatorSettings


def build_server(settings: EvaluatorSettings, registry: CollectorRegistry | None = None) -> SynthServer:
    store = ArtifactStore(settings.store_dir, owner="evaluator")
    store.sweep()
    bindings = [
        # Contract only until the evaluator lands: every RPC answers UNIMPLEMENTED.
        ServiceBinding(
            evaluation_pb2_grpc.EvaluationServiceServicer(),
            evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server,
            evaluation_pb2.DESCRIPTOR.services_by_name["EvaluationService"].full_name,
        ),
    ]
    return SynthServer("evaluator", settings, bindings, registry=registry)
