"""``python -m services.evaluator``: the evaluator process (scores synthetic sets for utility, fidelity and privacy)."""

import sys

from services.common.entrypoint import serve
from services.evaluator.app import build_server
from services.evaluator.settings import ENV_PREFIX, EvaluatorSettings

if __name__ == "__main__":
    sys.exit(serve("evaluator", EvaluatorSettings, ENV_PREFIX, build_server))
