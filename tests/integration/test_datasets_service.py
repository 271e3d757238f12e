"""DatasetService over a real gRPC server: uploads of real data, every bad
input with its status code and message, and nothing half-stored."""

from __future__ import annotations

import gzip
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from synth.v1 import common_pb2, datasets_pb2, datasets_pb2_grpc

from tests.integration.conftest import DATASETS, stored_items

# Every plain CSV; the 75 MB (inflated) scale set has its own test with a bigger limit.
ALL_CSVS = sorted(DATASETS.glob("*.csv")) + sorted(DATASETS.glob("*/*.csv"))


def upload(channel, data: bytes, *, chunk: int = 256 * 1024, **header):  # type: ignore[no-untyped-def]
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)
    header.setdefault("display_name", "t.csv")

    def messages():  # type: ignore[no-untyped-def]
        yield datasets_pb2.UploadDatasetRequest(header=datasets_pb2.UploadDatasetHeader(**header))
        for start in range(0, len(data), chunk):
            yield datasets_pb2.UploadDatasetRequest(chunk=data[start : start + chunk])

    return stub.UploadDataset(messages(), timeout=120).dataset


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


def violations(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)
    fields = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


def kinds(dataset) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        c.name: common_pb2.ColumnKind.Name(c.kind).removeprefix("COLUMN_KIND_").lower() for c in dataset.schema.columns
    }


@pytest.mark.parametrize("path", [p for p in ALL_CSVS if p.stat().st_size < 5 * 1024 * 1024], ids=lambda p: p.name)
def test_upload_every_shared_csv(channel, path: Path) -> None:  # type: ignore[no-untyped-def]
    data = path.read_bytes()
    dataset = upload(channel, data, display_name=path.name)
    assert dataset.id.startswith("ds-")
    assert dataset.row_count > 0 and dataset.column_count >= 2
    assert dataset.fingerprint.startswith("sha256:")
    got = (
        datasets_pb2_grpc.DatasetServiceStub(channel)
        .GetDataset(datasets_pb2.GetDatasetRequest(dataset_id=dataset.id))
        .dataset
    )
    assert got == dataset


def test_upload_the_large_gzip_scale_set_with_a_bigger_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.trainer.app import build_server
    from services.trainer.settings import TrainerSettings

    server = build_server(TrainerSettings(port=0, metrics_port=0, store_dir=tmp_path / "s")).start()
    server.set_serving()
    try:
        with grpc.insecure_channel(server.address) as ch:
            dataset = upload(ch, (DATASETS / "kddcup99_10pct.csv.gz").read_bytes(), chunk=1 << 20)
        assert (dataset.row_count, dataset.column_count) == (494_021, 42)
    finally:
        server.stop(1)


def test_adult_kinds_and_missing_markers(channel) -> None:  # type: ignore[no-untyped-def]
    dataset = upload(channel, (DATASETS / "adult.csv").read_bytes())
    assert (dataset.row_count, dataset.column_count) == (32_561, 15)
    k = kinds(dataset)
    for col in ("age", "hours_per_week"):
        assert k[col] == "continuous"
    for col in ("workclass", "education", "sex", "income"):
        assert k[col] == "categorical"
    missing = {c.name: c.missing_count for c in dataset.schema.columns}
    assert missing["workclass"] == 1836
    assert missing["occupation"] == 1843
    assert missing["native_country"] == 583
    age = next(c for c in dataset.schema.columns if c.name == "age")
    assert age.integer and (age.minimum, age.maximum) == (17, 90)


def test_list_preview_delete(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)
    body = b"a,b\n" + b"".join(f"{i},{'x' if i % 2 else 'NA'}\n".encode() for i in range(20))
    ids = [upload(channel, body, display_name=f"t{i}.csv").id for i in range(3)]
    page = stub.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=2))
    assert len(page.datasets) == 2 and page.next_page_token
    rest = stub.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=2, page_token=page.next_page_token))
    assert {d.id for d in [*page.datasets, *rest.datasets]} == set(ids)
    assert not rest.next_page_token

    preview = stub.PreviewDataset(datasets_pb2.PreviewDatasetRequest(dataset_id=ids[0], row_count=3))
    assert list(preview.column_names) == ["a", "b"]
    assert [list(r.values) for r in preview.rows] == [["0", ""], ["1", "x"], ["2", ""]]
    assert [list(r.missing) for r in preview.rows][0] == [False, True]

    stub.DeleteDataset(datasets_pb2.DeleteDatasetRequest(dataset_id=ids[0]))
    err = rpc_error(stub.GetDataset, datasets_pb2.GetDatasetRequest(dataset_id=ids[0]))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert sorted(stored_items(store_dir)) == sorted(ids[1:])


