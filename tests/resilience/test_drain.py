"""A stopping gateway lets the streams in flight finish before it closes its backend channels.

Before, SIGTERM closed the channels at once: in-flight streams were cut after
half a second ("Channel closed!")."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse

import grpc
from synth.v1 import training_pb2, training_pb2_grpc

from tests.integration.test_gateway_fakes import start_fake_backend, start_gateway

EPOCHS, DELAY = 12, 0.15  # a watch stream of about 2 s


def test_streams_in_flight_finish_when_the_gateway_stops() -> None:
    slow = start_fake_backend(epochs=EPOCHS, delay=DELAY)
    gw = start_gateway(trainer=slow.address)
    grpc_events: list[str] = []
    http_body: list[bytes] = []
    errors: list[BaseException] = []
    both_started = threading.Barrier(3)

    def watch_over_grpc() -> None:
        try:
            with grpc.insecure_channel(gw.address) as channel:
                stub = training_pb2_grpc.TrainingServiceStub(channel)
                request = training_pb2.WatchTrainingRequest(job_id="job-0123456789abcdef")
                for index, event in enumerate(stub.WatchTraining(request, timeout=30)):
                    grpc_events.append(event.WhichOneof("event"))
                    if index == 0:
                        both_started.wait(10)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def watch_over_http() -> None:
        try:
            url = urllib.parse.urlsplit(gw.http_url)
            conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
            conn.request("GET", "/v1/jobs/job-0123456789abcdef/events")
            response = conn.getresponse()
            http_body.append(response.read1(4096))
            both_started.wait(10)
            http_body.append(response.read())
            conn.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (watch_over_grpc, watch_over_http)]
    for thread in threads:
        thread.start()
    both_started.wait(10)  # both streams are open and have their first event
    began = time.monotonic()
    gw.stop(grace=10)  # what SIGTERM does
    stopped_in = time.monotonic() - began
    for thread in threads:
        thread.join(15)
    slow.stop()
    assert not errors, errors
    assert grpc_events[-1] == "succeeded" and grpc_events.count("epoch") == EPOCHS
    body = b"".join(http_body)
    assert body.count(b"event: epoch") == EPOCHS and b"event: succeeded" in body
    assert stopped_in < 10, "the stop waited for the streams, not for the whole grace period"
