"""CTGAN engine pieces shared by the trainer and the sampler.

Public surface:

* ``FastDataTransformer``: ctgan's data layout, fitted and applied fast;
* ``TrainingConfig``: the hyper-parameters, validated;
* ``TrainedModel`` and ``Condition``: a trained model and its seeded, chunked sampling;
* ``save_model`` / ``load_model`` (and ``save_checkpoint`` / ``load_checkpoint``):
  the artifact format (tensors + JSON, checksummed);
* ``resolve_device``: the one place a torch device is chosen.

Training itself lives in ``services.trainer.engine``.
"""

from services.common.engine.artifact import load_checkpoint, load_model, save_checkpoint, save_model
from services.common.engine.config import TrainingConfig
from services.common.engine.device import resolve_device
from services.common.engine.model import Condition, ModelMetadata, TrainedModel
from services.common.engine.transformer import FastDataTransformer

__all__ = [
    "Condition",
    "FastDataTransformer",
    "ModelMetadata",
    "TrainedModel",
    "TrainingConfig",
    "load_checkpoint",
    "load_model",
    "resolve_device",
    "save_checkpoint",
    "save_model",
]
