"""``synth sample``."""

from __future__ import annotations

import argparse

from synth_client.cli.common import _client


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
