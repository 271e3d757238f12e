"""SynthClient: typed calls over gRPC with deadlines and readable errors.

The calls live in one mixin per resource (``_datasets``, ``_training``,
``_sampling``, ``_evaluation``); this module composes them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from synth.v1 import (
    datasets_pb2_grpc,
    evaluation_pb2_grpc,
    models_pb2_grpc,
    sampling_pb2_grpc,
    training_pb2_grpc,
)

from synth_client._base import CHUNK_BYTES, DEFAULT_ADDRESSES
from synth_client._datasets import _DatasetsMixin
from synth_client._evaluation import _EvaluationMixin
from synth_client._sampling import _SamplingMixin
from synth_client._training import _TrainingMixin
from synth_client.conditions import parse_condition


class SynthClient(_DatasetsMixin, _TrainingMixin, _SamplingMixin, _EvaluationMixin):
    """One client for the platform. Pass one address for all services (the
    gateway) or one per service; defaults are the local ``synth up`` ports."""

    def __init__(
        self,
        address: str | None = None,
        *,
        trainer: str | None = None,
        sampler: str | None = None,
        evaluator: str | None = None,
        timeout: float = 60.0,
        metadata: Sequence[tuple[str, str]] = (),
        retries: int = 3,
        retry_wait_seconds: float = 30.0,
    ) -> None:
        targets = {
            "trainer": trainer or address or DEFAULT_ADDRESSES["trainer"],
            "sampler": sampler or address or DEFAULT_ADDRESSES["sampler"],
            "evaluator": evaluator or address or DEFAULT_ADDRESSES["evaluator"],
        }
        self.targets = targets
        self.timeout = timeout
        # Uploads and training starts are called again, up to `retries` times, when the
        # server is unreachable and comes back within `retry_wait_seconds`.
        self.retries = max(0, retries)
        self.retry_wait_seconds = retry_wait_seconds
        self._metadata = tuple(metadata)
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        self._channels = {name: grpc.insecure_channel(t, options=options) for name, t in targets.items()}
        self._datasets = datasets_pb2_grpc.DatasetServiceStub(self._channels["trainer"])
        self._training = training_pb2_grpc.TrainingServiceStub(self._channels["trainer"])
        self._models = models_pb2_grpc.ModelServiceStub(self._channels["trainer"])
        self._sampling = sampling_pb2_grpc.SamplingServiceStub(self._channels["sampler"])
        self._evaluation = evaluation_pb2_grpc.EvaluationServiceStub(self._channels["evaluator"])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> SynthClient:
        """Addresses from SYNTH_ADDRESS (all services) or SYNTH_TRAINER_ADDRESS,
        SYNTH_SAMPLER_ADDRESS, SYNTH_EVALUATOR_ADDRESS."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("SYNTH_ADDRESS"),
            trainer=kwargs.pop("trainer", None) or env.get("SYNTH_TRAINER_ADDRESS"),
            sampler=kwargs.pop("sampler", None) or env.get("SYNTH_SAMPLER_ADDRESS"),
            evaluator=kwargs.pop("evaluator", None) or env.get("SYNTH_EVALUATOR_ADDRESS"),
            **kwargs,
        )

    def __enter__(self) -> SynthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


__all__ = ["CHUNK_BYTES", "DEFAULT_ADDRESSES", "SynthClient", "parse_condition"]
