"""SynthClient's training-job and model calls."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
from synth.v1 import (
    common_pb2,
    models_pb2,
    training_pb2,
)

from services.common import labels
from synth_client._base import _ClientBase
from synth_client._retry import _retry_unavailable, _translate_errors
from synth_client.errors import SynthError


class _TrainingMixin(_ClientBase):
    """Training jobs and models (the trainer's TrainingService and ModelService)."""

    @_translate_errors
    def start_training(
        self,
        dataset_id: str,
        *,
        synthesizer: str = "auto",
        preset: str = "",
        time_budget_seconds: float = 0.0,
        epochs: int = 0,
        batch_size: int = 0,
        target_column: str = "",
        seed: int | None = None,
        holdout_fraction: float | None = None,
        device: str = "auto",
        request_id: str | None = None,
        **config: Any,
    ) -> training_pb2.TrainingJob:
        """Queue a training job; returns at once. ``synthesizer`` "auto" picks
        the engine by a bake-off ("ctgan", "tvae" or "copula" force one). With
        neither ``epochs`` nor ``time_budget_seconds`` the ``preset`` (default
        "balanced", 3 minutes) sets the budget. Unset values take the engine's
        defaults. Extra keyword arguments are
        TrainingConfig fields (generator_dims, pac, checkpoint_every_epochs...), among
        them the privacy settings: ``column_policies={"Name": "fake", "PassengerId": "id"}``
        (learn, fake, id or drop), ``rare_value_min_count`` (default 5),
        ``allow_rare_values`` and ``fake_locale``.
        Retried under one ``request_id`` when the trainer is unreachable: never
        two jobs for one call."""
        msg = training_pb2.TrainingConfig(
            synthesizer=synthesizer,
            preset=preset,
            time_budget_seconds=time_budget_seconds,
            epochs=epochs,
            batch_size=batch_size,
            target_column=target_column,
            device=labels.value(common_pb2.Device, device),
            **config,
        )
        if seed is not None:
            msg.seed = seed
        if holdout_fraction is not None:
            msg.holdout_fraction = holdout_fraction
        request = training_pb2.StartTrainingRequest(
            dataset_id=dataset_id, config=msg, request_id=request_id or str(uuid.uuid4())
        )
        return _retry_unavailable(
            lambda: self._training.StartTraining(request, timeout=self.timeout, metadata=self._md()),
            self._channels["trainer"],
            self.retries,
            self.retry_wait_seconds,
        ).job

    @_translate_errors
    def get_job(self, job_id: str) -> training_pb2.TrainingJob:
        request = training_pb2.GetTrainingJobRequest(job_id=job_id)
        return self._training.GetTrainingJob(request, timeout=self.timeout, metadata=self._md()).job

    @_translate_errors
    def list_jobs(self, page_size: int = 100) -> list[training_pb2.TrainingJob]:
        return self._all_pages(
            lambda token: self._training.ListTrainingJobs(
                training_pb2.ListTrainingJobsRequest(page_size=page_size, page_token=token),
                timeout=self.timeout,
                metadata=self._md(),
            ),
            "jobs",
        )

    @_translate_errors
    def cancel_job(self, job_id: str) -> training_pb2.TrainingJob:
        request = training_pb2.CancelTrainingJobRequest(job_id=job_id)
        return self._training.CancelTrainingJob(request, timeout=self.timeout, metadata=self._md()).job

    def watch_job(
        self, job_id: str, after_sequence: int = 0, *, reconnect: bool = True
    ) -> Iterator[training_pb2.WatchTrainingResponse]:
        """A job's events until its terminal event. With ``reconnect``, a dropped
        stream (trainer restart, network) is re-attached after the last event
        seen, so nothing is lost or repeated."""
        last = after_sequence
        attempts = 0
        while True:
            request = training_pb2.WatchTrainingRequest(job_id=job_id, after_sequence=last)
            try:
                for event in self._training.WatchTraining(request, metadata=self._md()):
                    attempts = 0
                    last = event.sequence
                    yield event
                    if event.WhichOneof("event") in ("succeeded", "failed", "cancelled"):
                        return
                return
            except grpc.RpcError as err:
                retriable = err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
                if not (reconnect and retriable) or attempts >= 30:
                    raise SynthError.from_rpc_error(err) from None
                attempts += 1
                time.sleep(min(0.2 * 2**attempts, 2.0))

    # ---- models --------------------------------------------------------------
    @_translate_errors
    def get_model(self, model_id: str) -> models_pb2.Model:
        request = models_pb2.GetModelRequest(model_id=model_id)
        return self._models.GetModel(request, timeout=self.timeout, metadata=self._md()).model

    @_translate_errors
    def list_models(self, page_size: int = 100) -> list[models_pb2.Model]:
        return self._all_pages(
            lambda token: self._models.ListModels(
                models_pb2.ListModelsRequest(page_size=page_size, page_token=token),
                timeout=self.timeout,
                metadata=self._md(),
            ),
            "models",
        )

    @_translate_errors
    def delete_model(self, model_id: str) -> None:
        request = models_pb2.DeleteModelRequest(model_id=model_id)
        self._models.DeleteModel(request, timeout=self.timeout, metadata=self._md())
