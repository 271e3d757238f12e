"""Sampler settings: env prefix SYNTH_SAMPLER_."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import InvalidArgument
from services.common.settings import BackendSettings

ENV_PREFIX = "SYNTH_SAMPLER_"


@dataclass(frozen=True)
class SamplerSettings(BackendSettings):
    port: int = 50052
    metrics_port: int = 9102
    # Most rows one SampleRows call may ask for (RESOURCE_EXHAUSTED beyond).
    max_rows: int = 100_000_000
    # Rows per chunk message when the client does not say, and the most allowed.
    default_chunk_rows: int = 10_000
    max_chunk_rows: int = 200_000
    # Rows generated to meet conditions: at most factor x asked + floor.
    condition_budget_factor: int = 100
    condition_budget_floor: int = 200_000
    # Memory for loaded models (least recently used evicted first).
    model_cache_bytes: int = 1024 * 1024 * 1024
    # Device models run on: cpu, cuda or auto.
    device: str = "cpu"
    # Threads that generate pieces of rows in parallel for one request
    # (0: the CPUs this process may use, at most 4).
    generation_workers: int = 0
    # CPU threads torch uses inside each of them (0: the CPUs / the workers).
    torch_threads: int = 0
    # Requests generating rows at once, and the memory they may reserve
    # together (each reserves its pieces in flight and one output chunk, about
    # 100 MB at the default chunk size); more wait up to QUEUE_SECONDS for a
    # turn, then get RESOURCE_EXHAUSTED (SAMPLER_BUSY) with a retry hint. The
    # process's peak is about its idle size (models included) plus this budget.
    max_concurrent_samples: int = 6
    generation_memory_mb: int = 768
    queue_seconds: float = 30.0
    # The trainer's artifact signing key file: models without a valid
    # signature are refused (DATA_LOSS). Empty: checksums only.
    artifact_key_file: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("generation_workers", "torch_threads"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"{ENV_PREFIX}{name.upper()} must be 0 (automatic) or positive")
        if self.generation_memory_mb < 1:
            raise InvalidArgument(f"{ENV_PREFIX}GENERATION_MEMORY_MB must be >= 1")
        if self.max_concurrent_samples < 1 or self.queue_seconds < 0:
            raise InvalidArgument(f"{ENV_PREFIX}MAX_CONCURRENT_SAMPLES must be >= 1 and QUEUE_SECONDS >= 0")
