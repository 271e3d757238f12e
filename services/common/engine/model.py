"""``TrainedModel``: a fitted transformer, a CTGAN generator, its config and metadata.

Inference only; shared by the trainer (which builds it) and the sampler (which
loads it with ``artifact.load_model``). The generator is ctgan's own
``Generator`` class, rebuilt from the config and the transformer's layout, so a
saved model is data (weights + JSON), never code.

Sampling (``TrainedModel.sample``) follows ctgan's ``sample``: normal noise plus
a conditional vector drawn from the training category frequencies (or fixed to
one column = value), the generator applied with batch-normalisation statistics
of each batch, tanh on continuous values and a Gumbel argmax per softmax span.

Reproducibility and chunking: rows are produced in fixed *blocks* of
``config.batch_size`` rows, and block ``b`` draws all its randomness from its own
generator seeded by ``(seed, b)``. A row therefore depends only on ``seed``, its
position and the condition, never on ``chunk_rows`` (chunks are cut from the
stream of blocks). So, on one device type and library build, the same seed gives
the same rows whatever the chunk size, and ``sample(n)`` is a prefix of
``sample(m)`` for ``n < m``. (CPU and CUDA differ in the last bits of the matrix
products, so they can differ in a few rounded values.)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from ctgan.synthesizers.ctgan import Generator, Residual
from torch.nn import functional

from services.common.engine._layout import SpanLayout, SpanOps
from services.common.engine.config import TrainingConfig
from services.common.engine.transformer import FastDataTransformer
from services.common.errors import FieldViolation, InvalidArgument

DEFAULT_CHUNK_ROWS = 10_000
_MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Condition:
    """Condition the generator on one discrete column taking one value (as ctgan's sample does).

    Like ctgan this sets the conditional vector; it raises the probability of the
    value but does not guarantee it (filtering is the sampler's job).
    """

    column: str
    value: Any


@dataclass
class EpochRecord:
    epoch: int
    generator_loss: float
    discriminator_loss: float
    seconds: float


@dataclass
class ModelMetadata:
    """What is known about how a model was made; all JSON-able."""

    columns: list[str]
    discrete_columns: list[str]
    n_rows: int
    data_fingerprint: str
    seed: int
    epochs_trained: int = 0
    loss_history: list[EpochRecord] = field(default_factory=list)
    training_seconds: float = 0.0
    setup_seconds: float = 0.0
    device: str = "cpu"
    threads: int = 0
    library_versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        values = dict(data)
        values["loss_history"] = [EpochRecord(**item) for item in values.get("loss_history", [])]
        return cls(**values)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model (recorded in its metadata)."""
    import platform

    import ctgan
    import sklearn

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ctgan": ctgan.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
    }


def build_generator(config: TrainingConfig, layout: SpanLayout) -> Generator:
    """ctgan's Generator for this config and layout (input: noise + conditional vector)."""
    return Generator(config.embedding_dim + layout.cond_dim, tuple(config.generator_dim), layout.data_dim)


def original_condition_probabilities(counts: list[np.ndarray], log_frequency: bool) -> np.ndarray:
    """ctgan's ``sample_original_condvec`` distribution over all categories of all discrete columns.

    Per column the (log-)frequencies are normalised, the columns are concatenated
    and the whole renormalised: a column is picked uniformly, then a category.
    """
    if not counts:
        return np.zeros(0)
    parts = []
    for count in counts:
        freq = np.log(count + 1.0) if log_frequency else count.astype(np.float64)
        parts.append(freq / freq.sum())
    probs = np.concatenate(parts)
    return probs / probs.sum()


def forward_with_batch_statistics(generator: Generator, noise: torch.Tensor) -> torch.Tensor:
    """The generator's forward with batch-norm using the batch's own statistics.

    This is what ctgan's ``sample`` computes (its generator is never put in eval
    mode), without touching the running statistics, so sampling never mutates the model.
    """
    x = noise
    for module in generator.seq:
        if isinstance(module, Residual):
            out = module.fc(x)
            out = functional.batch_norm(
                out, None, None, module.bn.weight, module.bn.bias, training=True, eps=module.bn.eps
            )
            x = torch.cat([torch.relu(out), x], dim=1)
        else:
            x = module(x)
    return x


def _block_seed(seed: int, block: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MAX_SEED


class TrainedModel:
    """A trained CTGAN: transformer + generator + config + metadata."""

    def __init__(
        self,
        transformer: FastDataTransformer,
        generator: Generator,
        config: TrainingConfig,
        metadata: ModelMetadata,
    ) -> None:
        self.transformer = transformer
        self.generator = generator
        self.config = config
        self.metadata = metadata
        self.layout = SpanLayout.from_output_info(transformer.output_info_list)
        self._cpu_ops = SpanOps(self.layout, torch.device("cpu"))
        # Generation draws the conditional vector from the categories' real
        # frequencies, not the log-frequencies training uses to see rare
        # categories more often (ctgan samples with those too, which flattens
        # the marginals: Adult's race White 66% against 85% real). The
        # generator learned p(row | category), so real frequencies give p(row).
        self._condition_probs = torch.as_tensor(
            original_condition_probabilities(transformer.discrete_category_counts(), log_frequency=False),
            dtype=torch.float64,
        )

    @property
    def loss_history(self) -> list[tuple[float, float]]:
        """(generator loss, discriminator loss) at the end of each epoch."""
        return [(r.generator_loss, r.discriminator_loss) for r in self.metadata.loss_history]

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def to(self, device: torch.device | str) -> TrainedModel:
        self.generator.to(device)
        return self

    def generator_state(self) -> dict[str, torch.Tensor]:
        """The generator's weights and buffers as CPU tensors (what the artifact stores)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.generator.state_dict().items()}

    def condition_vector(self, condition: Condition) -> torch.Tensor:
        """The one-hot conditional vector (1 x cond_dim) for ``column = value``."""
        info = self.transformer.convert_column_name_value_to_id(condition.column, condition.value)
        position = int(self._cpu_ops.cond_offsets[info["discrete_column_id"]]) + int(info["value_id"])
        vector = torch.zeros(1, self.layout.cond_dim)
        vector[0, position] = 1.0
        return vector

    def sample(
        self,
        n: int,
        seed: int,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        condition: Condition | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Yield ``n`` synthetic rows as DataFrames of ``chunk_rows`` rows (the last may be shorter).

        Memory stays flat: one block and one chunk are alive at a time. See the
        module doc for what the seed guarantees.
        """
        problems = []
        if not _is_int(n) or n < 0:
            problems.append(FieldViolation("num_rows", f"must be an integer >= 0, got {n!r}"))
        if not _is_int(chunk_rows) or chunk_rows <= 0:
            problems.append(FieldViolation("chunk_rows", f"must be a positive integer, got {chunk_rows!r}"))
        if not _is_int(seed) or not 0 <= seed <= _MAX_SEED:
            problems.append(FieldViolation("seed", f"must be an integer in [0, 2**63 - 1], got {seed!r}"))
        if problems:
            raise InvalidArgument(
                "invalid sampling request: " + "; ".join(p.field + " " + p.description for p in problems),
                violations=problems,
            )
        fixed = self.condition_vector(condition) if condition is not None else None
        return self._chunks(n, seed, chunk_rows, fixed)

    def _chunks(self, n: int, seed: int, chunk_rows: int, fixed: torch.Tensor | None) -> Iterator[pd.DataFrame]:
        block_rows = self.config.batch_size
        pending_alphas: list[np.ndarray] = []
        pending_codes: list[np.ndarray] = []
        pending = 0
        produced = 0
        for block in range(math.ceil(n / block_rows)):
            alphas, codes = self._block(seed, block, fixed)
            take = min(block_rows, n - block * block_rows)
            pending_alphas.append(alphas[:take])
            pending_codes.append(codes[:take])
            pending += take
            while pending >= chunk_rows or (pending and produced + pending == n):
                all_alphas = np.concatenate(pending_alphas)
                all_codes = np.concatenate(pending_codes)
                size = min(chunk_rows, pending)
                frame = self.transformer.inverse_transform_codes(all_alphas[:size], all_codes[:size])
                frame.index = pd.RangeIndex(produced, produced + size)
                produced += size
                pending -= size
                pending_alphas = [all_alphas[size:]]
                pending_codes = [all_codes[size:]]
                yield frame

    @torch.no_grad()
    def _block(self, seed: int, block: int, fixed: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        rows = self.config.batch_size
        generator = torch.Generator().manual_seed(_block_seed(seed, block))
        noise = torch.randn(rows, self.config.embedding_dim, generator=generator)
        cond_dim = self.layout.cond_dim
        if fixed is not None:
            cond = fixed.expand(rows, cond_dim)
        elif cond_dim:
            picks = torch.multinomial(self._condition_probs, rows, replacement=True, generator=generator)
            cond = torch.zeros(rows, cond_dim).scatter_(1, picks.view(-1, 1), 1.0)
        else:
            cond = noise.new_zeros((rows, 0))
        device = self.device
        raw = forward_with_batch_statistics(self.generator, torch.cat([noise, cond], dim=1).to(device))
        alphas, codes = self._cpu_ops.sample_codes(raw.float().cpu(), generator)
        return alphas.numpy(), codes.numpy()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
