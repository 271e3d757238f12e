"""What a training job is asked to do: the settings a request set, the job's
effective config (defaults filled in, seed chosen), and the job's spec.

``training.effective_config`` turns a :class:`ConfigOverrides` into a
:class:`JobConfig`. A ``JobConfig`` is stored as one flat JSON object (the
engine's ``TrainingConfig`` fields beside the platform's), in ``job.json`` and
in the model's ``model.json``; :meth:`JobConfig.from_dict` also reads the
records of earlier versions (see there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from services.common.engine.config import ENGINES, TrainingConfig
from services.common.fakes import DEFAULT_LOCALE
from services.common.schema import RARE_MIN_COUNT

AUTO = "auto"
DEFAULT_HOLDOUT_FRACTION = 0.2
# TrainingConfig's fields a job config holds as they are (its synthesizer is the job's own, below)
ENGINE_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingConfig) if f.name != "synthesizer")


@dataclass(frozen=True)
class ConfigOverrides:
    """The settings a StartTraining request set; None: not set (the job takes its default)."""

    synthesizer: str | None = None
    preset: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    generator_dim: tuple[int, ...] | None = None
    discriminator_dim: tuple[int, ...] | None = None
    embedding_dim: int | None = None
    generator_lr: float | None = None
    discriminator_lr: float | None = None
    pac: int | None = None
    seed: int | None = None
    checkpoint_every: int | None = None
    time_budget_seconds: float | None = None
    holdout_fraction: float | None = None
    target_column: str | None = None
    discrete_columns: tuple[str, ...] | None = None
    exclude_columns: tuple[str, ...] | None = None
    device: str | None = None
    # privacy by construction (services.trainer.protection)
    column_policies: dict[str, str] | None = None
    rare_value_min_count: int | None = None
    allow_rare_values: bool | None = None
    fake_locale: str | None = None

    def engine_values(self) -> dict[str, Any]:
        """The engine fields (``TrainingConfig``'s) that were set, by name."""
        return {name: getattr(self, name) for name in ENGINE_FIELDS if getattr(self, name, None) is not None}

    def to_dict(self) -> dict[str, Any]:
        """The fields that were set, JSON-able (tuples as lists): what a request
        id's digest is taken over, so a retry must ask for the same thing."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                if isinstance(value, tuple):
                    value = list(value)
                elif isinstance(value, dict):
                    value = dict(value)
                out[f.name] = value
        return out


@dataclass(frozen=True)
class JobConfig:
    """A job's effective config. ``engine`` holds the engine's hyper-parameters:
    for ``synthesizer`` "auto", those of the first candidate (``ENGINES[0]``),
    whose defaults the fields the caller did not set (``set_fields``) give way
    to the bake-off winner's (``training.config_for_engine``)."""

    engine: TrainingConfig
    synthesizer: str  # "auto" or one of ENGINES
    preset: str = ""
    # the engine fields the caller set (a preset's budget included); None: records
    # from before it was kept, which count every field as set
    set_fields: tuple[str, ...] | None = None
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    target_column: str = ""
    discrete_columns: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    device: str = "auto"
    # privacy by construction (services.trainer.protection): column -> learn | fake | id | drop,
    # and the rare-value rule (values fewer than k training rows hold are never emitted)
    column_policies: dict[str, str] = dataclasses.field(default_factory=dict)
    rare_value_min_count: int = RARE_MIN_COUNT
    allow_rare_values: bool = False
    fake_locale: str = DEFAULT_LOCALE

    @property
    def seed(self) -> int:
        """The seed chosen when the job was created (an effective config always has one)."""
        if self.engine.seed is None:
            raise ValueError("an effective job config has a seed")
        return self.engine.seed

    def to_dict(self) -> dict[str, Any]:
        """The stored form: one flat JSON object."""
        out = self.engine.to_dict()
        out["synthesizer"] = self.synthesizer
        out["preset"] = self.preset
        if self.set_fields is not None:
            out["set_fields"] = list(self.set_fields)
        out["holdout_fraction"] = self.holdout_fraction
        out["target_column"] = self.target_column
        out["discrete_columns"] = list(self.discrete_columns)
        out["exclude_columns"] = list(self.exclude_columns)
        out["device"] = self.device
        # The protection fields only when they differ from the defaults, so a
        # record from before they existed is written back unchanged.
        protection = {
            "column_policies": dict(self.column_policies),
            "rare_value_min_count": self.rare_value_min_count,
            "allow_rare_values": self.allow_rare_values,
            "fake_locale": self.fake_locale,
        }
        out.update({k: v for k, v in protection.items() if v != _PROTECTION_DEFAULTS[k]})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobConfig:
        """Inverse of :meth:`to_dict`. Records of earlier versions lack fields
        added since: ``synthesizer`` (then "ctgan"), ``time_budget_seconds``,
        ``preset``, ``set_fields``, ``exclude_columns`` and the protection
        fields (then: policies by kind, k = 5, no rare values, en_US fakes);
        keys this version does not know are ignored, as they always were."""
        synthesizer = str(data.get("synthesizer", ENGINES[0]))
        engine_values = {name: data[name] for name in ENGINE_FIELDS if name in data}
        engine_values["synthesizer"] = ENGINES[0] if synthesizer == AUTO else synthesizer
        set_fields = data.get("set_fields")
        return cls(
            engine=TrainingConfig.from_dict(engine_values),
            synthesizer=synthesizer,
            preset=str(data.get("preset", "")),
            set_fields=None if set_fields is None else tuple(set_fields),
            holdout_fraction=float(data["holdout_fraction"]),
            target_column=str(data.get("target_column", "")),
            discrete_columns=tuple(data.get("discrete_columns", ())),
            exclude_columns=tuple(data.get("exclude_columns", ())),
            device=str(data.get("device", "auto")),
            column_policies={str(k): str(v) for k, v in dict(data.get("column_policies") or {}).items()},
            rare_value_min_count=int(data.get("rare_value_min_count") or RARE_MIN_COUNT),
            allow_rare_values=bool(data.get("allow_rare_values", False)),
            fake_locale=str(data.get("fake_locale") or DEFAULT_LOCALE),
        )


_PROTECTION_DEFAULTS: dict[str, Any] = {
    "column_policies": {},
    "rare_value_min_count": RARE_MIN_COUNT,
    "allow_rare_values": False,
    "fake_locale": DEFAULT_LOCALE,
}


@dataclass(frozen=True)
class JobSpec:
    """What a job trains: a dataset, with an effective config."""

    dataset_id: str
    config: JobConfig
