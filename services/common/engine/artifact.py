"""The model artifact: data, never code.

A model is a folder::

    manifest.json      format, version, and the sha256 and size of every other file
    engine.json        the engine's name, training config, engine metadata and layout sizes
    generator.pt       CTGAN: the generator's state_dict (tensors only; torch.save)
    decoder.pt         TVAE: the decoder's state_dict
    transformer.json   CTGAN and TVAE: the FastDataTransformer's fitted state
    copula.json        Gaussian copula: its fitted state (quantiles, categories, correlations)
    support.json       optional: the training columns' value support (``services.common.support``),
                       which the sampler applies to every engine's output
    calibration.json   optional: the model's and the real columns' quantiles
                       (``services.common.calibration``), applied before the support

``engine.json`` names the engine (``"engine"``; absent in models made before
there were several engines, which are CTGAN).

``load_model`` reads ``manifest.json`` first and checks every listed file's size
and sha256 *before* anything is deserialised; a missing, truncated or altered
file is a ``DataLoss`` that names the file. Weights are read with
``torch.load(weights_only=True, map_location="cpu")`` (no pickle of code, and a
model trained on CUDA loads on a CPU-only machine), JSON with ``json``; the
generator is rebuilt from the config, never unpickled.

``save_model``'s ``extra`` files (the platform's ``model.json`` and holdout
indices) are listed and signed like the engine's (``services.common.models``
checks each against its manifest digest without reading the rest). Other files in the folder
are neither listed nor read. The manifest is written last, so a folder whose writing was interrupted has no
manifest and is refused. The caller writes into a staging folder and renames it
into place (``save_model`` does not rename).

Checksums catch corruption and accidental edits. Against deliberate tampering
pass a ``signing_key``: the manifest then carries an HMAC-SHA256 over its file
list, and ``load_model(..., signing_key=...)`` refuses a manifest without a valid one.

Training checkpoints (``save_checkpoint`` / ``load_checkpoint``) use the same
manifest scheme around one ``checkpoint.pt`` (a dict of tensors and plain values,
read with ``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from services.common.calibration import MarginCalibration
from services.common.engine._layout import SpanLayout
from services.common.engine.config import TrainingConfig
from services.common.engine.copula import GaussianCopula
from services.common.engine.device import resolve_device
from services.common.engine.model import ModelMetadata, SynthesisModel, TrainedModel, build_generator
from services.common.engine.transformer import FastDataTransformer
from services.common.engine.tvae import TvaeModel, build_decoder
from services.common.errors import DataLoss, FailedPrecondition, InvalidArgument, SynthError
from services.common.support import SupportRules

MODEL_FORMAT = "synth.ctgan-model"
CHECKPOINT_FORMAT = "synth.ctgan-checkpoint-folder"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GENERATOR_FILE = "generator.pt"
DECODER_FILE = "decoder.pt"
TRANSFORMER_FILE = "transformer.json"
COPULA_FILE = "copula.json"
SUPPORT_FILE = "support.json"
CALIBRATION_FILE = "calibration.json"
ENGINE_FILE = "engine.json"
CHECKPOINT_FILE = "checkpoint.pt"
_ENGINE_FILES = {
    "ctgan": (GENERATOR_FILE, TRANSFORMER_FILE),
    "tvae": (DECODER_FILE, TRANSFORMER_FILE),
    "copula": (COPULA_FILE,),
}


# -------------------------------------------------------------------- signing key

MIN_KEY_BYTES = 32


def read_signing_key(path: str, setting: str) -> bytes | None:
    """The artifact signing key in file ``path`` (surrounding whitespace
    stripped; at least 32 bytes, e.g. ``secrets.token_hex(32)``), or None when
    ``path`` is empty. A missing or short key refuses the start, naming ``setting``."""
    if not path:
        return None
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise InvalidArgument(f"{setting}: cannot read {path}: {exc.strerror}", reason="BAD_SIGNING_KEY") from None
    if len(key) < MIN_KEY_BYTES:
        raise InvalidArgument(
            f"{setting}: the key in {path} has {len(key)} bytes; use at least {MIN_KEY_BYTES} "
            '(python -c "import secrets; print(secrets.token_hex(32))")',
            reason="BAD_SIGNING_KEY",
        )
    return key


# ------------------------------------------------------------------------- models


def save_model(
    model: SynthesisModel,
    folder: str | os.PathLike[str],
    *,
    signing_key: bytes | None = None,
    support: SupportRules | None = None,
    calibration: MarginCalibration | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Write ``model`` (any engine) and the training columns' ``support`` into
    ``folder`` (created if needed); returns the folder path."""
    document: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "version": FORMAT_VERSION,
        "engine": model.engine,
        "config": model.config.to_dict(),
        "metadata": _finite(model.metadata.to_dict()),
    }
    payloads: dict[str, bytes] = {}
    if isinstance(model, TrainedModel):
        payloads[GENERATOR_FILE] = _torch_bytes(model.generator_state())
    elif isinstance(model, TvaeModel):
        payloads[DECODER_FILE] = _torch_bytes(model.weights())
    elif isinstance(model, GaussianCopula):
        payloads[COPULA_FILE] = _json_bytes(model.to_state())
    else:
        raise TypeError(f"cannot save a model of engine {model.engine!r}")
    if isinstance(model, TrainedModel | TvaeModel):
        layout = model.layout
        document["layout"] = {"data_dim": layout.data_dim, "cond_dim": layout.cond_dim}
        payloads[TRANSFORMER_FILE] = _json_bytes(model.transformer.to_state())
    if support is not None:
        payloads[SUPPORT_FILE] = _json_bytes(support.to_state())
    if calibration is not None:
        payloads[CALIBRATION_FILE] = _json_bytes(calibration.to_state())
    payloads[ENGINE_FILE] = _json_bytes(document)
    payloads.update(extra or {})
    return _write_folder(Path(folder), MODEL_FORMAT, payloads, signing_key)


