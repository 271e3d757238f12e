"""ModelService: translate requests, call the ModelRegistry, translate back."""

from __future__ import annotations

import grpc
from synth.v1 import models_pb2, models_pb2_grpc

from services.common.models import ModelRegistry
from services.trainer.training_servicer import model_to_proto


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def GetModel(
        self, request: models_pb2.GetModelRequest, context: grpc.ServicerContext
    ) -> models_pb2.GetModelResponse:
        return models_pb2.GetModelResponse(model=model_to_proto(self._registry.get(request.model_id)))

    def ListModels(
        self, request: models_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> models_pb2.ListModelsResponse:
        models, token = self._registry.list(request.page_size, request.page_token)
        return models_pb2.ListModelsResponse(models=[model_to_proto(m) for m in models], next_page_token=token)

    def DeleteModel(
        self, request: models_pb2.DeleteModelRequest, context: grpc.ServicerContext
    ) -> models_pb2.DeleteModelResponse:
        self._registry.delete(request.model_id)
        return models_pb2.DeleteModelResponse()
