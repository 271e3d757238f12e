"""What every command group shares: the bundled dataset and the client built from the address flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from synth_client.client import SynthClient

BUNDLED_DATASET = Path(__file__).resolve().parents[2] / "data" / "adult.csv"


def _client(args: argparse.Namespace) -> SynthClient:
    return (
        SynthClient.from_env(trainer=args.trainer, sampler=args.sampler, evaluator=args.evaluator)
        if not (args.address)
        else SynthClient(args.address)
    )
