"""Dispatch: every request lands in ``dispatch``, which serves the public paths
(``pages``) or finds the route (``gateway.routes``, the one table the OpenAPI
document is also made from), checks the API key, and hands over to the
route's kind: unary JSON calls here, uploads, event streams and downloads in
their own modules."""

from __future__ import annotations

import logging

import grpc
from aiohttp import web

from gateway.codes import HttpError
from gateway.http import streams, uploads
from gateway.http.context import ROUTE_LABEL, context, metadata
from gateway.http.convert import message_to_json, request_message
from gateway.http.frontdoor import json_response
from gateway.http.pages import public
from gateway.routes import Route, match

log = logging.getLogger("gateway.http")


async def dispatch(request: web.Request) -> web.StreamResponse:
    # The raw path, as routes match it: path parameters are ids, never percent-decoded.
    path = request.rel_url.raw_path
    if request.method in ("GET", "HEAD"):
        page = await public(request, path)
        if page is not None:
            return page
    route, params, allowed = match(request.method, path)
    if route is None:
        if allowed:
            raise HttpError(
                "UNIMPLEMENTED",
                f"{request.method} is not allowed on {path}; use {', '.join(allowed)}",
                reason="METHOD_NOT_ALLOWED",
            )
        raise HttpError("NOT_FOUND", f"no such endpoint: {request.method} {path}", reason="NO_SUCH_ROUTE")
    request[ROUTE_LABEL] = route.pattern
    _authenticate(request)
    if route.kind == "upload":
        return await uploads.upload(request, route)
    if route.kind == "events":
        return await streams.watch(request, route, params)
    if route.kind == "evaluate":
        return await streams.evaluate(request, route, params)
    if route.kind == "download":
        return await streams.download(request, route, params)
    return await _unary(request, route, params)


def _authenticate(request: web.Request) -> None:
    result = context(request).keys.check_headers({k.lower(): v for k, v in request.headers.items()})
    if not result.ok:
        log.warning("unauthenticated HTTP request refused", extra={"reason": result.reason})
        raise HttpError("UNAUTHENTICATED", result.reason, reason="API_KEY_INVALID")


async def _unary(request: web.Request, route: Route, params: dict[str, str]) -> web.StreamResponse:
    ctx = context(request)
    message = await request_message(request, route, params)
    call = ctx.callable(route, "unary_unary")
    try:
        response = await call(message, timeout=ctx.settings.backend_timeout_seconds, metadata=metadata(request))
    except grpc.aio.AioRpcError as err:
        raise ctx.rpc_error(request, route, err) from None
    return json_response(200, message_to_json(response))
