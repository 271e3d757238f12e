"""Every file of a model is covered by its manifest, and the sampler never serves a
cached model whose files changed: an edit is DATA_LOSS, not silently different rows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from synth.v1 import models_pb2, models_pb2_grpc, sampling_pb2, sampling_pb2_grpc

from services.common.errors import DataLoss
from services.common.models import ModelRegistry
from services.common.store import ArtifactStore
from services.trainer.app import build_server
from services.trainer.settings import TrainerSettings
from tests.conftest import TinyModel
from tests.integration.test_sampler_service import start_sampler


def test_an_edited_model_json_or_holdout_is_data_loss(model_store: TinyModel) -> None:
    registry = ModelRegistry(ArtifactStore(model_store.store_dir))
    folder = registry.folder(model_store.model_id)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"model.json", "holdout_indices.npy"} <= set(manifest["files"])
    assert registry.get(model_store.model_id).id == model_store.model_id

    info = json.loads((folder / "model.json").read_text())
    info["columns"][0]["maximum"] = 1000.0  # every synthetic value of the column would become 1000
    (folder / "model.json").write_text(json.dumps(info))
    with pytest.raises(DataLoss, match="model.json fails its sha256 check"):
        registry.get(model_store.model_id)

    server = build_server(TrainerSettings(port=0, metrics_port=0, store_dir=model_store.store_dir)).start()
    server.set_serving()
    try:
        with grpc.insecure_channel(server.address) as channel, pytest.raises(grpc.RpcError) as refused:
            models_pb2_grpc.ModelServiceStub(channel).GetModel(
                models_pb2.GetModelRequest(model_id=model_store.model_id), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.DATA_LOSS
    finally:
        server.stop(1)


def test_an_edited_holdout_is_data_loss(model_store: TinyModel) -> None:
    registry = ModelRegistry(ArtifactStore(model_store.store_dir))
    folder = registry.folder(model_store.model_id)
    indices = np.load(folder / "holdout_indices.npy")
    np.save(folder / "holdout_indices.npy", indices[:-1])
    with pytest.raises(DataLoss, match="holdout_indices.npy fails its sha256 check"):
        registry.holdout_indices(model_store.model_id)


def test_the_sampler_reloads_and_refuses_a_cached_model_whose_files_changed(model_store: TinyModel) -> None:
    server = start_sampler(model_store.store_dir)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = sampling_pb2_grpc.SamplingServiceStub(channel)
            request = sampling_pb2.SampleRowsRequest(model_id=model_store.model_id, row_count=50, seed=1)
            assert list(stub.SampleRows(request, timeout=60))[-1].WhichOneof("part") == "summary"  # now cached
            folder = ModelRegistry(ArtifactStore(model_store.store_dir)).folder(model_store.model_id)
            calibration = json.loads((folder / "calibration.json").read_text())
            for column in calibration["columns"].values():
                column["real"] = [1000.0] * len(column["real"])
            (folder / "calibration.json").write_text(json.dumps(calibration))
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.SampleRows(request, timeout=60))
            assert refused.value.code() == grpc.StatusCode.DATA_LOSS
            assert "calibration.json" in refused.value.details()
    finally:
        server.stop(1)


def _rehash(folder: Path, name: str) -> None:
    """Record ``name``'s current digest and size in the manifest, as a migration
    script or a hand edit that "fixes" the checksum would: the files then pass
    every checksum and still disagree with each other."""
    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _rename_in_model_json(folder: Path, old: str, new: str) -> None:
    info = json.loads((folder / "model.json").read_text())
    for column in info["columns"]:
        if column["name"] == old:
            column["name"] = new
    (folder / "model.json").write_text(json.dumps(info))


def _rename_in_transformer(folder: Path, old: str, new: str) -> None:
    state = json.loads((folder / "transformer.json").read_text())
    for column in state["columns"]:
        if column["name"] == old:
            column["name"] = new
    (folder / "transformer.json").write_text(json.dumps(state))


def _rename_in_support(folder: Path, old: str, new: str) -> None:
    state = json.loads((folder / "support.json").read_text())
    names = [item["name"] for item in state["columns"]]
    assert old in names, names
    for item in state["columns"]:
        if item["name"] == old:
            item["name"] = new
    (folder / "support.json").write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("edited", "rename", "column"),
    [
        ("model.json", _rename_in_model_json, "age"),  # a numeric column
        ("model.json", _rename_in_model_json, "workclass"),  # a categorical one
        ("transformer.json", _rename_in_transformer, "age"),
        ("transformer.json", _rename_in_transformer, "workclass"),
        ("support.json", _rename_in_support, "age"),
    ],
)
def test_a_renamed_column_is_data_loss_not_internal(
    model_store: TinyModel, edited: str, rename: Callable[[Path, str, str], None], column: str
) -> None:
    """Checksums pass (the manifest was re-hashed), but the metadata and the artifact
    name different columns: the sampler refuses the model with DATA_LOSS, naming the
    columns and no store path, instead of an INTERNAL KeyError mid-stream."""
    folder = ModelRegistry(ArtifactStore(model_store.store_dir)).folder(model_store.model_id)
    rename(folder, column, column.upper())
    _rehash(folder, edited)
    server = start_sampler(model_store.store_dir)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = sampling_pb2_grpc.SamplingServiceStub(channel)
            request = sampling_pb2.SampleRowsRequest(model_id=model_store.model_id, row_count=50, seed=1)
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.SampleRows(request, timeout=60))
        details = refused.value.details() or ""
        assert refused.value.code() == grpc.StatusCode.DATA_LOSS, (refused.value.code(), details)
        assert model_store.model_id in details and column.upper() in details, details
        assert str(model_store.store_dir) not in details and "Traceback" not in details
    finally:
        server.stop(1)
