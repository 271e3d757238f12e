"""Unit tests of the engines behind one contract: TVAE, the Gaussian copula, the
artifact for every engine, the time budget and the automatic choice.

Small slices of the real Adult table (``data/adult.csv``) and small networks.
Timing is never asserted here (bench/bench_engines.py measures it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from services.common.codec import training_view
from services.common.engine import Condition, load_model, save_model
from services.common.engine.config import TrainingConfig, engine_defaults
from services.common.engine.copula import GaussianCopula
from services.common.errors import DataLoss, InvalidArgument
from services.common.schema import ColumnInfo, ColumnKind
from services.common.support import SupportRules
from services.trainer import tvae
from services.trainer.autoselect import Selection, choose_engine, trial_epochs
from services.trainer.engine import TrainingCancelled
from services.trainer.synthesizers import calibrate, synthetic_frame, train_model

ADULT = Path(__file__).resolve().parents[2] / "data" / "adult.csv"
TINY_TVAE = dict(
    synthesizer="tvae", batch_size=100, generator_dim=(32, 32), discriminator_dim=(32, 32), embedding_dim=16, seed=5
)


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, list[str]]:
    """1,200 real rows as the codec gives them to engines (floats; category strings)."""
    frame = pd.read_csv(ADULT, na_values="?", nrows=1200)
    columns = [
        ColumnInfo(
            name=c,
            kind=ColumnKind.CATEGORICAL if frame[c].dtype == object else ColumnKind.CONTINUOUS,
            missing_count=int(frame[c].isna().sum()),
            distinct_count=int(frame[c].nunique()),
        )
        for c in frame.columns
    ]
    return training_view(frame, columns)


def _same_pieces(a, b, seed: int = 3, fixed: int | None = None) -> bool:  # type: ignore[no-untyped-def]
    left, right = a.decoded_piece(seed, 0, fixed), b.decoded_piece(seed, 0, fixed)
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(left, right, strict=True))


# ------------------------------------------------------------------ Gaussian copula


def test_copula_keeps_marginals_missing_rates_and_a_correlation(adult) -> None:  # type: ignore[no-untyped-def]
    table, discrete = adult
    model = GaussianCopula.fit(table, discrete, seed=1)
    rows = synthetic_frame(model, 20_000, seed=4)
    for name in ("age", "hours_per_week"):
        real = table[name].to_numpy()
        assert abs(np.median(rows[name]) - np.median(real)) <= 0.05 * np.ptp(real)
        assert rows[name].min() >= real.min() and rows[name].max() <= real.max()
    real_share = table["sex"].value_counts(normalize=True)
    fake_share = rows["sex"].value_counts(normalize=True)
    assert abs(real_share["Male"] - fake_share["Male"]) < 0.03
    for name in ("workclass", "occupation"):  # missing is a category of its own
        assert abs(rows[name].isna().mean() - table[name].isna().mean()) < 0.02
    # education_num and income are clearly linked in the real rows: the copula keeps the sign
    real_gap = table.groupby("income")["education_num"].mean()
    fake_gap = rows.groupby("income")["education_num"].mean()
    assert (real_gap[">50K"] - real_gap["<=50K"]) > 1.0 and (fake_gap[">50K"] - fake_gap["<=50K"]) > 0.5


def test_copula_missing_numbers_are_kept_at_their_rate() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(50, 10, 2000)
    values[rng.random(2000) < 0.2] = np.nan
    table = pd.DataFrame({"x": values, "c": rng.choice(["a", "b"], 2000)})
    model = GaussianCopula.fit(table, ["c"], seed=2)
    rows = synthetic_frame(model, 20_000, seed=1)
    assert abs(rows["x"].isna().mean() - 0.2) < 0.02


def test_copula_condition_is_met_exactly_and_shifts_the_rest(adult) -> None:  # type: ignore[no-untyped-def]
    table, discrete = adult
    model = GaussianCopula.fit(table, discrete, seed=1)
    position = model.condition_position(Condition("income", ">50K"))
    piece = model.decoded_piece(9, 0, position)
    income = model.columns.index("income")
    labels = np.array(model.category_values("income"), dtype=object)[piece[income]]
    assert set(labels) == {">50K"}
    free = model.decoded_piece(9, 0, None)
    education = model.columns.index("education_num")
    assert piece[education].mean() > free[education].mean() + 0.5
    with pytest.raises(InvalidArgument):
        model.condition_position(Condition("income", "lots"))
    with pytest.raises(InvalidArgument):
        model.condition_position(Condition("age", "40"))


def test_copula_is_seeded_and_its_state_round_trips(adult) -> None:  # type: ignore[no-untyped-def]
    table, discrete = adult
    model = GaussianCopula.fit(table, discrete, seed=1)
    again = GaussianCopula.from_state(model.to_state())
    assert _same_pieces(model, again) and _same_pieces(model, GaussianCopula.fit(table, discrete, seed=1))
    first = model.decoded_piece(3, 0, None)
    other = model.decoded_piece(4, 0, None)
    assert not np.array_equal(first[0], other[0])
    broken = model.to_state()
    broken["correlation"] = broken["correlation"][:-1]
    with pytest.raises(DataLoss):
        GaussianCopula.from_state(broken)


# --------------------------------------------------------------------------- TVAE


def test_tvae_trains_samples_and_is_seeded(adult) -> None:  # type: ignore[no-untyped-def]
    table, discrete = adult
    config = TrainingConfig(epochs=3, **TINY_TVAE)
    seen = []
    model = tvae.train(table, discrete, config, device="cpu", threads=1, on_epoch=seen.append)
    assert [s.epoch for s in seen] == [1, 2, 3] and all(np.isfinite(s.generator_loss) for s in seen)
    again = tvae.train(table, discrete, config, device="cpu", threads=1)
    assert _same_pieces(model, again)
    rows = synthetic_frame(model, 5000, seed=2)
    assert set(rows["sex"].dropna()) <= {"Male", "Female"}
    assert np.isfinite(rows["age"]).all()  # the range is the output typer's to keep


def test_tvae_resumes_to_the_uninterrupted_weights(adult) -> None:  # type: ignore[no-untyped-def]
    table, discrete = adult
    config = TrainingConfig(epochs=3, checkpoint_every=1, **TINY_TVAE)
    full = tvae.train(table, discrete, config, device="cpu", threads=1)
    checks = iter(range(1000))

    def stop_in_epoch_two() -> bool:
        return next(checks) == 16  # 12 steps per epoch: epoch 2, step 5

    with pytest.raises(TrainingCancelled) as stopped:
        tvae.train(table, discrete, config, device="cpu", threads=1, should_stop=stop_in_epoch_two)
    assert (stopped.value.epoch, stopped.value.step) == (1, 4)
    resumed = tvae.train(table, discrete, config, device="cpu", threads=1, resume_from=stopped.value.state)
    for key, value in full.decoder.state_dict().items():
        assert torch.equal(value, resumed.decoder.state_dict()[key]), key
    with pytest.raises(InvalidArgument, match="not a training checkpoint of this engine"):
        train_model(
            table, discrete, replace(config, synthesizer="ctgan"), device="cpu", resume_from=stopped.value.state
        )


def test_time_budget_ends_training_early(adult) -> None:  # type: ignore[no-untyped-def]
    table, discrete = adult
    config = TrainingConfig(epochs=10_000, time_budget_seconds=1e-9, **TINY_TVAE)
    model = train_model(table, discrete, config, device="cpu", threads=1)
    assert model.metadata.epochs_trained == 1  # type: ignore[attr-defined]


# ------------------------------------------------------------- one artifact for all


@pytest.mark.parametrize("engine", ["ctgan", "tvae", "copula"])
def test_every_engine_round_trips_through_the_artifact(adult, engine: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table, discrete = adult
    config = TrainingConfig(**{**TINY_TVAE, "synthesizer": engine, "epochs": 1})
    model = train_model(table, discrete, config, device="cpu", threads=1)
    support = SupportRules.fit(table, discrete)
    calibration = calibrate(model, table, discrete, seed=2)
    save_model(model, tmp_path / "m", support=support, calibration=calibration)
    loaded = load_model(tmp_path / "m")
    assert loaded.engine == engine and _same_pieces(model, loaded)
    assert loaded.support is not None and loaded.support.to_state() == support.to_state()
    assert loaded.calibration.to_state() == calibration.to_state() and "age" in loaded.calibration
    assert not any(p.suffix in (".pkl", ".pickle") for p in (tmp_path / "m").iterdir())
    document = (tmp_path / "m" / "engine.json").read_text()
    (tmp_path / "m" / "engine.json").write_text(document.replace(f'"{engine}"', '"gan9000"', 1))
    with pytest.raises(DataLoss) as damaged:
        load_model(tmp_path / "m")
    assert "engine.json" in str(damaged.value) and str(tmp_path) not in str(damaged.value)  # no store paths


def test_config_bounds_and_engine_names() -> None:
    with pytest.raises(InvalidArgument) as bad:
        TrainingConfig(synthesizer="gan9000", epochs=2**31 - 1, generator_dim=(100_000,)).validate()
    fields = {v.field for v in bad.value.violations}
    assert {"config.synthesizer", "config.epochs", "config.generator_dim"} <= fields
    assert engine_defaults("tvae")["generator_lr"] == 1e-3 and engine_defaults("ctgan") == {}


# ------------------------------------------------------------------ automatic choice


def test_auto_choice_is_recorded_and_reproducible(adult) -> None:  # type: ignore[no-untyped-def]
    table, discrete = adult
    tried = []

    def config_for(engine: str) -> TrainingConfig:
        return TrainingConfig.from_dict({**TINY_TVAE, "synthesizer": engine, "epochs": 3})

    first = choose_engine(table, discrete, "income", config_for, seed=3, device="cpu", threads=1, on_trial=tried.append)
    assert [t.engine for t in first.trials] == ["ctgan", "tvae", "copula"] == [t.engine for t in tried]
    assert all(0 <= t.score <= 1 and 0 <= t.fidelity <= 1 and t.utility is not None for t in first.trials)
    best = max(t.score for t in first.trials)
    winner = next(t for t in first.trials if t.engine == first.winner)
    assert winner.score >= best - 0.005 and first.winner in first.reason
    again = choose_engine(table, discrete, "income", config_for, seed=3, device="cpu", threads=1)
    assert again.winner == first.winner
    assert [round(t.score, 9) for t in again.trials] == [round(t.score, 9) for t in first.trials]
    assert Selection.from_dict(first.to_dict()) == first
    no_target = choose_engine(table, discrete, "", config_for, seed=3, device="cpu", threads=1)
    assert all(t.utility is None for t in no_target.trials)


def test_trial_epochs_give_a_fixed_number_of_steps() -> None:
    assert trial_epochs(3000, 500, 300, 400) == 67  # 6 steps per epoch, 400 steps
    assert trial_epochs(3000, 500, 5, 400) == 5  # never more than the job asks
    assert trial_epochs(50, 500, 300, 400) == 300  # one step per epoch
