"""The ``synth`` command.

    synth up                       start every service locally, restart any that dies (Ctrl-C stops all)
    synth demo                     start, upload the bundled Adult table, report
    synth datasets upload FILE     upload a CSV with a progress bar
    synth datasets list|show|preview|delete
    synth evaluate MODEL [--detach]             an evaluation job, followed to its report
    synth evaluations list|show|watch|cancel    evaluation jobs

Every listing command takes ``--json`` for scripts. Addresses come from
--address / SYNTH_ADDRESS (one front door) or the per-service flags and
SYNTH_TRAINER_ADDRESS etc.; the defaults are the local ``synth up`` ports.
"""

from __future__ import annotations

import _thread
import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from synth.v1 import common_pb2

from services.common import labels
from synth_client.client import SynthClient
from synth_client.errors import SynthError
from synth_client.local import LocalPlatform

BUNDLED_DATASET = Path(__file__).resolve().parents[1] / "data" / "adult.csv"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except SynthError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    except (RuntimeError, TimeoutError, FileNotFoundError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synth", description="Synthetic tabular data platform.")
    parser.add_argument("--address", help="one address for every service (the gateway)")
    parser.add_argument("--trainer", help="trainer address (datasets, training, models)")
    parser.add_argument("--sampler", help="sampler address")
    parser.add_argument("--evaluator", help="evaluator address")
    sub = parser.add_subparsers(title="commands")

    up = sub.add_parser("up", help="start every service locally, restart any that dies, until Ctrl-C")
    _platform_flags(up)
    up.set_defaults(handler=_cmd_up)

    demo = sub.add_parser("demo", help="start the services and run the main job on the bundled dataset")
    _platform_flags(demo)
    demo.add_argument("--dataset", type=Path, default=BUNDLED_DATASET, help="CSV to use (default: Adult)")
    _engine_flags(demo)
    demo.add_argument("--rows", type=int, default=10_000, help="synthetic rows to generate")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--target", help="column to predict for utility (default: income, if present)")
    demo.add_argument(
        "--exit",
        action="store_true",
        help="stop the services when done (default: keep them running if a terminal is attached)",
    )
    demo.set_defaults(handler=_cmd_demo)

    datasets = sub.add_parser("datasets", help="upload and manage real tables").add_subparsers(title="actions")
    upload = datasets.add_parser("upload", help="upload a CSV (or .csv.gz) file")
    upload.add_argument("file", type=Path)
    upload.add_argument("--name", help="display name (default: the file name)")
    upload.add_argument("--encoding", default="", help="text encoding (default utf-8)")
    upload.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="COLUMN=KIND",
        help="override a column's kind: continuous, categorical, datetime, identifier, free_text",
    )
    upload.add_argument(
        "--missing", action="append", default=[], metavar="MARKER", help="a missing-value marker (repeatable)"
    )
    upload.add_argument("--json", action="store_true")
    upload.set_defaults(handler=_cmd_upload)

    listing = datasets.add_parser("list", help="list datasets, newest first")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_cmd_list)

    show = datasets.add_parser("show", help="a dataset and its schema")
    show.add_argument("dataset_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_cmd_show)

    preview = datasets.add_parser("preview", help="the first rows of a dataset")
    preview.add_argument("dataset_id")
    preview.add_argument("-n", "--rows", type=int, default=10)
    preview.add_argument("--json", action="store_true")
    preview.set_defaults(handler=_cmd_preview)

    delete = datasets.add_parser("delete", help="delete a dataset")
    delete.add_argument("dataset_id")
    delete.set_defaults(handler=_cmd_delete)

    train = sub.add_parser("train", help="train a model on a dataset (the engine picked for you), with live progress")
    train.add_argument("dataset_id")
    _engine_flags(train)
    train.add_argument("--batch-size", type=int, default=0, help="default 500 (a multiple of pac, 10)")
    train.add_argument("--target", default="", help="column to stratify the holdout on (and evaluate later)")
    train.add_argument("--seed", type=int)
    train.add_argument("--holdout", type=float, help="share of rows held out (default 0.2)")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    train.add_argument(
        "--discrete", action="append", default=[], metavar="COL", help="learn COL as categories (repeatable)"
    )
    train.add_argument(
        "--exclude", action="append", default=[], metavar="COL", help="do not learn COL: left empty (repeatable)"
    )
    train.add_argument(
        "--column-policy",
        action="append",
        default=[],
        type=_column_policy,
        metavar="COL=POLICY",
        help="learn, fake (values in the source's format, never a real one), id (rows numbered) or drop "
        "(repeatable; default: identifiers and free text fake, the rest learn)",
    )
    train.add_argument(
        "--rare-min-count",
        type=int,
        default=0,
        metavar="K",
        help="values fewer than K training rows hold are never emitted as they are (default 5)",
    )
    train.add_argument(
        "--allow-rare-values",
        action="store_true",
        help="turn rare-value protection off: rare values may appear verbatim in synthetic rows",
    )
    train.add_argument("--fake-locale", default="", help="Faker locale of fake names, e-mails, ... (default en_US)")
    train.add_argument("--detach", action="store_true", help="start the job and return at once")
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=_cmd_train)

    jobs = sub.add_parser("jobs", help="training jobs").add_subparsers(title="actions")
    jlist = jobs.add_parser("list", help="jobs, newest first")
    jlist.add_argument("--json", action="store_true")
    jlist.set_defaults(handler=_cmd_jobs_list)
    jwatch = jobs.add_parser("watch", help="re-attach to a job's progress")
    jwatch.add_argument("job_id")
    jwatch.add_argument("--after", type=int, default=0, help="only events after this sequence number")
    jwatch.add_argument("--json", action="store_true", help="one JSON event per line")
    jwatch.set_defaults(handler=_cmd_jobs_watch)
    jcancel = jobs.add_parser("cancel", help="cancel a queued or running job")
    jcancel.add_argument("job_id")
    jcancel.set_defaults(handler=_cmd_jobs_cancel)

    sample = sub.add_parser("sample", help="generate synthetic rows into a file")
    sample.add_argument("model_id")
    sample.add_argument("-n", "--rows", type=int, required=True)
    sample.add_argument("-o", "--output", type=Path, required=True, help=".csv, .arrow or .parquet")
    sample.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="CONDITION",
        help="every row satisfies it: 'age>=18', 'sex=Female', 'race in White,Black', "
        "'dropoff>@pickup' (@ names a column) (repeatable)",
    )
    sample.add_argument("--seed", type=int, help="same seed, same rows")
    sample.set_defaults(handler=_cmd_sample)

    evaluate = sub.add_parser("evaluate", help="score a model's synthetic rows: utility, fidelity, privacy")
    evaluate.add_argument("model_id")
    evaluate.add_argument("--target", default="", help="column to predict for utility (TSTR)")
    evaluate.add_argument("--dataset", default="", help="real dataset (default: the one the model learned)")
    evaluate.add_argument("--task", choices=["auto", "classification", "regression"], default="auto")
    evaluate.add_argument("--rows", type=int, default=0, help="synthetic rows to draw (default: training rows)")
    evaluate.add_argument("--seed", type=int)
    evaluate.add_argument("--explain", action="store_true", help="print every metric's sentence")
    evaluate.add_argument("--html", type=Path, help="also write a self-contained HTML report")
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument(
        "--detach", action="store_true", help="start the evaluation job, print its id and return at once"
    )
    evaluate.set_defaults(handler=_cmd_evaluate)

    evaluations = sub.add_parser("evaluations", help="evaluation jobs").add_subparsers(title="actions")
    elist = evaluations.add_parser("list", help="evaluation jobs, newest first")
    elist.add_argument("--json", action="store_true")
    elist.set_defaults(handler=_cmd_evaluations_list)
    eshow = evaluations.add_parser("show", help="an evaluation job: state, progress, report or error")
    eshow.add_argument("job_id")
    eshow.add_argument("--json", action="store_true")
    eshow.set_defaults(handler=_cmd_evaluations_show)
    ewatch = evaluations.add_parser("watch", help="re-attach to an evaluation; shows the report when it is done")
    ewatch.add_argument("job_id")
    ewatch.add_argument("--after", type=int, default=0, help="only events after this sequence number")
    ewatch.add_argument("--explain", action="store_true", help="print every metric's sentence")
    ewatch.add_argument("--html", type=Path, help="also write a self-contained HTML report")
    ewatch.add_argument("--json", action="store_true", help="one JSON event per line")
    ewatch.set_defaults(handler=_cmd_evaluations_watch)
    ecancel = evaluations.add_parser("cancel", help="cancel a queued or running evaluation")
    ecancel.add_argument("job_id")
    ecancel.set_defaults(handler=_cmd_evaluations_cancel)

    report = sub.add_parser("report", help="show a stored report")
    report.add_argument("report_id")
    report.add_argument("--html", type=Path, help="write a self-contained HTML report with charts")
    report.add_argument("--explain", action="store_true")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=_cmd_report)

    reports = sub.add_parser("reports", help="stored reports").add_subparsers(title="actions")
    rlist = reports.add_parser("list", help="reports, newest first")
    rlist.add_argument("--json", action="store_true")
    rlist.set_defaults(handler=_cmd_reports_list)

    models = sub.add_parser("models", help="trained models").add_subparsers(title="actions")
    mlist = models.add_parser("list", help="models, newest first")
    mlist.add_argument("--json", action="store_true")
    mlist.set_defaults(handler=_cmd_models_list)
    mshow = models.add_parser("show", help="a model's metadata")
    mshow.add_argument("model_id")
    mshow.add_argument("--json", action="store_true")
    mshow.set_defaults(handler=_cmd_models_show)
    mdelete = models.add_parser("delete", help="delete a model")
    mdelete.add_argument("model_id")
    mdelete.set_defaults(handler=_cmd_models_delete)
    return parser