GOOD_ROWS = "".join(f"{i},{i % 3}\n" for i in range(30))


@pytest.mark.parametrize(
    ("name", "body", "header", "code", "mentions"),
    [
        ("not utf-8", ("a,b\n" + GOOD_ROWS).encode() + b"1,caf\xe9\n", {}, "INVALID_ARGUMENT", "line 32"),
        (
            "unknown encoding",
            ("a,b\n" + GOOD_ROWS).encode(),
            {"encoding": "klingon-8"},
            "INVALID_ARGUMENT",
            "klingon",
        ),
        ("blank header name", (",b\n" + GOOD_ROWS).encode(), {}, "INVALID_ARGUMENT", "column 1"),
        ("duplicate header", ("a,a\n" + GOOD_ROWS).encode(), {}, "INVALID_ARGUMENT", "'a'"),
        (
            "ragged row",
            ("a,b\n" + GOOD_ROWS + "7,8,9\n" + GOOD_ROWS).encode(),
            {},
            "INVALID_ARGUMENT",
            "line 32",
        ),
        ("empty file", b"", {}, "INVALID_ARGUMENT", "empty"),
        ("header only", b"a,b\n", {}, "INVALID_ARGUMENT", "no data rows"),
        ("too few rows", b"a,b\n1,2\n3,4\n", {}, "INVALID_ARGUMENT", "too few rows"),
        (
            "single column",
            ("a\n" + "".join(f"{i}\n" for i in range(30))).encode(),
            {},
            "INVALID_ARGUMENT",
            "two columns",
        ),
        (
            "all-empty column",
            ("a,b,c\n" + "".join(f"{i},{i},\n" for i in range(30))).encode(),
            {},
            "INVALID_ARGUMENT",
            "'c'",
        ),
        (
            "override unknown column",
            ("a,b\n" + GOOD_ROWS).encode(),
            {"kind_overrides": {"zz": common_pb2.COLUMN_KIND_CATEGORICAL}},
            "INVALID_ARGUMENT",
            "zz",
        ),
        (
            "override to impossible kind",
            ("a,b\n" + GOOD_ROWS.replace("5,2", "5,two")).encode(),
            {"kind_overrides": {"b": common_pb2.COLUMN_KIND_CONTINUOUS}},
            "INVALID_ARGUMENT",
            "two",
        ),
        (
            "unspecified override kind",
            ("a,b\n" + GOOD_ROWS).encode(),
            {"kind_overrides": {"a": common_pb2.COLUMN_KIND_UNSPECIFIED}},
            "INVALID_ARGUMENT",
            "kind",
        ),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(channel, store_dir, name, body, header, code, mentions) -> None:  # type: ignore[no-untyped-def]
    err = rpc_error(upload, channel, body, **header)
    assert err.code().name == code, err.details()
    assert mentions in err.details(), err.details()
    assert stored_items(store_dir) == []


def test_size_limit_is_enforced_while_streaming(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    body = b"a,b\n" + b"1,2\n" * (2 * 1024 * 1024)  # 8 MB against the fixture's 5 MB limit
    err = rpc_error(upload, channel, body, chunk=1 << 20)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "MB" in err.details()
    assert stored_items(store_dir) == []


def test_gzip_bomb_is_limited_on_decompressed_size(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    body = gzip.compress(b"a,b\n" + b"1,2\n" * (2 * 1024 * 1024))  # small compressed, 8 MB inflated
    assert len(body) < 1024 * 1024
    err = rpc_error(upload, channel, body)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stored_items(store_dir) == []


def test_first_message_must_be_a_header(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)
    err = rpc_error(stub.UploadDataset, iter([datasets_pb2.UploadDatasetRequest(chunk=b"a,b\n")]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "header" in violations(err)


def test_interrupted_upload_leaves_nothing(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    import threading

    stub = datasets_pb2_grpc.DatasetServiceStub(channel)
    sent = threading.Event()

    def messages():  # type: ignore[no-untyped-def]
        yield datasets_pb2.UploadDatasetRequest(header=datasets_pb2.UploadDatasetHeader(display_name="x"))
        yield datasets_pb2.UploadDatasetRequest(chunk=b"a,b\n" + b"1,2\n" * 1000)
        sent.set()
        threading.Event().wait(30)  # never finishes on its own

    future = stub.UploadDataset.future(messages())
    assert sent.wait(10)
    future.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    import time

    deadline = time.monotonic() + 10
    while stored_items(store_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored_items(store_dir) == []


@pytest.mark.parametrize(
    ("rpc", "request_", "code"),
    [
        ("GetDataset", datasets_pb2.GetDatasetRequest(dataset_id="ds-0123456789abcdef"), "NOT_FOUND"),
        ("DeleteDataset", datasets_pb2.DeleteDatasetRequest(dataset_id="ds-0123456789abcdef"), "NOT_FOUND"),
        ("PreviewDataset", datasets_pb2.PreviewDatasetRequest(dataset_id="ds-0123456789abcdef"), "NOT_FOUND"),
        ("GetDataset", datasets_pb2.GetDatasetRequest(dataset_id="../../etc/passwd"), "INVALID_ARGUMENT"),
        ("ListDatasets", datasets_pb2.ListDatasetsRequest(page_token="garbage!"), "INVALID_ARGUMENT"),
        ("ListDatasets", datasets_pb2.ListDatasetsRequest(page_size=-1), "INVALID_ARGUMENT"),
    ],
)
def test_unknown_and_malformed_ids(channel, rpc, request_, code) -> None:  # type: ignore[no-untyped-def]
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)
    err = rpc_error(getattr(stub, rpc), request_)
    assert err.code().name == code
    assert err.details()


def _stream(channel, data: bytes, *, end: int | None, **header):  # type: ignore[no-untyped-def]
    """An upload whose last message is ``end`` (None: no end message)."""
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)

    def messages():  # type: ignore[no-untyped-def]
        yield datasets_pb2.UploadDatasetRequest(header=datasets_pb2.UploadDatasetHeader(display_name="t.csv", **header))
        yield datasets_pb2.UploadDatasetRequest(chunk=data)
        if end is not None:
            yield datasets_pb2.UploadDatasetRequest(end=datasets_pb2.UploadDatasetEnd(total_bytes=end))

    return stub.UploadDataset(messages(), timeout=60).dataset


def test_an_upload_that_ends_short_of_its_declared_size_is_refused(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    """A cancelled stream can reach the server looking like a finished one; a
    declared size (the end message, or the header's total_bytes) tells them apart."""
    whole = b"a,b\n" + b"1,2\n" * 50
    cut = whole[: len(whole) // 2]  # ends on a line break: a valid, shorter table
    err = rpc_error(_stream, channel, cut, end=len(whole))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert f"ended after {len(cut)} bytes but declared {len(whole)}" in err.details()
    assert violations(err) == ["messages[2].end.total_bytes"]
    # Cut off before its end message, as a cancelled stream is.
    err = rpc_error(_stream, channel, cut, end=None, expect_end=True)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "without its end message" in err.details()
    assert violations(err) == ["end"]
    assert stored_items(store_dir) == []
    assert _stream(channel, whole, end=len(whole), expect_end=True).row_count == 50
    # Older clients: no end message, and total_bytes is only for progress (even when wrong).
    assert _stream(channel, whole, end=None, total_bytes=len(whole) * 3).row_count == 50


def test_nothing_may_follow_the_end_message(channel, store_dir) -> None:  # type: ignore[no-untyped-def]
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)
    data = b"a,b\n" + b"1,2\n" * 20

    def messages():  # type: ignore[no-untyped-def]
        yield datasets_pb2.UploadDatasetRequest(header=datasets_pb2.UploadDatasetHeader(display_name="t.csv"))
        yield datasets_pb2.UploadDatasetRequest(chunk=data)
        yield datasets_pb2.UploadDatasetRequest(end=datasets_pb2.UploadDatasetEnd(total_bytes=len(data)))
        yield datasets_pb2.UploadDatasetRequest(chunk=b"3,4\n")

    err = rpc_error(stub.UploadDataset, messages(), timeout=60)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(err) == ["messages[3]"]
    assert stored_items(store_dir) == []
