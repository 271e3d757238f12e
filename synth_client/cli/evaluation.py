"""``synth evaluate``, ``synth evaluations ...``, ``synth report`` and ``synth reports list``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.common import labels
from synth_client.cli.common import _client
from synth_client.cli.output import _print_json, _print_table, _to_dict
from synth_client.client import SynthClient
from synth_client.errors import SynthError


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
