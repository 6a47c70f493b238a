#!/usr/bin/env bash
# Set everything up, then run the main job on the built-in default:
# train the LeNet-300-100 baseline on MNIST and print its test error.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/deepcompress train "$@"
