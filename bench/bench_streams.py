"""Idle streams against unary calls: a real trainer (in this process, default
8 threads) with ``--streams`` WatchTraining streams open and idle (their job
stays queued: the trainer runs no training worker), while ListDatasets and a
health check are called ``--calls`` times each, one after another.

Reports ListDatasets and health latency (p50, p99, max) with no stream open and
with every stream open, the time to open them all at once, the process memory
they cost, and how long a stop takes to end them.

    python bench/bench_streams.py                    # 1,000 streams
    python bench/bench_streams.py --streams 5000 --calls 2000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from synth.v1 import datasets_pb2, datasets_pb2_grpc, training_pb2, training_pb2_grpc  # noqa: E402

from services.trainer.app import build_server  # noqa: E402
from services.trainer.settings import TrainerSettings  # noqa: E402
from tests.conftest import adult_slice, upload_bytes  # noqa: E402
from tests.resilience.watchers import IdleWatchers  # noqa: E402


def latencies_ms(call: Callable[[], object], count: int) -> dict[str, float]:
    seconds = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    seconds.sort()
    at = lambda q: seconds[int(q * (len(seconds) - 1))] * 1000  # noqa: E731
    return {"p50": at(0.50), "p99": at(0.99), "max": seconds[-1] * 1000}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8, help="the trainer's MAX_WORKERS")
    parser.add_argument("--channels", type=int, default=4, help="client connections the streams share")
    args = parser.parse_args()

    store = Path(tempfile.mkdtemp()) / "store"
    settings = TrainerSettings(
        port=0,
        metrics_port=-1,
        store_dir=store,
        max_workers=args.workers,
        max_streams=max(args.streams + 10, 5000),
        max_concurrent_jobs=0,
    )
    server = build_server(settings).start()
    server.set_serving()
    result: dict[str, object] = {"streams": args.streams, "calls": args.calls, "workers": args.workers}
    try:
        with grpc.insecure_channel(server.address) as channel:
            dataset = upload_bytes(channel, adult_slice(200))
            training = training_pb2_grpc.TrainingServiceStub(channel)
            request = training_pb2.StartTrainingRequest(
                dataset_id=dataset.id, config=training_pb2.TrainingConfig(epochs=1)
            )
            job = training.StartTraining(request, timeout=30).job
            datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)

            def list_datasets() -> object:
                return datasets.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=5)

            def check() -> object:
                return health.Check(health_pb2.HealthCheckRequest(), timeout=5)

            latencies_ms(list_datasets, 50)  # warm up
            result["idle"] = {
                "list": latencies_ms(list_datasets, args.calls),
                "health": latencies_ms(check, args.calls),
            }
            before = rss_mb()
            with IdleWatchers(server.address, job.id, args.streams, channels=args.channels) as watchers:
                result["open_seconds"] = watchers.open(timeout=300)
                result["open_on_server"] = server.bounds.open
                result["loaded"] = {
                    "list": latencies_ms(list_datasets, args.calls),
                    "health": latencies_ms(check, args.calls),
                }
                result["memory_mb"] = rss_mb() - before
                began = time.perf_counter()
                server.stop(grace=10)
                result["stop_seconds"] = time.perf_counter() - began
                ends = watchers.ends(timeout=60)
                result["ends"] = {end: ends.count(end) for end in sorted(set(ends))}
    finally:
        server.stop(1)

    print(f"trainer with {args.workers} threads; {args.calls} calls of each kind, one after another")
    print(f"  {'':<40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for phase, label in (("idle", "no stream open"), ("loaded", f"{args.streams:,} idle streams open")):
        for kind, name in (("list", "ListDatasets"), ("health", "Health.Check")):
            row = result[phase][kind]  # type: ignore[index]
            print(f"  {name + ', ' + label:<40} {row['p50']:>8.2f} {row['p99']:>8.2f} {row['max']:>8.2f}")
    print(
        f"opened {result['open_on_server']:,} streams at once in {result['open_seconds']:.2f} s; "
        f"they cost {result['memory_mb']:.0f} MB (client and server, one process); "
        f"a stop ended them in {result['stop_seconds']:.2f} s: {result['ends']}"
    )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "streams.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
