"""``python -m services.sampler``: the sampler process (streams synthetic rows from trained models)."""

import sys

from services.common.entrypoint import serve
from services.sampler.app import build_server
from services.sampler.settings import ENV_PREFIX, SamplerSettings

if __name__ == "__main__":
    sys.exit(serve("sampler", SamplerSettings, ENV_PREFIX, build_server))
