"""The OpenAPI 3.1 document of the HTTP API, generated from the route table and
the synth.v1 message descriptors (so it always matches the contract)."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from gateway.backends import METHODS
from gateway.codes import HTTP_STATUS, HTTP_STATUS_BY_REASON
from gateway.routes import ROUTES, Route

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT64: {"type": ["integer", "string"], "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": ["integer", "string"], "format": "uint64"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "uint32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT64: {"type": ["integer", "string"], "format": "int64"},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer"},
    FieldDescriptor.TYPE_FIXED64: {"type": ["integer", "string"]},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer"},
    FieldDescriptor.TYPE_SFIXED64: {"type": ["integer", "string"]},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9.]+s$"},
    # JSON's Any: the packed message's fields beside its type URL (ErrorInfo, BadRequest)
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


class _Schemas:
    def __init__(self) -> None:
        self.out: dict[str, Any] = {}

    def message(self, desc: Descriptor) -> dict[str, Any]:
        if desc.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[desc.full_name])
        name = desc.full_name.removeprefix("synth.v1.")  # google.rpc.Status keeps its package
        if name not in self.out:
            self.out[name] = {}  # recursion guard
            props = {}
            for field in desc.fields:
                props[field.name] = self.field(field)
            schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
            oneofs = [o for o in desc.oneofs if not o.name.startswith("_")]
            if oneofs:
                schema["description"] = "; ".join(
                    f"at most one of {', '.join(f.name for f in o.fields)} ({o.name})" for o in oneofs
                )
            self.out[name] = schema
        return _ref(name)

    def enum(self, desc: EnumDescriptor) -> dict[str, Any]:
        name = desc.full_name.removeprefix("synth.v1.")
        if name not in self.out:
            self.out[name] = {"type": "string", "enum": [v.name for v in desc.values]}
        return _ref(name)

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        single = self.single(field)
        if field.is_repeated:
            return {"type": "array", "items": single}
        return single

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            return self.message(field.message_type)
        if field.type == FieldDescriptor.TYPE_ENUM:
            return self.enum(field.enum_type)
        return dict(_SCALARS[field.type])


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer", "description": "the HTTP status"},
                    "status": {"type": "string", "description": "the gRPC status code name"},
                    "message": {"type": "string"},
                    "details": {
                        "type": "array",
                        "items": {"type": "object"},
                        "description": "google.rpc.ErrorInfo (reason) and google.rpc.BadRequest (field_violations)",
                    },
                    "request_id": {"type": "string"},
                },
            }
        },
    }


def _operation(route: Route, schemas: _Schemas) -> dict[str, Any]:
    method = route.method
    in_desc = _descriptor(method.input_type)
    out_desc = _descriptor(method.output_type)
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in route.path_params]
    for q in route.query:
        params.append({"name": q, "in": "query", "required": False, "schema": schemas.field(in_desc.fields_by_name[q])})
    op: dict[str, Any] = {
        "operationId": method.name,
        "summary": route.summary,
        "tags": [method.service.removeprefix("synth.v1.")],
        "description": (route.description + "\n\n" if route.description else "") + f"gRPC: `{method.path}`",
        "parameters": params,
        "responses": {
            "default": {
                "description": "an error; the HTTP status comes from the gRPC code (see the info section)",
                "content": {"application/json": {"schema": _ref("Error")}},
            }
        },
    }
    if route.kind == "upload":
        _add_upload(op, params)
    elif route.body:
        op["requestBody"] = _json_body(route, in_desc, schemas)
    op["responses"]["200"] = _success(route, out_desc, schemas)
    return op


def _add_upload(op: dict[str, Any], params: list[dict[str, Any]]) -> None:
    """An upload's query parameters, body (CSV, gzip or a form) and 413 response."""
    params.extend(
        {"name": n, "in": "query", "required": False, "schema": s}
        for n, s in (
            ("display_name", {"type": "string"}),
            ("encoding", {"type": "string"}),
            ("missing_marker", {"type": "array", "items": {"type": "string"}}),
            ("kind", {"type": "array", "items": {"type": "string", "pattern": "^[^=]+=[a-z_]+$"}}),
        )
    )
    op["requestBody"] = {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "display_name": {"type": "string"},
                        "encoding": {"type": "string"},
                        "missing_marker": {"type": "array", "items": {"type": "string"}},
                        "kind": {"type": "array", "items": {"type": "string"}},
                        "file": {"type": "string", "format": "binary"},
                    },
                    "required": ["file"],
                }
            },
        },
    }
    op["responses"]["413"] = {
        "description": "larger than the upload limit",
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _json_body(route: Route, in_desc: Descriptor, schemas: _Schemas) -> dict[str, Any]:
    """The request body of a route that takes its message as JSON."""
    fields_from_path = set(route.path_params)
    body_schema = schemas.message(in_desc)
    return {
        "required": True,
        "description": (
            f"a {in_desc.name} as JSON"
            + (f" ({', '.join(sorted(fields_from_path))} from the path)" if fields_from_path else "")
        ),
        "content": {"application/json": {"schema": body_schema}},
    }


def _success(route: Route, out_desc: Descriptor, schemas: _Schemas) -> dict[str, Any]:
    """The 200 response, by the route's kind."""
    if route.kind == "events":
        return {
            "description": f"server-sent events, each data a {out_desc.name}",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-data": schemas.message(out_desc)}},
        }
    if route.kind == "download":
        return {
            "description": "the rows, streamed",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    if route.kind == "evaluate":
        return {
            "description": f"the final {out_desc.name} (JSON), or server-sent events of every one",
            "content": {
                "application/json": {"schema": schemas.message(out_desc)},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    return {
        "description": out_desc.name,
        "content": {"application/json": {"schema": schemas.message(out_desc)}},
    }


def _descriptor(full_name: str) -> Descriptor:
    from google.protobuf import symbol_database

    return symbol_database.Default().GetSymbol(full_name).DESCRIPTOR


def openapi_document() -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.pattern, {})[route.http_method.lower()] = _operation(route, schemas)
    schemas.out["Error"] = _error_schema()
    table = "\n".join(f"| {code} | {status} |" for code, status in HTTP_STATUS.items())
    reasons = "\n".join(f"| reason {reason} | {status} |" for reason, status in HTTP_STATUS_BY_REASON.items())
    covered = {route.rpc for route in ROUTES}
    assert covered == set(METHODS), f"RPCs without an HTTP route: {sorted(set(METHODS) - covered)}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "synth gateway HTTP API",
            "version": "v1",
            "description": (
                "One route per synth.v1 RPC; bodies and answers are the RPC's messages in protobuf's JSON "
                "mapping with proto field names. Authenticate with `Authorization: Bearer <key>` or "
                "`X-API-Key: <key>` (not needed when the gateway runs open on loopback). Every answer "
                "carries `X-Request-Id` (send your own to correlate logs). A browser request that changes "
                "something (POST, PUT, PATCH, DELETE with an `Origin`, `Sec-Fetch-*` or `Cookie` header) must "
                "also send the gateway page's CSRF token as `X-Synth-CSRF` (403 `CSRF_TOKEN_MISSING` or "
                "`CSRF_TOKEN_INVALID` otherwise); other callers need no token.\n\n"
                "Errors are `{error: {code, status, message, details}}`; the HTTP status comes from the "
                "gRPC code:\n\n| gRPC code | HTTP |\n|---|---|\n" + table + "\n" + reasons
            ),
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas.out,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
    }
