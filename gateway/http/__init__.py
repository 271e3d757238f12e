"""The HTTP side of the gateway: the JSON API (one route per RPC, see
``gateway.routes``), the OpenAPI document and page, and the web page's files,
served by aiohttp on one event loop thread. Backends are called over
``grpc.aio`` channels; no model logic lives here.

- ``server``: ``HttpApi``, the server's lifecycle behind a synchronous API;
- ``frontdoor``: the middleware every request passes (request ids, Host,
  Origin and CSRF checks, errors as JSON, metrics, access log, headers);
- ``api``: dispatch on the route table, API keys, unary calls;
- ``uploads``: raw, chunked and multipart uploads streamed to the trainer;
- ``streams``: server-sent events (training, evaluation) and downloads;
- ``pages``: the page, static files, OpenAPI, ``/healthz``, ``/v1/info``;
- ``convert``: JSON <-> protobuf; ``context``: what handlers share.
"""

from gateway.http.convert import message_to_json
from gateway.http.frontdoor import CSRF_HEADER
from gateway.http.pages import WEB_DIR
from gateway.http.server import HttpApi

__all__ = ["CSRF_HEADER", "HttpApi", "WEB_DIR", "message_to_json"]
