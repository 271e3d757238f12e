"""One status decoder (gateway, client, evaluator) and enum labels from the
proto descriptors."""

from __future__ import annotations

import pytest
from synth.v1 import common_pb2, evaluation_pb2

from services.common import errors, labels
from services.evaluator.sampler_client import SamplerClient
from services.sampler.app import build_server
from services.sampler.settings import SamplerSettings
from synth_client import SynthClient
from synth_client.errors import SynthError
from tests.conftest import TinyModel


def test_labels_come_from_the_descriptors() -> None:
    assert labels.labels(evaluation_pb2.Verdict) == ["pass", "warn", "fail", "not_applicable"]
    assert labels.label(evaluation_pb2.Verdict, evaluation_pb2.VERDICT_NOT_APPLICABLE) == "not_applicable"
    assert labels.label(evaluation_pb2.MetricCategory, evaluation_pb2.METRIC_CATEGORY_PRIVACY) == "privacy"
    assert labels.value(common_pb2.Device, "cuda") == common_pb2.DEVICE_CUDA
    assert labels.label(evaluation_pb2.Verdict, 99) == ""  # a value from a newer peer
    with pytest.raises(KeyError, match="use one of auto, cpu, cuda"):
        labels.value(common_pb2.Device, "tpu")


def test_every_caller_decodes_the_same_reason_and_violations(tiny_model: TinyModel) -> None:
    sampler = build_server(
        SamplerSettings(port=0, metrics_port=-1, store_dir=tiny_model.store_dir, max_rows=1000)
    ).start()
    sampler.set_serving()
    try:
        # The client library.
        with SynthClient(sampler.address) as client, pytest.raises(SynthError) as too_many:
            list(client.sample(tiny_model.model_id, 5000))
        assert too_many.value.code == "RESOURCE_EXHAUSTED" and too_many.value.reason

        # The evaluator's sampler client keeps the sampler's reason (it used to
        # drop it, and the violations, for its own default).
        evaluator_side = SamplerClient(sampler.address)
        with pytest.raises(errors.NotFound) as missing:
            evaluator_side.draw("mdl-0000000000000000", 10, seed=1)
        assert missing.value.reason == "MODEL_NOT_FOUND"
        with pytest.raises(errors.ResourceExhausted) as refused:
            evaluator_side.draw(tiny_model.model_id, 5000, seed=1)
        assert refused.value.reason == too_many.value.reason
        evaluator_side.close()
    finally:
        sampler.stop(1)
