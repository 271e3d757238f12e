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

import sys
from collections.abc import Sequence

from synth_client.cli.evaluation import print_report
from synth_client.cli.parser import _parser
from synth_client.errors import SynthError


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


__all__ = ["main", "print_report"]
