"""The model registry: trained models in the store, with their metadata.

A model folder holds the engine's artifact files (tensors + JSON, see
``services.common.engine.artifact``), ``model.json`` (the metadata below) and
``holdout_indices.npy`` (row numbers of the real rows the model never saw).
The trainer writes models; the sampler and evaluator only read them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import DataLoss
from services.common.store import ArtifactStore, load_page, read_json

METADATA_FILE = "model.json"
HOLDOUT_FILE = "holdout_indices.npy"


@dataclass
class HoldoutInfo:
    training_rows: int
    holdout_rows: int
    split_seed: int
    stratify_column: str
    indices_fingerprint: str


@dataclass
class ModelInfo:
    id: str
    dataset_id: str
    job_id: str
    dataset_fingerprint: str
    columns: list[dict[str, Any]]  # ColumnInfo.to_dict() of the training table
    config: dict[str, Any]  # the effective training config
    holdout: HoldoutInfo
    loss_history: list[dict[str, float]] = field(default_factory=list)
    training_seconds: float = 0.0
    device: str = "cpu"
    library_versions: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    size_bytes: int = 0
    engine: str = "ctgan"  # models from before there were several engines are CTGAN
    epochs_trained: int = 0
    selection: dict[str, Any] | None = None  # autoselect.Selection.to_dict() of an automatic choice

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        data = dict(data)
        data["holdout"] = HoldoutInfo(**data["holdout"])
        return cls(**data)


def fingerprint_indices(indices: np.ndarray) -> str:
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()


class ModelRegistry:
    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    def folder(self, model_id: str) -> Path:
        return self._store.existing("models", model_id)

    def get(self, model_id: str) -> ModelInfo:
        folder = self.folder(model_id)
        _check_against_manifest(folder, METADATA_FILE, model_id)
        try:
            info = ModelInfo.from_dict(read_json(folder / METADATA_FILE))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataLoss(f"model {model_id}: metadata is unreadable ({_why(err)})", reason="MODEL_CORRUPT") from None
        info.size_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        return info

    def holdout_indices(self, model_id: str) -> np.ndarray:
        info = self.get(model_id)
        _check_against_manifest(self.folder(model_id), HOLDOUT_FILE, model_id)
        try:
            indices: np.ndarray = np.load(self.folder(model_id) / HOLDOUT_FILE, allow_pickle=False)
        except (OSError, ValueError) as err:
            why = _why(err)
            raise DataLoss(f"model {model_id}: holdout indices unreadable ({why})", reason="MODEL_CORRUPT") from None
        if fingerprint_indices(indices) != info.holdout.indices_fingerprint:
            raise DataLoss(f"model {model_id}: holdout indices do not match their fingerprint", reason="MODEL_CORRUPT")
        return indices

    def list(self, page_size: int = 50, page_token: str = "") -> tuple[list[ModelInfo], str]:
        ids, token = self._store.page("models", page_size, page_token)
        return load_page(ids, self.get), token

    def delete(self, model_id: str) -> None:
        self._store.delete("models", model_id)


MANIFEST_FILE = "manifest.json"  # the artifact's manifest (services.common.engine.artifact), read here without torch


def manifest_digest(folder: Path, name: str) -> str | None:
    """The sha256 a model folder's manifest records for file ``name`` (None: not listed,
    as in models made before every file was). A missing or unreadable manifest is DATA_LOSS."""
    try:
        entry = json.loads((folder / MANIFEST_FILE).read_bytes())["files"].get(name)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise DataLoss(
            f"model {folder.name}: {MANIFEST_FILE} is missing or unreadable", reason="MODEL_CORRUPT"
        ) from None
    return None if entry is None else str(entry.get("sha256"))


def _check_against_manifest(folder: Path, name: str, model_id: str) -> None:
    """``name`` must match the digest the (checksummed, optionally signed) manifest
    records for it; models made before it was recorded there are taken as they are."""
    expected = manifest_digest(folder, name)
    if expected is None:
        return
    try:
        actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    except OSError as err:
        raise DataLoss(f"model {model_id}: {name} is unreadable ({_why(err)})", reason="MODEL_CORRUPT") from None
    if not hmac.compare_digest(actual, expected):
        raise DataLoss(f"model {model_id}: {name} fails its sha256 check (altered)", reason="MODEL_CORRUPT")


def _why(err: Exception) -> str:
    """What went wrong, without the store's paths (an OSError's text names the file)."""
    if isinstance(err, OSError):
        return err.strerror or type(err).__name__
    return f"{type(err).__name__}: {err}"
