#!/usr/bin/env bash
# Sets up everything the platform and its tests need, idempotently:
# a virtualenv in .venv, pinned Python packages, the generated gRPC code (gen/),
# and, with --browser, Debian's chromium for the web page's browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating virtualenv .venv"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.setup-stamp
wanted=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  echo "==> installing Python packages (first run: a few minutes)"
  python -m pip install --quiet --upgrade pip
  # torch first and alone: exactly 2.13.0, whose CPU wheel is on local disk.
  python -m pip install --quiet "torch==2.13.0"
  python -m pip install --quiet -r requirements-dev.txt
  python -m pip install --quiet --no-deps -e .
  echo "$wanted" > "$stamp"
fi

echo "==> generating gRPC code from protos/"
python scripts/gen_protos.py
# Make the generated package importable as `synth.v1` inside the venv.
echo "$PWD/gen" > "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/synth-gen.pth"

if [ "$want_browser" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Debian chromium for browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "==> setup done"
