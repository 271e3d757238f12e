"""The shared runtime's plain-Python parts: store, settings, logs, error mapping."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from services.common.errors import DataLoss, FieldViolation, InvalidArgument, NotFound
from services.common.logs import JsonFormatter, log_context
from services.common.server import SignalStop, error_to_status
from services.common.settings import ServerSettings, env_names, from_env
from services.common.store import ArtifactStore, read_json, write_json_atomic
from services.trainer.settings import ENV_PREFIX, TrainerSettings


@pytest.mark.parametrize("bad", ["../x", "ds-../../etc", "/etc/passwd", "ds-0123", "DS-0123456789ABCDEF", ""])
def test_store_ids_cannot_escape(tmp_path, bad) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path)
    with pytest.raises(InvalidArgument):
        store.path("datasets", bad)


def test_store_refuses_an_id_of_another_kind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path)
    with pytest.raises(InvalidArgument, match="not a dataset id"):
        store.path("datasets", store.new_id("models"))


def test_store_commit_is_atomic_and_staging_is_cleaned(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path, owner="t")
    item = store.new_id("datasets")
    with pytest.raises(RuntimeError):
        with store.staging() as staged:
            (staged / "data.csv").write_text("a,b\n")
            raise RuntimeError("crash before commit")
    assert not store.exists("datasets", item)
    assert list((tmp_path / ".staging" / "t").iterdir()) == []
    with store.staging() as staged:
        (staged / "data.csv").write_text("a,b\n")
        store.commit(staged, "datasets", item)
    assert (store.existing("datasets", item) / "data.csv").read_text() == "a,b\n"
    assert store.list_ids("datasets") == [item]
    store.delete("datasets", item)
    with pytest.raises(NotFound):
        store.existing("datasets", item)


def _commit_job(store: ArtifactStore) -> str:
    import time

    item = store.new_id("jobs")
    with store.staging() as staged:
        write_json_atomic(staged / "job.json", {"state": "queued"})
        store.commit(staged, "jobs", item)
    time.sleep(0.02)  # distinct creation times even on coarse-clock filesystems
    return item


def test_listings_follow_creation_not_the_last_rewrite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A job's record is rewritten at every epoch, which moves its folder's
    mtime; the order (and the pages) must not move with it."""
    store = ArtifactStore(tmp_path)
    first, second = _commit_job(store), _commit_job(store)
    write_json_atomic(store.existing("jobs", first) / "job.json", {"state": "running"})
    assert store.list_ids("jobs") == [first, second]
    page, token = store.page("jobs", 1)
    assert page == [second] and token
    assert store.page("jobs", 1, token) == ([first], "")


def test_pages_do_not_shift_when_items_come_and_go(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path)
    ids = [_commit_job(store) for _ in range(4)]
    page, token = store.page("jobs", 2)
    assert page == [ids[3], ids[2]]
    newer = _commit_job(store)  # added before the next page is asked for
    store.delete("jobs", ids[2])  # and one already seen deleted
    assert store.page("jobs", 2, token) == ([ids[1], ids[0]], "")
    assert store.page("jobs")[0] == [newer, ids[3], ids[1], ids[0]]
    for bad in ["garbage!", "e30", "eyJ2IjoxfQ"]:
        with pytest.raises(InvalidArgument, match="page_token is not valid"):
            store.page("jobs", 2, bad)
    with pytest.raises(InvalidArgument, match="page_size"):
        store.page("jobs", -1)


def test_items_from_before_the_marker_get_one_at_start_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path)
    old, new = _commit_job(store), _commit_job(store)
    (store.path("jobs", old) / ".created").unlink()  # as committed before the marker existed
    os.utime(store.path("jobs", old), ns=(1, 1))
    store.sweep()
    write_json_atomic(store.existing("jobs", old) / "job.json", {"state": "running"})  # moves its folder's mtime
    assert store.list_ids("jobs") == [old, new]


def _commit_keyed(root: str, owner: str, request_id: str, barrier) -> bool:  # type: ignore[no-untyped-def]
    from services.common.store import request_key

    store = ArtifactStore(Path(root), owner=owner)
    key = request_key(request_id, "same request")
    with store.staging() as staged:
        (staged / "report.json").write_text(owner)
        barrier.wait()
        return store.commit_once(staged, "reports", store.new_id("reports", key), key)


