"""The runtime under load and faults: the three figures issue #16 asks for,
measured on the real services started as processes (``LocalPlatform``, the way
``synth up`` runs them) on this machine.

1. ``watch``: N concurrent WatchTraining streams (default 1,000) on a running
   training job, held open while ListDatasets is called again and again;
   reports ListDatasets p50/p99 latency, the trainer's thread count and RSS.
   Target: p99 < 100 ms.
2. ``sample``: K concurrent sample streams of R rows each (default 20 × 200k)
   through the gateway's gRPC port, each written to a CSV file; reports the
   sampler's peak memory (VmHWM) and checks every file's row count.
   Target: sampler peak ≤ 1.5 GB.
3. ``drain``: a 2M-row stream through the gateway, and a SIGTERM to the
   gateway once rows are flowing; reports whether the stream completed with
   every row and the gateway's exit code. Target: the stream completes.

    python bench/bench_load.py                      # all three, full size
    python bench/bench_load.py --only watch --watchers 300
    python bench/bench_load.py --streams 4 --rows 50000 --drain-rows 300000   # quick

Results are printed as JSON and appended to bench/results/load.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synth.v1 import datasets_pb2, datasets_pb2_grpc, training_pb2, training_pb2_grpc  # noqa: E402

from synth_client import SynthClient  # noqa: E402
from synth_client.local import LocalPlatform  # noqa: E402

ADULT = ROOT / "data" / "adult.csv"
RESULTS = ROOT / "bench" / "results" / "load.jsonl"


def proc_status(pid: int, key: str) -> float:
    """A /proc/<pid>/status value: memory in MB (VmHWM, VmRSS) or a count (Threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            value = int(line.split()[1])
            return value / 1024 if key.startswith("Vm") else value
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ---- 1. watch streams ----------------------------------------------------------


async def _hold_watchers(address: str, job_id: str, count: int, opened: asyncio.Event, stop: asyncio.Event) -> dict:
    """Open ``count`` WatchTraining streams (spread over channels, 100 per
    connection) and read them until ``stop``."""
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.channel_id", i), ("grpc.use_local_subchannel_pool", 1)])
        for i in range((count + 99) // 100)
    ]
    received = 0
    errors: dict[str, int] = {}
    started = 0

    async def watch(index: int) -> None:
        nonlocal received, started
        stub = training_pb2_grpc.TrainingServiceStub(channels[index // 100])
        call = stub.WatchTraining(training_pb2.WatchTrainingRequest(job_id=job_id))
        started += 1
        if started == count:
            opened.set()
        try:
            async for _event in call:
                received += 1
                if stop.is_set():
                    break
        except grpc.aio.AioRpcError as err:
            errors[err.code().name] = errors.get(err.code().name, 0) + 1
        finally:
            call.cancel()

    tasks = [asyncio.create_task(watch(i)) for i in range(count)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return {"events_received": received, "stream_errors": errors}


def bench_watch(platform: LocalPlatform, dataset_id: str, watchers: int, seconds: float) -> dict[str, Any]:
    trainer = platform.address("trainer")
    pid = platform.processes["trainer"].pid
    with SynthClient(trainer) as client:
        # A job that keeps running (and emitting progress) for the whole measurement.
        job = client.start_training(dataset_id, synthesizer="ctgan", epochs=100_000, seed=1)
    threads_before = proc_status(pid, "Threads")

    loop = asyncio.new_event_loop()
    opened = asyncio.Event()
    stop = asyncio.Event()
    outcome: dict[str, Any] = {}

    def run_watchers() -> None:
        asyncio.set_event_loop(loop)
        outcome.update(loop.run_until_complete(_hold_watchers(trainer, job.id, watchers, opened, stop)))

    holder = threading.Thread(target=run_watchers, daemon=True)
    holder.start()
    deadline = time.monotonic() + 60
    while not opened.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # let every stream reach the server and replay its history

    latencies: list[float] = []
    failures = 0
    with grpc.insecure_channel(trainer) as channel:
        stub = datasets_pb2_grpc.DatasetServiceStub(channel)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                stub.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=100), timeout=10)
                latencies.append(time.perf_counter() - start)
            except grpc.RpcError:
                failures += 1
            time.sleep(0.02)
    threads_during = proc_status(pid, "Threads")
    rss_during = proc_status(pid, "VmRSS")

    loop.call_soon_threadsafe(stop.set)
    holder.join(30)
    with SynthClient(trainer) as client:
        client.cancel_job(job.id)
    ms = [x * 1000 for x in latencies]
    return {
        "watchers": watchers,
        "list_calls": len(ms),
        "list_failures": failures,
        "list_p50_ms": round(statistics.median(ms), 2) if ms else None,
        "list_p99_ms": round(percentile(ms, 0.99), 2) if ms else None,
        "list_max_ms": round(max(ms), 2) if ms else None,
        "trainer_threads_before": threads_before,
        "trainer_threads_during": threads_during,
        "trainer_rss_mb_during": round(rss_during),
        **outcome,
        "target_met": bool(ms) and percentile(ms, 0.99) < 100 and failures == 0 and not outcome.get("stream_errors"),
    }


# ---- 2. concurrent sample streams through the gateway ---------------------------


def bench_sample(platform: LocalPlatform, model_id: str, streams: int, rows: int, workdir: Path) -> dict[str, Any]:
    gateway = platform.address("gateway")
    sampler_pid = platform.processes["sampler"].pid
    baseline = proc_status(sampler_pid, "VmHWM")
    started = time.perf_counter()

    def one(index: int) -> int:
        path = workdir / f"stream-{index}.csv"
        with SynthClient(gateway, timeout=600) as client:
            client.sample_to_file(model_id, rows, path, seed=index)
        with open(path, "rb") as fh:
            count = sum(1 for _ in fh) - 1  # the header line
        path.unlink()
        return count

    with futures.ThreadPoolExecutor(max_workers=streams) as pool:
        results = list(pool.map(one, range(streams)))
    seconds = time.perf_counter() - started
    peak = proc_status(sampler_pid, "VmHWM")
    return {
        "streams": streams,
        "rows_each": rows,
        "all_rows_written": all(count == rows for count in results),
        "seconds": round(seconds, 1),
        "rows_per_second": round(streams * rows / seconds),
        "sampler_peak_mb_before": round(baseline),
        "sampler_peak_mb": round(peak),
        "target_met": peak <= 1536 and all(count == rows for count in results),
    }


# ---- 3. gateway SIGTERM during a long stream ------------------------------------


def bench_drain(platform: LocalPlatform, model_id: str, rows: int, workdir: Path) -> dict[str, Any]:
    gateway = platform.processes["gateway"]
    path = workdir / "drain.csv"
    seen = 0
    signalled_at: int | None = None
    error = ""
    started = time.perf_counter()

    def on_progress(count: int) -> None:
        nonlocal seen, signalled_at
        seen += count
        if signalled_at is None and seen >= 50_000:
            signalled_at = seen
            gateway.send_signal(signal.SIGTERM)

    try:
        with SynthClient(platform.address("gateway"), timeout=900) as client:
            client.sample_to_file(model_id, rows, path, seed=7, on_progress=on_progress)
    except Exception as exc:  # noqa: BLE001 - the outcome is the measurement
        error = f"{type(exc).__name__}: {exc}"
    written = 0
    if path.exists():
        with open(path, "rb") as fh:
            written = sum(1 for _ in fh) - 1
    try:
        exit_code: int | None = gateway.wait(60)
    except Exception:  # noqa: BLE001
        exit_code = None
    return {
        "rows": rows,
        "sigterm_after_rows": signalled_at,
        "rows_written": written,
        "seconds": round(time.perf_counter() - started, 1),
        "client_error": error,
        "gateway_exit_code": exit_code,
        "target_met": written == rows and not error and exit_code == 0,
    }


# ---- setup ------------------------------------------------------------------


def upload_adult(platform: LocalPlatform) -> str:
    with SynthClient(platform.address("trainer")) as client:
        return client.upload_dataset(ADULT, name="adult.csv").id


def train_small_model(platform: LocalPlatform, dataset_id: str) -> str:
    """A CTGAN model (the heaviest sampler path) trained for 2 epochs: speed and
    memory of sampling do not depend on how long it trained."""
    with SynthClient(platform.address("trainer")) as client:
        job = client.start_training(dataset_id, synthesizer="ctgan", epochs=2, seed=1, holdout_fraction=0.0)
        for _event in client.watch_job(job.id):
            pass
        finished = client.get_job(job.id)
        if not finished.model_id:
            raise RuntimeError(f"training failed: {finished}")
        return finished.model_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["watch", "sample", "drain"], action="append")
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--watch-seconds", type=float, default=20.0)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--drain-rows", type=int, default=2_000_000)
    args = parser.parse_args()
    parts = args.only or ["watch", "sample", "drain"]

    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workdir = Path(tmp)
        env = {
            # The drain figure needs a grace period longer than the stream.
            "SYNTH_GATEWAY_GRACE_SECONDS": "300",
            "SYNTH_SAMPLER_GRACE_SECONDS": "300",
        }
        with LocalPlatform(workdir / "platform", ports="free", extra_env=env) as platform:
            dataset_id = upload_adult(platform)
            model_id = train_small_model(platform, dataset_id) if {"sample", "drain"} & set(parts) else ""
            if "watch" in parts:
                results["watch"] = bench_watch(platform, dataset_id, args.watchers, args.watch_seconds)
                print(json.dumps({"watch": results["watch"]}), flush=True)
            if "sample" in parts:
                results["sample"] = bench_sample(platform, model_id, args.streams, args.rows, workdir)
                print(json.dumps({"sample": results["sample"]}), flush=True)
            if "drain" in parts:  # last: it stops the gateway
                results["drain"] = bench_drain(platform, model_id, args.drain_rows, workdir)
                print(json.dumps({"drain": results["drain"]}), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(results) + "\n")
    print(json.dumps(results, indent=2))
    return 0 if all(results[p]["target_met"] for p in parts) else 1


if __name__ == "__main__":
    sys.exit(main())
