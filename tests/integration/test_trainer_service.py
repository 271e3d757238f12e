"""TrainingService and ModelService over real servers, real CTGAN, real Adult rows."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from synth.v1 import models_pb2, models_pb2_grpc, training_pb2, training_pb2_grpc

from services.common.models import ModelRegistry
from services.common.store import ArtifactStore
from services.trainer.app import build_server
from services.trainer.settings import TrainerSettings
from synth_client.local import free_port
from tests.conftest import adult_slice, train_and_wait, upload_bytes

SMALL = dict(
    synthesizer="ctgan", batch_size=200, generator_dims=[32, 32], discriminator_dims=[32, 32], embedding_dim=16
)


@pytest.fixture
def trainer(tmp_path) -> Iterator:  # type: ignore[no-untyped-def]
    server = build_server(
        TrainerSettings(port=0, metrics_port=0, store_dir=tmp_path / "store", max_queued_jobs=1)
    ).start()
    server.set_serving()
    yield server
    server.stop(1)


@pytest.fixture
def channel(trainer) -> Iterator[grpc.Channel]:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(trainer.address) as ch:
        yield ch


@pytest.fixture
def dataset_id(channel) -> str:  # type: ignore[no-untyped-def]
    return upload_bytes(channel, adult_slice(1500)).id


def start(channel, dataset_id: str, **config) -> training_pb2.TrainingJob:  # type: ignore[no-untyped-def]
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    request = training_pb2.StartTrainingRequest(dataset_id=dataset_id, config=training_pb2.TrainingConfig(**config))
    return stub.StartTraining(request, timeout=30).job


def watch(channel, job_id: str, after: int = 0) -> Iterator[training_pb2.WatchTrainingResponse]:  # type: ignore[no-untyped-def]
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    return stub.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job_id, after_sequence=after), timeout=600)


def kinds(events) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.WhichOneof("event") for e in events]


def test_three_epochs_end_to_end_with_metadata(channel, dataset_id) -> None:  # type: ignore[no-untyped-def]
    job = start(channel, dataset_id, epochs=3, seed=1, target_column="income", **SMALL)
    assert job.state == training_pb2.JOB_STATE_QUEUED and job.id.startswith("job-")
    events = list(watch(channel, job.id))
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert kinds(events)[:2] == ["queued", "started"] and kinds(events)[-1] == "succeeded"
    epochs = [e.epoch for e in events if e.WhichOneof("event") == "epoch"]
    assert [e.epoch for e in epochs] == [1, 2, 3] and all(e.epochs == 3 for e in epochs)
    assert all(math.isfinite(e.generator_loss) and math.isfinite(e.discriminator_loss) for e in epochs)
    assert epochs[-1].eta_seconds == 0 and epochs[0].rows_per_second > 0
    started = events[1].started
    assert (started.training_rows, started.holdout_rows) == (1200, 300)
    model_id = events[-1].succeeded.model_id

    models = models_pb2_grpc.ModelServiceStub(channel)
    listed = models.ListModels(models_pb2.ListModelsRequest()).models
    assert [m.id for m in listed] == [model_id]
    model = models.GetModel(models_pb2.GetModelRequest(model_id=model_id)).model
    assert model.dataset_id == dataset_id and model.job_id == job.id
    assert model.dataset_fingerprint.startswith("sha256:")
    assert [c.name for c in model.schema.columns][:2] == ["age", "workclass"]
    assert (model.config.epochs, model.config.seed, model.config.target_column) == (3, 1, "income")
    assert model.holdout.holdout_rows == 300 and model.holdout.stratify_column == "income"
    assert [h.epoch for h in model.loss_history] == [1, 2, 3]
    assert model.training_seconds > 0 and model.device == "cpu" and model.size_bytes > 0
    assert {"torch", "ctgan", "numpy"} <= set(model.library_versions)

    stub = training_pb2_grpc.TrainingServiceStub(channel)
    done = stub.GetTrainingJob(training_pb2.GetTrainingJobRequest(job_id=job.id)).job
    assert done.state == training_pb2.JOB_STATE_SUCCEEDED and done.model_id == model_id
    assert done.epochs_completed == 3 and done.end_time.seconds >= done.start_time.seconds
    assert [j.id for j in stub.ListTrainingJobs(training_pb2.ListTrainingJobsRequest()).jobs] == [job.id]

    models.DeleteModel(models_pb2.DeleteModelRequest(model_id=model_id))
    with pytest.raises(grpc.RpcError) as err:
        models.GetModel(models_pb2.GetModelRequest(model_id=model_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reattach_after_a_disconnect_loses_and_repeats_nothing(channel, dataset_id) -> None:  # type: ignore[no-untyped-def]
    job = start(channel, dataset_id, epochs=4, seed=2, **SMALL)
    first_part = []
    stream = watch(channel, job.id)
    for event in stream:
        first_part.append(event)
        if event.WhichOneof("event") == "epoch" and event.epoch.epoch == 1:
            break
    stream.cancel()  # the client goes away mid-training
    rest = list(watch(channel, job.id, after=first_part[-1].sequence))
    everything = first_part + rest
    assert [e.sequence for e in everything] == list(range(1, len(everything) + 1))
    assert [e.epoch.epoch for e in everything if e.WhichOneof("event") == "epoch"] == [1, 2, 3, 4]
    # A second watcher from the start sees the same history.
    assert [e.sequence for e in watch(channel, job.id)] == [e.sequence for e in everything]


def test_cancel_takes_effect_quickly(channel, dataset_id) -> None:  # type: ignore[no-untyped-def]
    job = start(channel, dataset_id, epochs=500, seed=3, **SMALL)
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    events = watch(channel, job.id)
    for event in events:
        if event.WhichOneof("event") == "epoch":
            break
    asked = time.monotonic()
    stub.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(job_id=job.id))
    last = list(events)[-1]
    assert last.WhichOneof("event") == "cancelled"
    assert time.monotonic() - asked < 10
    final = stub.GetTrainingJob(training_pb2.GetTrainingJobRequest(job_id=job.id)).job
    assert final.state == training_pb2.JOB_STATE_CANCELLED and not final.model_id
    with pytest.raises(grpc.RpcError) as err:
        stub.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(job_id=job.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_same_seed_same_model_and_different_seed_differs(channel, dataset_id, trainer) -> None:  # type: ignore[no-untyped-def]
    a = train_and_wait(channel, dataset_id, epochs=2, seed=42, **SMALL)
    b = train_and_wait(channel, dataset_id, epochs=2, seed=42, **SMALL)
    c = train_and_wait(channel, dataset_id, epochs=2, seed=43, **SMALL)
    registry = ModelRegistry(ArtifactStore(trainer.settings.store_dir))

    def weights(model_id: str) -> dict[str, torch.Tensor]:
        return torch.load(registry.folder(model_id) / "generator.pt", weights_only=True)

    wa, wb, wc = weights(a), weights(b), weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert (registry.folder(a) / "holdout_indices.npy").read_bytes() == (
        registry.folder(b) / "holdout_indices.npy"
    ).read_bytes()


@pytest.mark.parametrize(
    ("dataset", "config", "code", "mentions"),
    [
        ("ds-0123456789abcdef", {}, "NOT_FOUND", "not found"),
        ("nonsense", {}, "INVALID_ARGUMENT", "not a valid id"),
        (None, {"epochs": -1}, "INVALID_ARGUMENT", "epochs"),
        (None, {"batch_size": 505}, "INVALID_ARGUMENT", "multiple of pac"),
        (None, {"target_column": "salary"}, "INVALID_ARGUMENT", "'salary'"),
        (None, {"discrete_columns": ["nope"]}, "INVALID_ARGUMENT", "'nope'"),
        (None, {"holdout_fraction": 0.95}, "INVALID_ARGUMENT", "holdout_fraction"),
        (None, {"device": 3}, "FAILED_PRECONDITION", "GPU"),
        (None, {"device": 42}, "INVALID_ARGUMENT", "unknown device 42"),
        (None, {"epochs": 2**31 - 1}, "INVALID_ARGUMENT", "at most 100000"),
        (None, {"generator_dims": [100_000]}, "INVALID_ARGUMENT", "generator_dim must be at most"),
    ],
)
def test_bad_training_requests(channel, dataset_id, dataset, config, code, mentions) -> None:  # type: ignore[no-untyped-def]
    if config.get("device") == 3 and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(grpc.RpcError) as err:
        start(channel, dataset or dataset_id, **config)
    assert err.value.code().name == code, err.value.details()
    assert mentions in err.value.details()


def test_queue_full_is_resource_exhausted(channel, dataset_id) -> None:  # type: ignore[no-untyped-def]
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    running = start(channel, dataset_id, epochs=500, seed=4, **SMALL)
    for event in watch(channel, running.id):
        if event.WhichOneof("event") == "started":
            break
    waiting = start(channel, dataset_id, epochs=1, seed=5, **SMALL)  # the one queue place (max_queued_jobs=1)
    with pytest.raises(grpc.RpcError) as err:
        start(channel, dataset_id, epochs=1, seed=6, **SMALL)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue is full" in err.value.details()
    for job in (waiting, running):
        stub.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(job_id=job.id))
    assert kinds(watch(channel, waiting.id))[-1] == "cancelled"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ctgan", "tvae"])
def test_killed_trainer_resumes_its_job_from_the_checkpoint(tmp_path: Path, engine: str) -> None:
    store = tmp_path / "store"
    port = free_port()
    env = {
        **os.environ,
        "SYNTH_TRAINER_PORT": str(port),
        "SYNTH_TRAINER_METRICS_PORT": "-1",
        "SYNTH_TRAINER_STORE_DIR": str(store),
    }

    def launch() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.trainer"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    grpc.channel_ready_future(ch).result(timeout=1)
                    return process
            except grpc.FutureTimeoutError:
                time.sleep(0.2)
        process.kill()
        raise AssertionError("trainer did not start")

    process = launch()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            dataset = upload_bytes(ch, adult_slice(1500))
            job = start(
                ch, dataset.id, epochs=12, seed=8, checkpoint_every_epochs=2, **{**SMALL, "synthesizer": engine}
            )
            seen = []
            for event in watch(ch, job.id):
                seen.append(event)
                if event.WhichOneof("event") == "checkpoint" and event.checkpoint.epoch >= 4:
                    break
        process.send_signal(signal.SIGKILL)  # no goodbye: a crash
        process.wait(10)

        process = launch()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            rest = list(watch(ch, job.id, after=seen[-1].sequence))
            assert rest[0].sequence == seen[-1].sequence + 1
            resumed = [e for e in rest if e.WhichOneof("event") == "resumed"]
            assert resumed and resumed[0].resumed.from_epoch >= 4
            assert kinds(rest)[-1] == "succeeded"
            model = (
                models_pb2_grpc.ModelServiceStub(ch)
                .GetModel(models_pb2.GetModelRequest(model_id=rest[-1].succeeded.model_id))
                .model
            )
            assert [h.epoch for h in model.loss_history] == list(range(1, 13)) and model.engine == engine
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_graceful_shutdown_keeps_the_job_resumable(tmp_path: Path) -> None:
    settings = TrainerSettings(port=0, metrics_port=0, store_dir=tmp_path / "store")
    server = build_server(settings).start()
    server.set_serving()
    with grpc.insecure_channel(server.address) as ch:
        dataset = upload_bytes(ch, adult_slice(1500))
        job = start(ch, dataset.id, epochs=200, seed=9, checkpoint_every_epochs=1000, **SMALL)
        for event in watch(ch, job.id):
            if event.WhichOneof("event") == "epoch" and event.epoch.epoch == 2:
                break
    server.stop(2)  # SIGTERM path: stops the job at its next step and checkpoints it
    folder = ArtifactStore(settings.store_dir).existing("jobs", job.id)
    assert (folder / "checkpoint" / "manifest.json").exists()

    restarted = build_server(settings).start()
    restarted.set_serving()
    try:
        with grpc.insecure_channel(restarted.address) as ch:
            stub = training_pb2_grpc.TrainingServiceStub(ch)
            events = []
            for event in watch(ch, job.id, after=0):
                events.append(event)
                if event.WhichOneof("event") == "resumed":
                    break
            assert events[-1].resumed.from_epoch >= 2
            stub.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(job_id=job.id))
    finally:
        restarted.stop(1)


def test_cli_train_shows_progress_and_models(tmp_path: Path) -> None:
    from synth_client import LocalPlatform

    platform = LocalPlatform(tmp_path / "var", ports="free").start()
    try:
        trainer_address = platform.address("trainer")
        with grpc.insecure_channel(trainer_address) as ch:
            dataset = upload_bytes(ch, adult_slice(600))
        base = [sys.executable, "-m", "synth_client.cli", "--trainer", trainer_address]
        run = subprocess.run(
            [*base, "train", dataset.id, "--epochs", "2", "--seed", "1", "--target", "income"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert "model mdl-" in run.stdout and "started on cpu" in run.stderr
        # the default engine choice: every candidate's score, then the winner and why
        assert all(f"tried {engine}" in run.stderr for engine in ("ctgan", "tvae", "copula"))
        assert "chose " in run.stderr
        model_id = run.stdout.split("model ")[1].split()[0]
        shown = subprocess.run([*base, "models", "show", model_id], capture_output=True, text=True, timeout=60)
        assert "chosen automatically" in shown.stdout and "stratified on income" in shown.stdout
        assert re.search(r"(ctgan|tvae|copula): trained \d+ epochs", shown.stdout)
        jobs = subprocess.run([*base, "jobs", "list"], capture_output=True, text=True, timeout=60)
        assert "succeeded" in jobs.stdout
    finally:
        platform.stop()


def test_signed_artifacts_are_served_only_with_the_signing_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ARTIFACT_KEY_FILE: the trainer signs models and checkpoints; a sampler with
    the key serves them, one with another key refuses them as DATA_LOSS."""
    import json

    from synth.v1 import sampling_pb2, sampling_pb2_grpc

    from services.common.errors import InvalidArgument
    from services.sampler.app import build_server as build_sampler
    from services.sampler.settings import SamplerSettings

    key, other = tmp_path / "key", tmp_path / "other"
    key.write_text("a" * 64 + "\n")
    other.write_text("b" * 64 + "\n")
    store = tmp_path / "store"
    trainer = build_server(
        TrainerSettings(port=0, metrics_port=-1, store_dir=store, artifact_key_file=str(key))
    ).start()
    trainer.set_serving()
    try:
        with grpc.insecure_channel(trainer.address) as channel:
            dataset = upload_bytes(channel, adult_slice(600))
            model_id = train_and_wait(channel, dataset.id, epochs=1, **SMALL)
    finally:
        trainer.stop(1)
    manifest = json.loads((ModelRegistry(ArtifactStore(store)).folder(model_id) / "manifest.json").read_text())
    assert "hmac_sha256" in manifest

    def first_chunk(key_file: Path) -> grpc.RpcError | int:
        sampler = build_sampler(
            SamplerSettings(port=0, metrics_port=-1, store_dir=store, artifact_key_file=str(key_file))
        ).start()
        sampler.set_serving()
        try:
            with grpc.insecure_channel(sampler.address) as channel:
                stub = sampling_pb2_grpc.SamplingServiceStub(channel)
                try:
                    request = sampling_pb2.SampleRowsRequest(model_id=model_id, row_count=50, seed=1)
                    return sum(m.chunk.row_count for m in stub.SampleRows(request, timeout=60))
                except grpc.RpcError as err:
                    return err
        finally:
            sampler.stop(1)

    assert first_chunk(key) == 50
    refused = first_chunk(other)
    assert isinstance(refused, grpc.RpcError) and refused.code() == grpc.StatusCode.DATA_LOSS
    assert "signature" in refused.details()
    short = tmp_path / "short"
    short.write_text("too short\n")
    with pytest.raises(InvalidArgument, match="ARTIFACT_KEY_FILE"):
        build_sampler(SamplerSettings(port=0, metrics_port=-1, store_dir=store, artifact_key_file=str(short)))
