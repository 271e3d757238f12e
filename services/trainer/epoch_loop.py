"""The epoch loop every trained engine shares (CTGAN in ``services.trainer.engine``, TVAE in
``services.trainer.tvae``): ``run_training`` (validation, device, threads, seed or checkpoint
check, torch's random state forked) around ``EpochLoop.loop`` (cancel before each step with a
resumable state, progress after each epoch, checkpoints, the time budget, the model's metadata)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from services.common.engine.config import TrainingConfig
from services.common.engine.device import available_cpus, resolve_device
from services.common.engine.model import EpochRecord, ModelMetadata, library_versions
from services.common.errors import Cancelled, FailedPrecondition, FieldViolation, InvalidArgument

__all__ = [
    "EpochLoop",
    "EpochStats",
    "TrainingCancelled",
    "budget_spent",
    "data_fingerprint",
    "default_threads",
    "run_training",
]

_MAX_SEED = 2**63 - 1
# config fields that may change between a checkpoint and its resumption
_RESUMABLE_CHANGES = frozenset({"epochs", "checkpoint_every", "seed", "time_budget_seconds"})


@dataclass(frozen=True)
class EpochStats:
    """Progress after one epoch; ``epoch`` counts completed epochs (1 .. ``epochs``)."""

    epoch: int
    epochs: int
    generator_loss: float
    discriminator_loss: float
    seconds: float
    rows_per_second: float


class TrainingCancelled(Cancelled):
    """``should_stop()`` returned true. ``state`` resumes exactly at the step that was not run."""

    def __init__(self, message: str, *, epoch: int, step: int, state: dict[str, Any]) -> None:
        super().__init__(message, reason="TRAINING_CANCELLED")
        self.epoch = epoch
        self.step = step
        self.state = state


def default_threads() -> int:
    """A sensible torch thread count for training when the settings give none.

    CTGAN's matrices are small (batch 500, width 256): past a couple of threads
    OpenMP synchronisation costs more than it saves (and an oversubscribed
    container spins in barriers), so use at most 2, and never more than the CPUs
    this process may use (affinity and the cgroup CPU quota of a container).
    The trainer's settings should pass ``threads`` explicitly.
    """
    return max(1, min(2, available_cpus()))


def budget_spent(config: TrainingConfig, training_seconds: float) -> bool:
    """Whether the config's time budget (if any) is used up: training ends after that epoch."""
    return config.time_budget_seconds > 0 and training_seconds >= config.time_budget_seconds


def data_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over column names, dtypes and row hashes; identifies the training table."""
    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}\x00{dtype}\x01".encode())
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest.update(np.ascontiguousarray(hashes).tobytes())
    return digest.hexdigest()


def run_training(
    run_class: Callable[..., EpochLoop],
    frame: pd.DataFrame,
    discrete_columns: Sequence[str],
    config: TrainingConfig,
    *,
    device: str | torch.device,
    on_epoch: Callable[[EpochStats], None] | None,
    should_stop: Callable[[], bool] | None,
    checkpoint: Callable[[dict[str, Any]], None] | None,
    resume_from: dict[str, Any] | None,
    threads: int | None,
    checkpoint_format: str,
    checkpoint_version: int,
) -> Any:
    """What every trained engine does around its loop: validate, pick the device,
    threads and seed (or check the checkpoint), and run ``run_class``'s loop with
    torch's random state forked, so the caller's is left alone."""
    config.validate()
    target = resolve_device(device)
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise InvalidArgument(
            f"threads must be a positive integer, got {threads!r}",
            violations=[FieldViolation("threads", "must be a positive integer")],
        )
    n_threads = threads or default_threads()
    discrete = _check_discrete_columns(frame, discrete_columns)
    fingerprint = data_fingerprint(frame)
    if resume_from is not None:
        seed = _check_resume(resume_from, config, discrete, fingerprint, checkpoint_format, checkpoint_version)
    else:
        seed = config.seed if config.seed is not None else secrets.randbits(63)
    fork_devices = [target.index or 0] if target.type == "cuda" else []
    with _torch_threads(n_threads), torch.random.fork_rng(devices=fork_devices):
        run = run_class(frame, discrete, config, target, seed, fingerprint, n_threads, resume_from)
        return run.loop(on_epoch, should_stop, checkpoint)


def _derive(seed: int, label: str) -> int:
    digest = hashlib.blake2b(f"{seed}/{label}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MAX_SEED


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_discrete_columns(frame: pd.DataFrame, discrete_columns: Sequence[str]) -> list[str]:
    if isinstance(discrete_columns, str):
        discrete_columns = [discrete_columns]
    discrete = list(discrete_columns)
    bad = [
        FieldViolation(f"discrete_columns[{i}]", f"{name!r} is not a column of the table")
        for i, name in enumerate(discrete)
        if name not in frame.columns
    ]
    if bad:
        raise InvalidArgument("unknown discrete columns: " + ", ".join(v.description for v in bad), violations=bad)
    return discrete


def _check_resume(
    state: dict[str, Any],
    config: TrainingConfig,
    discrete: list[str],
    fingerprint: str,
    checkpoint_format: str,
    checkpoint_version: int,
) -> int:
    if not isinstance(state, dict) or state.get("format") != checkpoint_format:
        raise InvalidArgument(
            "resume_from is not a training checkpoint of this engine",
            violations=[FieldViolation("resume_from", "not a training checkpoint of this engine")],
        )
    if state.get("version") != checkpoint_version:
        raise FailedPrecondition(f"unsupported checkpoint version {state.get('version')!r}")
    saved = TrainingConfig.from_dict(state["config"]).to_dict()
    wanted = config.to_dict()
    changed = sorted(k for k in wanted if k not in _RESUMABLE_CHANGES and wanted[k] != saved[k])
    if config.seed is not None and config.seed != state["seed"]:
        changed.append("seed")
    if changed:
        raise InvalidArgument(
            "the config differs from the checkpoint's in: " + ", ".join(changed),
            violations=[FieldViolation(f"config.{k}", "differs from the checkpoint") for k in changed],
        )
    if list(state["discrete_columns"]) != discrete:
        raise InvalidArgument(
            "discrete_columns differ from the checkpoint's",
            violations=[FieldViolation("discrete_columns", "differ from the checkpoint")],
        )
    if state["data_fingerprint"] != fingerprint:
        raise FailedPrecondition("the checkpoint was made on a different table (data fingerprint differs)")
    if state["epoch"] > config.epochs:
        raise InvalidArgument(
            f"the checkpoint is at epoch {state['epoch']}, past config.epochs={config.epochs}",
            violations=[FieldViolation("config.epochs", "smaller than the checkpoint's epoch")],
        )
    return int(state["seed"])


def _to_cpu(value: Any) -> Any:
    """Deep copy with every tensor detached and moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_cpu(v) for v in value)
    return copy.deepcopy(value)