def _platform_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--data-dir", type=Path, default=Path("var"), help="store and logs folder (default ./var)")
    cmd.add_argument("--free-ports", action="store_true", help="pick free ports instead of the defaults")
    cmd.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="add this to every default port (a second platform beside a running one)",
    )
    cmd.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        help="restarts of a service that dies, within 60 s, before everything stops (default 3; 0: none)",
    )


def _client(args: argparse.Namespace) -> SynthClient:
    return (
        SynthClient.from_env(trainer=args.trainer, sampler=args.sampler, evaluator=args.evaluator)
        if not (args.address)
        else SynthClient(args.address)
    )


def _start_platform(args: argparse.Namespace) -> LocalPlatform:
    """Start the services and their supervisor. If the supervisor gives up on a
    service it stops everything and interrupts the main thread; ``_stop_platform``
    then raises its ``ServiceFailed``."""
    platform = LocalPlatform(
        args.data_dir,
        ports="free" if args.free_ports else "default",
        port_offset=args.port_offset,
        restart_limit=max(0, args.max_restarts),
        on_event=lambda message: sys.stderr.write(f"supervisor: {message}\n"),
    )
    sys.stderr.write("starting services (trainer, sampler, evaluator, then the gateway)...\n")
    platform.start()
    pids = platform.pids()
    for spec in platform.specs:
        sys.stderr.write(
            f"  {spec.name:<10} grpc {platform.address(spec.name):<18} metrics {platform.metrics_url(spec.name)}"
            f"  pid {pids.get(spec.name, '-')}\n"
        )
    sys.stderr.write(f"  web        {platform.web_url}  (HTTP API docs: {platform.web_url}docs)\n")
    sys.stderr.write(f"  store      {platform.store_dir}\n  logs       {platform.log_dir}\n")
    platform.supervise(on_failure=lambda _failure: _thread.interrupt_main())
    return platform


