"""The trainer's domain: validate a training request, and run a job (load the
table, hold out rows, drive the engine, checkpoint, publish the model)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.calibration import MarginCalibration
from services.common.codec import columns_for_training, training_view
from services.common.dataset_store import DatasetRepository
from services.common.engine.artifact import load_checkpoint, save_checkpoint, save_model
from services.common.engine.config import ENGINES, TrainingConfig, engine_defaults
from services.common.engine.device import resolve_device
from services.common.engine.model import SynthesisModel, library_versions
from services.common.errors import DataLoss, FailedPrecondition, FieldViolation, InvalidArgument
from services.common.holdout import split_holdout
from services.common.models import (
    HOLDOUT_FILE,
    METADATA_FILE,
    HoldoutInfo,
    ModelInfo,
    ModelRegistry,
    fingerprint_indices,
)
from services.common.schema import ColumnInfo, DatasetInfo
from services.common.store import ArtifactStore, request_key, write_json_atomic
from services.common.support import SupportRules
from services.trainer.autoselect import Selection, Trial, choose_engine
from services.trainer.epoch_loop import EpochStats, TrainingCancelled
from services.trainer.events import (
    CheckpointSaved,
    EngineChosen,
    EngineTried,
    EpochCompleted,
    JobResumed,
    JobStarted,
)
from services.trainer.jobs import JobContext, JobManager, JobRecord, JobState
from services.trainer.jobspec import AUTO, DEFAULT_HOLDOUT_FRACTION, ENGINE_FIELDS, ConfigOverrides, JobConfig, JobSpec
from services.trainer.protection import check_policies, protect, protection_config
from services.trainer.synthesizers import calibrate, train_model

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
SELECTION_FILE = "selection.json"
SYNTHESIZERS = (AUTO, *ENGINES)
# Time budgets of the presets, for the whole job (an automatic choice included).
PRESETS = {"quick": 60.0, "balanced": 180.0, "best": 600.0}
DEFAULT_PRESET = "balanced"
# The final training keeps at least this share of the budget after a bake-off.
_MIN_FINAL_SHARE = 0.3


class TrainingMetrics:
    """The trainer's domain metrics (``synth_training_*``); engine names are the only labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.epochs = Counter(
            "synth_training_epochs_total", "Training epochs completed, by engine.", ["engine"], registry=registry
        )
        self.models = Counter(
            "synth_training_models_published_total", "Models published, by engine.", ["engine"], registry=registry
        )
        self.seconds = Histogram(
            "synth_training_seconds",
            "Training time of a published model, by engine.",
            ["engine"],
            buckets=(1, 5, 15, 30, 60, 120, 180, 300, 600, 1800, 3600, 14400),
            registry=registry,
        )
        self.choices = Counter(
            "synth_training_engine_chosen_total",
            "Engines chosen by the automatic bake-off.",
            ["engine"],
            registry=registry,
        )


@dataclass
class _Prepared:
    """What ``Trainer._prepare`` hands the training run."""

    dataset: Any
    train_idx: Any
    holdout_idx: Any
    columns: list[Any]
    table: Any
    discrete: list[str]
    support: SupportRules
    device: Any
    seconds: float


