"""Training configuration: the engine and its hyper-parameters, validated in one place.

It lives in the shared package (not in the trainer) because a saved model carries
its config, and the sampler rebuilds the generator from it.

One config serves every engine (``ENGINES``); each reads the fields that apply
to it. TVAE reads ``generator_dim`` as its decoder's layers and
``discriminator_dim`` as its encoder's, ``generator_lr``/``generator_decay``
for its one optimiser; the Gaussian copula reads none (it has no training
loop). ``engine_defaults`` gives each engine's own defaults (TVAE's are the
``ctgan`` package's ``TVAE``'s).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from services.common.errors import FieldViolation, InvalidArgument

_MAX_SEED = 2**63 - 1
ENGINES = ("ctgan", "tvae", "copula")
# Upper bounds: values past them are mistakes, not requests (and would exhaust memory).
MAX_EPOCHS = 100_000
MAX_LAYER_WIDTH = 4096
MAX_LAYERS = 8
MAX_TIME_BUDGET_SECONDS = 7 * 24 * 3600.0

_TVAE_DEFAULTS: dict[str, Any] = {
    "generator_dim": (128, 128),
    "discriminator_dim": (128, 128),
    "embedding_dim": 128,
    "generator_lr": 1e-3,
    "generator_decay": 1e-5,
}


def engine_defaults(engine: str) -> dict[str, Any]:
    """The fields whose default differs for ``engine`` (CTGAN's are the dataclass defaults)."""
    return dict(_TVAE_DEFAULTS) if engine == "tvae" else {}


@dataclass(frozen=True)
class TrainingConfig:
    """Engine hyper-parameters; the defaults are ``ctgan.CTGAN``'s (see ``engine_defaults``)."""

    synthesizer: str = "ctgan"
    epochs: int = 300
    batch_size: int = 500
    generator_dim: tuple[int, ...] = (256, 256)
    discriminator_dim: tuple[int, ...] = (256, 256)
    embedding_dim: int = 128
    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    generator_decay: float = 1e-6
    discriminator_decay: float = 1e-6
    discriminator_steps: int = 1
    pac: int = 10
    log_frequency: bool = True
    seed: int | None = None
    checkpoint_every: int = 10
    transformer_sample_rows: int = 20000
    # Stop after the epoch in which this much training time was spent (0: no limit).
    time_budget_seconds: float = 0.0

    def validate(self) -> TrainingConfig:
        """Raise ``InvalidArgument`` listing every bad field; return ``self`` when valid."""
        bad: list[FieldViolation] = []

        def check(name: str, ok: bool, description: str) -> None:
            if not ok:
                bad.append(FieldViolation(f"config.{name}", description))

        check(
            "synthesizer",
            self.synthesizer in ENGINES,
            f"synthesizer must be one of {', '.join(ENGINES)}, got {self.synthesizer!r}",
        )
        for name in ("epochs", "embedding_dim", "discriminator_steps", "checkpoint_every", "pac"):
            value = getattr(self, name)
            check(name, _is_int(value) and value > 0, f"{name} must be a positive integer, got {value!r}")
        check(
            "embedding_dim",
            not _is_int(self.embedding_dim) or self.embedding_dim <= MAX_LAYER_WIDTH,
            f"embedding_dim must be at most {MAX_LAYER_WIDTH}, got {self.embedding_dim!r}",
        )
        check(
            "epochs",
            not _is_int(self.epochs) or self.epochs <= MAX_EPOCHS,
            f"epochs must be at most {MAX_EPOCHS}, got {self.epochs!r}",
        )
        check(
            "time_budget_seconds",
            _is_real(self.time_budget_seconds) and 0 <= self.time_budget_seconds <= MAX_TIME_BUDGET_SECONDS,
            f"time_budget_seconds must be between 0 (no limit) and {MAX_TIME_BUDGET_SECONDS:.0f}, "
            f"got {self.time_budget_seconds!r}",
        )
        pac_ok = _is_int(self.pac) and self.pac > 0
        check(
            "batch_size",
            _is_int(self.batch_size) and self.batch_size > 0 and (not pac_ok or self.batch_size % self.pac == 0),
            f"batch_size must be a positive multiple of pac ({self.pac!r}), got {self.batch_size!r}",
        )
        check(
            "batch_size",
            not _is_int(self.batch_size) or self.batch_size != 1,
            "batch_size must be at least 2 (the generator's batch normalisation needs two rows)",
        )
        for name in ("generator_dim", "discriminator_dim"):
            value = getattr(self, name)
            ok = isinstance(value, tuple | list) and all(_is_int(v) and 0 < v <= MAX_LAYER_WIDTH for v in value)
            ok = ok and len(value) <= MAX_LAYERS
            check(
                name,
                ok,
                f"{name} must be at most {MAX_LAYERS} integers in [1, {MAX_LAYER_WIDTH}], got {value!r}",
            )
        for name in ("generator_lr", "discriminator_lr"):
            value = getattr(self, name)
            check(name, _is_real(value) and value > 0, f"{name} must be a positive finite number, got {value!r}")
        for name in ("generator_decay", "discriminator_decay"):
            value = getattr(self, name)
            check(name, _is_real(value) and value >= 0, f"{name} must be a finite number >= 0, got {value!r}")
        check("log_frequency", isinstance(self.log_frequency, bool), "log_frequency must be a boolean")
        check(
            "seed",
            self.seed is None or (_is_int(self.seed) and 0 <= self.seed <= _MAX_SEED),
            f"seed must be empty or an integer in [0, 2**63 - 1], got {self.seed!r}",
        )
        check(
            "transformer_sample_rows",
            _is_int(self.transformer_sample_rows) and self.transformer_sample_rows >= 100,
            f"transformer_sample_rows must be an integer >= 100, got {self.transformer_sample_rows!r}",
        )
        if bad:
            raise InvalidArgument("invalid training config: " + "; ".join(v.description for v in bad), violations=bad)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        out = asdict(self)
        out["generator_dim"] = list(self.generator_dim)
        out["discriminator_dim"] = list(self.discriminator_dim)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """Inverse of ``to_dict``; unknown keys are an ``InvalidArgument``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgument(
                f"unknown training config fields: {', '.join(unknown)}",
                violations=[FieldViolation(f"config.{name}", "unknown field") for name in unknown],
            )
        values = dict(data)
        for name in ("generator_dim", "discriminator_dim"):
            if name in values and isinstance(values[name], list):
                values[name] = tuple(values[name])
        return cls(**values)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