def test_one_request_id_commits_once_across_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Services sharing a store (evaluator replicas) race on the rename of the
    one folder the key names: exactly one commits, the others find it."""
    import multiprocessing
    import uuid

    from services.common.store import request_key

    request_id = str(uuid.uuid4())
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            won = pool.starmap(_commit_keyed, [(str(tmp_path), f"p{i}", request_id, barrier) for i in range(4)])
    assert sorted(won) == [False, False, False, True]
    store = ArtifactStore(tmp_path)
    (item,) = store.list_ids("reports")
    assert store.find_request("reports", request_key(request_id, "same request")) == item
    assert not list((tmp_path / ".staging").rglob("*.json")), "the losers' staging is removed"
    with pytest.raises(InvalidArgument, match="different request"):
        store.find_request("reports", request_key(request_id, "another request"))


def test_sweep_removes_only_its_own_debris(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = ArtifactStore(tmp_path, owner="a"), ArtifactStore(tmp_path, owner="b")
    (tmp_path / ".staging" / "a" / "left").mkdir()
    (tmp_path / ".staging" / "b" / "busy").mkdir()
    assert mine.sweep() == 1
    assert (tmp_path / ".staging" / "b" / "busy").exists()
    assert theirs.sweep() == 1


def test_write_json_atomic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "meta.json"
    write_json_atomic(target, {"b": 1, "a": [1, 2]})
    assert read_json(target) == {"a": [1, 2], "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_settings_from_env_types_and_unknown_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {
        "SYNTH_TRAINER_PORT": "6000",
        "SYNTH_TRAINER_STORE_DIR": str(tmp_path),
        "SYNTH_TRAINER_GRACE_SECONDS": "2.5",
        "OTHER": "x",
    }
    settings = from_env(TrainerSettings, ENV_PREFIX, env)
    assert (settings.port, settings.store_dir, settings.grace_seconds) == (6000, tmp_path, 2.5)
    assert settings.max_upload_bytes == 100 * 1024 * 1024
    with pytest.raises(InvalidArgument, match="SYNTH_TRAINER_PROT"):
        from_env(TrainerSettings, ENV_PREFIX, {"SYNTH_TRAINER_PROT": "1"})
    with pytest.raises(InvalidArgument, match="not a valid int"):
        from_env(TrainerSettings, ENV_PREFIX, {"SYNTH_TRAINER_PORT": "many"})
    assert "SYNTH_TRAINER_MAX_UPLOAD_BYTES" in env_names(TrainerSettings, ENV_PREFIX)
    assert ServerSettings().host == "127.0.0.1"
    assert from_env(TrainerSettings, ENV_PREFIX, {"SYNTH_TRAINER_MAX_STREAMS": "200"}).max_streams == 200
    with pytest.raises(InvalidArgument, match="MAX_STREAMS must be at least 1"):
        from_env(TrainerSettings, ENV_PREFIX, {"SYNTH_TRAINER_MAX_STREAMS": "0"})


def test_json_logs_carry_context_ids_and_extras() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("trainer"))
    logger = logging.getLogger("test.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    with log_context(request_id="r1", dataset_id="ds-1"):
        logger.info("stored", extra={"rows": 12})
    logger.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["service"] == "trainer" and first["message"] == "stored"
    assert (first["request_id"], first["dataset_id"], first["rows"]) == ("r1", "ds-1", 12)
    assert "request_id" not in second


def test_error_mapping_has_code_reason_and_field_violations() -> None:
    err = InvalidArgument(
        "row 3 is ragged", reason="RAGGED_ROW", violations=[FieldViolation("rows[3]", "3 fields, expected 2")]
    )
    status = error_to_status(err)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "row 3 is ragged"
    detail = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    detail.details[0].Unpack(info)
    detail.details[1].Unpack(bad)
    assert info.reason == "RAGGED_ROW"
    assert bad.field_violations[0].field == "rows[3]"
    assert error_to_status(DataLoss("bad checksum")).code == grpc.StatusCode.DATA_LOSS


@pytest.fixture
def restore_signal_handlers():  # type: ignore[no-untyped-def]
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_signal_stop_keeps_a_signal_that_came_before_the_wait(restore_signal_handlers) -> None:  # type: ignore[no-untyped-def]
    stop = SignalStop()
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs now, before wait(): nothing is lost
    assert stop.wait() == "SIGTERM"


def test_signal_stop_handler_never_blocks(restore_signal_handlers) -> None:  # type: ignore[no-untyped-def]
    """The handler writes to a non-blocking pipe; a storm of signals fills it and
    the handler still returns (it must never block the main thread it runs on)."""
    stop = SignalStop()
    for _ in range(100_000):  # far more than a pipe buffer holds
        stop._handle(signal.SIGINT, None)
    assert stop.wait() == "SIGINT"


_WAIT_IN_A_LOOP = """
import logging, sys
from services.common.server import SignalStop
logging.disable(logging.CRITICAL)
stop = SignalStop()
print("ready", flush=True)
while True:
    stop.wait()
    print(".", end="", flush=True)
