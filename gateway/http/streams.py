"""Server streams over HTTP: a job's events (training and evaluation jobs
alike, and the deprecated Evaluate's progress) as server-sent events, all
through one relay, and sampled rows as a chunked download.

A stream's first message is awaited before the answer starts, so a call that
fails at once (a job that does not exist) is an ordinary HTTP error. After
that an event stream ends with an ``error`` event, and a download ends
without its last chunk: a cut download never looks complete. Quiet event
streams get a comment line every ``HEARTBEAT_SECONDS``. A client that goes
away cancels the handler, and with it the backend call."""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message
from synth.v1 import sampling_pb2

from gateway.codes import HttpError
from gateway.http.context import END, ServerStream, context, open_stream
from gateway.http.convert import message_to_json, request_message
from gateway.http.frontdoor import STARTED, json_response
from gateway.proxy import backend_error
from gateway.routes import Route

log = logging.getLogger("gateway.http")

HEARTBEAT_SECONDS = 15.0
# How long an event stream waits for its first event before starting the answer anyway.
_FIRST_EVENT_SECONDS = 2.0
# The terminal events of every job (the cases of WatchTrainingResponse's and WatchEvaluationResponse's oneof).
_JOB_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


async def watch(request: web.Request, route: Route, params: dict[str, str]) -> web.StreamResponse:
    """A job's Watch* call (WatchTraining, WatchEvaluation) as SSE, resumable
    with ``Last-Event-ID``; ends after the terminal event."""
    message = await request_message(request, route, params)
    last_id = (request.headers.get("Last-Event-ID") or "").strip()
    if last_id.isdigit() and int(last_id) > message.after_sequence:
        message.after_sequence = int(last_id)
    return await _relay_events(request, route, message, terminal=_JOB_TERMINAL)


async def evaluate(request: web.Request, route: Route, params: dict[str, str]) -> web.StreamResponse:
    """The deprecated Evaluate: progress and report as SSE (``Accept:
    text/event-stream``), or the final report."""
    message = await request_message(request, route, params)
    if "text/event-stream" in (request.headers.get("Accept") or ""):
        return await _relay_events(request, route, message, terminal=frozenset())
    stream = open_stream(request, route, message)
    try:
        final = None
        while (item := await _next(request, route, stream, None)) is not END:
            final = item
    finally:
        stream.cancel()
    if final is None:
        raise HttpError("INTERNAL", "the evaluator ended without a report")
    return json_response(200, message_to_json(final))


async def _next(request: web.Request, route: Route, stream: ServerStream, timeout: float | None) -> Any:
    """The stream's next item, a failure as the HTTP error it maps to."""
    try:
        return await stream.next(timeout)
    except grpc.aio.AioRpcError as err:
        raise context(request).rpc_error(request, route, err) from None


async def _relay_events(
    request: web.Request, route: Route, message: Message, terminal: frozenset[str]
) -> web.StreamResponse:
    stream = open_stream(request, route, message)
    try:
        item = await _next(request, route, stream, _FIRST_EVENT_SECONDS)
        response = await _start(
            request, web.StreamResponse(headers={"Cache-Control": "no-store"}), "text/event-stream; charset=utf-8"
        )
        while item is not END:
            if item is None:
                await response.write(b": keep-alive\n\n")
            else:
                event = item.WhichOneof("event") or "unknown"
                await response.write(_event(event, message_to_json(item), item.sequence))
                if event in terminal:
                    break
            try:
                item = await stream.next(HEARTBEAT_SECONDS)
            except grpc.aio.AioRpcError as err:
                await response.write(_event("error", context(request).rpc_error(request, route, err).body()))
                break
        await response.write_eof()
        return response
    finally:
        stream.cancel()


async def download(request: web.Request, route: Route, params: dict[str, str]) -> web.StreamResponse:
    """SampleRows as a chunked CSV or Arrow download; a failure mid-way leaves it unterminated."""
    message = await request_message(request, route, params)
    stream = open_stream(request, route, message)
    try:
        first = await _next(request, route, stream, None)
        if first is END:
            raise HttpError("INTERNAL", "the sampler ended the stream without a header")
        header = first.header if first.WhichOneof("part") == "header" else None
        arrow = header is not None and header.format == sampling_pb2.OUTPUT_FORMAT_ARROW_IPC
        model = params.get("model_id", "model")
        response = web.StreamResponse(
            headers={
                "Content-Disposition": f'attachment; filename="{model}.{"arrows" if arrow else "csv"}"',
                "Cache-Control": "no-store",
            }
        )
        if header is not None:
            response.headers["X-Synth-Seed"] = str(header.seed)
            response.headers["X-Synth-Row-Count"] = str(header.row_count)
        await _start(request, response, "application/vnd.apache.arrow.stream" if arrow else "text/csv; charset=utf-8")
        item = first
        while item is not END:
            if item.WhichOneof("part") == "chunk":
                await response.write(item.chunk.data)
            try:
                item = await stream.next(None)
            except grpc.aio.AioRpcError as err:
                code, _, _ = backend_error(err, context(request).backends.describe(route.method.backend))
                log.warning("sample stream failed mid-way", extra={"grpc_code": code.name})
                # No last chunk: the client sees a failed transfer, not a short file.
                if request.transport is not None:
                    request.transport.close()
                return response
        await response.write_eof()
        return response
    finally:
        stream.cancel()


async def _start(request: web.Request, response: web.StreamResponse, content_type: str) -> web.StreamResponse:
    response.content_type = content_type.split(";", 1)[0]
    if "charset=" in content_type:
        response.charset = content_type.rsplit("charset=", 1)[1]
    response.enable_chunked_encoding()
    request[STARTED] = response
    await response.prepare(request)
    return response


def _event(event: str, data: Any, event_id: int | None = None) -> bytes:
    text = f"id: {event_id}\n" if event_id is not None else ""
    text += f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
    return text.encode()