class EpochLoop:
    """The epoch loop every trained engine shares: cancel before each step (with a
    resumable state of that exact step), progress after each epoch, checkpoints,
    the time budget, and the model's metadata. A subclass sets the attributes
    named in ``__init__``'s annotations and implements ``_begin_epoch``,
    ``_step_at``, ``_state`` and ``_model``."""

    config: TrainingConfig
    device: torch.device
    seed: int
    fingerprint: str
    threads: int
    discrete: list[str]
    frame_columns: list[str]
    n_rows: int
    steps_per_epoch: int
    batch_rows: int  # rows one step reads
    history: list[EpochRecord]
    training_seconds: float
    setup_seconds: float
    start_epoch: int
    start_step: int

    def _begin_epoch(self, first_step: int) -> None:
        """Called before an epoch's first step (``first_step`` > 0 for a resumed epoch)."""

    def _step_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step; the two losses recorded per epoch."""
        raise NotImplementedError

    def _state(self, epoch: int, step: int) -> dict[str, Any]:
        raise NotImplementedError

    def _model(self, metadata: ModelMetadata) -> Any:
        raise NotImplementedError

    def loop(
        self,
        on_epoch: Callable[[EpochStats], None] | None,
        should_stop: Callable[[], bool] | None,
        checkpoint: Callable[[dict[str, Any]], None] | None,
    ) -> Any:
        config = self.config
        for epoch in range(self.start_epoch, config.epochs):
            began = time.perf_counter()
            first = self.start_step if epoch == self.start_epoch else 0
            self._begin_epoch(first)
            losses = (torch.full((), float("nan")), torch.full((), float("nan")))
            for step in range(first, self.steps_per_epoch):
                if should_stop is not None and should_stop():
                    self.training_seconds += time.perf_counter() - began
                    raise TrainingCancelled(
                        f"training cancelled at epoch {epoch + 1}, step {step + 1}",
                        epoch=epoch,
                        step=step,
                        state=self._state(epoch, step),
                    )
                losses = self._step_at(step)
            first_loss, second_loss = float(losses[0].item()), float(losses[1].item())
            seconds = time.perf_counter() - began
            self.training_seconds += seconds
            self.history.append(EpochRecord(epoch + 1, first_loss, second_loss, seconds))
            if on_epoch is not None:
                done_rows = (self.steps_per_epoch - first) * self.batch_rows
                on_epoch(
                    EpochStats(
                        epoch=epoch + 1,
                        epochs=config.epochs,
                        generator_loss=first_loss,
                        discriminator_loss=second_loss,
                        seconds=seconds,
                        rows_per_second=done_rows / seconds if seconds > 0 else 0.0,
                    )
                )
            out_of_time = budget_spent(config, self.training_seconds)
            last = epoch + 1 == config.epochs or out_of_time
            if checkpoint is not None and ((epoch + 1) % config.checkpoint_every == 0 or last):
                checkpoint(self._state(epoch + 1, 0))
            if out_of_time:
                break
        return self._model(
            ModelMetadata(
                columns=self.frame_columns,
                discrete_columns=list(self.discrete),
                n_rows=self.n_rows,
                data_fingerprint=self.fingerprint,
                seed=self.seed,
                epochs_trained=len(self.history),
                loss_history=list(self.history),
                training_seconds=self.training_seconds,
                setup_seconds=self.setup_seconds,
                device=str(self.device),
                threads=self.threads,
                library_versions=library_versions(),
            )
        )
