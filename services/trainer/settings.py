"""Trainer settings: env prefix SYNTH_TRAINER_."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import BackendSettings

ENV_PREFIX = "SYNTH_TRAINER_"


@dataclass(frozen=True)
class TrainerSettings(BackendSettings):
    port: int = 50051
    metrics_port: int = 9101
    # Largest dataset upload accepted, in bytes (compressed and uncompressed).
    max_upload_bytes: int = 100 * 1024 * 1024
    # Fewest data rows a table needs to be stored.
    min_rows: int = 10
    # Training jobs run at once (one per device is the sane default).
    max_concurrent_jobs: int = 1
    # Jobs waiting beyond this are refused with RESOURCE_EXHAUSTED.
    max_queued_jobs: int = 16
    # Device for jobs that ask for "auto": auto (CUDA if present), cpu or cuda.
    device: str = "auto"
    # CPU threads a training job uses (0: at most 2; CTGAN's small matrices
    # lose more to thread synchronisation than they gain beyond that: bench/).
    torch_threads: int = 0
    # A file holding the key that signs model artifacts and checkpoints
    # (HMAC-SHA256 over the manifest; at least 32 bytes). Empty: checksums only.
    artifact_key_file: str = ""
