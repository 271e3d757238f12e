"""Assembles the sampler process: store, servicers, server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from synth.v1 import sampling_pb2, sampling_pb2_grpc

from services.common.server import ServiceBinding, SynthServer
from services.common.store import ArtifactStore
from services.sampler.settings import SamplerSettings


def build_server(settings: SamplerSettings, registry: CollectorRegistry | None = None) -> SynthServer:
    store = ArtifactStore(settings.store_dir, owner="sampler")
    store.sweep()
    bindings = [
        # Contract only until the sampler lands: every RPC answers UNIMPLEMENTED.
        ServiceBinding(
            sampling_pb2_grpc.SamplingServiceServicer(),
            sampling_pb2_grpc.add_SamplingServiceServicer_to_server,
            sampling_pb2.DESCRIPTOR.services_by_name["SamplingService"].full_name,
        ),
    ]
    return SynthServer("sampler", settings, bindings, registry=registry)