def load_model(
    folder: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    signing_key: bytes | None = None,
) -> SynthesisModel:
    """Verify and load a model folder; raises ``DataLoss`` on anything missing, truncated or altered."""
    path = Path(folder)
    files = _read_folder(path, MODEL_FORMAT, (ENGINE_FILE,), signing_key)
    try:
        document = json.loads(files[ENGINE_FILE])
        if document.get("format") != MODEL_FORMAT:
            raise ValueError(f"engine.json has format {document.get('format')!r}")
        engine = document.get("engine", "ctgan")
        if engine not in _ENGINE_FILES:
            raise ValueError(f"engine.json names an unknown engine {engine!r}")
        missing = [name for name in _ENGINE_FILES[engine] if name not in files]
        if missing:
            raise DataLoss(f"model artifact {path.name}: {MANIFEST} does not list {', '.join(missing)}")
        config = TrainingConfig.from_dict(document["config"]).validate()
        metadata = ModelMetadata.from_dict(document["metadata"])
        model: SynthesisModel
        support = SupportRules.from_state(json.loads(files[SUPPORT_FILE])) if SUPPORT_FILE in files else None
        calibration = (
            MarginCalibration.from_state(json.loads(files[CALIBRATION_FILE])) if CALIBRATION_FILE in files else None
        )
        if engine == "copula":
            copula = GaussianCopula.from_state(json.loads(files[COPULA_FILE]))
            copula.config, copula.metadata = config, metadata
            copula.support, copula.calibration = support, calibration
            return copula
        transformer = FastDataTransformer.from_state(json.loads(files[TRANSFORMER_FILE]))
        layout = SpanLayout.from_output_info(transformer.output_info_list)
        if (layout.data_dim, layout.cond_dim) != (document["layout"]["data_dim"], document["layout"]["cond_dim"]):
            raise ValueError("the transformer's layout does not match engine.json")
        if engine == "tvae":
            decoder = build_decoder(config, layout)
            decoder.load_state_dict(_weights(files[DECODER_FILE]), strict=True)
            model = TvaeModel(transformer, decoder, config, metadata)
        else:
            generator = build_generator(config, layout)
            generator.load_state_dict(_weights(files[GENERATOR_FILE]), strict=True)
            model = TrainedModel(transformer, generator, config, metadata)
        model.support, model.calibration = support, calibration
    except DataLoss:
        raise
    except (ValueError, KeyError, TypeError, RuntimeError, SynthError, json.JSONDecodeError) as exc:
        raise DataLoss(f"model artifact {path.name}: verified files are inconsistent: {exc}") from None
    return model.to(resolve_device(device))


