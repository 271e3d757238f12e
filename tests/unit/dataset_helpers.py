"""Shared by the dataset intake and dataset store tests: hand-made tables,
uploads through the real intake, and the check that a refused upload leaves
nothing behind."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from services.common.dataset_store import DatasetRepository
from services.common.errors import InvalidArgument, SynthError
from services.common.schema import DatasetInfo
from services.common.store import ArtifactStore
from services.trainer.datasets import DatasetIntake, IntakeLimits

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT / "tests" / "fixtures" / "datasets"  # copies of the shared datasets
ADULT = ROOT / "data" / "adult.csv"  # byte-identical to the shared datasets' adult.csv
KC_HOUSE_2000 = ROOT / "tests" / "fixtures" / "kc_house_2000.csv"  # header + first 2,000 rows of kc_house_data.csv
MB = 1 << 20


def chunks(data: bytes, size: int = MB) -> Iterable[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def upload(
    repo: DatasetRepository,
    data: bytes,
    *,
    limits: IntakeLimits = IntakeLimits(),
    chunk_size: int = MB,
    name: str = "t",
    **kw: Any,
) -> DatasetInfo:
    with DatasetIntake(repo, limits).begin_upload(name, **kw) as up:
        for chunk in chunks(data, chunk_size):
            up.write(chunk)
        return up.commit()


def leftovers(store: ArtifactStore) -> list[Path]:
    """Anything a refused upload could have left: items, staging folders, files."""
    found = list((store.root / "datasets").iterdir())
    staging = store.root / ".staging"
    found += [p for p in staging.rglob("*") if p.is_file() or p.name.startswith("tmp")]
    return found


def refused(
    repo: DatasetRepository,
    store: ArtifactStore,
    data: bytes,
    error: type[SynthError] = InvalidArgument,
    *,
    chunk_size: int = MB,
    **kw: Any,
) -> SynthError:
    with pytest.raises(error) as caught:
        upload(repo, data, chunk_size=chunk_size, **kw)
    assert leftovers(store) == [], "a refused upload left something in the store"
    return caught.value


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def good_rows(n: int = 12) -> list[list[object]]:
    colours = ["red", "green", "blue"]
    return [[i, f"{i * 1.5:.1f}", colours[i % 3]] for i in range(n)]


GOOD = table(["n", "x", "colour"], good_rows())


def paths(error: SynthError) -> list[str]:
    return [v.field for v in error.violations]
