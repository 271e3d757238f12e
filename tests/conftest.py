"""Fixtures shared by every test folder.

``tiny_model``: one small real CTGAN model per test run, trained on a slice of
the bundled Adult table through the real trainer server. Tests that need a
model (sampler, evaluator, gateway) start their servers on its store.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from synth.v1 import datasets_pb2, datasets_pb2_grpc, training_pb2, training_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_ADULT = ROOT / "data" / "adult.csv"
FIXTURE_DATASETS = ROOT / "tests" / "fixtures" / "datasets"  # copies of the shared datasets: every clone has them

# Small but real: enough rows and epochs for signal, seconds to train on 2 cores.
TINY_ROWS = 3000
TINY_CONFIG = dict(
    synthesizer="ctgan",
    epochs=2,
    batch_size=200,
    generator_dims=[64, 64],
    discriminator_dims=[64, 64],
    embedding_dim=32,
    target_column="income",
    seed=7,
)


@dataclass(frozen=True)
class TinyModel:
    store_dir: Path
    dataset_id: str
    model_id: str


def adult_slice(rows: int) -> bytes:
    lines = BUNDLED_ADULT.read_bytes().splitlines(keepends=True)
    return b"".join(lines[: rows + 1])


def upload_bytes(channel: grpc.Channel, data: bytes, name: str = "adult.csv") -> datasets_pb2.Dataset:
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)

    def messages() -> Iterator[datasets_pb2.UploadDatasetRequest]:
        yield datasets_pb2.UploadDatasetRequest(header=datasets_pb2.UploadDatasetHeader(display_name=name))
        for start in range(0, len(data), 1 << 20):
            yield datasets_pb2.UploadDatasetRequest(chunk=data[start : start + (1 << 20)])

    return stub.UploadDataset(messages(), timeout=120).dataset


def train_and_wait(channel: grpc.Channel, dataset_id: str, **config: object) -> str:
    """Start a job, follow its stream to the end, return the model id."""
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    job = stub.StartTraining(
        training_pb2.StartTrainingRequest(dataset_id=dataset_id, config=training_pb2.TrainingConfig(**config)),
        timeout=30,
    ).job
    last = None
    for event in stub.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job.id), timeout=600):
        last = event
    assert last is not None and last.WhichOneof("event") == "succeeded", last
    return last.succeeded.model_id


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    from services.trainer.app import build_server
    from services.trainer.settings import TrainerSettings

    store = tmp_path_factory.mktemp("tiny-model") / "store"
    server = build_server(TrainerSettings(port=0, metrics_port=0, store_dir=store)).start()
    server.set_serving()
    try:
        with grpc.insecure_channel(server.address) as channel:
            dataset = upload_bytes(channel, adult_slice(TINY_ROWS))
            model_id = train_and_wait(channel, dataset.id, **TINY_CONFIG)
    finally:
        server.stop(1)
    return TinyModel(store, dataset.id, model_id)


@pytest.fixture
def model_store(tiny_model: TinyModel, tmp_path: Path) -> TinyModel:
    """A private copy of the tiny model's store, for tests that delete or damage things."""
    copy = tmp_path / "store"
    shutil.copytree(tiny_model.store_dir, copy)
    return TinyModel(copy, tiny_model.dataset_id, tiny_model.model_id)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (CI=true) a skipped test fails the run: every fixture is in the repository
    and setup installs every tool, so a skip there means something is missing."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("CI") == "true" and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; a skip in CI fails the run", red=True)
        for report in skipped[:10]:
            reporter.write_line(f"  skipped: {report.nodeid}: {report.longrepr[-1] if report.longrepr else ''}")
        session.exitstatus = 1
