#!/usr/bin/env bash
# Train the four baselines (LeNet-300-100 and LeNet-5 on MNIST and Fashion-MNIST) with their built-in
# recipes and record them in benchmarks/results/baselines.json. About 1.5 hours on 2 shared cores.
# Usage: benchmarks/baselines.sh [MODEL DATA]   (no arguments: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
runs=("lenet-300-100 mnist" "lenet-5 mnist" "lenet-300-100 fashion-mnist" "lenet-5 fashion-mnist")
[ $# -eq 2 ] && runs=("$1 $2")
for run in "${runs[@]}"; do
  set -- $run
  .venv/bin/deepcompress train --model "$1" --data "$2" --out "runs/$1-$2" \
    --record benchmarks/results/baselines.json
done
