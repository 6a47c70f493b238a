#!/usr/bin/env bash
# Set everything up, then run the main job on the built-in default (LeNet-300-100 on MNIST): train or reuse
# the baseline, compress it, evaluate the file and time it with the CPU runtime against dense PyTorch, cost
# it on the EIE, DianNao, CPU and GPU models, write results/report.html, and print a five-line summary.
# ./run.sh --quick does the same with a quick recipe (a first look); other options go to `deepcompress main`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/deepcompress main "$@"
