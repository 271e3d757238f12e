"""Unit tests of the CTGAN engine: transformer, training loop, model sampling, artifact format.

Small slices of the real Adult table, small networks and 1-3 epochs: the whole
file runs in well under a minute and a half on 2 cores. Timing is never asserted
here (see bench/bench_training.py).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from services.common.engine import (
    Condition,
    FastDataTransformer,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)
from services.common.errors import DataLoss, InvalidArgument
from services.trainer.engine import EpochStats, TrainingCancelled, TrainingConfig, train

ROOT = Path(__file__).resolve().parents[2]
ADULT = ROOT / "data" / "adult.csv"
TINY = dict(
    batch_size=100,
    generator_dim=(32, 32),
    discriminator_dim=(32, 32),
    embedding_dim=16,
    pac=10,
    seed=11,
)


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, list[str]]:
    frame = pd.read_csv(ADULT, na_values="?")
    discrete = [c for c in frame.columns if frame[c].dtype == object]
    return frame, discrete


@pytest.fixture(scope="module")
def small(adult: tuple[pd.DataFrame, list[str]]) -> tuple[pd.DataFrame, list[str]]:
    frame, discrete = adult
    return frame.iloc[:600].reset_index(drop=True), discrete


def _weights(model_or_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model_or_state.items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(small: tuple[pd.DataFrame, list[str]]):  # type: ignore[no-untyped-def]
    frame, discrete = small
    return train(frame, discrete, TrainingConfig(epochs=2, **TINY), device="cpu", threads=1)


# ------------------------------------------------------------------ transformer


def test_transformer_round_trip_on_adult(adult: tuple[pd.DataFrame, list[str]]) -> None:
    frame, discrete = adult
    part = frame.iloc[:3000].reset_index(drop=True)
    transformer = FastDataTransformer(seed=3).fit(part, discrete)
    matrix = transformer.transform(part)
    assert matrix.shape == (len(part), transformer.output_dimensions)
    back = transformer.inverse_transform(matrix)
    assert list(back.columns) == list(part.columns)
    assert back.dtypes.to_dict() == part.dtypes.to_dict()
    for name in discrete:  # categories (and missing values) come back exactly
        pd.testing.assert_series_equal(back[name], part[name], check_names=False)
    for name in part.columns.difference(discrete):
        # exact except where the normalised value was clipped to +-0.99 (beyond 4 std), as in ctgan
        close = np.isclose(back[name].to_numpy(float), part[name].to_numpy(float), rtol=1e-6, atol=0.5)
        assert close.mean() > 0.99, name


def test_layout_is_ctgans_and_its_sampler_runs_on_it(adult: tuple[pd.DataFrame, list[str]]) -> None:
    from ctgan.data_sampler import DataSampler
    from ctgan.data_transformer import DataTransformer

    frame, discrete = adult
    part = frame.iloc[:2000].reset_index(drop=True)
    ours = FastDataTransformer().fit(part, discrete)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = DataTransformer()
        reference.fit(part, discrete)
    assert ours.output_dimensions == reference.output_dimensions

    def spans(info: list) -> list:
        return [[(int(s.dim), s.activation_fn) for s in column] for column in info]

    assert spans(ours.output_info_list) == spans(reference.output_info_list)
    # the one-hot of the discrete columns is bit for bit ctgan's (same category order);
    # under 500 rows ctgan transforms in-process instead of starting joblib workers
    head = part.iloc[:400]
    ours_matrix, ref_matrix = ours.transform(head), reference.transform(head)
    position = 0
    for column_info in ours.output_info_list:
        width = sum(s.dim for s in column_info)
        if len(column_info) == 1:
            assert np.array_equal(
                ours_matrix[:, position : position + width], ref_matrix[:, position : position + width]
            )
        position += width
    # ctgan's DataSampler accepts our matrix unchanged
    sampler = DataSampler(ours_matrix, ours.output_info_list, True)
    np.random.seed(0)
    _cond, _mask, column, option = sampler.sample_condvec(50)
    assert sampler.sample_data(ours_matrix, 50, column, option).shape == (50, ours.output_dimensions)


def test_transformer_state_is_plain_json(small: tuple[pd.DataFrame, list[str]]) -> None:
    frame, discrete = small
    transformer = FastDataTransformer(seed=5).fit(frame, discrete)
    text = json.dumps(transformer.to_state(), allow_nan=False)
    restored = FastDataTransformer.from_state(json.loads(text))
    assert np.array_equal(restored.transform(frame, rng=9), transformer.transform(frame, rng=9))
    codes = transformer.transform_codes(frame, rng=9)
    pd.testing.assert_frame_equal(
        restored.inverse_transform_codes(codes.alphas, codes.codes),
        transformer.inverse_transform_codes(codes.alphas, codes.codes),
    )


def test_missing_continuous_values_get_an_indicator_span() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(50, 10, 2000)
    values[rng.random(2000) < 0.3] = np.nan
    frame = pd.DataFrame({"x": values, "c": rng.choice(["a", "b", None], 2000)})
    transformer = FastDataTransformer().fit(frame, ["c"])
    assert [s.activation_fn for s in transformer.output_info_list[0]] == ["tanh", "softmax", "softmax"]
    assert transformer.output_info_list[0][2].dim == 2
    back = transformer.inverse_transform(transformer.transform(frame))
    assert back["x"].isna().equals(frame["x"].isna())
    assert back["c"].isna().equals(frame["c"].isna())


def test_bad_tables_are_invalid_arguments() -> None:
    frame = pd.DataFrame({"x": ["a", "b"], "y": [1.0, np.nan]})
    with pytest.raises(InvalidArgument) as info:
        FastDataTransformer().fit(frame, [])
    assert any(v.field == "columns['x']" for v in info.value.violations)
    with pytest.raises(InvalidArgument):
        train(frame, ["nope"], TrainingConfig(epochs=1), device="cpu")


# -------------------------------------------------------------------- config


def test_config_validation_names_the_fields() -> None:
    with pytest.raises(InvalidArgument) as info:
        TrainingConfig(epochs=0, batch_size=55, pac=10, generator_lr=-1.0).validate()
    fields = {v.field for v in info.value.violations}
    assert {"config.epochs", "config.batch_size", "config.generator_lr"} <= fields
    assert "multiple of pac" in str(info.value)
    assert TrainingConfig().validate() == TrainingConfig()
    assert TrainingConfig.from_dict(TrainingConfig(seed=4).to_dict()) == TrainingConfig(seed=4)


# ------------------------------------------------------------------ training


def test_two_epochs_report_progress(small: tuple[pd.DataFrame, list[str]]) -> None:
    frame, discrete = small
    seen: list[EpochStats] = []
    model = train(frame, discrete, TrainingConfig(epochs=2, **TINY), device="cpu", threads=1, on_epoch=seen.append)
    assert [s.epoch for s in seen] == [1, 2] and all(s.epochs == 2 for s in seen)
    for stats in seen:
        assert math.isfinite(stats.generator_loss) and math.isfinite(stats.discriminator_loss)
        assert stats.seconds > 0 and stats.rows_per_second > 0
    assert model.metadata.epochs_trained == 2 and len(model.loss_history) == 2


def test_cancel_stops_within_one_step(small: tuple[pd.DataFrame, list[str]]) -> None:
    frame, discrete = small
    calls = 0

    def stop_on_third_check() -> bool:
        nonlocal calls
        calls += 1
        return calls == 3

    with pytest.raises(TrainingCancelled) as info:
        train(
            frame, discrete, TrainingConfig(epochs=5, **TINY), device="cpu", threads=1, should_stop=stop_on_third_check
        )
    assert calls == 3  # checked before every step, and nothing ran after it said stop
    assert (info.value.epoch, info.value.step) == (0, 2)
    assert info.value.state["step"] == 2 and info.value.code == "CANCELLED"


def test_resume_gives_the_uninterrupted_weights(small: tuple[pd.DataFrame, list[str]], tmp_path: Path) -> None:
    frame, discrete = small
    config = TrainingConfig(epochs=3, checkpoint_every=1, **TINY)
    states: list[dict] = []
    full = train(frame, discrete, config, device="cpu", threads=1, checkpoint=states.append)
    assert [s["epoch"] for s in states] == [1, 2, 3]
    expected = _weights(full.generator.state_dict())

    # from an epoch checkpoint that went through the on-disk format
    save_checkpoint(states[0], tmp_path / "ckpt")
    restored = load_checkpoint(tmp_path / "ckpt")
    resumed = train(frame, discrete, config, device="cpu", threads=1, resume_from=restored)
    assert _same(_weights(resumed.generator.state_dict()), expected)
    assert [round(r.generator_loss, 6) for r in resumed.metadata.loss_history] == [
        round(r.generator_loss, 6) for r in full.metadata.loss_history
    ]

    # from the middle of an epoch (a cancellation)
    checks = 0

    def stop_mid_epoch() -> bool:
        nonlocal checks
        checks += 1
        return checks == 9  # epoch 2, step 3 (6 steps per epoch)

    with pytest.raises(TrainingCancelled) as info:
        train(frame, discrete, config, device="cpu", threads=1, should_stop=stop_mid_epoch)
    assert (info.value.epoch, info.value.step) == (1, 2)
    resumed = train(frame, discrete, config, device="cpu", threads=1, resume_from=info.value.state)
    assert _same(_weights(resumed.generator.state_dict()), expected)


def test_resume_refuses_other_data_or_config(small: tuple[pd.DataFrame, list[str]]) -> None:
    from services.common.errors import FailedPrecondition

    frame, discrete = small
    states: list[dict] = []
    train(frame, discrete, TrainingConfig(epochs=1, **TINY), device="cpu", threads=1, checkpoint=states.append)
    with pytest.raises(FailedPrecondition):
        train(frame.iloc[:-1], discrete, TrainingConfig(epochs=2, **TINY), device="cpu", resume_from=states[0])
    with pytest.raises(InvalidArgument) as info:
        other = {**TINY, "embedding_dim": 8}
        train(frame, discrete, TrainingConfig(epochs=2, **other), device="cpu", resume_from=states[0])
    assert info.value.violations[0].field == "config.embedding_dim"


def test_same_seed_same_weights_other_seed_other_weights(small: tuple[pd.DataFrame, list[str]]) -> None:
    frame, discrete = small
    config = TrainingConfig(epochs=1, **TINY)
    first = train(frame, discrete, config, device="cpu", threads=1)
    second = train(frame, discrete, config, device="cpu", threads=1)
    other = train(frame, discrete, TrainingConfig(epochs=1, **{**TINY, "seed": 12}), device="cpu", threads=1)
    assert _same(_weights(first.generator.state_dict()), _weights(second.generator.state_dict()))
    assert not _same(_weights(first.generator.state_dict()), _weights(other.generator.state_dict()))


def test_train_leaves_the_callers_random_state_alone(small: tuple[pd.DataFrame, list[str]]) -> None:
    frame, discrete = small
    torch.manual_seed(123)
    before = torch.get_rng_state()
    threads = torch.get_num_threads()
    train(frame, discrete, TrainingConfig(epochs=1, **TINY), device="cpu", threads=1)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.get_num_threads() == threads


# ------------------------------------------------------------------ sampling


def test_sampling_is_seeded_and_independent_of_chunk_size(trained) -> None:  # type: ignore[no-untyped-def]
    chunks = list(trained.sample(450, seed=5, chunk_rows=64))
    assert [len(c) for c in chunks] == [64] * 7 + [2]
    small_chunks = pd.concat(chunks)
    one_chunk = pd.concat(trained.sample(450, seed=5, chunk_rows=1000))
    pd.testing.assert_frame_equal(small_chunks, one_chunk)
    assert list(one_chunk.columns) == trained.transformer.columns
    prefix = pd.concat(trained.sample(130, seed=5, chunk_rows=1000))
    pd.testing.assert_frame_equal(prefix, one_chunk.iloc[:130])
    other = pd.concat(trained.sample(450, seed=6, chunk_rows=1000))
    assert not other.equals(one_chunk)


def test_fused_forward_is_ctgans_generator_per_batch(trained) -> None:  # type: ignore[no-untyped-def]
    """What ctgan's sample computes: its Generator in training mode, one batch at a time."""
    import copy

    from services.common.engine._fused import FusedGenerator

    config, cond_dim = trained.config, trained.layout.cond_dim
    batch, groups = config.batch_size, 4
    fused = FusedGenerator(trained.generator, config.embedding_dim, cond_dim)
    rng = torch.Generator().manual_seed(3)
    noise = torch.randn(batch * groups, config.embedding_dim, generator=rng)
    picks = torch.randint(0, cond_dim, (batch * groups,), generator=rng)
    onehot = torch.nn.functional.one_hot(picks, cond_dim).float()
    reference = copy.deepcopy(trained.generator).train()
    with torch.no_grad():
        expected = torch.cat(
            [reference(torch.cat([noise, onehot], 1)[g * batch : (g + 1) * batch]) for g in range(groups)]
        )
    np.testing.assert_allclose(fused.forward(noise, picks, batch).numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    running = dict(trained.generator.state_dict())
    fused.forward(noise, picks, batch)
    assert _same(_weights(running), _weights(trained.generator.state_dict())), "sampling never mutates the model"
    with pytest.raises(ValueError):
        fused.forward(noise[:-1], picks[:-1], batch)  # not a whole number of batches


@pytest.mark.parametrize(("dims", "cond_dim"), [((64, 32, 16), 7), ((16,), 0), ((8, 16, 32, 4), 3)])
def test_fused_forward_handles_any_depth_and_no_conditional_vector(dims: tuple[int, ...], cond_dim: int) -> None:
    from ctgan.synthesizers.ctgan import Generator

    from services.common.engine._fused import FusedGenerator

    torch.manual_seed(0)
    embedding, data_dim, batch = 12, 9, 50
    generator = Generator(embedding + cond_dim, dims, data_dim)
    noise = torch.randn(batch * 3, embedding)
    picks = torch.randint(0, cond_dim, (batch * 3,)) if cond_dim else None
    inputs = noise if picks is None else torch.cat([noise, torch.nn.functional.one_hot(picks, cond_dim).float()], 1)
    with torch.no_grad():
        expected = torch.cat([generator.train()(inputs[g * batch : (g + 1) * batch]) for g in range(3)])
    got = FusedGenerator(generator, embedding, cond_dim).forward(noise, picks, batch)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_gumbel_argmax_by_width_buckets_is_the_per_span_argmax(trained) -> None:  # type: ignore[no-untyped-def]
    ops, layout = trained._cpu_ops, trained.layout
    raw = torch.randn(257, layout.data_dim, generator=torch.Generator().manual_seed(0))
    alphas, codes = ops.sample_codes(raw, np.random.default_rng(9))
    # the same uniforms, span by span
    uniform = np.random.default_rng(9).random((257, layout.data_dim + 1), dtype=np.float32)
    scores = raw.numpy() - np.log(-np.log(np.maximum(uniform[:, : layout.data_dim], np.finfo(np.float32).tiny)))
    for span, (start, dim) in enumerate(zip(layout.soft_starts, layout.soft_dims, strict=True)):
        np.testing.assert_array_equal(codes[:, span].numpy(), scores[:, start : start + dim].argmax(axis=1))
    np.testing.assert_allclose(alphas.numpy(), np.tanh(raw.numpy()[:, layout.tanh_cols]), rtol=1e-6)


def test_sampled_categories_follow_the_gumbel_softmax_distribution(trained) -> None:  # type: ignore[no-untyped-def]
    """Gumbel-argmax draws category k of a span with probability softmax(logits)_k."""
    ops, layout = trained._cpu_ops, trained.layout
    span = int(np.argmax(layout.soft_dims))
    start, dim = int(layout.soft_starts[span]), int(layout.soft_dims[span])
    logits = torch.linspace(-2.0, 2.0, dim)
    raw = torch.zeros(200_000, layout.data_dim)
    raw[:, start : start + dim] = logits
    _, codes = ops.sample_codes(raw, np.random.default_rng(1))
    shares = np.bincount(codes[:, span].numpy(), minlength=dim) / len(raw)
    np.testing.assert_allclose(shares, torch.softmax(logits, 0).numpy(), atol=0.005)


def test_condition_vector_targets_the_right_category(trained) -> None:  # type: ignore[no-untyped-def]
    transformer = trained.transformer
    categories = transformer.category_values("sex")
    vector = trained.condition_vector(Condition("sex", categories[1]))
    offset = 0
    for name in transformer.discrete_columns:
        if name == "sex":
            break
        offset += len(transformer.category_values(name))
    assert vector.shape == (1, trained.layout.cond_dim) and vector[0, offset + 1] == 1 and vector.sum() == 1
    rows = pd.concat(trained.sample(200, seed=1, condition=Condition("sex", categories[1])))
    assert len(rows) == 200
    with pytest.raises(InvalidArgument):
        trained.condition_vector(Condition("sex", "no such value"))
    with pytest.raises(InvalidArgument):
        trained.condition_vector(Condition("age", 30))


# ------------------------------------------------------------------ artifacts


def test_artifact_round_trip_samples_identical_rows(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = save_model(trained, tmp_path / "model")
    loaded = load_model(folder, device="cpu")
    expected = pd.concat(trained.sample(300, seed=42, chunk_rows=128))
    pd.testing.assert_frame_equal(pd.concat(loaded.sample(300, seed=42, chunk_rows=77)), expected)
    assert loaded.config == trained.config
    assert loaded.metadata.loss_history == trained.metadata.loss_history


def test_artifact_holds_no_pickle(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = save_model(trained, tmp_path / "model")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["engine.json", "generator.pt", "manifest.json", "transformer.json"]
    assert not any(p.suffix in {".pkl", ".pickle", ".joblib"} for p in folder.iterdir())
    weights = torch.load(folder / "generator.pt", weights_only=True, map_location="cpu")
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    for name in ("engine.json", "transformer.json", "manifest.json"):
        json.loads((folder / name).read_text())


@pytest.mark.parametrize("victim", ["generator.pt", "transformer.json", "engine.json"])
@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_artifacts_are_data_loss(trained, tmp_path: Path, victim: str, damage: str) -> None:  # type: ignore[no-untyped-def]
    folder = save_model(trained, tmp_path / "model")
    path = folder / victim
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) - 7]))
    else:
        path.unlink()
    with pytest.raises(DataLoss) as info:
        load_model(folder)
    assert victim in str(info.value)


