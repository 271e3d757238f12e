"""Evaluation speed: our full report beside sdmetrics' QualityReport and DCR metric, same data, same run.

    python bench/bench_evaluation.py                  # Adult: 26,049 training / 6,512 held-out / 26,049 synthetic
    python bench/bench_evaluation.py --large          # also 200k training x 200k synthetic rows of kddcup99
    python bench/bench_evaluation.py --no-sdmetrics   # ours only

The tables go through the real dataset intake (DatasetIntake and DatasetRepository: upload, infer the schema, load typed
frames). Until the trainer lands, the "synthetic" rows are a stand-in: training rows resampled with
replacement, numbers jittered by 10% of their standard deviation, 10% of category cells redrawn from the
column's marginal (a leaky generator, so privacy numbers have something to find).

Every measured job runs in a fresh forked process under a wall-clock limit (--timeout) and an address-space
limit (--memory-gib), so an sdmetrics run that is too slow or runs out of memory is reported as such instead
of stopping the bench. Peak RSS is the child's (the forked tables included). Results go to stdout and to
bench/results/evaluation-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.common.dataset_store import DatasetRepository  # noqa: E402
from services.common.quality import EvaluationInputs, evaluate  # noqa: E402
from services.common.schema import ColumnInfo, ColumnKind  # noqa: E402
from services.common.store import ArtifactStore  # noqa: E402
from services.trainer.datasets import DatasetIntake, IntakeLimits  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "bench" / "results"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_dataset(path: Path) -> tuple[pd.DataFrame, list[ColumnInfo]]:
    """Through the real intake: upload, infer, load typed."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = DatasetRepository(ArtifactStore(Path(tmp), owner="bench"))
        intake = DatasetIntake(repo, IntakeLimits(max_bytes=200 * 1024 * 1024))
        with intake.begin_upload(path.name) as upload, open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                upload.write(chunk)
            info = upload.commit()
        return repo.load_frame(info.id), info.columns


