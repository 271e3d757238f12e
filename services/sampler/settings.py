"""Sampler settings: env prefix SYNTH_SAMPLER_."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import ServerSettings

ENV_PREFIX = "SYNTH_SAMPLER_"


@dataclass(frozen=True)
class SamplerSettings(ServerSettings):
    port: int = 50052
    metrics_port: int = 9102
