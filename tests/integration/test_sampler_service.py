"""SamplingService over a real server and a real (tiny) CTGAN model."""

from __future__ import annotations

import io
import threading
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pandas as pd
import pyarrow as pa
import pytest
from synth.v1 import sampling_pb2, sampling_pb2_grpc

from services.common.models import ModelRegistry
from services.common.store import ArtifactStore
from services.sampler.app import build_server
from services.sampler.settings import SamplerSettings
from tests.conftest import FIXTURE_DATASETS, TINY_CONFIG, TinyModel, train_and_wait, upload_bytes


def start_sampler(store_dir, **settings):  # type: ignore[no-untyped-def]
    server = build_server(SamplerSettings(port=0, metrics_port=0, store_dir=store_dir, **settings)).start()
    server.set_serving()
    return server


@pytest.fixture(scope="module")
def sampler(tiny_model: TinyModel) -> Iterator:
    server = start_sampler(tiny_model.store_dir, max_rows=20_000_000)
    yield server
    server.stop(1)


@pytest.fixture(scope="module")
def stub(sampler) -> Iterator[sampling_pb2_grpc.SamplingServiceStub]:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(sampler.address) as channel:
        yield sampling_pb2_grpc.SamplingServiceStub(channel)


def sample(stub, model_id: str, rows: int, **kwargs) -> tuple[list, bytes]:  # type: ignore[no-untyped-def]
    conditions = kwargs.pop("conditions", [])
    request = sampling_pb2.SampleRowsRequest(model_id=model_id, row_count=rows, conditions=conditions, **kwargs)
    messages = list(stub.SampleRows(request, timeout=300))
    data = b"".join(m.chunk.data for m in messages if m.WhichOneof("part") == "chunk")
    return messages, data


def eq(column: str, value: str) -> sampling_pb2.Condition:
    return sampling_pb2.Condition(column=column, equals=value)


def between(column: str, low: str | None = None, high: str | None = None) -> sampling_pb2.Condition:
    r = sampling_pb2.Range()
    if low is not None:
        r.minimum = low
    if high is not None:
        r.maximum = high
    return sampling_pb2.Condition(column=column, range=r)


def compare(column: str, op: int, other: str) -> sampling_pb2.Condition:
    return sampling_pb2.Condition(column=column, compare=sampling_pb2.ColumnComparison(op=op, other_column=other))


def error_of(fn, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.mark.parametrize("chunk_rows", [1, 777, 1000, 10_000])
def test_exact_row_count_and_stream_shape(stub, tiny_model, chunk_rows) -> None:  # type: ignore[no-untyped-def]
    rows = 2345 if chunk_rows > 1 else 25
    messages, data = sample(stub, tiny_model.model_id, rows, seed=3, chunk_rows=chunk_rows)
    assert [m.sequence for m in messages] == list(range(1, len(messages) + 1))
    assert messages[0].WhichOneof("part") == "header" and messages[-1].WhichOneof("part") == "summary"
    chunks = [m.chunk for m in messages[1:-1]]
    assert all(c.row_count <= chunk_rows for c in chunks)
    assert sum(c.row_count for c in chunks) == rows == messages[-1].summary.row_count
    # without conditions every generated row is delivered
    assert messages[-1].summary.rows_generated == rows and messages[-1].summary.acceptance_rate == 1.0
    frame = pd.read_csv(io.BytesIO(data))
    assert len(frame) == rows


def test_same_seed_is_byte_identical_whatever_the_chunk_size(stub, tiny_model) -> None:  # type: ignore[no-untyped-def]
    _, a = sample(stub, tiny_model.model_id, 3000, seed=11, chunk_rows=256)
    _, b = sample(stub, tiny_model.model_id, 3000, seed=11, chunk_rows=3000)
    _, c = sample(stub, tiny_model.model_id, 3000, seed=12, chunk_rows=256)
    assert a == b
    assert a != c


def test_parallel_generation_gives_the_same_bytes(tiny_model) -> None:  # type: ignore[no-untyped-def]
    """Pieces made by several workers at once are delivered in order: the output is the one-worker output."""

    def outputs(workers: int) -> list[tuple[bytes, int]]:
        server = start_sampler(tiny_model.store_dir, generation_workers=workers, torch_threads=1)
        try:
            with grpc.insecure_channel(server.address) as channel:
                stub = sampling_pb2_grpc.SamplingServiceStub(channel)
                runs = [
                    sample(stub, tiny_model.model_id, 23_456, seed=8, conditions=c)
                    for c in ([], [between("age", "30")])
                ]
                return [(data, messages[-1].summary.rows_generated) for messages, data in runs]
        finally:
            server.stop(1)

    # the same bytes, and the same rows counted as generated (pieces made ahead and not needed are not)
    assert outputs(3) == outputs(1)


def test_output_keeps_types_ranges_categories_and_column_order(stub, tiny_model) -> None:  # type: ignore[no-untyped-def]
    messages, data = sample(stub, tiny_model.model_id, 5000, seed=5)
    header = messages[0].header
    frame = pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""])
    assert list(frame.columns) == list(header.column_names)
    assert list(header.column_names)[:3] == ["age", "workclass", "fnlwgt"]  # upload order
    schema = {c.name: c for c in header.schema.columns}
    for name in ("age", "hours_per_week", "capital_gain"):
        values = frame[name].dropna()
        assert (values == values.round()).all(), f"{name} must stay integer"
        assert values.min() >= schema[name].minimum and values.max() <= schema[name].maximum
    for name in ("workclass", "sex", "income", "race"):
        assert set(frame[name].dropna()) <= set(schema[name].categories)
    # '?' was missing in the real data and the model reproduces missing values.
    assert frame["workclass"].isna().any() or frame["occupation"].isna().any()


