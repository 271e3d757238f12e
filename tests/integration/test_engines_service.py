"""Every engine through the real services: the trainer's automatic choice (events,
the model's record), TVAE and Gaussian copula models sampled by the real sampler
with conditions, and values on the real support."""

from __future__ import annotations

import io
from collections.abc import Iterator

import grpc
import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest
from synth.v1 import models_pb2, models_pb2_grpc, training_pb2, training_pb2_grpc

from services.trainer.app import build_server
from services.trainer.settings import TrainerSettings
from tests.conftest import adult_slice, upload_bytes
from tests.integration.test_datasets_service import violations
from tests.integration.test_sampler_service import eq, sample, start_sampler

SMALL_NETS = dict(batch_size=100, generator_dims=[32, 32], discriminator_dims=[32, 32], embedding_dim=16)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    store = tmp_path_factory.mktemp("engines") / "store"
    server = build_server(TrainerSettings(port=0, metrics_port=0, store_dir=store)).start()
    server.set_serving()
    yield server, store
    server.stop(1)


@pytest.fixture(scope="module")
def channel(trainer) -> Iterator[grpc.Channel]:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(trainer[0].address) as ch:
        yield ch


@pytest.fixture(scope="module")
def dataset_id(channel) -> str:  # type: ignore[no-untyped-def]
    return upload_bytes(channel, adult_slice(1500)).id


def run_job(channel, dataset_id: str, **config) -> tuple[list, models_pb2.Model]:  # type: ignore[no-untyped-def]
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    request = training_pb2.StartTrainingRequest(dataset_id=dataset_id, config=training_pb2.TrainingConfig(**config))
    job = stub.StartTraining(request, timeout=30).job
    events = list(stub.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job.id), timeout=600))
    assert events[-1].WhichOneof("event") == "succeeded", events[-1]
    model_id = events[-1].succeeded.model_id
    model = models_pb2_grpc.ModelServiceStub(channel).GetModel(models_pb2.GetModelRequest(model_id=model_id)).model
    return events, model


@pytest.fixture(scope="module")
def auto_job(channel, dataset_id):  # type: ignore[no-untyped-def]
    return run_job(channel, dataset_id, epochs=3, seed=4, target_column="income", **SMALL_NETS)


def test_auto_tries_every_engine_and_records_its_choice(trainer, auto_job) -> None:  # type: ignore[no-untyped-def]
    events, model = auto_job
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds.index("started") < kinds.index("engine_tried") < kinds.index("engine_chosen") < kinds.index("epoch")
    tried = [e.engine_tried for e in events if e.WhichOneof("event") == "engine_tried"]
    assert [t.engine for t in tried] == ["ctgan", "tvae", "copula"]
    assert all(0 <= t.score <= 1 and t.HasField("utility") for t in tried)
    chosen = next(e.engine_chosen for e in events if e.WhichOneof("event") == "engine_chosen")
    assert model.engine == chosen.engine == model.selection.winner
    assert model.config.synthesizer == "auto" and model.selection.reason.startswith(chosen.engine)
    assert [t.engine for t in model.selection.trials] == ["ctgan", "tvae", "copula"]
    assert model.selection.rows == 1200 and model.epochs_trained >= 1
    metrics = generate_latest(trainer[0].registry).decode()  # the domain metrics, by engine only
    assert f'synth_training_engine_chosen_total{{engine="{chosen.engine}"}}' in metrics
    assert f'synth_training_models_published_total{{engine="{model.engine}"}}' in metrics
    assert f'synth_training_seconds_count{{engine="{model.engine}"}}' in metrics


def test_auto_choice_is_the_same_for_the_same_seed(channel, dataset_id, auto_job) -> None:  # type: ignore[no-untyped-def]
    _, again = run_job(channel, dataset_id, epochs=3, seed=4, target_column="income", **SMALL_NETS)
    _, first = auto_job
    assert again.selection.winner == first.selection.winner
    assert [round(t.score, 6) for t in again.selection.trials] == [round(t.score, 6) for t in first.selection.trials]


