"""``python -m services.trainer``: the trainer process (datasets, training, models)."""

import sys

from services.common.entrypoint import serve
from services.trainer.app import build_server
from services.trainer.settings import ENV_PREFIX, TrainerSettings

if __name__ == "__main__":
    sys.exit(serve("trainer", TrainerSettings, ENV_PREFIX, build_server))
