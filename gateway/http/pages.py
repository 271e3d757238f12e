"""What is public: the web page (with this process's CSRF token filled in) and
its static files, the OpenAPI document, ``/healthz`` and ``/v1/info``."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.codes import HttpError
from gateway.http.context import ROUTE_LABEL, context
from gateway.http.frontdoor import json_response

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PAGES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/docs": "docs.html",
    "/docs/": "docs.html",
}
# index.html holds this empty tag; the page reads the token from it.
CSRF_META = b'<meta name="synth-csrf" content="">'


async def public(request: web.Request, path: str) -> web.StreamResponse | None:
    """The answer to a GET or HEAD of a public path, or None if it is not one."""
    ctx = context(request)
    if path in PAGES:
        request[ROUTE_LABEL] = path
        return _file(PAGES[path], ctx.csrf_token)
    if path.startswith("/static/"):
        request[ROUTE_LABEL] = "/static/"
        return _file(path.removeprefix("/static/"), ctx.csrf_token)
    if path in ("/v1/openapi.json", "/openapi.json"):
        request[ROUTE_LABEL] = "/v1/openapi.json"
        return json_response(200, ctx.openapi)
    if path == "/healthz":
        request[ROUTE_LABEL] = path
        # The platform's health, not the gateway's own (its gRPC health is
        # that, for probes): 503 DEGRADED while any backend cannot serve.
        backends = await _backend_health(request, timeout=1.0)
        serving = all(status == "SERVING" for status in backends.values())
        body = {"status": "SERVING" if serving else "DEGRADED", "backends": backends}
        return json_response(200 if serving else 503, body)
    if path == "/v1/info":
        # What the web page needs before it has a key.
        request[ROUTE_LABEL] = path
        return json_response(
            200,
            {
                "auth_required": ctx.keys.enabled,
                "authenticated": ctx.keys.check_headers(_lower_headers(request)).ok,
                "max_upload_bytes": ctx.settings.max_upload_bytes,
            },
        )
    return None


def _lower_headers(request: web.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _file(name: str, csrf_token: str) -> web.Response:
    root = WEB_DIR.resolve()
    target = (root / name).resolve()
    if root not in target.parents or not target.is_file():
        raise HttpError("NOT_FOUND", f"no such file: {name}")
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    charset = "utf-8" if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml") else None
    data = target.read_bytes()
    if target.name == "index.html":
        data = data.replace(CSRF_META, b'<meta name="synth-csrf" content="' + csrf_token.encode() + b'">')
    return web.Response(body=data, content_type=kind, charset=charset, headers={"Cache-Control": "no-cache"})


async def _backend_health(request: web.Request, timeout: float) -> dict[str, str]:
    """Each backend's grpc.health.v1 status name (or the error code), asked at once."""
    channels = context(request).channels

    async def check(channel: grpc.aio.Channel) -> str:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.aio.AioRpcError as err:
            return err.code().name if err.code() else "UNKNOWN"

    names = list(channels)
    results = await asyncio.gather(*(check(channels[name]) for name in names))
    return dict(zip(names, results, strict=True))