def test_arrow_output_matches_csv(stub, tiny_model) -> None:  # type: ignore[no-untyped-def]
    _, csv_bytes = sample(stub, tiny_model.model_id, 1500, seed=9, chunk_rows=400)
    _, arrow_bytes = sample(
        stub, tiny_model.model_id, 1500, seed=9, chunk_rows=400, format=sampling_pb2.OUTPUT_FORMAT_ARROW_IPC
    )
    table = pa.ipc.open_stream(arrow_bytes).read_all()
    from_csv = pd.read_csv(io.BytesIO(csv_bytes))
    assert table.num_rows == 1500
    assert table.schema.field("age").type == pa.int64()
    assert table.column("age").to_pylist() == from_csv["age"].tolist()
    assert table.column("sex").to_pylist() == from_csv["sex"].tolist()


def test_every_row_satisfies_the_conditions(stub, tiny_model) -> None:  # type: ignore[no-untyped-def]
    conditions = [
        eq("sex", "Female"),
        between("age", "30", "40"),
        sampling_pb2.Condition(column="race", in_set=sampling_pb2.ValueSet(values=["White", "Black"])),
    ]
    messages, data = sample(stub, tiny_model.model_id, 800, seed=1, conditions=conditions)
    frame = pd.read_csv(io.BytesIO(data))
    assert len(frame) == 800
    assert (frame["sex"] == "Female").all()
    assert frame["age"].between(30, 40).all()
    assert frame["race"].isin(["White", "Black"]).all()
    summary = messages[-1].summary
    assert summary.rows_generated >= 800 and 0 < summary.acceptance_rate <= 1


def test_too_rare_conditions_fail_with_the_rate_and_budget(tiny_model) -> None:  # type: ignore[no-untyped-def]
    server = start_sampler(tiny_model.store_dir, condition_budget_factor=1, condition_budget_floor=0)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = sampling_pb2_grpc.SamplingServiceStub(channel)
            err = error_of(
                sample,
                stub,
                tiny_model.model_id,
                5000,
                seed=1,
                conditions=[eq("sex", "Female"), between("age", "80", "90")],
            )
    finally:
        server.stop(1)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "generated rows met them" in err.details() and "budget" in err.details()


def rows_generated(server) -> float:  # type: ignore[no-untyped-def]
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("synth_sampler_rows_generated_total "):
                return float(line.split()[1])
    return 0.0


def test_cancel_stops_generation_on_the_server(sampler, stub, tiny_model) -> None:  # type: ignore[no-untyped-def]
    before = rows_generated(sampler)
    call = stub.SampleRows(
        sampling_pb2.SampleRowsRequest(model_id=tiny_model.model_id, row_count=10_000_000, seed=1, chunk_rows=5000)
    )
    for index, _ in enumerate(call):
        if index == 3:
            break
    call.cancel()
    time.sleep(1.5)
    after_cancel = rows_generated(sampler)
    time.sleep(1.5)
    assert rows_generated(sampler) == after_cancel, "generation must stop when the client cancels"
    assert before < after_cancel < before + 1_000_000


