"""Real servers for integration tests: the services' own server factories on
127.0.0.1 with free ports and a temporary store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.trainer.app import build_server as build_trainer
from services.trainer.settings import TrainerSettings

DATASETS = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"  # copies of the shared datasets


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def trainer(store_dir: Path) -> Iterator:
    """A running trainer (datasets service) with a 5 MB upload limit."""
    settings = TrainerSettings(port=0, metrics_port=0, store_dir=store_dir, max_upload_bytes=5 * 1024 * 1024)
    server = build_trainer(settings).start()
    server.set_serving()
    yield server
    server.stop(grace=1)


@pytest.fixture
def channel(trainer) -> Iterator[grpc.Channel]:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(trainer.address) as ch:
        yield ch


def stored_items(store_dir: Path, kind: str = "datasets") -> list[str]:
    """Committed items plus any staging debris: empty means nothing was stored."""
    items = sorted(p.name for p in (store_dir / kind).iterdir())
    while True:
        try:  # a service may be removing its staging folder right now
            staging = sorted(str(p) for p in (store_dir / ".staging").rglob("*") if p.is_file())
            return items + staging
        except FileNotFoundError:
            continue
