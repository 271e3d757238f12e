"""The TVAE training engine: our own loop over the ``ctgan`` package's Encoder and Decoder.

The maths is ctgan's ``TVAE.fit``: the encoder gives a Gaussian posterior, a
sample of it goes through the decoder, the loss is the reconstruction
(Gaussian with a learned ``sigma`` on the tanh values, cross-entropy on every
softmax span) times ``loss_factor`` plus the KL divergence, Adam with
``weight_decay = l2scale``, ``sigma`` clamped to [0.01, 1] after each step.
What differs, as in the CTGAN loop (``services.trainer.engine``):

* one fused loss over all spans (ctgan loops over them in Python);
* batches are drawn on the device from the compact training form;
* ``on_epoch``, ``should_stop`` (a ``TrainingCancelled`` carrying the exact
  step's state), ``checkpoint`` and ``resume_from`` with the same meaning, and
  a seed that makes the weights bit-identical on one device type;
* ``config.time_budget_seconds`` ends training after the epoch that spends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import pandas as pd
import torch
from ctgan.synthesizers.tvae import Encoder
from torch.nn import functional

from services.common.engine._layout import SpanLayout, SpanOps
from services.common.engine.config import TrainingConfig
from services.common.engine.model import EpochRecord, ModelMetadata
from services.common.engine.transformer import FastDataTransformer
from services.common.engine.tvae import TvaeModel, build_decoder
from services.common.errors import FailedPrecondition
from services.trainer.engine import _BatchSampler
from services.trainer.epoch_loop import EpochLoop, EpochStats, _derive, _to_cpu, run_training

CHECKPOINT_FORMAT = "synth.tvae-checkpoint"
CHECKPOINT_VERSION = 1
LOSS_FACTOR = 2.0  # ctgan's TVAE default
_SIGMA_RANGE = (0.01, 1.0)


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
) -> TvaeModel:
    """Train TVAE on ``frame``; the arguments mean what they mean for ``engine.train``."""
    return run_training(
        _TvaeRun,
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


class _TvaeRun(EpochLoop):
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
        self.config, self.device, self.seed = config, device, seed
        self.fingerprint, self.threads, self.discrete = fingerprint, threads, discrete
        self.frame_columns = [str(c) for c in frame.columns]
        self.n_rows = len(frame)
        if resume is not None:
            self.transformer = FastDataTransformer.from_state(resume["transformer"])
        else:
            self.transformer = FastDataTransformer(
                sample_rows=config.transformer_sample_rows, seed=_derive(seed, "transformer")
            ).fit(frame, discrete)
        self.layout = SpanLayout.from_output_info(self.transformer.output_info_list)
        self.ops = SpanOps(self.layout, device)
        self.sampler = _BatchSampler(
            self.transformer.transform_codes(frame), self.layout, self.ops, log_frequency=False, device=device
        )
        torch.manual_seed(_derive(seed, "torch"))
        self.encoder = Encoder(self.layout.data_dim, tuple(config.discriminator_dim), config.embedding_dim).to(device)
        self.decoder = build_decoder(config, self.layout).to(device)
        self.optimizer = torch.optim.Adam(
            [*self.encoder.parameters(), *self.decoder.parameters()],
            lr=config.generator_lr,
            weight_decay=config.generator_decay,
        )
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(_derive(seed, "sampler"))
        self.batch_rows = min(config.batch_size, self.n_rows)
        self.steps_per_epoch = max(self.n_rows // self.batch_rows, 1)
        self.order = torch.randperm(self.n_rows, generator=self.rng, device=device)
        self.history: list[EpochRecord] = []
        self.training_seconds = 0.0
        self.start_epoch = self.start_step = 0
        if resume is not None:
            self._restore(resume)
        self.setup_seconds = time.perf_counter() - started

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.encoder.load_state_dict(state["encoder"])
            self.decoder.load_state_dict(state["decoder"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise FailedPrecondition(f"the checkpoint does not fit this model: {exc}") from None
        rng = state["rng"]
        if rng["device_type"] == self.device.type:
            self.rng.set_state(rng["sampler"])
        else:
            self.rng.manual_seed(_derive(self.seed, f"resume/{state['epoch']}/{state['step']}"))
        torch.set_rng_state(rng["torch_cpu"])
        self.order = state["order"].to(self.device)
        self.history = [EpochRecord(**item) for item in state["loss_history"]]
        self.training_seconds = float(state["training_seconds"])
        self.start_epoch, self.start_step = int(state["epoch"]), int(state["step"])

    def _state(self, epoch: int, step: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "step": step,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "discrete_columns": list(self.discrete),
            "data_fingerprint": self.fingerprint,
            "n_rows": self.n_rows,
            "transformer": self.transformer.to_state(),
            "encoder": _to_cpu(self.encoder.state_dict()),
            "decoder": _to_cpu(self.decoder.state_dict()),
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "order": self.order.detach().to("cpu", copy=True),
            "rng": {
                "device_type": self.device.type,
                "sampler": self.rng.get_state().clone(),
                "torch_cpu": torch.get_rng_state(),
            },
            "loss_history": [asdict(r) for r in self.history],
            "training_seconds": self.training_seconds,
        }

    def _begin_epoch(self, first_step: int) -> None:
        if first_step == 0:  # a fresh shuffle per epoch (a resumed epoch keeps its own)
            self.order = torch.randperm(self.n_rows, generator=self.rng, device=self.device)

    def _step_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        # the history's two losses: reconstruction (in the generator's slot) and KL
        return self._step(self.order[step * self.batch_rows : (step + 1) * self.batch_rows])

    def _model(self, metadata: ModelMetadata) -> TvaeModel:
        return TvaeModel(self.transformer, self.decoder, self.config, metadata)

    def _step(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ops, sampler = self.ops, self.sampler
        batch = rows.shape[0]
        real = sampler.dense(rows)
        mu, std, logvar = self.encoder(real)
        noise = torch.randn(mu.shape, generator=self.rng, device=self.device)
        raw, sigmas = self.decoder(mu + std * noise)
        # Gaussian reconstruction of the tanh values, with the decoder's sigma
        sigma = sigmas.index_select(0, ops.tanh_idx)
        error = sampler.alphas[rows] - torch.tanh(raw.index_select(1, ops.tanh_idx))
        gaussian = (error**2 / (2 * sigma**2)).sum() + torch.log(sigma).sum() * batch
        # cross-entropy of every softmax span at once (spans padded to one width)
        cross_entropy = raw.new_zeros(())
        if ops.n_spans:
            padded = raw.new_full((batch, ops.n_spans * ops.width), float("-inf"))
            padded = padded.index_copy(1, ops.soft_slots, raw.index_select(1, ops.soft_idx))
            log_prob = functional.log_softmax(padded.view(batch, ops.n_spans, ops.width), dim=-1)
            hot = sampler.hot_cols[rows].long() - ops.soft_starts
            cross_entropy = -log_prob.gather(2, hot.unsqueeze(2)).sum()
        reconstruction = (gaussian + cross_entropy) * LOSS_FACTOR / batch
        kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp()) / batch
        self.optimizer.zero_grad(set_to_none=True)
        (reconstruction + kl).backward()
        self.optimizer.step()
        self.decoder.sigma.data.clamp_(*_SIGMA_RANGE)
        return reconstruction.detach(), kl.detach()