def test_missing_manifest_and_signatures(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = save_model(trained, tmp_path / "signed", signing_key=b"k1")
    load_model(folder, signing_key=b"k1")
    with pytest.raises(DataLoss):
        load_model(folder, signing_key=b"k2")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["generator.pt"]["size"] += 0  # a re-signed manifest needs the key
    manifest["hmac_sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataLoss):
        load_model(folder, signing_key=b"k1")
    (folder / "manifest.json").unlink()
    with pytest.raises(DataLoss) as info:
        load_model(folder)
    assert "manifest.json" in str(info.value)


def test_resolve_device() -> None:
    from services.common.engine import resolve_device
    from services.common.errors import FailedPrecondition

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InvalidArgument):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FailedPrecondition):
            resolve_device("cuda")


def test_few_distinct_values_are_encoded_as_row_by_row(adult: tuple[pd.DataFrame, list[str]]) -> None:
    """The per-distinct-value posterior (ages, counts) is the per-row one, bit for bit."""
    from services.common.engine._columns import _component_cdf

    frame, discrete = adult
    transformer = FastDataTransformer().fit(frame.iloc[:2000], discrete)
    column = next(c for c in transformer._columns if c.name == "age")
    x = frame["age"].to_numpy(dtype=np.float64)[:5000]
    distinct, inverse = np.unique(x, return_inverse=True)
    assert distinct.size * 4 <= x.size  # the per-value path is the one taken
    np.testing.assert_array_equal(_component_cdf(column, distinct)[inverse], _component_cdf(column, x))


def test_cpu_count_respects_the_cgroup_cpu_quota(tmp_path: Path) -> None:
    from services.common.engine.device import _cgroup_cpu_quota, available_cpus
    from services.trainer.engine import default_threads

    assert 1 <= default_threads() <= min(2, available_cpus())

    assert _cgroup_cpu_quota(tmp_path, membership="") is None  # no cgroup files: unknown
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_quota(tmp_path, membership="") is None  # unlimited
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_quota(tmp_path, membership="") == 1.5
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_quota(tmp_path, membership="") == 0.5
    # a host that shows the container its place in the whole hierarchy
    pod = tmp_path / "kubepods" / "pod1"
    pod.mkdir(parents=True)
    (pod / "cpu.max").write_text("200000 100000\n")
    assert _cgroup_cpu_quota(tmp_path, membership="0::/kubepods/pod1\n") == 0.5  # the tighter one
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_cpu_quota(tmp_path, membership="0::/kubepods/pod1\n") == 2.0
    v1 = tmp_path / "cpu" / "docker" / "c1"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_quota(tmp_path, membership="4:cpu,cpuacct:/docker/c1\n0::/\n") == 3.0