@pytest.mark.parametrize(
    ("kwargs", "code", "mentions"),
    [
        ({"model_id": "mdl-0123456789abcdef", "row_count": 10}, "NOT_FOUND", "not found"),
        ({"model_id": "../etc", "row_count": 10}, "INVALID_ARGUMENT", "not a valid id"),
        ({"row_count": 0}, "INVALID_ARGUMENT", "row_count"),
        ({"row_count": -5}, "INVALID_ARGUMENT", "row_count"),
        ({"row_count": 30_000_000}, "RESOURCE_EXHAUSTED", "at most"),
        ({"row_count": 10, "conditions": [eq("nope", "x")]}, "INVALID_ARGUMENT", "'nope'"),
        ({"row_count": 10, "conditions": [eq("sex", "Martian")]}, "INVALID_ARGUMENT", "'Martian'"),
        ({"row_count": 10, "conditions": [between("age", "200")]}, "INVALID_ARGUMENT", "training data spans"),
        ({"row_count": 10, "conditions": [between("age", "abc")]}, "INVALID_ARGUMENT", "not a number"),
        ({"row_count": 10, "conditions": [between("sex", "1")]}, "INVALID_ARGUMENT", "categorical"),
        ({"row_count": 10, "chunk_rows": -1}, "INVALID_ARGUMENT", "chunk_rows"),
        ({"row_count": 10, "conditions": [compare("age", 0, "hours_per_week")]}, "INVALID_ARGUMENT", "no operator"),
        ({"row_count": 10, "conditions": [compare("age", 1, "height")]}, "INVALID_ARGUMENT", "'height'"),
        ({"row_count": 10, "conditions": [compare("age", 1, "sex")]}, "INVALID_ARGUMENT", "not comparable"),
    ],
)
def test_bad_requests(stub, tiny_model, kwargs, code, mentions) -> None:  # type: ignore[no-untyped-def]
    kwargs.setdefault("model_id", tiny_model.model_id)
    err = error_of(sample, stub, kwargs.pop("model_id"), kwargs.pop("row_count"), **kwargs)
    assert err.code().name == code, err.details()
    assert mentions in err.details()