def _stop_platform(platform: LocalPlatform) -> None:
    """Stop every service (a second SIGTERM or Ctrl-C must not cut that short);
    raise the supervisor's ``ServiceFailed`` if it gave up on one."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        sys.stderr.write("stopping services...\n")
        codes = platform.stop()
        if codes:
            sys.stderr.write("stopped: " + ", ".join(f"{n} (exit {c})" for n, c in codes.items()) + "\n")
    finally:
        signal.signal(signal.SIGINT, previous)
    if platform.failure is not None:
        raise platform.failure


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal) stop the command as Ctrl-C does: the
    handler raises KeyboardInterrupt and takes no lock (an ``Event.set`` there can
    deadlock against the main thread's ``Event.wait``, which holds the event's
    lock when the signal lands)."""

    def _interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait_for_interrupt() -> None:
    """Until Ctrl-C, SIGTERM or SIGHUP, or the supervisor giving up (it interrupts
    the main thread). A short sleep, not ``signal.pause``: a signal that lands in
    another thread, or the supervisor's interrupt, would not end a pause."""
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def _cmd_up(args: argparse.Namespace) -> int:
    with _signals_interrupt():
        platform = _start_platform(args)
        sys.stderr.write(
            f"all services SERVING; one that dies is restarted (at most {platform.restart_limit} times in "
            f"{platform.restart_window:.0f} s). Press Ctrl-C to stop.\n"
        )
        try:
            _wait_for_interrupt()
        finally:
            _stop_platform(platform)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """The main job: upload → train → generate → evaluate, on the local platform."""
    if not args.dataset.is_file():
        raise FileNotFoundError(f"dataset {args.dataset} not found")
    out = args.data_dir / "demo"
    out.mkdir(parents=True, exist_ok=True)
    with _signals_interrupt():
        platform = _start_platform(args)
        try:
            return _demo(args, platform, out)
        finally:
            _stop_platform(platform)


