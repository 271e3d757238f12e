"""Evaluation jobs over real servers (AIP-151, as training jobs): StartEvaluation
returns at once, WatchEvaluation follows (and re-attaches), the stored report
at the end; the same request id gives the same job; cancel; a failed job
carries a google.rpc.Status with its reason; jobs survive an evaluator restart
(queued and running); evaluator replicas over one store run each job once;
the deprecated Evaluate still works on top; HTTP routes and the gRPC
pass-through of the gateway. The evaluator draws from a real sampler serving
the tiny CTGAN model."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from synth.v1 import evaluation_pb2, evaluation_pb2_grpc, training_pb2

from services.evaluator.app import build_server as build_evaluator
from services.evaluator.settings import EvaluatorSettings
from services.sampler.app import build_server as build_sampler
from services.sampler.settings import SamplerSettings
from synth_client import SynthClient, SynthError
from tests.conftest import TinyModel
from tests.integration.test_gateway_fakes import CLOSED_PORT_ADDRESS, start_gateway

E = evaluation_pb2
# Enough rows that an evaluation takes a while (a cancel or a restart lands mid-run).
BIG = 20_000
TERMINAL = ("succeeded", "failed", "cancelled")


class Platform:
    """A sampler and an evaluator on a copy of the tiny model's store, a gateway in front."""

    def __init__(self, store: Path, **evaluator: Any) -> None:
        self.store = store
        self.sampler = build_sampler(SamplerSettings(port=0, metrics_port=-1, store_dir=store)).start()
        self.sampler.set_serving()
        self.evaluator = self.start_evaluator(**evaluator)
        self.gateway = start_gateway(sampler=self.sampler.address, evaluator=self.evaluator.address, metrics_port=-1)

    def start_evaluator(self, **settings: Any) -> Any:
        values = {"port": 0, "metrics_port": -1, "store_dir": self.store, "sampler_address": self.sampler.address}
        server = build_evaluator(EvaluatorSettings(**{**values, **settings})).start()
        server.set_serving()
        return server

    def stop(self) -> None:
        self.gateway.stop(0)
        self.evaluator.stop(0)
        self.sampler.stop(0)


def _copy(tiny_model: TinyModel, folder: Path) -> TinyModel:
    store = folder / "store"
    shutil.copytree(tiny_model.store_dir, store)
    return TinyModel(store, tiny_model.dataset_id, tiny_model.model_id)


@pytest.fixture(scope="module")
def platform(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, TinyModel]]:
    model = _copy(tiny_model, tmp_path_factory.mktemp("evaluation-jobs"))
    running = Platform(model.store_dir, grace_seconds=0)
    yield running, model
    running.stop()