def split(frame: pd.DataFrame, train: int, holdout: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    return (
        frame.iloc[order[:train]].reset_index(drop=True),
        frame.iloc[order[train : train + holdout]].reset_index(drop=True),
    )


def jitter_stand_in(train: pd.DataFrame, columns: list[ColumnInfo], rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = train.iloc[rng.integers(0, len(train), size=rows)].reset_index(drop=True)
    for col in columns:
        series = out[col.name]
        if col.kind is ColumnKind.CONTINUOUS:
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            std = float(np.nanstd(values)) or 1.0
            values = values + rng.normal(scale=0.1 * std, size=rows)
            values = np.clip(values, col.minimum, col.maximum)
            out[col.name] = pd.array(np.round(values), dtype="Int64") if col.integer else values
        elif col.kind is ColumnKind.CATEGORICAL:
            redraw = rng.random(rows) < 0.1
            pool = train[col.name].to_numpy()
            values = series.to_numpy().copy()
            values[redraw] = pool[rng.integers(0, len(pool), size=int(redraw.sum()))]
            out[col.name] = values
    return out


def sdmetrics_frames(columns: list[ColumnInfo], *frames: pd.DataFrame) -> tuple[dict[str, Any], list[pd.DataFrame]]:
    """sdmetrics' metadata and the frames it can read (floats instead of nullable ints)."""
    sdtypes = {
        ColumnKind.CONTINUOUS: "numerical",
        ColumnKind.CATEGORICAL: "categorical",
        ColumnKind.DATETIME: "datetime",
    }
    keep = [c for c in columns if c.kind in sdtypes]
    metadata = {"columns": {c.name: {"sdtype": sdtypes[c.kind]} for c in keep}}
    out = []
    for frame in frames:
        f = frame[[c.name for c in keep]].copy()
        for c in keep:
            if c.kind is ColumnKind.CONTINUOUS:
                f[c.name] = f[c.name].astype("float64")
        out.append(f)
    return metadata, out


# ---------------------------------------------------------------------------------------------
# Running a job in a child process under limits
# ---------------------------------------------------------------------------------------------

_JOB: Callable[[], dict[str, Any]] | None = None


def _child(queue: mp.Queue, memory_bytes: int) -> None:
    try:
        if memory_bytes > 0:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        assert _JOB is not None
        start = time.perf_counter()
        result = _JOB()
        result["seconds"] = round(time.perf_counter() - start, 2)
        result["status"] = "ok"
    except MemoryError:
        result = {"status": "memory_error", "error": "MemoryError (address space limit reached)"}
    except Exception as exc:  # report, don't crash the bench
        text = traceback.format_exc(limit=3)
        status = "memory_error" if "Unable to allocate" in text or "MemoryError" in text else "error"
        result = {"status": status, "error": f"{type(exc).__name__}: {exc}"[:500]}
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    queue.put(result)


def run_limited(name: str, job: Callable[[], dict[str, Any]], timeout_s: float, memory_gib: float) -> dict[str, Any]:
    global _JOB
    _JOB = job
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()
    # not daemonic: a daemonic child may not start joblib workers (the forests would run on one core)
    proc = ctx.Process(target=_child, args=(queue, int(memory_gib * (1 << 30))), daemon=False)
    start = time.perf_counter()
    proc.start()
    result: dict[str, Any]
    try:
        result = queue.get(timeout=timeout_s)
    except Exception:
        result = {"status": "timeout", "error": f"no result within {timeout_s:.0f} s"}
        proc.kill()
    proc.join(10)
    if proc.is_alive():
        proc.kill()
    if result.get("status") != "ok" and proc.exitcode not in (0, None) and "error" not in result:
        result = {"status": "crashed", "error": f"exit code {proc.exitcode}"}
    result.setdefault("seconds", round(time.perf_counter() - start, 2))
    summary = {k: v for k, v in result.items() if k in ("status", "seconds", "peak_rss_mib", "error")}
    print(f"  {name:38s} {json.dumps(summary)}", flush=True)
    return result


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------


def ours(inputs: EvaluationInputs) -> Callable[[], dict[str, Any]]:
    def job() -> dict[str, Any]:
        stages: dict[str, float] = {}
        start = time.perf_counter()
        last = ["start", 0.0]

        def progress(stage: str, _f: float) -> None:
            now = time.perf_counter() - start
            key = str(last[0]).split(":")[0]
            stages[key] = round(stages.get(key, 0.0) + now - float(last[1]), 2)
            last[0], last[1] = stage, now

        report = evaluate(inputs, progress=progress)
        metrics = {m.name: [m.value, m.baseline_value, m.holdout_value, m.verdict] for m in report.metrics}
        return {
            "stages_s": stages,
            "verdict": report.verdict,
            "scores": {
                "utility": report.utility_score,
                "fidelity": report.fidelity_score,
                "privacy": report.privacy_score,
            },
            "metrics": {k: v for k, v in metrics.items() if "[" not in k},
        }

    return job


def sdmetrics_quality(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict) -> Callable[[], dict[str, Any]]:
    def job() -> dict[str, Any]:
        import warnings

        with warnings.catch_warnings():  # the single-table report is deprecated in favour of a multi-table one
            warnings.simplefilter("ignore", FutureWarning)
            from sdmetrics.reports.single_table import QualityReport

        report = QualityReport()
        report.generate(real, synthetic, metadata, verbose=False)
        props = report.get_properties()
        return {
            "score": float(report.get_score()),
            "properties": dict(zip(props["Property"], props["Score"], strict=True)),
        }

    return job


def sdmetrics_dcr(
    real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, metadata: dict, subsample: int | None
) -> Callable[[], dict[str, Any]]:
    def job() -> dict[str, Any]:
        from sdmetrics.single_table import DCROverfittingProtection

        out = DCROverfittingProtection.compute_breakdown(
            real, synthetic, holdout, metadata, None, num_rows_subsample=subsample
        )
        return {"score": out["score"], "closer_to_training": out["synthetic_data_percentages"]["closer_to_training"]}

    return job


def raw_share(adjusted: float, first: int, second: int) -> float:
    """Undo our size adjustment (for comparing with sdmetrics' raw percentage)."""
    r = first / second
    return adjusted * r / (1 - adjusted + adjusted * r)


def scenario(
    label: str,
    frame: pd.DataFrame,
    columns: list[ColumnInfo],
    target: str,
    train_rows: int,
    holdout_rows: int,
    synthetic_rows: int,
    args: argparse.Namespace,
    with_sdmetrics: bool,
) -> dict[str, Any]:
    train, holdout = split(frame, train_rows, holdout_rows, seed=0)
    synthetic = jitter_stand_in(train, columns, synthetic_rows, seed=1)
    print(
        f"\n{label}: {len(train):,} training, {len(holdout):,} held-out, {len(synthetic):,} synthetic rows", flush=True
    )
    inputs = EvaluationInputs(train, holdout, synthetic, columns, target=target, seed=0)
    out: dict[str, Any] = {
        "rows": {"training": len(train), "holdout": len(holdout), "synthetic": len(synthetic)},
        "ours": run_limited("ours: full report", ours(inputs), args.timeout, args.memory_gib),
    }
    if with_sdmetrics:
        metadata, (tr, sy, ho) = sdmetrics_frames(columns, train, synthetic, holdout)
        sd: dict[str, Any] = {}
        sd["quality_report"] = run_limited(
            "sdmetrics: QualityReport", sdmetrics_quality(tr, sy, metadata), args.timeout, args.memory_gib
        )
        sd["dcr_overfitting_full"] = run_limited(
            "sdmetrics: DCROverfittingProtection",
            sdmetrics_dcr(tr, sy, ho, metadata, None),
            args.timeout,
            args.memory_gib,
        )
        n = min(args.dcr_subsample, len(ho))
        sd[f"dcr_overfitting_subsample_{n}"] = run_limited(
            f"sdmetrics: DCROverfittingProtection {n} rows",
            sdmetrics_dcr(tr, sy, ho, metadata, n),
            args.timeout,
            args.memory_gib,
        )
        out["sdmetrics"] = sd
        ours_m = out["ours"].get("metrics", {})
        if "dcr_share" in ours_m:
            out["comparison"] = {
                "ours_dcr_share_adjusted": ours_m["dcr_share"][0],
                "ours_dcr_share_raw": raw_share(ours_m["dcr_share"][0], len(train), len(holdout)),
                "ours_column_shapes_ks_mean": ours_m["ks_complement_mean"][0],
                "ours_column_shapes_tv_mean": ours_m["tv_complement_mean"][0],
                "ours_fidelity_score": ours_m["fidelity_score"][0],
            }
    return out


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become null, tuples lists, numpy scalars Python ones."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="also 200k x 200k rows of kddcup99")
    parser.add_argument("--large-rows", type=int, default=200_000)
    parser.add_argument("--large-sdmetrics", action="store_true", help="run sdmetrics on the large tables too")
    parser.add_argument("--no-sdmetrics", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per job")
    parser.add_argument("--memory-gib", type=float, default=12.0, help="address-space limit per job")
    parser.add_argument("--dcr-subsample", type=int, default=2000, help="sdmetrics' num_rows_subsample run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    have_sdmetrics = False
    if not args.no_sdmetrics:
        try:
            import sdmetrics

            have_sdmetrics = True
            print(f"sdmetrics {sdmetrics.__version__}")
        except ImportError:
            print("sdmetrics is not installed: ours only (pip install -r requirements-dev.txt)")
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    adult, adult_cols = load_dataset(DATASETS / "adult.csv" if DATASETS.exists() else ROOT / "data" / "adult.csv")
    holdout = len(adult) // 5
    results["adult"] = scenario(
        "adult", adult, adult_cols, "income", len(adult) - holdout, holdout, len(adult) - holdout, args, have_sdmetrics
    )
    if args.large:
        t = time.perf_counter()
        kdd, kdd_cols = load_dataset(DATASETS / "kddcup99_10pct.csv.gz")
        print(f"(kddcup99 intake: {time.perf_counter() - t:.0f} s)")
        n = args.large_rows
        results["kddcup99"] = scenario(
            "kddcup99", kdd, kdd_cols, "label", n, n // 4, n, args, have_sdmetrics and args.large_sdmetrics
        )
    results["load_average_at_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"evaluation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(_clean(results), indent=2, allow_nan=False))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
