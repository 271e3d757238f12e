"""Training benchmark: our engine against ``ctgan.CTGAN.fit``, in one process, same data and config.

(a) fixed overhead: time from the start of fit to the start of the first epoch
    (validation, transformer fit, transform, sampler and model construction), on
    Adult and on a large table (Adult repeated to ``--big-rows`` rows, or the
    first rows of KDD Cup 99 with ``--big-source kdd``);
(b) per-epoch time: median over ``--epoch-epochs`` epochs on Adult, default
    network sizes, batch 500, as wall time and as CPU time of the process (the
    latter is robust to other load on a shared machine); ``--epoch-threads 1,2``
    repeats it at equal thread counts;
(c) quality at equal settings: both trained ``--quality-epochs`` epochs on an 80%
    split of Adult, scored on the 20% holdout: TSTR ROC-AUC for ``income`` (a
    seeded random forest trained on synthetic rows) beside TRTR (trained on the
    real 80%), and the mean per-column similarity (1 - KS statistic for numbers,
    1 - total variation distance for categories).

ctgan's fit is a closed loop, so its timings are read by wrapping the ``tqdm``
that iterates its epochs: the first iteration marks "first epoch starts", each
further one an epoch boundary. For (a) both are stopped right there (ctgan by an
exception from that wrapper, ours by ``should_stop``).

Usage (a quick run, a few minutes on 2 cores):
    python bench/bench_training.py --quick
Full run:
    python bench/bench_training.py
Results are printed as a table and written as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ctgan  # noqa: E402
import ctgan.synthesizers.ctgan as ctgan_module  # noqa: E402

from services.trainer.engine import TrainingCancelled, TrainingConfig, train  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
TARGET = "income"


# --------------------------------------------------------------------------- data


def load_adult() -> tuple[pd.DataFrame, list[str]]:
    frame = pd.read_csv(DATASETS / "adult.csv", na_values="?")
    discrete = [c for c in frame.columns if frame[c].dtype == object]
    return frame, discrete


def load_big(source: str, rows: int) -> tuple[pd.DataFrame, list[str]]:
    if source == "kdd":
        frame = pd.read_csv(DATASETS / "kddcup99_10pct.csv.gz", nrows=rows)
        discrete = [c for c in frame.columns if frame[c].dtype == object]
        return frame, discrete
    adult, discrete = load_adult()
    repeats = -(-rows // len(adult))
    return pd.concat([adult] * repeats, ignore_index=True).iloc[:rows].reset_index(drop=True), discrete


# ------------------------------------------------------------------ ctgan hooks


class _StopFit(Exception):
    pass


def _now() -> tuple[float, float]:
    """(wall clock, CPU time of this process): CPU time is what survives a busy machine."""
    return time.perf_counter(), time.process_time()


@contextlib.contextmanager
def ctgan_epoch_clock(stop_at_first: bool) -> Iterator[list[tuple[float, float]]]:
    """Patch the tqdm ctgan's fit iterates epochs with; yields the list of epoch-start marks.

    The list receives ``_now()`` at the start of each epoch and once more when the
    loop ends. With ``stop_at_first`` the fit is aborted at the first epoch.
    """
    marks: list[tuple[float, float]] = []
    original = ctgan_module.tqdm

    class Clock:
        def __init__(self, iterable: Any, disable: bool = True, **_: Any) -> None:
            self.iterable = iterable

        def __iter__(self) -> Iterator[Any]:
            for item in self.iterable:
                marks.append(_now())
                if stop_at_first:
                    raise _StopFit
                yield item
            marks.append(_now())

        def set_description(self, *_: Any) -> None:
            pass

    ctgan_module.tqdm = Clock
    try:
        yield marks
    finally:
        ctgan_module.tqdm = original


def ctgan_model(config: TrainingConfig, seed: int) -> ctgan.CTGAN:
    model = ctgan.CTGAN(
        embedding_dim=config.embedding_dim,
        generator_dim=config.generator_dim,
        discriminator_dim=config.discriminator_dim,
        generator_lr=config.generator_lr,
        generator_decay=config.generator_decay,
        discriminator_lr=config.discriminator_lr,
        discriminator_decay=config.discriminator_decay,
        batch_size=config.batch_size,
        discriminator_steps=config.discriminator_steps,
        log_frequency=config.log_frequency,
        epochs=config.epochs,
        pac=config.pac,
        enable_gpu=False,
    )
    model.set_random_state(seed)
    return model


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------- measurements


def overhead_ctgan(frame: pd.DataFrame, discrete: list[str], threads: int | None) -> float:
    config = TrainingConfig(epochs=1, seed=0)
    model = ctgan_model(config, 0)
    with torch_threads(threads), ctgan_epoch_clock(stop_at_first=True) as marks:
        began = time.perf_counter()
        with contextlib.suppress(_StopFit):
            model.fit(frame, discrete)
    return marks[0][0] - began


def overhead_ours(frame: pd.DataFrame, discrete: list[str], threads: int) -> float:
    config = TrainingConfig(epochs=1, seed=0)
    first: list[float] = []

    def stop() -> bool:
        first.append(time.perf_counter())
        return True

    began = time.perf_counter()
    with contextlib.suppress(TrainingCancelled):
        train(frame, discrete, config, device="cpu", should_stop=stop, threads=threads)
    return first[0] - began


Durations = list[tuple[float, float]]  # (wall seconds, CPU seconds) per epoch


def _durations(marks: list[tuple[float, float]]) -> Durations:
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:], strict=False)]


def epochs_ctgan(frame: pd.DataFrame, discrete: list[str], epochs: int, threads: int | None, seed: int) -> Durations:
    model = ctgan_model(TrainingConfig(epochs=epochs, seed=seed), seed)
    with torch_threads(threads), ctgan_epoch_clock(stop_at_first=False) as marks:
        model.fit(frame, discrete)
    return _durations(marks)


def epochs_ours(frame: pd.DataFrame, discrete: list[str], epochs: int, threads: int, seed: int) -> Durations:
    marks: list[tuple[float, float]] = []

    def first_step() -> bool:
        if not marks:
            marks.append(_now())
        return False

    train(
        frame,
        discrete,
        TrainingConfig(epochs=epochs, seed=seed),
        device="cpu",
        threads=threads,
        should_stop=first_step,
        on_epoch=lambda _stats: marks.append(_now()),
    )
    return _durations(marks)


# ---------------------------------------------------------------------- quality


def _encode(frame: pd.DataFrame, reference: pd.DataFrame, discrete: list[str]) -> np.ndarray:
    columns = []
    for name in reference.columns:
        if name == TARGET:
            continue
        if name in discrete:
            categories = pd.Index(reference[name].dropna().unique())
            columns.append(pd.Categorical(frame[name], categories=categories).codes.astype(np.float64))
        else:
            columns.append(pd.to_numeric(frame[name], errors="coerce").fillna(-1).to_numpy(np.float64))
    return np.column_stack(columns)


def _labels(frame: pd.DataFrame, positive: str) -> np.ndarray:
    return (frame[TARGET] == positive).to_numpy().astype(int)


def tstr_auc(synthetic: pd.DataFrame, real_train: pd.DataFrame, holdout: pd.DataFrame, discrete: list[str]) -> float:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score

    positive = ">50K"
    y = _labels(synthetic, positive)
    if y.min() == y.max():
        return float("nan")
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=2)
    forest.fit(_encode(synthetic, real_train, discrete), y)
    scores = forest.predict_proba(_encode(holdout, real_train, discrete))[:, 1]
    return float(roc_auc_score(_labels(holdout, positive), scores))


def column_similarity(synthetic: pd.DataFrame, holdout: pd.DataFrame, discrete: list[str]) -> dict[str, float]:
    from scipy.stats import ks_2samp

    out = {}
    for name in holdout.columns:
        if name in discrete:
            real = holdout[name].fillna("<NA>").value_counts(normalize=True)
            fake = synthetic[name].fillna("<NA>").value_counts(normalize=True)
            keys = real.index.union(fake.index)
            tv = 0.5 * np.abs(real.reindex(keys, fill_value=0) - fake.reindex(keys, fill_value=0)).sum()
            out[name] = float(1 - tv)
        else:
            statistic = ks_2samp(holdout[name].dropna(), pd.to_numeric(synthetic[name]).dropna()).statistic
            out[name] = float(1 - statistic)
    return out


def quality(
    frame: pd.DataFrame, discrete: list[str], epochs: int, threads: int, ctgan_threads: int | None, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    cut = int(0.8 * len(frame))
    real_train = frame.iloc[order[:cut]].reset_index(drop=True)
    holdout = frame.iloc[order[cut:]].reset_index(drop=True)
    n = len(real_train)
    result: dict[str, Any] = {"epochs": epochs, "train_rows": n, "holdout_rows": len(holdout)}

    result["trtr_auc"] = tstr_auc(real_train, real_train, holdout, discrete)
    result["threads"] = {"ctgan": ctgan_threads or torch.get_num_threads(), "ours": threads}

    began = time.perf_counter()
    model = ctgan_model(TrainingConfig(epochs=epochs, seed=seed), seed)
    with torch_threads(ctgan_threads):
        model.fit(real_train, discrete)
        ctgan_rows = model.sample(n)
    ctgan_seconds = time.perf_counter() - began

    began = time.perf_counter()
    ours = train(real_train, discrete, TrainingConfig(epochs=epochs, seed=seed), device="cpu", threads=threads)
    our_rows = pd.concat(ours.sample(n, seed=seed, chunk_rows=10_000), ignore_index=True)
    our_seconds = time.perf_counter() - began

    for name, rows, seconds in (("ctgan", ctgan_rows, ctgan_seconds), ("ours", our_rows, our_seconds)):
        similarity = column_similarity(rows, holdout, discrete)
        result[name] = {
            "tstr_auc": tstr_auc(rows, real_train, holdout, discrete),
            "mean_column_similarity": float(np.mean(list(similarity.values()))),
            "column_similarity": similarity,
            "missing_rate": {c: float(rows[c].isna().mean()) for c in rows.columns if frame[c].isna().any()},
            "fit_and_sample_seconds": seconds,
        }
    result["real_missing_rate"] = {c: float(holdout[c].isna().mean()) for c in frame.columns if frame[c].isna().any()}
    return result


# ------------------------------------------------------------------------- main


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-rows", type=int, default=300_000, help="rows of the large table for (a); 0 skips it")
    parser.add_argument("--big-source", choices=["adult", "kdd"], default="adult")
    parser.add_argument("--epoch-epochs", type=int, default=5, help="epochs timed per run for (b); 0 skips (b)")
    parser.add_argument("--quality-epochs", type=int, default=30, help="epochs for (c); 0 skips (c)")
    parser.add_argument("--repeats", type=int, default=1, help="repeat (a) and (b), alternating ctgan and ours")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for our engine (default: its own)")
    parser.add_argument(
        "--ctgan-threads", type=int, default=None, help="torch threads for ctgan (default: torch's, i.e. all cores)"
    )
    parser.add_argument(
        "--epoch-threads", default="", help="for (b): comma-separated thread counts, each run for both (e.g. 1,2)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--quick", action="store_true", help="--big-rows 100000 --epoch-epochs 3 --quality-epochs 5")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.big_rows, args.epoch_epochs, args.quality_epochs = 100_000, 3, 5
    from services.trainer.engine import default_threads

    threads = args.threads or default_threads()
    warnings.simplefilter("ignore")

    adult, discrete = load_adult()
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "ctgan": ctgan.__version__},
        "threads_ours": threads,
        "threads_ctgan": args.ctgan_threads or torch.get_num_threads(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    rows: list[tuple[str, float, float]] = []

    if not args.skip_overhead:
        tables = [("adult", adult, discrete)]
        if args.big_rows:
            big, big_discrete = load_big(args.big_source, args.big_rows)
            tables.append((f"{args.big_source} x{len(big)} rows", big, big_discrete))
        for label, frame, cols in tables:
            theirs, ours = [], []
            for _ in range(args.repeats):
                print(f"(a) overhead on {label}: ctgan ...", flush=True)
                theirs.append(overhead_ctgan(frame, cols, args.ctgan_threads))
                print(f"(a) overhead on {label}: ours ...", flush=True)
                ours.append(overhead_ours(frame, cols, threads))
            results[f"overhead[{label}]"] = {"ctgan_seconds": theirs, "ours_seconds": ours}
            rows.append((f"fixed overhead, {label} ({len(frame)} rows)", _median(theirs), _median(ours)))

    if args.epoch_epochs:
        pairs = [(args.ctgan_threads, threads)]
        if args.epoch_threads:
            pairs = [(int(t), int(t)) for t in args.epoch_threads.split(",")]
        for ctgan_threads, our_threads in pairs:
            label = f"ctgan {ctgan_threads or torch.get_num_threads()} / ours {our_threads} threads"
            theirs: Durations = []
            ours: Durations = []
            for repeat in range(args.repeats):
                print(f"(b) {args.epoch_epochs} epochs on adult, {label}: ctgan ...", flush=True)
                theirs += epochs_ctgan(adult, discrete, args.epoch_epochs, ctgan_threads, args.seed + repeat)
                print(f"(b) {args.epoch_epochs} epochs on adult, {label}: ours ...", flush=True)
                ours += epochs_ours(adult, discrete, args.epoch_epochs, our_threads, args.seed + repeat)
            results[f"epoch_seconds[{label}]"] = {"ctgan": theirs, "ours": ours}
            rows.append((f"s/epoch wall, {label}", _median([w for w, _ in theirs]), _median([w for w, _ in ours])))
            rows.append((f"s/epoch CPU, {label}", _median([c for _, c in theirs]), _median([c for _, c in ours])))

    if args.quality_epochs:
        print(f"(c) quality after {args.quality_epochs} epochs ...", flush=True)
        results["quality"] = quality(adult, discrete, args.quality_epochs, threads, args.ctgan_threads, args.seed)

    print()
    print(f"threads: ours {threads}, ctgan {results['threads_ctgan']}")
    print(f"{'measure (seconds)':<52} {'ctgan':>10} {'ours':>10} {'speed-up':>9}")
    for label, theirs_value, ours_value in rows:
        print(f"{label:<52} {theirs_value:>10.2f} {ours_value:>10.2f} {theirs_value / ours_value:>8.2f}x")
    if "quality" in results:
        q = results["quality"]
        print()
        print(f"quality after {q['epochs']} epochs (train {q['train_rows']} rows, holdout {q['holdout_rows']} rows)")
        print(f"{'':<48} {'ctgan':>10} {'ours':>10}")
        print(
            f"{'TSTR ROC-AUC (income), TRTR = ' + format(q['trtr_auc'], '.3f'):<48} "
            f"{q['ctgan']['tstr_auc']:>10.3f} {q['ours']['tstr_auc']:>10.3f}"
        )
        print(
            f"{'mean column similarity (1-KS / 1-TV)':<48} "
            f"{q['ctgan']['mean_column_similarity']:>10.3f} {q['ours']['mean_column_similarity']:>10.3f}"
        )
        for column, rate in q["real_missing_rate"].items():
            print(
                f"{'missing rate ' + column + ' (real ' + format(rate, '.3f') + ')':<48} "
                f"{q['ctgan']['missing_rate'][column]:>10.3f} {q['ours']['missing_rate'][column]:>10.3f}"
            )
    results["table"] = [{"measure": m, "ctgan": a, "ours": b, "speedup": a / b} for m, a, b in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench_training-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
