"""``python -m synth_client.cli``."""

import sys

from synth_client.cli import main

sys.exit(main())
