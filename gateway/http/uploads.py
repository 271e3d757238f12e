"""Dataset uploads: the file as the raw body (Content-Length or chunked) or as
the part named ``file`` of a ``multipart/form-data`` body, read by aiohttp
and streamed to the trainer's client-streaming UploadDataset as it arrives
(memory stays flat). The trainer stores the table only once it has the end
message, which is sent only after the whole body arrived intact; anything
else (too large, a broken form, the client gone) cancels the call, so nothing
is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf.message import Message
from synth.v1 import datasets_pb2

from gateway.codes import HttpError
from gateway.http.context import context, metadata
from gateway.http.convert import body_read, message_to_json, upload_header
from gateway.http.frontdoor import json_response
from gateway.routes import Route

UPLOAD_CHUNK = 1 << 20  # bytes per gRPC upload message: well under the message limit
_READ_SIZE = 256 * 1024
_MULTIPART_SLACK = 64 * 1024  # boundaries and form fields around the file
_MAX_FIELD_BYTES = 64 * 1024


class _Form:
    """``multipart/form-data`` read with aiohttp's reader: fields until the
    file part, then the file's bytes, then the rest up to the closing
    delimiter. Every way a form can be broken is a 400 BAD_MULTIPART."""

    def __init__(self, request: web.Request, limit: int) -> None:
        self._request = request
        self._limit = limit
        self._reader: MultipartReader | None = None
        self.filename = ""

    def _check_size(self, too_large: HttpError) -> None:
        if self._request.content.total_bytes > self._limit:
            raise too_large

    async def fields_then_file(self, fields: dict[str, list[str]], too_large: HttpError) -> BodyPartReader:
        try:
            reader = MultipartReader(self._request.headers, self._request.content)
        except (KeyError, ValueError, AssertionError) as exc:
            raise _bad_form(f"the multipart/form-data header is unusable ({_why(exc)})") from None
        self._reader = reader
        while True:
            part = await self._guard(reader.next())
            self._check_size(too_large)
            if part is None:
                raise HttpError(
                    "INVALID_ARGUMENT",
                    "no file in the form: send it in a part named 'file' (after the other fields)",
                    reason="BAD_MULTIPART",
                    violations=[{"field": "file", "description": "missing"}],
                )
            if not isinstance(part, BodyPartReader):
                raise _bad_form("a nested multipart part is not a form field or file")
            if part.name == "file" or part.filename:
                self.filename = part.filename or ""
                return part
            value = bytearray()
            while chunk := await self._guard(part.read_chunk(8192)):
                value += chunk
                if len(value) > _MAX_FIELD_BYTES:
                    raise HttpError("INVALID_ARGUMENT", f"form field {part.name!r} is too long", reason="BAD_MULTIPART")
            fields.setdefault(part.name or "", []).append(bytes(value).decode("utf-8", "replace"))
            self._check_size(too_large)

    async def file_chunks(self, part: BodyPartReader, too_large: HttpError) -> AsyncIterator[bytes]:
        """The file's bytes; raises once its part or the form does not end properly."""
        while chunk := await self._guard(part.read_chunk(_READ_SIZE)):
            self._check_size(too_large)
            yield chunk
        if not part.at_eof():
            raise _bad_form("the file part does not end with a boundary")
        # Whatever follows the file up to the closing delimiter (ignored fields).
        assert self._reader is not None
        while (rest := await self._guard(self._reader.next())) is not None:
            await self._guard(rest.release())
            self._check_size(too_large)

    @staticmethod
    async def _guard(step: Any) -> Any:
        """aiohttp's reader reports a broken form as ValueError (or an assertion)."""
        try:
            return await body_read(step)
        except (ValueError, AssertionError, HttpProcessingError) as exc:
            raise _bad_form(_why(exc)) from None


def _bad_form(detail: str) -> HttpError:
    return HttpError("INVALID_ARGUMENT", f"malformed multipart/form-data body: {detail}", reason="BAD_MULTIPART")


