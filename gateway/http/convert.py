"""JSON <-> protobuf for the HTTP API: request messages from a JSON body, path
and query parameters; answers in protobuf's JSON mapping with proto field names;
an upload's header from query or form fields. No I/O here but reading a JSON
body, which is capped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping
from typing import Any

from aiohttp import web
from google.protobuf import json_format, symbol_database
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2  # noqa: F401 - a failed job's Status packs these: JSON needs them known
from synth.v1 import common_pb2, datasets_pb2

from gateway.codes import HttpError
from gateway.routes import Route
from services.common import labels

MAX_JSON_BODY = 1 << 20
# Seconds a request body may send nothing before the request is given up (408).
BODY_IDLE_SECONDS = 60.0


def message_to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def message_class(full_name: str) -> type[Message]:
    return symbol_database.Default().GetSymbol(full_name)


def media_type(request: web.BaseRequest) -> str:
    """The Content-Type as sent, lower-cased, without parameters ('' if none)."""
    return (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


async def body_read(step: Awaitable[Any]) -> Any:
    """One read of a request body. A client that sends nothing for
    ``BODY_IDLE_SECONDS`` (stalled, or its framing broke where aiohttp's parser
    stops feeding the body without saying so) gets a 408."""
    try:
        return await asyncio.wait_for(step, BODY_IDLE_SECONDS)
    except TimeoutError:
        raise HttpError(
            "DEADLINE_EXCEEDED",
            f"the request body stalled: nothing arrived for {BODY_IDLE_SECONDS:g} s",
            reason="REQUEST_BODY_TIMEOUT",
        ) from None


async def read_json_body(request: web.BaseRequest) -> dict[str, Any]:
    """The JSON object in the body ({} without a body), at most ``MAX_JSON_BODY`` bytes."""
    if not request.body_exists:
        return {}
    if media_type(request) != "application/json":
        # text/plain and form bodies are what a cross-site form can send without asking
        raise HttpError(
            "INVALID_ARGUMENT",
            "a JSON body must be sent with Content-Type: application/json",
            reason="UNSUPPORTED_MEDIA_TYPE",
        )
    too_large = HttpError("RESOURCE_EXHAUSTED", f"JSON bodies are limited to {MAX_JSON_BODY} bytes")
    if (request.content_length or 0) > MAX_JSON_BODY:
        raise too_large
    raw = bytearray()
    while piece := await body_read(request.content.read(65536)):
        raw += piece
        if len(raw) > MAX_JSON_BODY:
            raise too_large
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError("INVALID_ARGUMENT", f"the body is not valid JSON: {exc}", reason="BAD_JSON") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise HttpError("INVALID_ARGUMENT", "the body must be a JSON object", reason="BAD_JSON")
    return body


async def request_message(request: web.BaseRequest, route: Route, params: Mapping[str, str]) -> Message:
    """The route's request message: the JSON body (routes that take one), the
    route's query fields, then the path parameters."""
    cls = message_class(route.method.input_type)
    body = await read_json_body(request) if route.body else {}
    for name in route.query:
        values = request.query.getall(name, [])
        if values:
            body[name] = _query_value(cls.DESCRIPTOR.fields_by_name[name], values)
    body.update(params)
    message = cls()
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as exc:
        raise HttpError("INVALID_ARGUMENT", str(exc), reason="BAD_REQUEST_FIELDS") from None
    except RecursionError:
        raise _too_deep() from None
    return message


def _too_deep() -> HttpError:
    # the parsers recurse once per level; no request of this API nests more than a few
    return HttpError("INVALID_ARGUMENT", "the JSON body is nested too deeply", reason="BAD_JSON")


def _query_value(field: FieldDescriptor, values: list[str]) -> Any:
    value = values[-1]
    if field.type == FieldDescriptor.TYPE_BOOL:
        return value.lower() in ("1", "true", "yes", "on")
    if field.cpp_type in (
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    ):
        try:
            return int(value)
        except ValueError:
            raise HttpError(
                "INVALID_ARGUMENT",
                f"query parameter {field.name} must be an integer",
                violations=[{"field": field.name, "description": "not an integer"}],
            ) from None
    return value


_KIND_NAMES = {name: labels.value(common_pb2.ColumnKind, name) for name in labels.labels(common_pb2.ColumnKind)}


def upload_header(fields: Mapping[str, list[str]], length: int | None) -> datasets_pb2.UploadDatasetHeader:
    """An UploadDataset header from query or form fields; ``length`` is the
    file's size when known (a raw body's Content-Length, not a form's)."""

    def one(name: str) -> str:
        values = fields.get(name) or [""]
        return values[-1].strip()

    header = datasets_pb2.UploadDatasetHeader(
        display_name=one("display_name") or "upload.csv",
        encoding=one("encoding"),
        missing_markers=list(fields.get("missing_marker", [])),
        total_bytes=length or 0,
        request_id=one("request_id"),
        expect_end=True,  # the end message follows once the whole body is read
    )
    for item in fields.get("kind", []):
        column, sep, kind = item.partition("=")
        value = _KIND_NAMES.get(kind.strip().lower().removeprefix("column_kind_"))
        if not sep or value is None:
            raise HttpError(
                "INVALID_ARGUMENT",
                f"kind {item!r}: expected COLUMN=KIND with KIND one of {', '.join(_KIND_NAMES)}",
                violations=[{"field": "kind", "description": "expected COLUMN=KIND"}],
            )
        header.kind_overrides[column.strip()] = value
    return header