def _demo(args: argparse.Namespace, platform: LocalPlatform, out: Path) -> int:
    with SynthClient(
        trainer=platform.address("trainer"),
        sampler=platform.address("sampler"),
        evaluator=platform.address("evaluator"),
    ) as client:
        print(f"\n== 1/4 upload {args.dataset.name}")
        dataset = client.upload_dataset(args.dataset, on_progress=_progress_bar(args.dataset.stat().st_size))
        _print_dataset(dataset)
        names = [c.name for c in dataset.schema.columns]
        target = args.target if args.target is not None else ("income" if "income" in names else "")

        print(f"\n== 2/4 train: {_training_plan(args)}, seed {args.seed}")
        job = client.start_training(dataset.id, **_engine_settings(args), target_column=target, seed=args.seed)
        if _follow(client, job.id, 0, as_json=False) != 0:
            return 1
        model_id = client.get_job(job.id).model_id

        synthetic = out / "synthetic.csv"
        print(f"\n== 3/4 generate {args.rows} synthetic rows into {synthetic}")
        from tqdm import tqdm

        with tqdm(total=args.rows, unit="rows", unit_scale=True, disable=None, leave=False) as bar:
            summary = client.sample_to_file(model_id, args.rows, synthetic, seed=args.seed, on_progress=bar.update)
        print(f"wrote {summary.row_count} rows ({summary.row_count / max(summary.seconds, 1e-9):,.0f} rows/s)")
        _print_table(*_csv_head(synthetic, 5))

        print(f"\n== 4/4 evaluate against the real rows (target {target or 'none'})")
        report = _run_evaluation(client, dataset.id, model_id, target_column=target, seed=args.seed)
        print_report(report)
        from synth_client.report_html import render_report

        html_path = out / "report.html"
        html_path.write_text(render_report(report), encoding="utf-8")
        print(f"\nHTML report: {html_path}")
    print(f"web page:    {platform.web_url}   (upload, train, generate and evaluate in the browser)")
    keep = not args.exit and sys.stdin.isatty()
    if keep:
        sys.stderr.write("\nservices keep running; press Ctrl-C to stop.\n")
        _wait_for_interrupt()
    return 0


def _csv_head(path: Path, rows: int) -> tuple[list[str], list[list[str]]]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [next(reader) for _ in range(rows)]


def _progress_bar(total: int) -> Callable[[int, int], None]:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc="upload", leave=False, disable=None)

    def update(sent: int, _total: int) -> None:
        bar.update(sent - bar.n)
        if sent >= total:
            bar.close()

    return update


def _cmd_upload(args: argparse.Namespace) -> int:
    kinds = {}
    for item in args.kind:
        column, sep, kind = item.partition("=")
        if not sep:
            raise SynthError("INVALID_ARGUMENT", f"--kind {item!r}: expected COLUMN=KIND")
        kinds[column] = kind
    with _client(args) as client:
        dataset = client.upload_dataset(
            args.file,
            name=args.name,
            encoding=args.encoding,
            kinds=kinds,
            missing_markers=args.missing,
            on_progress=None if args.json else _progress_bar(args.file.stat().st_size),
        )
    if args.json:
        _print_json(dataset)
    else:
        _print_dataset(dataset)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        items = client.list_datasets()
    if args.json:
        print(json.dumps([_to_dict(d) for d in items], indent=1))
        return 0
    rows = [[d.id, d.display_name, str(d.row_count), str(d.column_count), _when(d)] for d in items]
    _print_table(["ID", "NAME", "ROWS", "COLUMNS", "CREATED"], rows)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset = client.get_dataset(args.dataset_id)
    if args.json:
        _print_json(dataset)
    else:
        _print_dataset(dataset)
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    with _client(args) as client:
        columns, rows = client.preview_dataset(args.dataset_id, args.rows)
    if args.json:
        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=1))
    else:
        _print_table(columns, [["<missing>" if v is None else v for v in row] for row in rows])
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete_dataset(args.dataset_id)
    print(f"deleted {args.dataset_id}")
    return 0


def _engine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--synthesizer",
        choices=["auto", "ctgan", "tvae", "copula"],
        default="auto",
        help="the engine; auto (default) tries each on a sample of the rows and trains the best",
    )
    parser.add_argument(
        "--preset",
        choices=["quick", "balanced", "best"],
        help="time budget of the job: quick 1 min, balanced 3 min (the default), best 10 min",
    )
    parser.add_argument("--time-budget", type=_duration, help="instead of a preset, e.g. 90s, 5m, 1h")
    parser.add_argument("--epochs", type=int, default=0, help="train exactly this many epochs (no time budget)")