class Trainer:
    def __init__(
        self,
        store: ArtifactStore,
        datasets: DatasetRepository,
        registry: ModelRegistry,
        *,
        concurrency: int = 1,
        max_queued: int = 16,
        default_device: str = "auto",
        threads: int | None = None,
        signing_key: bytes | None = None,
        metrics: TrainingMetrics | None = None,
    ) -> None:
        self._metrics = metrics or TrainingMetrics(CollectorRegistry())
        self._store = store
        self._signing_key = signing_key
        self._datasets = datasets
        self._registry = registry
        self._default_device = default_device
        self._threads = threads
        self.jobs = JobManager(store, self._run, concurrency=concurrency, max_queued=max_queued)

    def start(self, dataset_id: str, overrides: ConfigOverrides, request_id: str = "") -> JobRecord:
        """Validate and queue a job; returns at once. A retry with the same
        ``request_id`` (AIP-155) gets the job the first call queued, even if
        the dataset has gone or the queue has filled up since."""
        asked = json.dumps({"dataset_id": dataset_id, "config": overrides.to_dict()}, sort_keys=True, default=str)
        key = request_key(request_id, hashlib.sha256(asked.encode()).hexdigest())
        earlier = self._store.find_request("jobs", key)
        if earlier is not None:
            return self.jobs.get(earlier)
        dataset = self._datasets.get(dataset_id)  # NOT_FOUND first: the clearest error
        config = self.effective_config(overrides, [c.name for c in dataset.columns])
        check_policies(config.to_dict(), dataset.columns)
        return self.jobs.create(JobSpec(dataset_id=dataset_id, config=config), key)

    def effective_config(self, overrides: ConfigOverrides, columns: list[str]) -> JobConfig:
        return effective_config(overrides, columns, self._default_device)

    # ---- running a job (on a worker thread) --------------------------------
    def _run(self, job: JobRecord, ctx: JobContext) -> None:
        cfg = job.config
        prep = self._prepare(job)
        table, discrete, device = prep.table, prep.discrete, prep.device
        checkpoint_dir = ctx.folder / CHECKPOINT_DIR
        resume_state = _read_checkpoint(checkpoint_dir, self._signing_key)
        job.state, job.device = JobState.RUNNING, str(device)
        job.started_at = job.started_at or time.time()
        ctx.save()
        if resume_state is None:
            ctx.event(
                JobStarted(
                    device=str(device),
                    training_rows=len(prep.train_idx),
                    holdout_rows=len(prep.holdout_idx),
                    preparation_seconds=prep.seconds,
                )
            )
        else:
            ctx.event(JobResumed(from_epoch=int(resume_state["epoch"])))
        selection = None
        if cfg.synthesizer == AUTO:
            try:
                selection = self._selection(ctx, table, discrete, str(device))
            except TrainingCancelled:  # a candidate was stopped: nothing of it is worth keeping
                ctx.raise_if_stopped()
        engine_config = final_engine_config(cfg, selection)
        train_start = time.perf_counter()
        previous_seconds = float(resume_state.get("training_seconds", 0.0)) if resume_state else 0.0

        resumed_epoch = int(resume_state["epoch"]) if resume_state else 0
        on_epoch = self._epoch_reporter(job, ctx, engine_config, resumed_epoch, previous_seconds, train_start)

        def on_checkpoint(state: dict[str, Any]) -> None:
            _write_checkpoint(state, checkpoint_dir, self._signing_key)
            ctx.event(CheckpointSaved(epoch=int(state["epoch"])))

        if self._store.exists("models", job.model_id):
            # A previous process published the model and died before recording it.
            ctx.succeed(job.model_id, self._registry.get(job.model_id).training_seconds)
            return
        try:
            trained = train_model(
                table,
                discrete,
                engine_config,
                device=device,
                on_epoch=on_epoch,
                should_stop=ctx.should_stop,
                checkpoint=on_checkpoint,
                resume_from=resume_state,
                threads=self._threads,
            )
        except TrainingCancelled as stopped:
            if not ctx.cancel_requested:
                # Shutdown: keep the exact step, so the next start loses nothing.
                on_checkpoint(stopped.state)
            ctx.raise_if_stopped()
            raise
        seconds = previous_seconds + time.perf_counter() - train_start
        calibration = calibrate(trained, table, discrete, cfg.seed + 1)
        self._publish(
            job,
            prep.dataset,
            trained,
            columns=prep.columns,
            support=prep.support,
            calibration=calibration,
            selection=selection,
            split=(prep.train_idx, prep.holdout_idx),
            seconds=seconds,
            device=str(device),
        )
        self._metrics.models.labels(trained.engine).inc()
        self._metrics.seconds.labels(trained.engine).observe(seconds)
        ctx.succeed(job.model_id, seconds)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the model supersedes it

    def _epoch_reporter(
        self,
        job: JobRecord,
        ctx: JobContext,
        engine_config: TrainingConfig,
        resumed_epoch: int,
        previous_seconds: float,
        train_start: float,
    ) -> Callable[[EpochStats], None]:
        """The engine's per-epoch callback: the job's progress, an event with an ETA, a metric."""

        def on_epoch(stats: EpochStats) -> None:
            elapsed = previous_seconds + time.perf_counter() - train_start
            per_epoch = (time.perf_counter() - train_start) / max(stats.epoch - resumed_epoch, 1)
            job.epochs_completed = stats.epoch
            self._metrics.epochs.labels(engine_config.synthesizer).inc()
            ctx.save()
            ctx.event(
                EpochCompleted(
                    epoch=stats.epoch,
                    epochs=stats.epochs,
                    generator_loss=stats.generator_loss,
                    discriminator_loss=stats.discriminator_loss,
                    elapsed_seconds=elapsed,
                    eta_seconds=_eta(per_epoch, stats, elapsed, engine_config.time_budget_seconds),
                    rows_per_second=stats.rows_per_second,
                )
            )

        return on_epoch

    def _prepare(self, job: JobRecord) -> _Prepared:
        """The job's training rows as the engine sees them: holdout split,
        columns to learn, privacy protection, support rules, device."""
        cfg = job.config
        started = time.perf_counter()
        dataset = self._datasets.get(job.dataset_id)
        frame = self._datasets.load_frame(job.dataset_id)
        train_idx, holdout_idx = split_holdout(
            frame[cfg.target_column] if cfg.target_column else None,
            len(frame),
            cfg.holdout_fraction,
            cfg.seed,
        )
        columns = columns_for_training(dataset.columns, cfg.discrete_columns, cfg.exclude_columns)
        # column policies, fakes, rare values (services.trainer.protection)
        train_frame, columns = protect(frame, train_idx, columns, cfg.to_dict())
        table, discrete = training_view(train_frame, columns, cfg.discrete_columns)
        return _Prepared(
            dataset=dataset,
            train_idx=train_idx,
            holdout_idx=holdout_idx,
            columns=columns,
            table=table,
            discrete=discrete,
            support=SupportRules.fit(table, discrete),
            device=resolve_device(cfg.device),
            seconds=time.perf_counter() - started,
        )

    def _selection(self, ctx: JobContext, table: Any, discrete: list[str], device: str) -> Selection:
        """The bake-off's result: measured once per job and kept in its folder, so a
        job resumed after a restart trains the engine it chose before."""
        path = ctx.folder / SELECTION_FILE
        if path.is_file():
            return Selection.from_dict(json.loads(path.read_text()))
        cfg = ctx.job.config

        def tried(trial: Trial) -> None:
            ctx.event(
                EngineTried(
                    engine=trial.engine,
                    score=trial.score,
                    fidelity=trial.fidelity,
                    utility=trial.utility,
                    seconds=trial.seconds,
                    epochs=trial.epochs,
                )
            )

        selection = choose_engine(
            table,
            discrete,
            cfg.target_column,
            lambda engine: config_for_engine(cfg, engine),
            seed=cfg.seed,
            device=device,
            threads=self._threads,
            should_stop=ctx.should_stop,
            on_trial=tried,
        )
        write_json_atomic(path, selection.to_dict())
        self._metrics.choices.labels(selection.winner).inc()
        ctx.event(EngineChosen(engine=selection.winner, reason=selection.reason))
        return selection

    def _publish(
        self,
        job: JobRecord,
        dataset: DatasetInfo,
        trained: SynthesisModel,
        *,
        columns: list[ColumnInfo],
        support: SupportRules,
        calibration: MarginCalibration,
        selection: Selection | None,
        split: tuple[np.ndarray, np.ndarray],
        seconds: float,
        device: str,
    ) -> None:
        """Store the model with everything the sampler and evaluator need, in one atomic commit."""
        train_idx, holdout_idx = split
        cfg = job.config
        history = [
            {"epoch": r.epoch, "generator_loss": r.generator_loss, "discriminator_loss": r.discriminator_loss}
            for r in trained.metadata.loss_history
        ]
        info = ModelInfo(
            id=job.model_id,
            dataset_id=job.dataset_id,
            job_id=job.id,
            dataset_fingerprint=dataset.fingerprint,
            columns=[c.to_dict() for c in columns],
            config=cfg.to_dict(),
            holdout=HoldoutInfo(
                training_rows=len(train_idx),
                holdout_rows=len(holdout_idx),
                split_seed=cfg.seed,
                stratify_column=cfg.target_column,
                indices_fingerprint=fingerprint_indices(holdout_idx),
            ),
            loss_history=history,
            training_seconds=seconds,
            device=device,
            library_versions=library_versions(),
            created_at=time.time(),
            engine=trained.engine,
            epochs_trained=int(trained.metadata.epochs_trained),
            selection=selection.to_dict() if selection is not None else None,
        )
        holdout = io.BytesIO()
        np.save(holdout, np.asarray(holdout_idx, dtype=np.int64), allow_pickle=False)
        metadata = json.dumps(info.to_dict(), indent=1, sort_keys=True).encode()
        with self._store.staging() as staged:
            # model.json and the holdout are in the manifest (and its signature) like the weights
            save_model(
                trained,
                staged,
                signing_key=self._signing_key,
                support=support,
                calibration=calibration,
                extra={METADATA_FILE: metadata, HOLDOUT_FILE: holdout.getvalue()},
            )
            self._store.commit(staged, "models", job.model_id)
        log.info("model published", extra={"model_id": job.model_id, "seconds": round(seconds, 2)})