# aiohttp's words for a broken form, and ours.
_FORM_ERRORS = (
    ("Could not find starting boundary", "no part starts with the boundary the Content-Type names"),
    ("Reading after EOF", "the body ends before its closing boundary"),
    ("Invalid boundary", "a part is not followed by the boundary"),
    ("did not read all the data", "a part is not followed by the boundary"),
)


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "no boundary parameter"
    text = str(exc) or type(exc).__name__
    return next((ours for theirs, ours in _FORM_ERRORS if theirs in text), text[:200])


async def _raw_chunks(request: web.Request) -> AsyncIterator[bytes]:
    while chunk := await body_read(request.content.read(_READ_SIZE)):
        yield chunk


async def upload(request: web.Request, route: Route) -> web.StreamResponse:
    ctx = context(request)
    limit = ctx.settings.max_upload_bytes
    if not request.body_exists:
        raise HttpError("INVALID_ARGUMENT", "send the file as the body (Content-Length or chunked)")
    multipart = (request.headers.get("Content-Type") or "").lower().startswith("multipart/form-data")
    too_large = HttpError(
        "RESOURCE_EXHAUSTED",
        f"the upload is larger than the limit of {limit} bytes ({limit / 1e6:.3g} MB)",
        reason="UPLOAD_TOO_LARGE",
    )
    length = request.content_length
    if length is not None and length > limit + (_MULTIPART_SLACK if multipart else 0):
        raise too_large
    fields: dict[str, list[str]] = {name: request.query.getall(name) for name in request.query}
    if multipart:
        form = _Form(request, limit + _MULTIPART_SLACK)
        part = await form.fields_then_file(fields, too_large)
        fields.setdefault("display_name", [form.filename or "upload.csv"])
        chunks = form.file_chunks(part, too_large)
    else:
        chunks = _raw_chunks(request)
    header = upload_header(fields, None if multipart else length)  # a form's length is not the file's
    response = await _send(request, route, header, chunks, limit, too_large)
    return json_response(200, message_to_json(response))


async def _send(
    request: web.Request,
    route: Route,
    header: datasets_pb2.UploadDatasetHeader,
    chunks: AsyncIterator[bytes],
    limit: int,
    too_large: HttpError,
) -> Message:
    """Stream the header, the file in UPLOAD_CHUNK messages and the end message
    to the trainer. Any failure cancels the call (never a half-close: that
    could commit a cut-off table)."""
    ctx = context(request)
    call = ctx.callable(route, "stream_unary")(timeout=ctx.settings.upload_timeout_seconds, metadata=metadata(request))
    sent = 0
    try:
        await call.write(datasets_pb2.UploadDatasetRequest(header=header))
        buffer = bytearray()
        async for piece in chunks:
            sent += len(piece)
            if sent > limit:
                raise too_large
            buffer += piece
            while len(buffer) >= UPLOAD_CHUNK:
                await call.write(datasets_pb2.UploadDatasetRequest(chunk=bytes(buffer[:UPLOAD_CHUNK])))
                del buffer[:UPLOAD_CHUNK]
        if buffer:
            await call.write(datasets_pb2.UploadDatasetRequest(chunk=bytes(buffer)))
        # The body arrived whole: say so, or the trainer could store a cut-off stream.
        await call.write(datasets_pb2.UploadDatasetRequest(end=datasets_pb2.UploadDatasetEnd(total_bytes=sent)))
        await call.done_writing()
        return await call
    except asyncio.InvalidStateError:
        # The trainer answered before the body ended (a refusal, or a retried
        # request id it already stored): its answer is the answer.
        try:
            return await call
        except grpc.aio.AioRpcError as err:
            raise ctx.rpc_error(request, route, err) from None
    except grpc.aio.AioRpcError as err:
        raise ctx.rpc_error(request, route, err) from None
    except BaseException:
        call.cancel()
        raise