_POLICIES = ("learn", "fake", "id", "drop")


def _column_policy(text: str) -> tuple[str, str]:
    """'Name=fake' as (column, policy)."""
    column, sep, policy = text.rpartition("=")
    policy = policy.strip().lower()
    if not sep or not column or policy not in _POLICIES:
        raise argparse.ArgumentTypeError(f"expected COLUMN=POLICY with POLICY one of {', '.join(_POLICIES)}: {text!r}")
    return column, policy


def _duration(text: str) -> float:
    """'90', '90s', '5m' or '1h' in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    unit = units.get(text[-1:].lower())
    try:
        value = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 90s, 5m or 1h)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a time budget must be positive")
    return value


_PRESET_SECONDS = {"quick": 60, "balanced": 180, "best": 600}


def _engine_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "synthesizer": args.synthesizer,
        "preset": args.preset or "",
        "time_budget_seconds": args.time_budget or 0.0,
        "epochs": args.epochs,
    }


def _training_plan(args: argparse.Namespace) -> str:
    """What the job will do, in words, before it starts."""
    engine = "the best of ctgan, tvae and copula" if args.synthesizer == "auto" else args.synthesizer
    if args.time_budget:
        limit = f"within {args.time_budget:.0f}s"
    elif args.epochs and not args.preset:
        limit = f"{args.epochs} epochs"
    else:
        preset = args.preset or "balanced"
        limit = f"preset {preset}: at most {_PRESET_SECONDS[preset] // 60} min"
    return f"{engine}, {limit}"


def _cmd_train(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.start_training(
            args.dataset_id,
            **_engine_settings(args),
            batch_size=args.batch_size,
            target_column=args.target,
            seed=args.seed,
            holdout_fraction=args.holdout,
            device=args.device,
            discrete_columns=args.discrete,
            exclude_columns=args.exclude,
            column_policies=dict(args.column_policy),
            rare_value_min_count=args.rare_min_count,
            allow_rare_values=args.allow_rare_values,
            fake_locale=args.fake_locale,
        )
        if args.detach:
            _print_json(job) if args.json else print(f"started {job.id}; watch with: synth jobs watch {job.id}")
            return 0
        sys.stderr.write(f"job {job.id} queued ({_training_plan(args)}, seed {job.config.seed})\n")
        return _follow(client, job.id, 0, args.json)


def _follow(client: SynthClient, job_id: str, after: int, as_json: bool) -> int:
    """Print a job's events until it ends; Ctrl-C detaches and says how to re-attach."""
    from tqdm import tqdm

    bar = None
    last = after
    try:
        for event in client.watch_job(job_id, after):
            last = event.sequence
            kind = event.WhichOneof("event")
            if as_json:
                print(json.dumps(_to_dict(event)), flush=True)
            elif kind == "epoch":
                e = event.epoch
                if bar is None:
                    bar = tqdm(total=e.epochs, unit="epoch", desc="training", disable=None)
                    bar.update(e.epoch - 1)
                bar.update(e.epoch - bar.n)
                bar.set_postfix(
                    G=f"{e.generator_loss:.3f}", D=f"{e.discriminator_loss:.3f}", eta=f"{e.eta_seconds:.0f}s"
                )
            elif kind == "started":
                st = event.started
                sys.stderr.write(
                    f"started on {st.device}: {st.training_rows} training rows, {st.holdout_rows} held out, "
                    f"prepared in {st.preparation_seconds:.1f}s\n"
                )
            elif kind == "engine_tried":
                t = event.engine_tried
                utility = f", utility {t.utility:.3f}" if t.HasField("utility") else ""
                sys.stderr.write(
                    f"  tried {t.engine:<6} score {t.score:.3f} (fidelity {t.fidelity:.3f}{utility}; "
                    f"{t.epochs} epochs in {t.seconds:.1f}s)\n"
                )
            elif kind == "engine_chosen":
                sys.stderr.write(f"chose {event.engine_chosen.engine}: {event.engine_chosen.reason}\n")
            elif kind == "resumed":
                sys.stderr.write(f"resumed from epoch {event.resumed.from_epoch}\n")
            elif kind in ("succeeded", "failed", "cancelled"):
                if bar is not None:
                    bar.close()
                if kind == "succeeded":
                    print(f"model {event.succeeded.model_id} (trained in {event.succeeded.training_seconds:.1f}s)")
                    return 0
                if kind == "failed":
                    sys.stderr.write(f"job failed: {event.failed.error_code}: {event.failed.error_message}\n")
                    return 1
                sys.stderr.write(f"job cancelled after {event.cancelled.epochs_completed} epochs\n")
                return 1
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        sys.stderr.write(f"\ndetached; the job goes on. Re-attach with: synth jobs watch {job_id} --after {last}\n")
        return 130
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    with _client(args) as client, tqdm(total=args.rows, unit="rows", unit_scale=True, disable=None) as bar:
        summary = client.sample_to_file(
            args.model_id, args.rows, args.output, seed=args.seed, where=args.where, on_progress=bar.update
        )
    rate = summary.row_count / summary.seconds if summary.seconds else 0.0
    extra = f", {summary.acceptance_rate:.1%} of generated rows met the conditions" if args.where else ""
    print(f"wrote {summary.row_count} rows to {args.output} ({rate:,.0f} rows/s{extra})")
    return 0


