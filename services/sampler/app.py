"""Assembles the sampler process: store, model cache, sampler, server."""

from __future__ import annotations

import torch
from prometheus_client import CollectorRegistry, Counter, Gauge
from synth.v1 import sampling_pb2, sampling_pb2_grpc

from services.common.engine.artifact import read_signing_key
from services.common.engine.device import available_cpus
from services.common.memory import return_large_buffers
from services.common.models import ModelRegistry
from services.common.server import ServiceBinding, SynthServer
from services.common.store import ArtifactStore
from services.sampler.model_cache import ModelCache
from services.sampler.sampling import RowSampler, SamplingLimits
from services.sampler.servicer import SamplingServicer
from services.sampler.settings import ENV_PREFIX, SamplerSettings


def build_server(settings: SamplerSettings, registry: CollectorRegistry | None = None) -> SynthServer:
    return_large_buffers()
    workers, threads = generation_threads(settings)
    torch.set_num_threads(threads)
    registry = registry or CollectorRegistry()
    generated = Counter(
        "synth_sampler_rows_generated_total",
        "Synthetic rows generated, including rows rejected by conditions.",
        registry=registry,
    )
    generating = Gauge("synth_sampler_generating_requests", "Requests generating rows now.", registry=registry)
    reserved = Gauge(
        "synth_sampler_reserved_bytes",
        "Memory reserved by the requests generating now (of GENERATION_MEMORY_MB).",
        registry=registry,
    )

    def on_admission(active: int, nbytes: int) -> None:
        generating.set(active)
        reserved.set(nbytes)

    cache_bytes = Gauge("synth_sampler_model_cache_bytes", "Memory held by loaded models.", registry=registry)
    store = ArtifactStore(settings.store_dir, owner="sampler")
    store.sweep()
    cache = ModelCache(
        ModelRegistry(store),
        settings.model_cache_bytes,
        device=settings.device,
        on_change=cache_bytes.set,
        signing_key=read_signing_key(settings.artifact_key_file, f"{ENV_PREFIX}ARTIFACT_KEY_FILE"),
    )
    sampler = RowSampler(
        cache,
        SamplingLimits(
            max_rows=settings.max_rows,
            default_chunk_rows=settings.default_chunk_rows,
            max_chunk_rows=settings.max_chunk_rows,
            budget_factor=settings.condition_budget_factor,
            budget_floor=settings.condition_budget_floor,
            max_concurrent=settings.max_concurrent_samples,
            memory_budget_bytes=settings.generation_memory_mb * 1024 * 1024,
            queue_seconds=settings.queue_seconds,
        ),
        on_generated=generated.inc,
        workers=workers,
        on_admission=on_admission,
    )
    bindings = [
        ServiceBinding(
            SamplingServicer(sampler),
            sampling_pb2_grpc.add_SamplingServiceServicer_to_server,
            sampling_pb2.DESCRIPTOR.services_by_name["SamplingService"].full_name,
        ),
    ]
    return SynthServer("sampler", settings, bindings, registry=registry)


def generation_threads(settings: SamplerSettings, cpus: int | None = None) -> tuple[int, int]:
    """(pieces generated in parallel per request, torch threads in each).

    Several single-threaded workers beat one piece at a time on all cores:
    the random draws, Gumbel argmaxes and typing are single-threaded, and the
    matrix products are no faster per core with more threads (measured on 2
    cores: 2 workers x 1 thread ~300k rows/s, 1 x 2 ~235k).
    """
    cpus = cpus or available_cpus()
    workers = settings.generation_workers or min(4, cpus)
    return workers, settings.torch_threads or max(1, cpus // workers)
