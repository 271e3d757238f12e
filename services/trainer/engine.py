"""The CTGAN training engine: our own epoch loop over the ``ctgan`` package's pieces.

``train`` fits a ``FastDataTransformer`` and trains ctgan's ``Generator`` and
``Discriminator`` with ctgan's maths (WGAN-GP with ``pac``, the conditional
vector with training-by-sampling, Gumbel-softmax outputs, the conditional
cross-entropy, Adam with betas (0.5, 0.9)), in a loop we own:

* ``on_epoch(EpochStats)`` after every epoch;
* ``should_stop()`` before every optimisation step; when it returns true,
  ``TrainingCancelled`` is raised carrying a resumable state of that exact step;
* ``checkpoint(state)`` every ``config.checkpoint_every`` epochs and at the end;
  ``resume_from=state`` continues from there and ends with the same weights as
  a run that was never interrupted (same device type);
* same data + config + seed on CPU (and the same ``threads``) gives bit-identical
  weights. All randomness comes from the seed: the transformer's from derived
  numpy generators, the batch sampling from one ``torch.Generator``, weight
  initialisation and dropout from torch's global generator, which is forked for
  the duration of ``train`` so the caller's random state is left alone.

Where the time goes in ctgan, and what this loop does instead (same maths):

* ctgan keeps the generator's graph in the discriminator step and back-propagates
  the discriminator loss and the gradient penalty into it in two backward
  passes, then throws those generator gradients away; here the discriminator
  step generates under ``no_grad`` and does one backward of ``loss + penalty``.
* in the generator step ctgan also computes the discriminator's weight
  gradients (zeroed later); here they are switched off for that step.
* the real and fake batches go through the discriminator in one call.
* one fused activation and one fused conditional loss instead of one call per
  span (see ``_layout``).
* the training matrix lives on the device in compact form (tanh values and hot
  indices) and batches, conditional vectors and row choices are drawn there
  with vectorised index operations (ctgan loops over rows in Python).
* Adam runs fused where torch supports it.
* the number of torch threads is an explicit argument (``threads``).

Checkpoint states are plain dicts of tensors and JSON-able values:
``torch.save`` them and read them back with ``torch.load(..., weights_only=True)``
(``artifact.save_checkpoint`` / ``load_checkpoint`` do that with a manifest).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import torch
from ctgan.synthesizers.ctgan import Discriminator, Generator

from services.common.engine._layout import SpanLayout, SpanOps
from services.common.engine.config import TrainingConfig
from services.common.engine.device import resolve_device
from services.common.engine.model import (
    EpochRecord,
    ModelMetadata,
    TrainedModel,
    build_generator,
)
from services.common.engine.transformer import EncodedTable, FastDataTransformer
from services.common.errors import FailedPrecondition
from services.trainer.epoch_loop import (
    EpochLoop,
    EpochStats,
    TrainingCancelled,
    _derive,
    _to_cpu,
    budget_spent,
    data_fingerprint,
    default_threads,
    run_training,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "budget_spent",
    "EpochStats",
    "TrainingCancelled",
    "TrainingConfig",
    "data_fingerprint",
    "default_threads",
    "resolve_device",
    "train",
]

CHECKPOINT_FORMAT = "synth.ctgan-checkpoint"
CHECKPOINT_VERSION = 1
_ADAM_BETAS = (0.5, 0.9)
_GP_LAMBDA = 10.0

log = logging.getLogger(__name__)


def train(
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
) -> TrainedModel:
    """Train CTGAN on ``frame`` and return the trained model (see the module doc).

    ``threads`` sets ``torch.set_num_threads`` for the duration of the call (it is
    process-wide, so run one training per process); ``None`` means
    ``default_threads()``. Raises ``InvalidArgument`` for a bad config or table,
    ``FailedPrecondition`` for a checkpoint of other data, ``TrainingCancelled``
    when ``should_stop`` fires.
    """
    return run_training(
        _Run,
        frame,
        discrete_columns,
        config,
        device=device,
        on_epoch=on_epoch,
        should_stop=should_stop,
        checkpoint=checkpoint,
        resume_from=resume_from,
        threads=threads,
        checkpoint_format=CHECKPOINT_FORMAT,
        checkpoint_version=CHECKPOINT_VERSION,
    )


def _adam(parameters: Iterator[torch.nn.Parameter], lr: float, decay: float) -> torch.optim.Adam:
    params = list(parameters)
    try:
        return torch.optim.Adam(params, lr=lr, betas=_ADAM_BETAS, weight_decay=decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # fused not supported on this device/build
        return torch.optim.Adam(params, lr=lr, betas=_ADAM_BETAS, weight_decay=decay)


class _BatchSampler:
    """Training batches drawn on the device: conditional vectors and matching real rows.

    ctgan's ``DataSampler`` (uniform discrete column, category by log-frequency,
    a real row of that category uniformly at random), vectorised: rows of every
    category of every discrete column are stored contiguously, so picking a row
    for each (column, category) pair is two gathers.
    """

    def __init__(
        self,
        encoded: EncodedTable,
        layout: SpanLayout,
        ops: SpanOps,
        log_frequency: bool,
        device: torch.device,
    ) -> None:
        self.device = device
        self.ops = ops
        self.rows = encoded.alphas.shape[0]
        self.data_dim = layout.data_dim
        self.cond_dim = layout.cond_dim
        self.n_discrete = layout.n_discrete
        self.alphas = torch.as_tensor(encoded.alphas, device=device)
        hot = encoded.codes.astype(np.int64) + layout.soft_starts[None, :]
        self.hot_cols = torch.as_tensor(hot.astype(np.int32), device=device)
        if not self.n_discrete:
            return
        dims = layout.soft_dims[layout.discrete_spans]
        rows_by_cat, starts, counts = [], [], []
        offset = 0
        for j, span in enumerate(layout.discrete_spans):
            codes = encoded.codes[:, span]
            order = np.argsort(codes, kind="stable")
            count = np.bincount(codes, minlength=int(dims[j]))
            starts.append(offset + np.concatenate([[0], np.cumsum(count)[:-1]]))
            counts.append(count)
            rows_by_cat.append(order)
            offset += self.rows
        width = int(dims.max())
        cumulative = np.full((self.n_discrete, width), 2.0)  # padding never <= a uniform draw
        for j, count in enumerate(counts):
            freq = np.log(count + 1.0) if log_frequency else count.astype(np.float64)
            cumulative[j, : count.size] = np.cumsum(freq / freq.sum())
        self.rows_by_cat = torch.as_tensor(np.concatenate(rows_by_cat), dtype=torch.long, device=device)
        self.cat_start = torch.as_tensor(np.concatenate(starts), dtype=torch.long, device=device)
        self.cat_count = torch.as_tensor(np.maximum(np.concatenate(counts), 1), dtype=torch.long, device=device)
        self.cumulative = torch.as_tensor(cumulative, dtype=torch.float64, device=device)
        self.last_category = torch.as_tensor(dims - 1, dtype=torch.long, device=device)

    def condition(
        self, batch: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(one-hot conditional vectors, discrete column, category in column, category id)."""
        column = torch.randint(self.n_discrete, (batch,), generator=generator, device=self.device)
        draw = torch.rand(batch, generator=generator, device=self.device, dtype=torch.float64)
        category = (self.cumulative[column] <= draw.unsqueeze(1)).sum(dim=1)
        category = torch.minimum(category, self.last_category[column])
        category_id = self.ops.cond_offsets[column] + category
        cond = torch.zeros(batch, self.cond_dim, device=self.device)
        cond.scatter_(1, category_id.unsqueeze(1), 1.0)
        return cond, column, category, category_id

    def real_rows(self, category_id: torch.Tensor | None, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Dense real rows: of the given categories, or uniform when there is no discrete column."""
        if category_id is None:
            rows = torch.randint(self.rows, (batch,), generator=generator, device=self.device)
        else:
            draw = torch.rand(batch, generator=generator, device=self.device, dtype=torch.float64)
            count = self.cat_count[category_id]
            offset = torch.minimum((draw * count).long(), count - 1)
            rows = self.rows_by_cat[self.cat_start[category_id] + offset]
        return self.dense(rows)

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        """The dense matrix of the given training rows."""
        out = torch.zeros(rows.shape[0], self.data_dim, device=self.device)
        out[:, self.ops.tanh_idx] = self.alphas[rows]
        out.scatter_(1, self.hot_cols[rows].long(), 1.0)
        return out


class _Run(EpochLoop):
    """One call of ``train``: setup, then the loop."""

    def __init__(
        self,
        frame: pd.DataFrame,
        discrete: list[str],
        config: TrainingConfig,
        device: torch.device,
        seed: int,
        fingerprint: str,
        threads: int,
        resume: dict[str, Any] | None,
    ) -> None:
        started = time.perf_counter()
        self.config = config
        self.device = device
        self.seed = seed
        self.fingerprint = fingerprint
        self.threads = threads
        self.discrete = discrete
        self.frame_columns = [str(c) for c in frame.columns]
        self.n_rows = len(frame)
        if resume is not None:
            self.transformer = FastDataTransformer.from_state(resume["transformer"])
        else:
            self.transformer = FastDataTransformer(
                sample_rows=config.transformer_sample_rows, seed=_derive(seed, "transformer")
            ).fit(frame, discrete)
        encoded = self.transformer.transform_codes(frame)
        self.layout = SpanLayout.from_output_info(self.transformer.output_info_list)
        self.ops = SpanOps(self.layout, device)
        self.sampler = _BatchSampler(encoded, self.layout, self.ops, config.log_frequency, device)
        del encoded

        torch.manual_seed(_derive(seed, "torch"))
        self.generator: Generator = build_generator(config, self.layout).to(device)
        self.discriminator = Discriminator(
            self.layout.data_dim + self.layout.cond_dim, tuple(config.discriminator_dim), pac=config.pac
        ).to(device)
        self.opt_g = _adam(self.generator.parameters(), config.generator_lr, config.generator_decay)
        self.opt_d = _adam(self.discriminator.parameters(), config.discriminator_lr, config.discriminator_decay)
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(_derive(seed, "sampler"))
        self.steps_per_epoch = max(self.n_rows // config.batch_size, 1)
        self.batch_rows = config.batch_size
        self.history: list[EpochRecord] = []
        self.training_seconds = 0.0
        self.start_epoch = 0
        self.start_step = 0
        if resume is not None:
            self._restore(resume)
        self.setup_seconds = time.perf_counter() - started

    # -------------------------------------------------------------- state

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["optimizer_g"])
            self.opt_d.load_state_dict(state["optimizer_d"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise FailedPrecondition(f"the checkpoint does not fit this model: {exc}") from None
        if state["steps_per_epoch"] != self.steps_per_epoch:
            raise FailedPrecondition("the checkpoint was made with a different number of steps per epoch")
        rng = state["rng"]
        if rng["device_type"] == self.device.type:
            self.rng.set_state(rng["sampler"])
            if self.device.type == "cuda" and rng.get("torch_cuda") is not None:
                torch.cuda.set_rng_state(rng["torch_cuda"], self.device)
        else:  # generator states are device specific: continue, but not bit-exactly
            log.warning(
                "checkpoint made on %s resumed on %s: random streams are reseeded",
                rng["device_type"],
                self.device.type,
            )
            self.rng.manual_seed(_derive(self.seed, f"resume/{state['epoch']}/{state['step']}"))
        torch.set_rng_state(rng["torch_cpu"])
        self.history = [EpochRecord(**item) for item in state["loss_history"]]
        self.training_seconds = float(state["training_seconds"])
        self.start_epoch = int(state["epoch"])
        self.start_step = int(state["step"])

    def _state(self, epoch: int, step: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "step": step,
            "steps_per_epoch": self.steps_per_epoch,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "discrete_columns": list(self.discrete),
            "data_fingerprint": self.fingerprint,
            "n_rows": self.n_rows,
            "transformer": self.transformer.to_state(),
            "generator": _to_cpu(self.generator.state_dict()),
            "discriminator": _to_cpu(self.discriminator.state_dict()),
            "optimizer_g": _to_cpu(self.opt_g.state_dict()),
            "optimizer_d": _to_cpu(self.opt_d.state_dict()),
            "rng": {
                "device_type": self.device.type,
                "sampler": self.rng.get_state().clone(),
                "torch_cpu": torch.get_rng_state(),
                "torch_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            },
            "loss_history": [asdict(r) for r in self.history],
            "training_seconds": self.training_seconds,
            "device": str(self.device),
            "threads": self.threads,
        }

    # --------------------------------------------------------------- loop

    def _model(self, metadata: ModelMetadata) -> TrainedModel:
        return TrainedModel(self.transformer, self.generator, self.config, metadata)

    def _step_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        loss_d, loss_g = self._step()
        return loss_g, loss_d

    # --------------------------------------------------------------- step

    def _step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step: ``discriminator_steps`` critic updates, one generator update."""
        config = self.config
        batch = config.batch_size
        rng = self.rng
        sampler = self.sampler
        generator, discriminator = self.generator, self.discriminator
        has_cond = sampler.n_discrete > 0
        loss_d = torch.zeros((), device=self.device)
        for _ in range(config.discriminator_steps):
            noise = torch.randn(batch, config.embedding_dim, generator=rng, device=self.device)
            if has_cond:
                cond, _column, _category, category_id = sampler.condition(batch, rng)
                perm = torch.randperm(batch, generator=rng, device=self.device)
                real = sampler.real_rows(category_id[perm], batch, rng)
                real_cat = torch.cat([real, cond[perm]], dim=1)
                noise = torch.cat([noise, cond], dim=1)
            else:
                real_cat = sampler.real_rows(None, batch, rng)
            with torch.no_grad():
                fake = self.ops.activate(generator(noise), rng)
            fake_cat = torch.cat([fake, cond], dim=1) if has_cond else fake
            scores = discriminator(torch.cat([fake_cat, real_cat], dim=0))
            half = scores.shape[0] // 2
            loss_d = -(scores[half:].mean() - scores[:half].mean())
            penalty = self._gradient_penalty(real_cat, fake_cat)
            self.opt_d.zero_grad(set_to_none=True)
            (loss_d + penalty).backward()
            self.opt_d.step()

        noise = torch.randn(batch, config.embedding_dim, generator=rng, device=self.device)
        if has_cond:
            cond, column, category, _category_id = sampler.condition(batch, rng)
            noise = torch.cat([noise, cond], dim=1)
        raw = generator(noise)
        fake = self.ops.activate(raw, rng)
        discriminator.requires_grad_(False)
        try:
            scores = discriminator(torch.cat([fake, cond], dim=1) if has_cond else fake)
        finally:
            discriminator.requires_grad_(True)
        loss_g = -scores.mean()
        if has_cond:
            loss_g = loss_g + self.ops.cond_loss(raw, column, category)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return loss_d.detach(), loss_g.detach()

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """ctgan's ``calc_gradient_penalty``: one mixing weight per pac group, lambda 10."""
        pac = self.config.pac
        width = real.shape[1]
        alpha = torch.rand(real.shape[0] // pac, 1, 1, generator=self.rng, device=self.device)
        alpha = alpha.expand(-1, pac, 1).reshape(-1, 1)
        interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        scores = self.discriminator(interpolates)
        (gradients,) = torch.autograd.grad(
            outputs=scores,
            inputs=interpolates,
            grad_outputs=torch.ones_like(scores),
            create_graph=True,
        )
        norms = gradients.view(-1, pac * width).norm(2, dim=1) - 1
        return (norms**2).mean() * _GP_LAMBDA
