#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (lint included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
# shellcheck disable=SC1091
. .venv/bin/activate
echo "==> lint"
ruff check .
ruff format --check .
echo "==> types"
# pyproject.toml [tool.mypy]: the domain strict, every type: ignore checked
mypy services gateway synth_client
echo "==> tests"
mkdir -p test-artifacts
python -m pytest -ra --durations=15 "$@"