def effective_config(overrides: ConfigOverrides, columns: list[str], default_device: str = "auto") -> JobConfig:
    """A job's config from the fields a request set: defaults filled in, the seed
    chosen, the preset's budget applied; ``InvalidArgument`` naming each bad field."""
    synthesizer = overrides.synthesizer or AUTO
    if synthesizer not in SYNTHESIZERS:
        raise InvalidArgument(
            f"synthesizer must be one of {', '.join(SYNTHESIZERS)}, got {synthesizer!r}",
            violations=[FieldViolation("config.synthesizer", f"unknown synthesizer {synthesizer!r}")],
        )
    preset = overrides.preset or ""
    if preset and preset not in PRESETS:
        raise InvalidArgument(
            f"preset must be one of {', '.join(PRESETS)}, got {preset!r}",
            violations=[FieldViolation("config.preset", f"unknown preset {preset!r}")],
        )
    engine_values = overrides.engine_values()
    if not preset and "epochs" not in engine_values and not engine_values.get("time_budget_seconds"):
        preset = DEFAULT_PRESET
    if preset and not engine_values.get("time_budget_seconds"):
        engine_values["time_budget_seconds"] = PRESETS[preset]
    for name in ("generator_dim", "discriminator_dim"):
        if name in engine_values:
            engine_values[name] = tuple(engine_values[name])
    if engine_values.get("seed") is None:
        engine_values["seed"] = secrets.randbelow(2**31)
    engine = ENGINES[0] if synthesizer == AUTO else synthesizer
    engine_config = TrainingConfig(**{**engine_defaults(engine), **engine_values, "synthesizer": engine}).validate()
    holdout_fraction = float(
        overrides.holdout_fraction if overrides.holdout_fraction is not None else DEFAULT_HOLDOUT_FRACTION
    )
    if not 0.0 <= holdout_fraction <= 0.9:
        raise InvalidArgument(
            f"holdout_fraction must be between 0 and 0.9, got {holdout_fraction}",
            violations=[FieldViolation("config.holdout_fraction", "must be in [0, 0.9]")],
        )
    target, discrete, exclude = _checked_columns(overrides, columns)
    protection = protection_config(overrides.to_dict(), columns)
    device = overrides.device or "auto"
    if device == "auto":
        device = default_device
    if device == "cuda" and not torch.cuda.is_available():
        raise FailedPrecondition("device cuda was asked for, but this trainer has no GPU", reason="NO_GPU")
    return JobConfig(
        engine=engine_config,
        synthesizer=synthesizer,
        preset=preset,
        # the fields the caller set: an automatic choice gives the others its winner's defaults
        set_fields=tuple(sorted(k for k in engine_values if k != "seed")),
        holdout_fraction=holdout_fraction,
        target_column=target,
        discrete_columns=tuple(discrete),
        exclude_columns=tuple(exclude),
        device=device,
        column_policies=dict(protection["column_policies"]),
        rare_value_min_count=int(protection["rare_value_min_count"]),
        allow_rare_values=bool(protection["allow_rare_values"]),
        fake_locale=str(protection["fake_locale"]),
    )