"""


def test_a_storm_of_sigterms_never_wedges_the_wait() -> None:
    """The CI hang: ``Event.set`` in the handler deadlocked against the main
    thread's ``Event.wait`` holding the event's lock (the old code stuck within
    about a second of this storm here). The pipe keeps waking the loop."""
    import subprocess
    import sys
    import time

    child = subprocess.Popen(
        [sys.executable, "-c", _WAIT_IN_A_LOOP], stdout=subprocess.PIPE, cwd=os.getcwd(), env={**os.environ}
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        os.set_blocking(child.stdout.fileno(), False)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            for _ in range(500):
                os.kill(child.pid, signal.SIGTERM)
            time.sleep(0.02)
            child.stdout.read()  # drain, so the child never blocks on a full pipe
        time.sleep(0.2)
        child.stdout.read()
        os.kill(child.pid, signal.SIGTERM)  # after the storm, one more signal still wakes it
        woke = b""
        until = time.monotonic() + 10
        while not woke and time.monotonic() < until:
            time.sleep(0.05)
            woke = child.stdout.read() or b""
        assert woke, "the wait loop stopped waking on signals"
    finally:
        child.kill()
        child.wait()


def test_synth_up_passes_the_callers_service_settings_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """`synth up` used to drop SYNTH_GATEWAY_API_KEY_FILE: keys could not be turned on locally."""
    from synth_client.local import LocalPlatform

    monkeypatch.setenv("SYNTH_GATEWAY_API_KEY_FILE", "/etc/synth/keys")
    monkeypatch.setenv("SYNTH_GATEWAY_PORT", "1")  # the platform owns the ports: its own wins
    platform = LocalPlatform("var-test", ports="free")
    gateway = next(s for s in platform.specs if s.name == "gateway")
    env = platform.env_for(gateway)
    assert env["SYNTH_GATEWAY_API_KEY_FILE"] == "/etc/synth/keys"
    assert env["SYNTH_GATEWAY_PORT"] == str(gateway.port) != "1"
    trainer = platform.env_for(next(s for s in platform.specs if s.name == "trainer"))
    assert trainer["SYNTH_GATEWAY_API_KEY_FILE"] == "/etc/synth/keys"  # harmless: other prefixes are ignored


def test_derived_ids_are_keyed_with_the_stores_secret(tmp_path: Path) -> None:
    """A caller knew a dataset's id in advance (sha256 of "datasets:" + its request id)."""
    import hashlib

    from services.common.store import ArtifactStore, request_key

    key = request_key("0b4c8e3a-3f55-4a55-9d6c-0d8a1c3e5f70", "digest")
    first, second = ArtifactStore(tmp_path / "a", owner="trainer"), ArtifactStore(tmp_path / "a", owner="evaluator")
    assert first.new_id("datasets", key) == second.new_id("datasets", key)  # every service sharing the store agrees
    assert first.new_id("datasets", key) != ArtifactStore(tmp_path / "b").new_id("datasets", key)
    guess = "ds-" + hashlib.sha256(f"datasets:{key.request_id}".encode()).hexdigest()[:16]
    assert first.new_id("datasets", key) != guess
    assert (tmp_path / "a" / ".id-key").read_text() == (tmp_path / "a" / ".id-key").read_text().strip()
