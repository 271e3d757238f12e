"""One entry point for training any engine: ``train_model`` dispatches on ``config.synthesizer``.

Every engine takes the same arguments and honours them the same way
(progress per epoch, cancel within a step, checkpoints and resume, a seed, a
time budget) and returns a model that meets the sampler's contract
(``services.common.engine.model.SynthesisModel``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from services.common.calibration import MarginCalibration
from services.common.engine.config import TrainingConfig
from services.common.engine.copula import GaussianCopula
from services.common.engine.model import EpochRecord, ModelMetadata, SynthesisModel, library_versions
from services.trainer import engine as ctgan_engine
from services.trainer import epoch_loop
from services.trainer import tvae as tvae_engine
from services.trainer.epoch_loop import EpochStats, data_fingerprint


def train_model(
    frame: pd.DataFrame,
    discrete_columns: Sequence[str],
    config: TrainingConfig,
    *,
    device: str | torch.device = "auto",
    on_epoch: Callable[[EpochStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume_from: dict[str, Any] | None = None,
    threads: int | None = None,
) -> SynthesisModel:
    """Train ``config.synthesizer`` on ``frame`` (see ``services.trainer.engine.train``)."""
    config.validate()
    if config.synthesizer == "copula":
        return fit_copula(frame, discrete_columns, config, on_epoch=on_epoch)
    trainer = tvae_engine.train if config.synthesizer == "tvae" else ctgan_engine.train
    return trainer(
        frame,
        discrete_columns,
        config,
        device=device,
        on_epoch=on_epoch,
        should_stop=should_stop,
        checkpoint=checkpoint,
        resume_from=resume_from,
        threads=threads,
    )


def fit_copula(
    frame: pd.DataFrame,
    discrete_columns: Sequence[str],
    config: TrainingConfig,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> GaussianCopula:
    """The Gaussian copula has no training loop: one pass, reported as one epoch of one."""
    discrete = epoch_loop._check_discrete_columns(frame, discrete_columns)
    seed = config.seed if config.seed is not None else secrets.randbits(63)
    began = time.perf_counter()
    model = GaussianCopula.fit(frame, discrete, epoch_loop._derive(seed, "copula"))
    seconds = time.perf_counter() - began
    model.config = config
    model.metadata = ModelMetadata(
        columns=[str(c) for c in frame.columns],
        discrete_columns=discrete,
        n_rows=len(frame),
        data_fingerprint=data_fingerprint(frame),
        seed=seed,
        epochs_trained=1,
        loss_history=[EpochRecord(1, 0.0, 0.0, seconds)],
        training_seconds=seconds,
        device="cpu",
        threads=1,
        library_versions=library_versions(),
    )
    if on_epoch is not None:
        on_epoch(EpochStats(1, 1, 0.0, 0.0, seconds, len(frame) / seconds if seconds > 0 else 0.0))
    return model


CALIBRATION_ROWS = 20_000  # rows drawn from a trained model to calibrate its numeric columns


def calibrate(model: SynthesisModel, table: pd.DataFrame, discrete: Sequence[str], seed: int) -> MarginCalibration:
    """The model's numeric columns against the real training view's (see ``services.common.calibration``)."""
    rows = min(CALIBRATION_ROWS, max(len(table), 1_000))
    return MarginCalibration.fit(table, synthetic_frame(model, rows, seed), discrete)


def synthetic_frame(model: SynthesisModel, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` generated rows in the training view's space (numbers as floats, categories as values)."""
    pieces: list[list[np.ndarray]] = []
    made = index = 0
    while made < rows:
        pieces.append(model.decoded_piece(seed, index, None))
        made += model.piece_rows
        index += 1
    out: dict[str, Any] = {}
    for position, name in enumerate(model.columns):
        values = np.concatenate([p[position] for p in pieces])[:rows]
        if name in model.discrete_columns:
            lookup = np.array(model.category_values(name), dtype=object)
            out[name] = lookup[values]
        else:
            out[name] = values
    return pd.DataFrame(out)
