"""Sampling speed, memory and faithfulness: our sampler, streaming through gRPC
to a CSV file on the client, against the reference ``ctgan``'s ``sample()`` into
a DataFrame written to CSV, in one run, on models trained on Adult with the same
settings (``--epochs``, default 10; speed does not depend on it).

- speed: rows/s of each, median of ``--repeats`` alternating runs;
- memory: the sampler process's peak (VmHWM) for ``--rows`` and ``--big-rows``,
  each in a fresh sampler process, to show it stays flat;
- faithfulness, on the first 200,000 rows each wrote: values outside the real
  column's range, non-whole values in whole-number columns, and the categorical
  shares against the real table (total variation, and Adult's race = White).

    python bench/bench_sampling.py                       # 1M rows, memory at 1M vs 10M
    python bench/bench_sampling.py --rows 200000 --big-rows 1000000 --repeats 1 --epochs 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.trainer.app import build_server  # noqa: E402
from services.trainer.settings import TrainerSettings  # noqa: E402
from synth_client import SynthClient  # noqa: E402
from synth_client.local import free_port  # noqa: E402
from tests.conftest import train_and_wait, upload_bytes  # noqa: E402

ADULT = ROOT / "data" / "adult.csv"


def train_ours(store: Path, epochs: int) -> str:
    server = build_server(TrainerSettings(port=0, metrics_port=-1, store_dir=store)).start()
    server.set_serving()
    try:
        with grpc.insecure_channel(server.address) as channel:
            dataset = upload_bytes(channel, ADULT.read_bytes())
            return train_and_wait(channel, dataset.id, epochs=epochs, seed=1, holdout_fraction=0.0)
    finally:
        server.stop(1)


def start_sampler(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "SYNTH_SAMPLER_PORT": str(port),
        "SYNTH_SAMPLER_METRICS_PORT": "-1",
        "SYNTH_SAMPLER_STORE_DIR": str(store),
    }
    process = subprocess.Popen([sys.executable, "-m", "services.sampler"], env=env, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
    return process, address


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ours(store: Path, model_id: str, rows: int, out: Path) -> tuple[float, float]:
    """(seconds for ``rows`` through gRPC into a CSV file, sampler peak MB)."""
    process, address = start_sampler(store)
    try:
        with SynthClient(sampler=address) as client:
            client.sample_to_file(model_id, 1000, out, seed=0)  # load the model first: not part of the timing
            start = time.perf_counter()
            summary = client.sample_to_file(model_id, rows, out, seed=1, chunk_rows=20_000)
            seconds = time.perf_counter() - start
        assert summary.row_count == rows
        return seconds, peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def train_reference(epochs: int) -> Any:
    from ctgan import CTGAN

    frame = pd.read_csv(ADULT)
    model = CTGAN(epochs=epochs)
    model.set_random_state(1)
    model.fit(frame, [c for c in frame.columns if frame[c].dtype == object])
    return model


def reference(model: Any, rows: int, out: Path) -> float:
    start = time.perf_counter()
    model.sample(rows).to_csv(out, index=False)
    return time.perf_counter() - start


def faithfulness(real: pd.DataFrame, path: Path, rows: int = 200_000) -> dict[str, float]:
    """How the synthetic rows in ``path`` keep the real table's ranges, integers and shares."""
    synthetic = pd.read_csv(path, nrows=rows, keep_default_na=False, na_values=[""])
    numeric = [c for c in real.columns if real[c].dtype != object]
    categorical = [c for c in real.columns if real[c].dtype == object]
    outside = [((synthetic[c] < real[c].min()) | (synthetic[c] > real[c].max())).mean() for c in numeric]
    fractional = [(synthetic[c].dropna() % 1 != 0).mean() for c in numeric]
    tv = []
    for c in categorical:
        # ours writes Adult's "?" (a missing-value marker) as an empty field
        values = synthetic[c].fillna("?").astype(str)
        shares = pd.concat([real[c].value_counts(normalize=True), values.value_counts(normalize=True)], axis=1)
        tv.append(0.5 * shares.fillna(0.0).diff(axis=1).iloc[:, 1].abs().sum())
    return {
        "outside_range": float(np.mean(outside)),
        "capital_gain_below_zero": float((synthetic["capital_gain"] < 0).mean()),
        "age_outside_17_90": float(((synthetic["age"] < 17) | (synthetic["age"] > 90)).mean()),
        "fractional_in_integer_columns": float(np.mean(fractional)),
        "categorical_tv_mean": float(np.mean(tv)),
        "race_white": float((synthetic["race"] == "White").mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000, help="memory check size (0: skip)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of both models (not speed)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    real = pd.read_csv(ADULT)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        store = tmpdir / "store"
        print(f"training both on adult, {args.epochs} epochs ...", flush=True)
        model_id = train_ours(store, args.epochs)
        ctgan_model = train_reference(args.epochs)
        ours_times, ref_times = [], []
        peak_small = 0.0
        for repeat in range(args.repeats):
            print(f"sampling {args.rows:,} rows, run {repeat + 1} of {args.repeats} ...", flush=True)
            seconds, peak_small = ours(store, model_id, args.rows, tmpdir / "ours.csv")
            ours_times.append(seconds)
            ref_times.append(reference(ctgan_model, args.rows, tmpdir / "ref.csv"))
        ours_s, ref_s = statistics.median(ours_times), statistics.median(ref_times)
        result: dict[str, Any] = {
            "rows": args.rows,
            "epochs": args.epochs,
            "ours_seconds": ours_s,
            "ctgan_seconds": ref_s,
            "ours_rows_per_second": args.rows / ours_s,
            "ctgan_rows_per_second": args.rows / ref_s,
            "speedup": ref_s / ours_s,
            "sampler_peak_mb_small": peak_small,
            "runs": {"ours": ours_times, "ctgan": ref_times},
            "faithfulness": {
                "ours": faithfulness(real, tmpdir / "ours.csv"),
                "ctgan": faithfulness(real, tmpdir / "ref.csv"),
                "real": {"race_white": float((real["race"] == "White").mean())},
            },
        }
        if args.big_rows:
            print(f"sampling {args.big_rows:,} rows for the memory check ...", flush=True)
            seconds, peak_big = ours(store, model_id, args.big_rows, tmpdir / "big.csv")
            result.update(big_rows=args.big_rows, big_seconds=seconds, sampler_peak_mb_big=peak_big)

    print(f"rows: {args.rows:,} (median of {args.repeats})")
    print(f"  ctgan sample()+to_csv : {ref_s:7.2f} s  {args.rows / ref_s:>10,.0f} rows/s")
    print(f"  ours via gRPC to CSV  : {ours_s:7.2f} s  {args.rows / ours_s:>10,.0f} rows/s")
    print(f"  ratio (ours / ctgan rows/s): {ref_s / ours_s:.2f}x")
    print(f"sampler peak memory: {result['sampler_peak_mb_small']:.0f} MB at {args.rows:,} rows", end="")
    if args.big_rows:
        print(f", {result['sampler_peak_mb_big']:.0f} MB at {args.big_rows:,} rows ({result['big_seconds']:.1f} s)")
    else:
        print()
    faith = result["faithfulness"]
    print(f"faithfulness after {args.epochs} epochs (first 200,000 rows each):")
    print(f"  {'measure':<38} {'ctgan':>8} {'ours':>8}")
    for key in faith["ours"]:
        print(f"  {key:<38} {faith['ctgan'][key]:>8.4f} {faith['ours'][key]:>8.4f}")
    print(f"  race_white in the real table: {faith['real']['race_white']:.4f}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sampling.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