def _checked_columns(overrides: ConfigOverrides, columns: list[str]) -> tuple[str, list[str], list[str]]:
    """The target, discrete and excluded columns a request named, each checked
    against the dataset's columns (``InvalidArgument`` naming each bad one)."""
    target = overrides.target_column or ""
    if target and target not in columns:
        raise InvalidArgument(
            f"target column {target!r} is not in the dataset (columns: {', '.join(columns)})",
            violations=[FieldViolation("config.target_column", f"unknown column {target!r}")],
        )
    discrete = list(overrides.discrete_columns or ())
    missing = [c for c in discrete if c not in columns]
    if missing:
        raise InvalidArgument(
            f"discrete column(s) not in the dataset: {', '.join(map(repr, missing))}",
            violations=[FieldViolation("config.discrete_columns", f"unknown column {c!r}") for c in missing],
        )
    exclude = list(overrides.exclude_columns or ())
    problems = (
        [FieldViolation("config.exclude_columns", f"unknown column {c!r}") for c in exclude if c not in columns]
        + [
            FieldViolation("config.exclude_columns", f"{c!r} is the target column, which must be learned")
            for c in exclude
            if c == target
        ]
        + [
            FieldViolation("config.exclude_columns", f"{c!r} is also in discrete_columns")
            for c in exclude
            if c in discrete
        ]
    )
    if len(set(exclude)) + 1 > len(columns):
        problems.append(FieldViolation("config.exclude_columns", "at least one column must be learned"))
    if problems:
        raise InvalidArgument("bad exclude_columns: " + "; ".join(p.description for p in problems), violations=problems)
    return target, discrete, exclude


