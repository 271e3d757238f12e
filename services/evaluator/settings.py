"""Evaluator settings: env prefix SYNTH_EVALUATOR_."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import BackendSettings, check_tls_files

ENV_PREFIX = "SYNTH_EVALUATOR_"


@dataclass(frozen=True)
class EvaluatorSettings(BackendSettings):
    port: int = 50053
    metrics_port: int = 9103
    # Where to draw synthetic rows from when a report names a model.
    sampler_address: str = "127.0.0.1:50052"
    # Mutual TLS to the sampler, PEM files; all empty (the local default): plaintext.
    # The CA verifies the sampler's certificate; the certificate and key are ours.
    sampler_tls_ca_file: str = ""
    sampler_tls_cert_file: str = ""
    sampler_tls_key_file: str = ""
    # Most synthetic rows one report may draw (RESOURCE_EXHAUSTED beyond).
    max_synthetic_rows: int = 1_000_000
    # Share of real rows held out when an uploaded synthetic table is scored
    # against a dataset that has no recorded split.
    holdout_fraction: float = 0.2
    # Evaluations this replica computes at once; more wait in the queue (every
    # replica takes queued jobs from the store they share).
    max_concurrent: int = 1
    # Evaluation jobs waiting at most, over all replicas (RESOURCE_EXHAUSTED
    # QUEUE_FULL beyond).
    max_queued: int = 32
    # Threads the random forests use (-1: every core).
    n_jobs: int = -1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_tls_files("SAMPLER_TLS_", self.sampler_tls_cert_file, self.sampler_tls_key_file)
