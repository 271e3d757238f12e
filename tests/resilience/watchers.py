"""Many idle WatchTraining streams held open by one grpc.aio client, on an
event loop in a thread of its own (a thread per stream would measure the
client, not the server). Used by tests/resilience and bench/bench_streams.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import grpc
from synth.v1 import training_pb2, training_pb2_grpc


class IdleWatchers:
    """``count`` WatchTraining streams on ``job_id``, spread over ``channels``
    connections. Use as a context manager: leaving cancels what is still open."""

    def __init__(self, address: str, job_id: str, count: int, channels: int = 4) -> None:
        self._address = address
        self._job_id = job_id
        self._count = count
        self._channel_count = channels
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="idle-watchers", daemon=True)
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: list[asyncio.Task[str]] = []

    def __enter__(self) -> IdleWatchers:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._run(self._close(), timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def open(self, timeout: float) -> float:
        """Open every stream and wait until each has its first event (so it is
        established on the server). Returns the seconds that took. Raises the
        first stream's error if one was refused."""
        return self._run(self._open(timeout), timeout=timeout + 5)  # type: ignore[no-any-return]

    def ends(self, timeout: float) -> Sequence[str]:
        """How each stream ended: its last event's name, or its status code's name."""
        return self._run(self._ends(), timeout=timeout)  # type: ignore[no-any-return]

    # ---- on the client's loop ---------------------------------------------------
    def _run(self, coroutine, timeout: float):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _open(self, timeout: float) -> float:
        # Channels with different options get connections of their own.
        self._channels = [
            grpc.aio.insecure_channel(self._address, options=[("synth.test.connection", i)])
            for i in range(self._channel_count)
        ]
        began = time.perf_counter()
        loop = asyncio.get_running_loop()
        stubs = [training_pb2_grpc.TrainingServiceStub(channel) for channel in self._channels]
        firsts = [loop.create_future() for _ in range(self._count)]
        for index, first in enumerate(firsts):  # all at once, like clients reattaching after a restart
            self._tasks.append(asyncio.create_task(self._follow(stubs[index % len(stubs)], first)))
        await asyncio.wait_for(asyncio.gather(*firsts), timeout)
        return time.perf_counter() - began

    async def _follow(self, stub: training_pb2_grpc.TrainingServiceStub, first: asyncio.Future[None]) -> str:
        last = ""
        try:
            async for event in stub.WatchTraining(training_pb2.WatchTrainingRequest(job_id=self._job_id)):
                last = event.WhichOneof("event") or ""
                if not first.done():
                    first.set_result(None)
        except grpc.aio.AioRpcError as err:
            if not first.done():
                first.set_exception(err)
            return err.code().name
        if not first.done():
            first.set_exception(AssertionError("the stream ended without an event"))
        return last

    async def _ends(self) -> list[str]:
        return list(await asyncio.gather(*self._tasks))

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels:
            await channel.close()
        await asyncio.sleep(0.2)  # late completions for this loop arrive before it closes


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(0.02)