def stub(address: str) -> tuple[grpc.Channel, evaluation_pb2_grpc.EvaluationServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, evaluation_pb2_grpc.EvaluationServiceStub(channel)


def start(address: str, model: TinyModel, **fields: Any) -> E.EvaluationJob:
    asked = {"dataset_id": model.dataset_id, "model_id": model.model_id, "target_column": "income", **fields}
    channel, service = stub(address)
    with channel:
        return service.StartEvaluation(E.StartEvaluationRequest(**asked), timeout=30).job


def watch(address: str, job_id: str, after: int = 0, timeout: float = 600) -> list[E.WatchEvaluationResponse]:
    channel, service = stub(address)
    with channel:
        return list(
            service.WatchEvaluation(E.WatchEvaluationRequest(job_id=job_id, after_sequence=after), timeout=timeout)
        )


def get(address: str, job_id: str) -> E.EvaluationJob:
    channel, service = stub(address)
    with channel:
        return service.GetEvaluationJob(E.GetEvaluationJobRequest(job_id=job_id), timeout=10).job


def kinds(events: list[E.WatchEvaluationResponse]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def wait_for(check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def first_progress(address: str, job_id: str) -> None:
    """Wait until the job reports progress (it is running)."""
    channel, service = stub(address)
    with channel:
        for event in service.WatchEvaluation(E.WatchEvaluationRequest(job_id=job_id), timeout=120):
            if event.WhichOneof("event") in ("progress", *TERMINAL):
                return


def error_info(status: Any) -> error_details_pb2.ErrorInfo:
    for packed in status.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo in {status}")


def test_start_returns_a_queued_job_at_once_then_watch_gives_the_report(platform) -> None:  # type: ignore[no-untyped-def]
    running, model = platform
    address = running.evaluator.address
    job = start(address, model, synthetic_row_count=600)
    assert job.id.startswith("eval-") and job.state == training_pb2.JOB_STATE_QUEUED
    assert job.seed > 0 and job.model_id == model.model_id and job.synthetic_row_count == 600  # the seed is chosen
    events = watch(address, job.id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert kinds(events)[:2] == ["queued", "started"] and kinds(events)[-1] == "succeeded"
    assert events[1].started.attempt == 1
    progress = [e.progress.fraction for e in events if e.WhichOneof("event") == "progress"]
    assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] <= 1
    report_id = events[-1].succeeded.report_id
    done = get(address, job.id)
    assert done.state == training_pb2.JOB_STATE_SUCCEEDED and done.report_id == report_id
    assert done.progress.fraction == 1 and done.attempts == 1 and not done.HasField("error")
    assert done.HasField("start_time") and done.HasField("end_time")
    channel, service = stub(address)
    with channel:
        report = service.GetReport(E.GetReportRequest(report_id=report_id)).report
        listed = service.ListEvaluationJobs(E.ListEvaluationJobsRequest(page_size=100)).jobs
    assert (report.id, report.seed, report.synthetic_rows) == (report_id, job.seed, 600)
    assert job.id in [j.id for j in listed]
    # Re-attaching after any event gives exactly the rest; after the last, nothing.
    assert watch(address, job.id, after=3) == events[3:]
    assert watch(address, job.id, after=len(events)) == []
    registry = running.evaluator.registry
    assert registry.get_sample_value("synth_evaluation_reports_total", {"verdict": report_verdict(report)}) >= 1
    assert registry.get_sample_value("synth_evaluation_running") == 0
    assert registry.get_sample_value("synth_evaluation_waiting") == 0


def report_verdict(report: E.Report) -> str:
    return E.Verdict.Name(report.verdict).removeprefix("VERDICT_").lower()


def test_the_same_request_id_gives_the_same_job(platform) -> None:  # type: ignore[no-untyped-def]
    running, model = platform
    address = running.evaluator.address
    request_id = str(uuid.uuid4())
    first = start(address, model, synthetic_row_count=500, seed=4, request_id=request_id)
    again = start(address, model, synthetic_row_count=500, seed=4, request_id=request_id)
    assert again.id == first.id
    watch(address, first.id)
    after = start(address, model, synthetic_row_count=500, seed=4, request_id=request_id)
    assert after.id == first.id and after.state == training_pb2.JOB_STATE_SUCCEEDED
    with pytest.raises(grpc.RpcError) as err:
        start(address, model, synthetic_row_count=500, seed=5, request_id=request_id)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "different request" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        start(address, model, request_id="not-a-uuid")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "UUID" in err.value.details()
    # Bad requests are refused before a job is made.
    with pytest.raises(grpc.RpcError) as err:
        start(address, model, target_column="salary")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'salary'" in err.value.details()


def test_cancel_a_queued_and_a_running_evaluation(platform) -> None:  # type: ignore[no-untyped-def]
    running, model = platform
    address = running.evaluator.address
    busy = start(address, model, synthetic_row_count=BIG)  # MAX_CONCURRENT is 1: the next one waits
    waiting = start(address, model, synthetic_row_count=500)
    channel, service = stub(address)
    with channel:
        cancelled = service.CancelEvaluationJob(E.CancelEvaluationJobRequest(job_id=waiting.id)).job
        assert cancelled.state == training_pb2.JOB_STATE_CANCELLED  # queued: at once
        first_progress(address, busy.id)
        service.CancelEvaluationJob(E.CancelEvaluationJobRequest(job_id=busy.id))
        events = watch(address, busy.id)
        assert kinds(events)[-1] == "cancelled" and events[-1].cancelled.stage
        assert get(address, busy.id).state == training_pb2.JOB_STATE_CANCELLED
        assert kinds(watch(address, waiting.id)) == ["queued", "cancelled"]
        with pytest.raises(grpc.RpcError) as err:
            service.CancelEvaluationJob(E.CancelEvaluationJobRequest(job_id=busy.id))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "already ended" in err.value.details()
    registry = running.evaluator.registry
    assert registry.get_sample_value("synth_evaluation_failures_total", {"code": "CANCELLED"}) >= 2


def test_a_client_leaving_the_deprecated_evaluate_leaves_the_job_and_a_retry_reattaches(platform) -> None:  # type: ignore[no-untyped-def]
    running, model = platform
    address = running.evaluator.address
    request_id = str(uuid.uuid4())
    asked = E.EvaluateRequest(
        dataset_id=model.dataset_id, model_id=model.model_id, synthetic_row_count=800, seed=9, request_id=request_id
    )
    channel, service = stub(address)
    with channel:
        call = service.Evaluate(asked, timeout=600)
        first = next(call)
        assert first.sequence == 1 and first.WhichOneof("event") == "progress"
        call.cancel()  # the client goes away mid-way
        listed = service.ListEvaluationJobs(E.ListEvaluationJobsRequest()).jobs
        job = next(j for j in listed if j.seed == 9 and j.synthetic_row_count == 800)
        again = list(service.Evaluate(asked, timeout=600))
    assert again[-1].WhichOneof("event") == "report"
    assert [e.sequence for e in again] == list(range(1, len(again) + 1))
    done = get(address, job.id)
    assert done.state == training_pb2.JOB_STATE_SUCCEEDED and done.report_id == again[-1].report.id
    # Once it is done, the same request id gives the stored report alone.
    channel, service = stub(address)
    with channel:
        once_more = list(service.Evaluate(asked, timeout=600))
    assert kinds_of_evaluate(once_more) == ["report"] and once_more[0].report == again[-1].report


def kinds_of_evaluate(events: list[E.EvaluateResponse]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def test_a_failed_job_carries_a_status_with_its_reason(tiny_model: TinyModel, tmp_path: Path) -> None:
    """The sampler cannot be reached when the job runs: the job fails with
    UNAVAILABLE, and its record, its failed event and the client say why."""
    model = _copy(tiny_model, tmp_path)
    server = build_evaluator(
        EvaluatorSettings(port=0, metrics_port=-1, store_dir=model.store_dir, sampler_address=CLOSED_PORT_ADDRESS)
    ).start()
    server.set_serving()
    try:
        job = start(server.address, model, synthetic_row_count=300)
        events = watch(server.address, job.id)
        assert kinds(events)[-1] == "failed"
        status = events[-1].failed.status
        assert status.code == code_pb2.UNAVAILABLE and "could not draw rows" in status.message
        info = error_info(status)
        assert (info.reason, info.domain) == ("SAMPLER_UNAVAILABLE", "synth.v1")
        record = get(server.address, job.id)
        assert record.state == training_pb2.JOB_STATE_FAILED and record.error == status and not record.report_id
        assert server.registry.get_sample_value("synth_evaluation_failures_total", {"code": "UNAVAILABLE"}) == 1
        with SynthClient(evaluator=server.address) as client:
            with pytest.raises(SynthError) as err:
                list(client.evaluate(model.dataset_id, model_id=model.model_id, synthetic_rows=300))
            assert (err.value.code, err.value.reason) == ("UNAVAILABLE", "SAMPLER_UNAVAILABLE")
            shown = SynthError.from_status(client.get_evaluation_job(job.id).error)
            assert shown.reason == "SAMPLER_UNAVAILABLE"
        # The deprecated Evaluate raises the job's error as its status.
        channel, service = stub(server.address)
        with channel, pytest.raises(grpc.RpcError) as failed:
            list(service.Evaluate(E.EvaluateRequest(dataset_id=model.dataset_id, model_id=model.model_id)))
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_queued_and_running_jobs_survive_an_evaluator_restart(tiny_model: TinyModel, tmp_path: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    running = Platform(model.store_dir, grace_seconds=0)
    try:
        address = running.evaluator.address
        interrupted = start(address, model, synthetic_row_count=BIG, seed=21)
        queued = start(address, model, synthetic_row_count=500, seed=22)
        first_progress(address, interrupted.id)
        running.evaluator.stop(0)  # a graceful stop: no time to finish, the running job is released
        jobs_dir = model.store_dir / "evaluations"
        states = {j: json.loads((jobs_dir / j / "job.json").read_text())["state"] for j in (interrupted.id, queued.id)}
        assert states == {interrupted.id: "running", queued.id: "queued"}

        running.evaluator = running.start_evaluator()
        address = running.evaluator.address
        rerun = watch(address, interrupted.id)
        later = watch(address, queued.id)
        assert kinds(rerun)[-1] == "succeeded" and kinds(later)[-1] == "succeeded"
        assert [e.sequence for e in rerun] == list(range(1, len(rerun) + 1)), "one log across both runs"
        assert [e.started.attempt for e in rerun if e.WhichOneof("event") == "started"] == [1, 2]
        assert get(address, interrupted.id).attempts == 2
        channel, service = stub(address)
        with channel:
            report = service.GetReport(E.GetReportRequest(report_id=rerun[-1].succeeded.report_id)).report
        assert (report.seed, report.synthetic_rows) == (21, BIG)
    finally:
        running.stop()


def test_replicas_over_one_store_run_each_job_once_and_cancel_across(tiny_model: TinyModel, tmp_path: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    running = Platform(model.store_dir)
    second = running.start_evaluator()
    replicas = [running.evaluator, second]
    try:
        one, two = (r.address for r in replicas)
        # Both made on one replica; the first keeps a replica busy for a while, so the other takes the second.
        jobs = [start(one, model, synthetic_row_count=rows, seed=31) for rows in (BIG, 3000)]
        for job in jobs:  # each followed on both replicas, whichever runs it
            assert kinds(watch(two, job.id))[-1] == "succeeded"
            assert watch(one, job.id) == watch(two, job.id)
            folder = model.store_dir / "evaluations" / job.id
            assert sorted(p.name for p in folder.glob("run-*")) == ["run-1"], "run once"
        ran = [r.registry.get_sample_value("synth_evaluation_seconds_count") for r in replicas]
        assert sorted(ran) == [1, 1], "the idle replica took the second job"

        # A cancel asked on the replica that does not run the job reaches the one that does.
        job = start(one, model, synthetic_row_count=BIG)
        first_progress(two, job.id)
        wait_for(lambda: any(r.registry.get_sample_value("synth_evaluation_running") == 1 for r in replicas))
        runner = next(r for r in replicas if r.registry.get_sample_value("synth_evaluation_running") == 1)
        other = replicas[1 - replicas.index(runner)]
        channel, service = stub(other.address)
        with channel:
            service.CancelEvaluationJob(E.CancelEvaluationJobRequest(job_id=job.id))
        assert kinds(watch(other.address, job.id))[-1] == "cancelled"
    finally:
        second.stop(0)
        running.stop()


# ---- through the gateway ----------------------------------------------------------------------


def call_http(gateway: Any, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    url = urllib.parse.urlsplit(gateway.http_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=120)
    try:
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json", **(headers or {})} if data else dict(headers or {})
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def sse(body: bytes) -> list[dict[str, Any]]:
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            events.append({"id": fields.get("id"), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_http_routes_start_follow_get_list_and_cancel(platform) -> None:  # type: ignore[no-untyped-def]
    running, model = platform
    gw = running.gateway
    asked = {"dataset_id": model.dataset_id, "model_id": model.model_id, "synthetic_row_count": 400, "seed": 5}
    status, _, body = call_http(gw, "POST", "/v1/evaluations", asked)
    assert status == 200, body
    job = json.loads(body)["job"]
    assert job["id"].startswith("eval-") and job["state"] in ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING")
    status, headers, body = call_http(gw, "GET", f"/v1/evaluations/{job['id']}/events")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse(body)
    assert events[0]["event"] == "queued" and events[-1]["event"] == "succeeded"
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    report_id = events[-1]["data"]["succeeded"]["report_id"]
    # Re-attach with Last-Event-ID: only what came after.
    _, _, body = call_http(gw, "GET", f"/v1/evaluations/{job['id']}/events", headers={"Last-Event-ID": "2"})
    assert [e["id"] for e in sse(body)] == [e["id"] for e in events[2:]]
    status, _, body = call_http(gw, "GET", f"/v1/evaluations/{job['id']}")
    got = json.loads(body)["job"]
    assert status == 200 and got["state"] == "JOB_STATE_SUCCEEDED" and got["report_id"] == report_id
    assert json.loads(call_http(gw, "GET", f"/v1/reports/{report_id}")[2])["report"]["seed"] == 5
    listed = json.loads(call_http(gw, "GET", "/v1/evaluations?page_size=100")[2])["jobs"]
    assert job["id"] in [j["id"] for j in listed]
    status, _, body = call_http(gw, "POST", f"/v1/evaluations/{job['id']}:cancel")
    assert status == 400 and json.loads(body)["error"]["status"] == "FAILED_PRECONDITION"
    status, _, body = call_http(gw, "GET", "/v1/evaluations/eval-0123456789abcdef")
    assert status == 404
    status, _, body = call_http(gw, "POST", "/v1/evaluations", {**asked, "target_column": "salary"})
    error = json.loads(body)["error"]
    assert status == 400 and any(
        v["field"] == "target_column" for d in error["details"] for v in d.get("field_violations", [])
    )


def test_a_failed_event_over_http_carries_the_status_as_json(tiny_model: TinyModel, tmp_path: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    server = build_evaluator(
        EvaluatorSettings(port=0, metrics_port=-1, store_dir=model.store_dir, sampler_address=CLOSED_PORT_ADDRESS)
    ).start()
    server.set_serving()
    gw = start_gateway(evaluator=server.address, metrics_port=-1)
    try:
        asked = {"dataset_id": model.dataset_id, "model_id": model.model_id, "synthetic_row_count": 300}
        job = json.loads(call_http(gw, "POST", "/v1/evaluations", asked)[2])["job"]
        events = sse(call_http(gw, "GET", f"/v1/evaluations/{job['id']}/events")[2])
        failed = events[-1]
        assert failed["event"] == "failed"
        status = failed["data"]["failed"]["status"]
        assert status["code"] == code_pb2.UNAVAILABLE
        info = next(d for d in status["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
        assert info["reason"] == "SAMPLER_UNAVAILABLE"
        got = json.loads(call_http(gw, "GET", f"/v1/evaluations/{job['id']}")[2])["job"]
        assert got["state"] == "JOB_STATE_FAILED" and got["error"]["message"] == status["message"]
    finally:
        gw.stop(0)
        server.stop(0)


def test_the_client_through_the_gateway_starts_follows_and_cancels(platform) -> None:  # type: ignore[no-untyped-def]
    """The new RPCs pass through the gateway's gRPC front door with no change there."""
    running, model = platform
    with SynthClient(running.gateway.address) as client:
        replies = list(client.evaluate(model.dataset_id, model_id=model.model_id, synthetic_rows=400, seed=8))
        assert replies[-1].WhichOneof("event") == "report" and replies[-1].report.seed == 8
        assert all(r.WhichOneof("event") == "progress" for r in replies[:-1]) and len(replies) > 3
        job = client.start_evaluation(model.dataset_id, model_id=model.model_id, synthetic_rows=BIG)
        assert client.get_evaluation_job(job.id).id == job.id
        assert job.id in [j.id for j in client.list_evaluation_jobs()]
        seen: list[str] = []
        stop = threading.Event()

        def follow() -> None:
            for event in client.watch_evaluation(job.id):
                seen.append(event.WhichOneof("event"))
            stop.set()

        follower = threading.Thread(target=follow)
        follower.start()
        wait_for(lambda: "progress" in seen or stop.is_set())
        client.cancel_evaluation(job.id)
        follower.join(120)
        assert seen[-1] == "cancelled"
        with pytest.raises(SynthError) as err:
            list(client.watch_evaluation("eval-0123456789abcdef"))
        assert err.value.code == "NOT_FOUND"
