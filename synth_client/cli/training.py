"""``synth train``, ``synth jobs ...`` and ``synth models ...``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.common import labels
from synth_client.cli.common import _client
from synth_client.cli.output import _print_json, _print_table, _to_dict
from synth_client.client import SynthClient

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
