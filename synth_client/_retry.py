"""Retrying creates while a server is unreachable, and gRPC errors as SynthError."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from synth_client.errors import SynthError

T = TypeVar("T")


def _retry_unavailable(call: Callable[[], T], channel: grpc.Channel, retries: int, wait_seconds: float) -> T:
    """``call()``; while the server is unreachable (UNAVAILABLE: a restart, a
    dropped connection), wait until the channel is ready again, for at most
    ``wait_seconds`` in all, and call again, at most ``retries`` more times.
    Waiting for readiness rather than sleeping: gRPC fails calls at once while
    it backs off between connection attempts, so fixed sleeps mostly retry into
    that. Only for calls that are safe to repeat: creates that send a request
    id (AIP-155), so a retry never makes a second item."""
    give_up = time.monotonic() + wait_seconds
    attempt = 0
    while True:
        try:
            return call()
        except grpc.RpcError as err:
            left = give_up - time.monotonic()
            if err.code() != grpc.StatusCode.UNAVAILABLE or attempt >= retries or left <= 0:
                raise
            try:
                grpc.channel_ready_future(channel).result(timeout=left)
            except grpc.FutureTimeoutError:
                raise err from None
            attempt += 1


def _translate_errors(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as err:
            raise SynthError.from_rpc_error(err) from None

    return wrapper