def test_deleted_model_is_evicted_and_tampered_model_is_data_loss(model_store) -> None:  # type: ignore[no-untyped-def]
    server = start_sampler(model_store.store_dir)
    registry = ModelRegistry(ArtifactStore(model_store.store_dir))
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = sampling_pb2_grpc.SamplingServiceStub(channel)
            sample(stub, model_store.model_id, 10, seed=1)  # loads and caches it
            folder = registry.folder(model_store.model_id)
            weights = max((p for p in folder.iterdir() if p.suffix == ".pt"), key=lambda p: p.stat().st_size)
            blob = bytearray(weights.read_bytes())
            blob[len(blob) // 2] ^= 0xFF
            weights.write_bytes(bytes(blob))
            # Same metadata: the cached copy may serve; a fresh sampler must refuse it.
            fresh = start_sampler(model_store.store_dir)
            try:
                with grpc.insecure_channel(fresh.address) as ch2:
                    err = error_of(sample, sampling_pb2_grpc.SamplingServiceStub(ch2), model_store.model_id, 10)
                assert err.code() == grpc.StatusCode.DATA_LOSS, err.details()
            finally:
                fresh.stop(1)
            registry.delete(model_store.model_id)
            err = error_of(sample, stub, model_store.model_id, 10)
            assert err.code() == grpc.StatusCode.NOT_FOUND
    finally:
        server.stop(1)


def test_concurrent_requests_share_one_load(stub, tiny_model) -> None:  # type: ignore[no-untyped-def]
    results: list[bytes] = []

    def run() -> None:
        results.append(sample(stub, tiny_model.model_id, 500, seed=4)[1])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 4 and len(set(results)) == 1


def test_client_frames_and_files_in_every_format(sampler, tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    from synth_client import SynthClient, SynthError

    with SynthClient(sampler=sampler.address) as client:
        frames = list(client.sample_frames(tiny_model.model_id, 2500, seed=6, chunk_rows=1000))
        assert [len(f) for f in frames] == [1000, 1000, 500]
        assert str(frames[0]["age"].dtype) == "int64" and frames[0]["sex"].isin(["Male", "Female"]).all()
        written = {}
        for suffix in (".csv", ".arrow", ".parquet"):
            path = tmp_path / f"out{suffix}"
            summary = client.sample_to_file(tiny_model.model_id, 1200, path, seed=6, where=["age>=30", "sex=Male"])
            assert summary.row_count == 1200
            written[suffix] = path
        from_csv = pd.read_csv(written[".csv"])
        from_arrow = pa.ipc.open_stream(written[".arrow"].read_bytes()).read_all().to_pandas()
        from_parquet = pq.read_table(written[".parquet"]).to_pandas()
        for frame in (from_csv, from_arrow, from_parquet):
            assert len(frame) == 1200 and (frame["age"] >= 30).all() and (frame["sex"] == "Male").all()
        assert from_csv["age"].tolist() == from_parquet["age"].tolist()
        with pytest.raises(SynthError) as err:
            client.sample_to_file(tiny_model.model_id, 10, tmp_path / "bad.csv", where=["nope=1"])
        assert err.value.code == "INVALID_ARGUMENT"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.arrow", "out.csv", "out.parquet"]


def test_cli_sample_writes_the_asked_rows(sampler, tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    out = tmp_path / "rows.csv"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "synth_client.cli",
            "--sampler",
            sampler.address,
            "sample",
            tiny_model.model_id,
            "-n",
            "3000",
            "-o",
            str(out),
            "--where",
            "age>=25",
            "--where",
            "race in White,Black",
            "--seed",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "wrote 3000 rows" in run.stdout and "rows/s" in run.stdout
    frame = pd.read_csv(out)
    assert len(frame) == 3000 and (frame["age"] >= 25).all() and frame["race"].isin(["White", "Black"]).all()


def test_generation_draws_categories_at_their_real_frequencies(tiny_model) -> None:  # type: ignore[no-untyped-def]
    """Not ctgan's log-frequencies, which flatten marginals at sampling time."""
    import numpy as np

    from services.common.engine.artifact import load_model

    model = load_model(ModelRegistry(ArtifactStore(tiny_model.store_dir)).folder(tiny_model.model_id))
    probs = model._condition_probs
    counts = model.transformer.discrete_category_counts()
    offset = 0
    for count in counts:
        part = probs[offset : offset + len(count)]
        np.testing.assert_allclose(part / part.sum(), count / count.sum(), rtol=1e-9)
        offset += len(count)


def test_column_comparisons_hold_on_every_row_of_a_real_taxi_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """NYC taxi trips: CTGAN learns pick-up and drop-off times separately, so
    unconstrained rows can end before they start. With the comparisons every
    delivered row is a trip that ends after it starts, within one borough, with
    a fare no larger than its total."""
    from services.trainer.app import build_server as build_trainer
    from services.trainer.settings import TrainerSettings
    from synth_client.client import parse_condition

    store = tmp_path / "store"
    lines = (FIXTURE_DATASETS / "nyc_taxis.csv").read_bytes().splitlines(keepends=True)
    trainer = build_trainer(TrainerSettings(port=0, metrics_port=-1, store_dir=store, torch_threads=1)).start()
    trainer.set_serving()
    try:
        with grpc.insecure_channel(trainer.address) as channel:
            dataset = upload_bytes(channel, b"".join(lines[:2001]), name="taxis.csv")
            config = {**TINY_CONFIG, "target_column": ""}
            model_id = train_and_wait(channel, dataset.id, **config)
    finally:
        trainer.stop(1)
    server = start_sampler(store)
    try:
        with grpc.insecure_channel(server.address) as channel:
            taxis = sampling_pb2_grpc.SamplingServiceStub(channel)
            rules = ["dropoff>@pickup", "pickup_borough=@dropoff_borough", "fare<=@total"]
            messages, data = sample(taxis, model_id, 600, seed=4, conditions=[parse_condition(r) for r in rules])
            _, free = sample(taxis, model_id, 600, seed=4)
            bad = error_of(sample, taxis, model_id, 10, conditions=[parse_condition("pickup<@color")])
    finally:
        server.stop(1)
    rows = pd.read_csv(io.BytesIO(data), parse_dates=["pickup", "dropoff"])
    assert len(rows) == 600
    assert (rows["dropoff"] > rows["pickup"]).all()
    assert (rows["pickup_borough"] == rows["dropoff_borough"]).all()
    assert (rows["fare"] <= rows["total"]).all()
    assert messages[-1].summary.acceptance_rate < 1
    unconstrained = pd.read_csv(io.BytesIO(free), parse_dates=["pickup", "dropoff"])
    assert not (unconstrained["dropoff"] > unconstrained["pickup"]).all(), "the model alone breaks the rule"
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "not comparable" in bad.details()
