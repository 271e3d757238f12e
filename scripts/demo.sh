#!/usr/bin/env bash
# Sets everything up, then runs the main job end to end on the bundled Adult
# dataset: starts the services locally, uploads the data, prints the results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
exec synth demo "$@"
