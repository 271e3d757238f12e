"""Evaluator settings: env prefix SYNTH_EVALUATOR_."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.settings import ServerSettings

ENV_PREFIX = "SYNTH_EVALUATOR_"


@dataclass(frozen=True)
class EvaluatorSettings(ServerSettings):
    port: int = 50053
    metrics_port: int = 9103
