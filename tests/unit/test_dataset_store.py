"""The dataset store (services.common.dataset_store): listing, deleting,
previews, typed frames and damaged datasets, on tables stored through the real intake.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from services.common.dataset_store import MASK, DatasetRepository
from services.common.errors import DataLoss, InvalidArgument, NotFound
from services.common.schema import ColumnKind
from services.common.store import ArtifactStore
from tests.unit.dataset_helpers import GOOD, leftovers, paths, table, upload


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


@pytest.fixture
def repo(store: ArtifactStore) -> DatasetRepository:
    return DatasetRepository(store)


def test_list_paginates_newest_first(repo: DatasetRepository) -> None:
    ids = []
    for i in range(3):
        ids.append(upload(repo, GOOD, name=f"t{i}").id)
        time.sleep(0.02)  # distinct folder mtimes even on coarse-clock filesystems
    page1, token = repo.list(page_size=2)
    assert [d.id for d in page1] == [ids[2], ids[1]]
    assert token
    page2, token2 = repo.list(page_size=2, page_token=token)
    assert [d.id for d in page2] == [ids[0]]
    assert token2 == ""
    everything, last = repo.list()  # page_size 0 -> default
    assert [d.id for d in everything] == ids[::-1] and last == ""
    assert [d.id for d in repo.list(page_size=5000)[0]] == ids[::-1]
    # A dataset deleted between pages does not shift the next page.
    repo.delete(ids[1])
    page2, _ = repo.list(page_size=2, page_token=token)
    assert [d.id for d in page2] == [ids[0]]


def test_list_refuses_bad_arguments(repo: DatasetRepository) -> None:
    with pytest.raises(InvalidArgument) as caught:
        repo.list(page_size=-1)
    assert paths(caught.value) == ["page_size"]
    for token in ["garbage!", "e30", "eyJ2IjoxfQ"]:
        with pytest.raises(InvalidArgument) as caught:
            repo.list(page_token=token)
        assert paths(caught.value) == ["page_token"]


def test_list_of_an_empty_store(repo: DatasetRepository) -> None:
    assert repo.list() == ([], "")


def test_delete(repo: DatasetRepository, store: ArtifactStore) -> None:
    info = upload(repo, GOOD)
    repo.delete(info.id)
    with pytest.raises(NotFound):
        repo.get(info.id)
    with pytest.raises(NotFound):
        repo.delete(info.id)
    with pytest.raises(NotFound):
        repo.preview(info.id)
    with pytest.raises(InvalidArgument):
        repo.get("../etc")
    with pytest.raises(InvalidArgument):
        repo.get("mdl-0123456789abcdef")
    assert leftovers(store) == []


def test_preview_refuses_bad_row_counts(repo: DatasetRepository) -> None:
    info = upload(repo, GOOD)
    for rows in [0, -3]:
        with pytest.raises(InvalidArgument):
            repo.preview(info.id, rows=rows)
    names, rows_, masked = repo.preview(info.id, rows=1)
    # "red" is in 4 of 12 rows, fewer than RARE_MIN_COUNT (5): a rare value, masked
    assert names == ["n", "x", "colour"] and rows_ == [["0", "0.0", MASK]] and masked == [[False, False, True]]


def test_load_frame_refuses_a_tampered_table(repo: DatasetRepository, store: ArtifactStore) -> None:
    info = upload(repo, GOOD)
    path = store.path("datasets", info.id) / "table.csv"
    path.chmod(0o644)
    path.write_bytes(GOOD.replace(b"red", b"rod"))
    with pytest.raises(DataLoss):
        repo.load_frame(info.id)


def test_get_refuses_damaged_metadata(repo: DatasetRepository, store: ArtifactStore) -> None:
    info = upload(repo, GOOD)
    (store.path("datasets", info.id) / "dataset.json").write_text("{not json")
    with pytest.raises(DataLoss):
        repo.get(info.id)


def test_load_frame_types_every_kind(repo: DatasetRepository) -> None:
    rows = [
        [f"{10 + i}", f"{i * 0.5}", i % 2, f"2021-05-{i + 1:02d}", f"a note number {i} with words", f"k{i % 3}"]
        for i in range(12)
    ]
    rows[3][1] = "?"
    info = upload(repo, table(["row_id", "x", "flag", "day", "notes", "k"], rows))
    kinds = [c.kind for c in info.columns]
    assert kinds == [
        ColumnKind.IDENTIFIER,
        ColumnKind.CONTINUOUS,
        ColumnKind.CATEGORICAL,
        ColumnKind.DATETIME,
        ColumnKind.FREE_TEXT,
        ColumnKind.CATEGORICAL,
    ]
    frame = repo.load_frame(info.id)
    assert frame["row_id"].tolist()[:2] == ["10", "11"]
    assert frame["x"].dtype == np.float64 and np.isnan(frame["x"][3])
    assert frame["flag"].tolist()[:2] == ["0", "1"]
    assert str(frame["day"].dtype) == "datetime64[ns]"
    assert frame["notes"].dtype == object and frame["k"].dtype == object
