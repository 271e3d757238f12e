"""The ``synth`` argument parser, built one command group at a time."""

from __future__ import annotations

import argparse
from pathlib import Path

from synth_client.cli.common import BUNDLED_DATASET
from synth_client.cli.datasets import _cmd_delete, _cmd_list, _cmd_preview, _cmd_show, _cmd_upload
from synth_client.cli.evaluation import (
    _cmd_evaluate,
    _cmd_evaluations_cancel,
    _cmd_evaluations_list,
    _cmd_evaluations_show,
    _cmd_evaluations_watch,
    _cmd_report,
    _cmd_reports_list,
)
from synth_client.cli.sampling import _cmd_sample
from synth_client.cli.stack import _cmd_demo, _cmd_up
from synth_client.cli.training import (
    _cmd_jobs_cancel,
    _cmd_jobs_list,
    _cmd_jobs_watch,
    _cmd_models_delete,
    _cmd_models_list,
    _cmd_models_show,
    _cmd_train,
    _column_policy,
    _duration,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synth", description="Synthetic tabular data platform.")
    parser.add_argument("--address", help="one address for every service (the gateway)")
    parser.add_argument("--trainer", help="trainer address (datasets, training, models)")
    parser.add_argument("--sampler", help="sampler address")
    parser.add_argument("--evaluator", help="evaluator address")
    sub = parser.add_subparsers(title="commands")
    _add_platform_commands(sub)
    _add_dataset_commands(sub)
    _add_training_commands(sub)
    _add_sampling_commands(sub)
    _add_evaluation_commands(sub)
    _add_model_commands(sub)
    return parser


def _add_platform_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """up, demo"""
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


def _add_dataset_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """datasets upload|list|show|preview|delete"""
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


def _add_training_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """train, jobs"""
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


def _add_sampling_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """sample"""
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


def _add_evaluation_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """evaluate, evaluations, report, reports"""
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


def _add_model_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """models (registered last, so --help lists the commands in their old order)"""
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
