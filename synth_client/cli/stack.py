"""``synth up`` and ``synth demo``: the local platform, started and supervised."""

from __future__ import annotations

import _thread
import argparse
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synth_client.cli.evaluation import _run_evaluation, print_report
from synth_client.cli.output import _print_dataset, _print_table, _progress_bar
from synth_client.cli.training import _engine_settings, _follow, _training_plan
from synth_client.client import SynthClient
from synth_client.local import LocalPlatform


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
