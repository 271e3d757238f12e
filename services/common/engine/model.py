"""``TrainedModel``: a fitted transformer, a CTGAN generator, its config and metadata.

Inference only; shared by the trainer (which builds it) and the sampler (which
loads it with ``artifact.load_model``). The generator is ctgan's own
``Generator`` class, rebuilt from the config and the transformer's layout, so a
saved model is data (weights + JSON), never code.

Sampling follows ctgan's ``sample``: normal noise plus a conditional vector
drawn from the training category frequencies (or fixed to one column = value),
the generator applied with batch-normalisation statistics of each training-size
batch, tanh on continuous values and a Gumbel argmax per softmax span. The
forward is ``_fused.FusedGenerator`` (the same maths, fewer multiply-adds).

Reproducibility and chunking: rows are produced in fixed *pieces* of
``piece_rows`` rows (a whole number of ``config.batch_size`` batch-norm groups,
about 5,000 rows), and piece ``p`` draws all its randomness from its own
generator seeded by ``(seed, p)``; a piece is always computed whole. A row
therefore depends only on ``seed``, its position and the condition, never on how
many rows are asked or how they are chunked. So, on one device type and library
build, the same seed gives the same rows whatever the chunk size, and
``sample(n)`` is a prefix of ``sample(m)`` for ``n < m``. (CPU and CUDA differ in
the last bits of the matrix products, so they can differ in a few rounded values.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from ctgan.synthesizers.ctgan import Generator

from services.common.engine._fused import FusedGenerator
from services.common.engine._layout import SpanLayout, SpanOps
from services.common.engine.config import TrainingConfig
from services.common.engine.transformer import FastDataTransformer
from services.common.errors import FieldViolation, InvalidArgument

DEFAULT_CHUNK_ROWS = 10_000
_PIECE_TARGET_ROWS = 5_000  # big enough for efficient matrix products, small enough to stream
_PIECE_TARGET_VALUES = 5_000_000  # floats in a piece's widest buffer (rows x all layer widths)
_MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Condition:
    """Condition the generator on one discrete column taking one value (as ctgan's sample does).

    Like ctgan this sets the conditional vector; it raises the probability of the
    value but does not guarantee it (filtering is the sampler's job).
    """

    column: str
    value: Any


class SynthesisModel(Protocol):
    """What the sampler needs of a trained model, whatever its engine.

    ``decoded_piece`` returns one array per learned column, in ``columns`` order:
    float64 for numeric columns (NaN = missing; datetimes as epoch seconds) and
    indices into ``category_values(column)`` for discrete ones. Piece ``p`` of a
    seed depends only on ``(seed, p, fixed)``; ``fixed`` (from
    ``condition_position``) steers generation towards one category, an engine
    that cannot steer returns None there and the sampler only filters.
    """

    engine: str
    config: TrainingConfig  # what it was trained with (set by the trainer and by load_model)
    metadata: ModelMetadata  # how the training went
    support: Any  # support.SupportRules of the training columns, or None
    calibration: Any  # calibration.MarginCalibration of the numeric columns, or None

    @property
    def piece_rows(self) -> int: ...  # read-only: TrainedModel computes it

    @property
    def columns(self) -> list[str]: ...

    @property
    def discrete_columns(self) -> list[str]: ...

    def category_values(self, column: str) -> list[Any]: ...

    def condition_position(self, condition: Condition | None) -> int | None: ...

    def decoded_piece(self, seed: int, piece: int, fixed: int | None) -> list[np.ndarray]: ...

    def size_bytes(self) -> int: ...

    def to(self, device: torch.device | str) -> Any: ...


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


def module_bytes(module: torch.nn.Module, copies: int = 1) -> int:
    """Bytes of a module's parameters and buffers, times ``copies``."""
    tensors: list[torch.Tensor] = [*module.parameters(), *module.buffers()]
    return copies * sum(t.numel() * t.element_size() for t in tensors)


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


def piece_seed(seed: int, piece: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{piece}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MAX_SEED


class TransformerColumns:
    """The contract's column answers for engines over a ``FastDataTransformer`` (CTGAN, TVAE)."""

    transformer: FastDataTransformer

    @property
    def columns(self) -> list[str]:
        return self.transformer.columns

    @property
    def discrete_columns(self) -> list[str]:
        return self.transformer.discrete_columns

    def category_values(self, column: str) -> list[Any]:
        return self.transformer.category_values(column)


class TrainedModel(TransformerColumns):
    """A trained CTGAN: transformer + generator + config + metadata."""

    engine = "ctgan"

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
        self._condition_probs = original_condition_probabilities(
            transformer.discrete_category_counts(), log_frequency=False
        )
        self._condition_cdf = np.cumsum(self._condition_probs)
        self._fused: FusedGenerator | None = None  # built on first use, on the generator's device
        # the training columns' value support (support.SupportRules), set when loaded
        self.support: Any = None
        # calibration.MarginCalibration of the numeric columns, set when loaded
        self.calibration: Any = None

    # ---- the engine contract (SynthesisModel; columns from TransformerColumns)

    def decoded_piece(self, seed: int, piece: int, fixed: int | None) -> list[np.ndarray]:
        return self.transformer.decode_codes(*self.piece(seed, piece, fixed))

    def size_bytes(self) -> int:
        """Parameter and buffer bytes twice (the generator and the rearranged copy
        sampling runs on, ``_fused``), plus a rough allowance for the transformer."""
        return module_bytes(self.generator, copies=2) + 64 * 1024 * max(1, len(self.columns))

    @property
    def loss_history(self) -> list[tuple[float, float]]:
        """(generator loss, discriminator loss) at the end of each epoch."""
        return [(r.generator_loss, r.discriminator_loss) for r in self.metadata.loss_history]

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def to(self, device: torch.device | str) -> TrainedModel:
        self.generator.to(device)
        self._fused = None
        return self

    @property
    def piece_rows(self) -> int:
        """Rows generated per step: whole batch-norm groups, about 5,000 rows,
        fewer for wide models (thousands of categories) so that a piece's
        buffers stay near 20 MB each."""
        batch = self.config.batch_size
        width = sum(self.config.generator_dim) + self.layout.data_dim + 1
        rows = min(_PIECE_TARGET_ROWS, _PIECE_TARGET_VALUES // width)
        return batch * max(1, round(rows / batch))

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

        Memory stays flat: one piece and one chunk are alive at a time. See the
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
        return self._frames(n, chunk_rows, self.generate(seed, condition=condition))

    def _frames(
        self, n: int, chunk_rows: int, pieces: Iterator[tuple[np.ndarray, np.ndarray]]
    ) -> Iterator[pd.DataFrame]:
        pending_alphas: list[np.ndarray] = []
        pending_codes: list[np.ndarray] = []
        pending = produced = 0
        while produced < n:
            alphas, codes = next(pieces)
            take = min(len(alphas), n - produced - pending)
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

    def generate(self, seed: int, *, condition: Condition | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Endless pieces of ``piece_rows`` rows in the compact form: (tanh values, span codes).

        What ``transformer.decode_codes`` / ``inverse_transform_codes`` read. Piece
        ``p`` depends only on ``seed``, ``p`` and the condition. A condition on an
        unknown column or value is an ``InvalidArgument`` here, before any work.
        """
        return self._pieces(seed, self.condition_position(condition))

    def _pieces(self, seed: int, fixed: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        piece = 0
        while True:
            yield self.piece(seed, piece, fixed)
            piece += 1

    def condition_position(self, condition: Condition | None) -> int | None:
        """Where ``condition`` sets the one-hot conditional vector (None: no condition).
        An unknown column or value is an ``InvalidArgument``."""
        return None if condition is None else int(self.condition_vector(condition)[0].argmax())

    @torch.no_grad()
    def piece(self, seed: int, piece: int, fixed: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Piece number ``piece`` of ``generate(seed)``, on its own: pieces may be
        made in any order, by several threads at once (for ``fixed``, see
        ``condition_position``)."""
        # All randomness is drawn on the CPU from the piece's seed, whatever the
        # device: the noise by torch (its normal is the fastest here), the
        # conditions and the Gumbel noise by numpy (its float32 uniform and log are).
        fused = self._fused
        if fused is None:  # two threads may both build it: harmless (the model is not changed after loading)
            fused = self._fused = FusedGenerator(self.generator, self.config.embedding_dim, self.layout.cond_dim)
        rows = self.piece_rows
        this_seed = piece_seed(seed, piece)
        noise = torch.randn(rows, self.config.embedding_dim, generator=torch.Generator().manual_seed(this_seed))
        rng = np.random.Generator(np.random.PCG64(this_seed))
        picks = None
        if fixed is not None:
            picks = torch.full((rows,), fixed, dtype=torch.long)
        elif self.layout.cond_dim:
            drawn = np.searchsorted(self._condition_cdf, rng.random(rows), side="right")
            picks = torch.from_numpy(np.minimum(drawn, self.layout.cond_dim - 1))
        device = self.device
        raw = fused.forward(noise.to(device), picks.to(device) if picks is not None else None, self.config.batch_size)
        alphas, codes = self._cpu_ops.sample_codes(raw.float().cpu(), rng)
        return alphas.numpy(), codes.numpy()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