def _weights(data: bytes) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


# -------------------------------------------------------------------- checkpoints


def save_checkpoint(state: dict[str, Any], folder: str | os.PathLike[str], *, signing_key: bytes | None = None) -> Path:
    """Write a training checkpoint state (from ``train``'s ``checkpoint`` callback) into ``folder``."""
    return _write_folder(Path(folder), CHECKPOINT_FORMAT, {CHECKPOINT_FILE: _torch_bytes(state)}, signing_key)


def load_checkpoint(folder: str | os.PathLike[str], *, signing_key: bytes | None = None) -> dict[str, Any]:
    """Verify and read a checkpoint folder (tensors on the CPU); ``DataLoss`` when damaged."""
    path = Path(folder)
    files = _read_folder(path, CHECKPOINT_FORMAT, (CHECKPOINT_FILE,), signing_key)
    try:
        state = torch.load(io.BytesIO(files[CHECKPOINT_FILE]), map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise DataLoss(f"checkpoint {path.name}: {CHECKPOINT_FILE} cannot be read: {exc}") from None
    if not isinstance(state, dict):
        raise DataLoss(f"checkpoint {path.name}: {CHECKPOINT_FILE} does not hold a checkpoint state")
    return state


# ---------------------------------------------------------------------- internals


def _torch_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True, allow_nan=False).encode()


def _finite(value: Any) -> Any:
    """Replace NaN/inf (a diverged loss) with None so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _sign(files: dict[str, Any], key: bytes) -> str:
    body = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_folder(folder: Path, kind: str, payloads: dict[str, bytes], signing_key: bytes | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, data in payloads.items():
        _write_file(folder / name, data)
        entries[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest: dict[str, Any] = {"format": kind, "version": FORMAT_VERSION, "files": entries}
    if signing_key is not None:
        manifest["hmac_sha256"] = _sign(entries, signing_key)
    _write_file(folder / MANIFEST, _json_bytes(manifest))  # last: its presence means complete
    return folder


def _read_folder(folder: Path, kind: str, required: tuple[str, ...], signing_key: bytes | None) -> dict[str, bytes]:
    """Read and verify every file the manifest lists; return their bytes."""
    where = f"artifact {folder.name}"  # the item's name, never the store's path
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise DataLoss(f"{where}: {MANIFEST} is missing (incomplete or not an artifact folder)")
    try:
        manifest = json.loads(manifest_path.read_bytes())
        entries = manifest["files"]
        if not isinstance(entries, dict):
            raise TypeError("files is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataLoss(f"{where}: {MANIFEST} is not a valid manifest: {exc}") from None
    if manifest.get("format") != kind:
        raise DataLoss(f"{where}: {MANIFEST} says format {manifest.get('format')!r}, expected {kind!r}")
    if manifest.get("version") != FORMAT_VERSION:
        raise FailedPrecondition(
            f"{where}: format version {manifest.get('version')!r} is not supported (this build reads {FORMAT_VERSION})"
        )
    if signing_key is not None:
        signature = manifest.get("hmac_sha256")
        if not isinstance(signature, str) or not hmac.compare_digest(signature, _sign(entries, signing_key)):
            raise DataLoss(f"{where}: {MANIFEST} has no valid signature for the configured key")
    missing_entries = [name for name in required if name not in entries]
    if missing_entries:
        raise DataLoss(f"{where}: {MANIFEST} does not list {', '.join(missing_entries)}")
    contents: dict[str, bytes] = {}
    for name, entry in entries.items():
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            raise DataLoss(f"{where}: {MANIFEST} lists an invalid file name {name!r}")
        path = folder / name
        if not path.is_file():
            raise DataLoss(f"{where}: {name} is missing")
        data = path.read_bytes()
        try:
            size, digest = int(entry["size"]), str(entry["sha256"])
        except (KeyError, TypeError, ValueError):
            raise DataLoss(f"{where}: {MANIFEST} entry for {name} is malformed") from None
        if len(data) != size:
            raise DataLoss(f"{where}: {name} has {len(data)} bytes, the manifest says {size} (truncated or altered)")
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), digest):
            raise DataLoss(f"{where}: {name} fails its sha256 check (corrupted or altered)")
        contents[name] = data
    return contents