def test_unknown_synthesizer_and_preset_are_refused(channel, dataset_id) -> None:  # type: ignore[no-untyped-def]
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    for config, field in (({"synthesizer": "gan9000"}, "config.synthesizer"), ({"preset": "fastest"}, "config.preset")):
        request = training_pb2.StartTrainingRequest(dataset_id=dataset_id, config=training_pb2.TrainingConfig(**config))
        with pytest.raises(grpc.RpcError) as info:
            stub.StartTraining(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(info.value) == [field]


@pytest.mark.parametrize("engine", ["tvae", "copula"])
def test_engine_models_sample_with_conditions_on_the_real_support(trainer, channel, dataset_id, engine) -> None:  # type: ignore[no-untyped-def]
    events, model = run_job(channel, dataset_id, synthesizer=engine, epochs=3, seed=2, **SMALL_NETS)
    assert model.engine == engine and not model.HasField("selection")
    epochs = [e.epoch for e in events if e.WhichOneof("event") == "epoch"]
    assert epochs and epochs[-1].epoch == epochs[-1].epochs
    server = start_sampler(trainer[1])
    try:
        with grpc.insecure_channel(server.address) as ch:
            from synth.v1 import sampling_pb2_grpc

            stub = sampling_pb2_grpc.SamplingServiceStub(ch)
            _, data = sample(stub, model.id, 3000, seed=5, conditions=[eq("sex", "Female")])
            rows = pd.read_csv(io.BytesIO(data))
            _, again = sample(stub, model.id, 3000, seed=5, conditions=[eq("sex", "Female")])
    finally:
        server.stop(1)
    assert len(rows) == 3000 and set(rows["sex"]) == {"Female"} and again == data
    real = pd.read_csv(io.BytesIO(adult_slice(1500)))
    for column in ("age", "capital_gain", "capital_loss", "hours_per_week"):
        # whole numbers, and nothing in the gap between a point mass and the rest
        assert (rows[column] == np.round(rows[column])).all()
        assert rows[column].between(real[column].min(), real[column].max()).all()
    loss = real.loc[real["capital_loss"] > 0, "capital_loss"]
    fake = rows["capital_loss"]
    assert not ((fake > 0) & (fake < loss.min())).any()


def test_columns_can_be_excluded_or_learned_as_categories(trainer, channel, dataset_id) -> None:  # type: ignore[no-untyped-def]
    events, model = run_job(
        channel,
        dataset_id,
        synthesizer="copula",
        seed=3,
        exclude_columns=["fnlwgt"],
        discrete_columns=["hours_per_week"],
    )
    kinds = {c.name: (c.kind, c.kind_reason) for c in model.schema.columns}
    assert kinds["fnlwgt"][1] == "excluded before training: left empty"
    assert list(model.config.exclude_columns) == ["fnlwgt"]
    server = start_sampler(trainer[1])
    try:
        with grpc.insecure_channel(server.address) as ch:
            from synth.v1 import sampling_pb2_grpc

            _, data = sample(sampling_pb2_grpc.SamplingServiceStub(ch), model.id, 2000, seed=1)
    finally:
        server.stop(1)
    rows = pd.read_csv(io.BytesIO(data))
    assert rows["fnlwgt"].isna().all() and rows["age"].notna().all()
    real = pd.read_csv(io.BytesIO(adult_slice(1500)))
    assert set(rows["hours_per_week"].dropna()) <= set(real["hours_per_week"])  # only trained categories


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"exclude_columns": ["nope"]}, "unknown column 'nope'"),
        ({"exclude_columns": ["income"], "target_column": "income"}, "is the target column"),
        ({"exclude_columns": ["age"], "discrete_columns": ["age"]}, "also in discrete_columns"),
    ],
)
def test_bad_column_choices_are_refused(channel, dataset_id, config, needle) -> None:  # type: ignore[no-untyped-def]
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    request = training_pb2.StartTrainingRequest(dataset_id=dataset_id, config=training_pb2.TrainingConfig(**config))
    with pytest.raises(grpc.RpcError) as info:
        stub.StartTraining(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in info.value.details()
    assert violations(info.value) == ["config.exclude_columns"]
