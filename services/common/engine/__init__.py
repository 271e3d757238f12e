"""The engines' inference side, shared by the trainer and the sampler.

Public surface:

* ``SynthesisModel``: what the sampler needs of a trained model, whatever its engine;
  ``TrainedModel`` (CTGAN), ``TvaeModel`` (TVAE) and ``GaussianCopula`` meet it;
* ``FastDataTransformer``: ctgan's data layout, fitted and applied fast (CTGAN and TVAE);
* ``TrainingConfig``: the engine and its hyper-parameters, validated;
* ``Condition``: steer generation towards one category;
* ``save_model`` / ``load_model`` (and ``save_checkpoint`` / ``load_checkpoint``):
  the artifact format (tensors + JSON, checksummed, optionally signed);
* ``resolve_device``: the one place a torch device is chosen.

Training loops live in ``services.trainer`` (``engine``: CTGAN, ``tvae``;
``synthesizers.train_model`` dispatches on ``config.synthesizer``).
"""

from services.common.engine.artifact import load_checkpoint, load_model, save_checkpoint, save_model
from services.common.engine.config import TrainingConfig
from services.common.engine.copula import GaussianCopula
from services.common.engine.device import resolve_device
from services.common.engine.model import Condition, ModelMetadata, SynthesisModel, TrainedModel
from services.common.engine.transformer import FastDataTransformer
from services.common.engine.tvae import TvaeModel

__all__ = [
    "Condition",
    "FastDataTransformer",
    "GaussianCopula",
    "SynthesisModel",
    "TvaeModel",
    "ModelMetadata",
    "TrainedModel",
    "TrainingConfig",
    "load_checkpoint",
    "load_model",
    "resolve_device",
    "save_checkpoint",
    "save_model",
]
