#!/usr/bin/env bash
# Set everything up, then run the test suite (pass -m slow, -k NAME, ... through to pytest).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