def _run_evaluation(client: SynthClient, dataset_id: str, model_id: str, **kwargs: Any) -> Any:
    """Start an evaluation job and follow it with a progress bar; returns the report."""
    job = client.start_evaluation(dataset_id, model_id=model_id, **kwargs)
    return _follow_evaluation(client, job.id)


def _follow_evaluation(client: SynthClient, job_id: str, after: int = 0) -> Any:
    """An evaluation job's progress as a bar until it ends; returns its report. A
    failed job raises its error; Ctrl-C detaches (the job goes on) and says how
    to re-attach."""
    from tqdm import tqdm

    last = after
    with tqdm(total=100, unit="%", desc="evaluating", disable=None, bar_format="{l_bar}{bar}| {desc}") as bar:
        try:
            for event in client.watch_evaluation(job_id, after):
                last = event.sequence
                kind = event.WhichOneof("event")
                if kind == "queued" and event.queued.position:
                    bar.set_description(f"queued ({event.queued.position} ahead)")
                elif kind == "started" and event.started.attempt > 1:
                    bar.update(-bar.n)
                    bar.set_description(f"computing again after an evaluator restart (run {event.started.attempt})")
                elif kind == "progress":
                    bar.update(max(0, round(event.progress.fraction * 100) - bar.n))
                    bar.set_description(event.progress.stage[:60])
                elif kind == "succeeded":
                    bar.update(100 - bar.n)
                    return client.get_report(event.succeeded.report_id)
                elif kind == "failed":
                    raise SynthError.from_status(event.failed.status)
                elif kind == "cancelled":
                    raise SynthError("CANCELLED", f"evaluation {job_id} was cancelled", reason="JOB_CANCELLED")
        except KeyboardInterrupt:
            bar.close()
            sys.stderr.write(
                f"\ndetached; the evaluation goes on. Re-attach with: synth evaluations watch {job_id} --after {last}"
                f"\n(or stop it: synth evaluations cancel {job_id})\n"
            )
            raise
    raise SynthError("UNAVAILABLE", f"evaluation {job_id}'s events ended early; watch it again")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset_id = args.dataset or client.get_model(args.model_id).dataset_id
        settings = dict(target_column=args.target, task=args.task, seed=args.seed, synthetic_rows=args.rows)
        if args.detach:
            job = client.start_evaluation(dataset_id, model_id=args.model_id, **settings)
            if args.json:
                _print_json(job)
            else:
                print(f"started {job.id}; watch with: synth evaluations watch {job.id}")
            return 0
        report = _run_evaluation(client, dataset_id, args.model_id, **settings)
    return _show_report(report, args)


def _cmd_evaluations_list(args: argparse.Namespace) -> int:
    from synth.v1 import training_pb2

    with _client(args) as client:
        found = client.list_evaluation_jobs()
    if args.json:
        print(json.dumps([_to_dict(j) for j in found], indent=1))
        return 0
    rows = [
        [
            j.id,
            j.model_id or j.synthetic_dataset_id,
            labels.label(training_pb2.JobState, j.state),
            f"{j.progress.fraction:.0%}",
            j.report_id,
            j.error.message[:40],
        ]
        for j in found
    ]
    _print_table(["ID", "SYNTHETIC SOURCE", "STATE", "DONE", "REPORT", "ERROR"], rows)
    return 0


def _cmd_evaluations_show(args: argparse.Namespace) -> int:
    from synth.v1 import training_pb2

    with _client(args) as client:
        job = client.get_evaluation_job(args.job_id)
    if args.json:
        _print_json(job)
        return 0
    print(f"evaluation {job.id}: {labels.label(training_pb2.JobState, job.state)}")
    print(f"  real dataset {job.dataset_id}, synthetic rows from {job.model_id or job.synthetic_dataset_id}")
    print(f"  target {job.target_column or 'none'}, seed {job.seed}")
    if job.progress.stage:
        print(f"  {job.progress.stage} ({job.progress.fraction:.0%})")
    if job.report_id:
        print(f"  report {job.report_id} (show it: synth report {job.report_id})")
    if job.HasField("error"):
        error = SynthError.from_status(job.error)
        print(f"  failed ({error.reason or error.code}): {error}")
    return 0