def config_for_engine(cfg: JobConfig, engine: str, budget_used: float = 0.0) -> TrainingConfig:
    """The job's config for ``engine``: that engine's defaults under the fields
    the caller set, and what is left of the time budget after ``budget_used``
    seconds (at least ``_MIN_FINAL_SHARE`` of it)."""
    kept = ENGINE_FIELDS if cfg.set_fields is None else (*cfg.set_fields, "seed")
    chosen = {name: getattr(cfg.engine, name) for name in ENGINE_FIELDS if name in kept}
    budget = cfg.engine.time_budget_seconds
    if budget > 0:
        chosen["time_budget_seconds"] = max(budget - budget_used, budget * _MIN_FINAL_SHARE)
    return TrainingConfig(**{**engine_defaults(engine), **chosen, "synthesizer": engine})


def final_engine_config(cfg: JobConfig, selection: Selection | None) -> TrainingConfig:
    """The config a job trains its model with: its own engine's, or the bake-off winner's."""
    if selection is None:  # jobs from before there were several engines read as CTGAN ones (JobConfig.from_dict)
        return cfg.engine
    return config_for_engine(cfg, selection.winner, selection.seconds)


def _eta(per_epoch: float, stats: EpochStats, elapsed: float, budget: float) -> float:
    left = per_epoch * (stats.epochs - stats.epoch)
    return min(left, max(budget - elapsed, 0.0)) if budget > 0 else left


def _write_checkpoint(state: dict[str, Any], target: Path, signing_key: bytes | None) -> None:
    """Replace the job's checkpoint folder without ever having none: write the
    new one beside it, then swap with two renames."""
    fresh, old = target.with_name(target.name + ".new"), target.with_name(target.name + ".old")
    shutil.rmtree(fresh, ignore_errors=True)
    save_checkpoint(state, fresh, signing_key=signing_key)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
    os.rename(fresh, target)
    shutil.rmtree(old, ignore_errors=True)


def _read_checkpoint(target: Path, signing_key: bytes | None) -> dict[str, Any] | None:
    """The newest intact checkpoint (a crash may have left it mid-swap), or None."""
    for folder in (target, target.with_name(target.name + ".new"), target.with_name(target.name + ".old")):
        if folder.is_dir():
            try:
                return load_checkpoint(folder, signing_key=signing_key)
            except DataLoss:
                log.warning("damaged checkpoint ignored", extra={"folder": folder.name})
    return None
