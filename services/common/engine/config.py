"""Training configuration: the CTGAN hyper-parameters, validated in one place.

It lives in the shared package (not in the trainer) because a saved model carries
its config, and the sampler rebuilds the generator from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from services.common.errors import FieldViolation, InvalidArgument

_MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class TrainingConfig:
    """CTGAN hyper-parameters; the defaults are ``ctgan.CTGAN``'s."""

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

    def validate(self) -> TrainingConfig:
        """Raise ``InvalidArgument`` listing every bad field; return ``self`` when valid."""
        bad: list[FieldViolation] = []

        def check(name: str, ok: bool, description: str) -> None:
            if not ok:
                bad.append(FieldViolation(f"config.{name}", description))

        for name in ("epochs", "embedding_dim", "discriminator_steps", "checkpoint_every", "pac"):
            value = getattr(self, name)
            check(name, _is_int(value) and value > 0, f"{name} must be a positive integer, got {value!r}")
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
            ok = isinstance(value, tuple | list) and all(_is_int(v) and v > 0 for v in value)
            check(name, ok, f"{name} must be a sequence of positive integers, got {value!r}")
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