def _cmd_evaluations_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.json:
            for event in client.watch_evaluation(args.job_id, args.after):
                print(json.dumps(_to_dict(event)), flush=True)
                if event.WhichOneof("event") in ("failed", "cancelled"):
                    return 1
            return 0
        report = _follow_evaluation(client, args.job_id, args.after)
    return _show_report(report, args)


def _cmd_evaluations_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.cancel_evaluation(args.job_id)
    print(f"cancel requested for {args.job_id}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    with _client(args) as client:
        report = client.get_report(args.report_id)
    return _show_report(report, args)


def _show_report(report: Any, args: argparse.Namespace) -> int:
    if getattr(args, "html", None):
        from synth_client.report_html import render_report

        args.html.write_text(render_report(report), encoding="utf-8")
        sys.stderr.write(f"wrote {args.html}\n")
    if args.json:
        _print_json(report)
    else:
        print_report(report, explain=args.explain)
    return 0


def print_report(report: Any, *, explain: bool = False) -> None:
    from synth.v1 import evaluation_pb2

    shown = {"fail": "FAIL", "not_applicable": "n/a"}  # a failure stands out in a terminal

    def verdict(number: int) -> str:
        text = labels.label(evaluation_pb2.Verdict, number) or "?"
        return shown.get(text, text)

    print(f"report {report.id}: {verdict(report.verdict)}")
    print(f"  {report.summary}")
    if report.engine:
        print(
            f"  engine: {report.engine}"
            + (f" (chosen automatically: {report.engine_reason})" if report.engine_reason else "")
        )
    for step in report.next_steps:
        print(f"  next: {step}")
    print(
        f"  scores (0 useless .. 1 like real data): utility {report.utility_score:.2f}, "
        f"fidelity {report.fidelity_score:.2f}, privacy {report.privacy_score:.2f}"
    )
    print(
        f"  rows: {report.training_rows} real training, {report.holdout_rows} real held out, "
        f"{report.synthetic_rows} synthetic\n"
    )
    rows = []
    for m in report.metrics:
        if m.name.startswith(("ks_complement[", "tv_complement[")):
            continue  # per-column details: in --json, --html and the web page
        rows.append(
            [
                labels.label(evaluation_pb2.MetricCategory, m.category) or "?",
                m.name,
                f"{m.value:.3f}",
                f"{m.baseline_value:.3f}" if m.HasField("baseline_value") else "-",
                f"{m.holdout_value:.3f}" if m.HasField("holdout_value") else "-",
                ("≥ " if m.higher_is_better else "≤ ") + f"{m.threshold:.3f}",
                verdict(m.verdict),
            ]
        )
    _print_table(["CATEGORY", "METRIC", "SYNTHETIC", "NAIVE BASELINE", "REAL HOLDOUT", "THRESHOLD", "VERDICT"], rows)
    for m in report.metrics:
        if explain or m.verdict == evaluation_pb2.VERDICT_FAIL:
            if not m.name.startswith(("ks_complement[", "tv_complement[")) or explain:
                print(f"\n- {m.name}: {m.explanation}")


def _cmd_reports_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        reports = client.list_reports()
    if args.json:
        print(json.dumps([_to_dict(r) for r in reports], indent=1))
        return 0
    rows = [
        [
            r.id,
            r.model_id or r.synthetic_dataset_id,
            f"{r.utility_score:.2f}",
            f"{r.fidelity_score:.2f}",
            f"{r.privacy_score:.2f}",
        ]
        for r in reports
    ]
    _print_table(["ID", "SYNTHETIC SOURCE", "UTILITY", "FIDELITY", "PRIVACY"], rows)
    return 0


def _cmd_jobs_list(args: argparse.Namespace) -> int:
    from synth.v1 import training_pb2

    with _client(args) as client:
        jobs = client.list_jobs()
    if args.json:
        print(json.dumps([_to_dict(j) for j in jobs], indent=1))
        return 0
    rows = [
        [
            j.id,
            j.dataset_id,
            labels.label(training_pb2.JobState, j.state),
            f"{j.epochs_completed}/{j.config.epochs}",
            j.model_id,
            j.error_message[:40],
        ]
        for j in jobs
    ]
    _print_table(["ID", "DATASET", "STATE", "EPOCHS", "MODEL", "ERROR"], rows)
    return 0


def _cmd_jobs_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _follow(client, args.job_id, args.after, args.json)


def _cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.cancel_job(args.job_id)
    print(f"cancel requested for {args.job_id}")
    return 0


def _cmd_models_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.list_models()
    if args.json:
        print(json.dumps([_to_dict(m) for m in models], indent=1))
        return 0
    rows = [
        [
            m.id,
            m.dataset_id,
            m.engine or "ctgan",
            str(m.epochs_trained or m.config.epochs),
            f"{m.training_seconds:.0f}s",
            m.device,
            f"{m.size_bytes / 1e6:.1f} MB",
        ]
        for m in models
    ]
    _print_table(["ID", "DATASET", "ENGINE", "EPOCHS", "TRAINED IN", "DEVICE", "SIZE"], rows)
    return 0


def _cmd_models_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = client.get_model(args.model_id)
    if args.json:
        _print_json(model)
        return 0
    h = model.holdout
    print(f"model {model.id}  from dataset {model.dataset_id} (job {model.job_id})")
    print(
        f"  {model.engine or 'ctgan'}: trained {model.epochs_trained or model.config.epochs} epochs in "
        f"{model.training_seconds:.1f}s on {model.device}, seed {model.config.seed}"
    )
    if model.HasField("selection"):
        sel = model.selection
        print(f"  chosen automatically ({sel.rows} rows tried, {sel.seconds:.0f}s): {sel.reason}")
        for t in sel.trials:
            utility = f"{t.utility:.3f}" if t.HasField("utility") else "-"
            print(f"    {t.engine:<7} score {t.score:.3f}  fidelity {t.fidelity:.3f}  utility {utility}")
    print(
        f"  rows: {h.training_rows} training, {h.holdout_rows} held out"
        + (f" (stratified on {h.stratify_column})" if h.stratify_column else "")
    )
    cfg = model.config
    protection = (
        "off: rare values may be copied"
        if cfg.allow_rare_values
        else f"values held by fewer than {cfg.rare_value_min_count or 5} training rows are never emitted"
    )
    print(f"  rare-value protection: {protection}")
    for c in model.schema.columns:
        if c.policy and c.policy != "learn":
            print(f"    {c.name}: {c.policy}" + (f" ({c.fake_format})" if c.fake_format else ""))
    if model.loss_history:
        last = model.loss_history[-1]
        print(f"  final losses: generator {last.generator_loss:.3f}, discriminator {last.discriminator_loss:.3f}")
    print("  libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(model.library_versions.items())))
    return 0


def _cmd_models_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete_model(args.model_id)
    print(f"deleted {args.model_id}")
    return 0


# ---- output ---------------------------------------------------------------
def _to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _print_json(message: Message) -> None:
    print(json.dumps(_to_dict(message), indent=1))


def _when(dataset: Any) -> str:
    return dataset.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def _print_dataset(d: Any) -> None:
    print(f"dataset {d.id}  {d.display_name}")
    print(f"  {d.row_count} rows x {d.column_count} columns, {d.size_bytes / 1e6:.1f} MB, {d.fingerprint[:23]}…")
    rows = []
    for c in d.schema.columns:
        kind = labels.label(common_pb2.ColumnKind, c.kind)
        detail = ""
        if c.HasField("minimum"):
            detail = f"{c.minimum:g} .. {c.maximum:g}"
        elif c.categories:
            detail = ", ".join(c.categories[:4]) + (", …" if len(c.categories) > 4 else "")
        if c.withheld_categories:
            detail = (detail + "; " if detail else "") + f"{c.withheld_categories} rare withheld"
        if c.datetime_format:
            detail = f"format {c.datetime_format}"
        if c.policy and c.policy != "learn":
            detail = c.policy + (f": {c.fake_format}" if c.fake_format else "")
        rows.append(
            [
                c.name,
                kind + (" (set)" if c.kind_overridden else ""),
                str(c.missing_count),
                str(c.distinct_count),
                detail,
            ]
        )
    _print_table(["COLUMN", "KIND", "MISSING", "DISTINCT", "VALUES"], rows, indent="  ")


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> None:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(str(v))) for w, v in zip(widths, row, strict=True)]
    widths = [min(w, 40) for w in widths]
    fmt = indent + "  ".join(f"{{:<{w}.{w}}}" for w in widths)
    print(fmt.format(*header))
    for row in rows:
        print(fmt.format(*[str(v) for v in row]))


if __name__ == "__main__":
    sys.exit(main())
