"""``TvaeModel``: a trained TVAE (the ``ctgan`` package's ``Decoder``) for sampling.

TVAE (Xu et al., 2019) is a variational autoencoder over the same data layout
as CTGAN (``FastDataTransformer``: mode-specific normalisation, one-hot
categories). Training is ``services.trainer.tvae``'s loop; this is the
inference side shared with the sampler.

Sampling as ctgan's ``TVAE.sample``: standard normal noise through the decoder;
a continuous value is ``tanh(output)`` plus the decoder's learned noise
(``sigma``) and clipped to [-1, 1]. For a category ctgan takes the argmax of the
logits; here it is drawn from their softmax (a Gumbel argmax), which keeps rare
categories at their learned rate instead of rounding them away.

TVAE has no conditional vector: ``condition_position`` checks the value and
returns None, and the sampler filters. Pieces follow the CTGAN model's seed rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ctgan.synthesizers.tvae import Decoder

from services.common.engine._layout import SpanLayout, SpanOps
from services.common.engine.config import TrainingConfig
from services.common.engine.model import Condition, ModelMetadata, TransformerColumns, module_bytes, piece_seed
from services.common.engine.transformer import FastDataTransformer

_PIECE_ROWS = 5_000


def build_decoder(config: TrainingConfig, layout: SpanLayout) -> Decoder:
    """ctgan's TVAE Decoder for this config: ``generator_dim`` are its hidden layers."""
    return Decoder(config.embedding_dim, tuple(config.generator_dim), layout.data_dim)


class TvaeModel(TransformerColumns):
    """transformer + decoder + config + metadata; the ``SynthesisModel`` contract."""

    engine = "tvae"

    def __init__(
        self,
        transformer: FastDataTransformer,
        decoder: Decoder,
        config: TrainingConfig,
        metadata: ModelMetadata,
    ) -> None:
        self.transformer = transformer
        self.decoder = decoder
        self.config = config
        self.metadata = metadata
        self.layout = SpanLayout.from_output_info(transformer.output_info_list)
        self._cpu_ops = SpanOps(self.layout, torch.device("cpu"))
        self.piece_rows = _PIECE_ROWS
        # the training columns' value support (support.SupportRules), set when loaded
        self.support: Any = None
        # calibration.MarginCalibration of the numeric columns, set when loaded
        self.calibration: Any = None

    def condition_position(self, condition: Condition | None) -> int | None:
        if condition is not None:  # an unknown column or value is an InvalidArgument
            self.transformer.convert_column_name_value_to_id(condition.column, condition.value)
        return None

    def size_bytes(self) -> int:
        return module_bytes(self.decoder) + 64 * 1024 * max(1, len(self.columns))

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def to(self, device: torch.device | str) -> TvaeModel:
        self.decoder.to(device)
        return self

    def weights(self) -> dict[str, torch.Tensor]:
        """The decoder's weights as CPU tensors (what the artifact stores)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.decoder.state_dict().items()}

    @torch.no_grad()
    def decoded_piece(self, seed: int, piece: int, fixed: int | None) -> list[np.ndarray]:
        this_seed = piece_seed(seed, piece)
        rows = self.piece_rows
        noise = torch.randn(rows, self.config.embedding_dim, generator=torch.Generator().manual_seed(this_seed))
        rng = np.random.Generator(np.random.PCG64(this_seed))
        self.decoder.eval()
        raw, sigma = self.decoder(noise.to(self.device))
        raw = raw.float().cpu()
        alphas, codes = self._cpu_ops.sample_codes(raw, rng)
        spread = sigma.detach().float().cpu().index_select(0, self._cpu_ops.tanh_idx)
        jitter = torch.from_numpy(rng.standard_normal(alphas.shape, dtype=np.float32))
        alphas = (alphas + jitter * spread).clamp_(-1.0, 1.0)
        return self.transformer.decode_codes(alphas.numpy(), codes.numpy())
