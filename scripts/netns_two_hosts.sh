#!/usr/bin/env bash
# Two hosts on one machine: network namespaces A and B joined by a veth pair, one torchrun node each,
# gloo over the veth addresses. Checks that
#   1. the documented two-node torchrun command gives the same weights as a single-process run, and
#   2. when host B's link is cut mid-run, both nodes detect it (a collective times out), report it, and
#      rerunning with --resume continues from the last checkpoint to the same weights again.
# Needs root (ip netns). Everything it starts and creates is removed on exit, whatever happens.
#
#   sudo scripts/netns_two_hosts.sh            # EPOCHS=6 N_TRAIN=1024 BATCH=16 TIMEOUT=20 to change
#
# Traffic stays on the namespaces' own addresses (10.77.0.1 and 10.77.0.2, which exist only inside them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
TORCHRUN=${TORCHRUN:-.venv/bin/torchrun}
EPOCHS=${EPOCHS:-6}
N_TRAIN=${N_TRAIN:-1024}
BATCH=${BATCH:-16}          # per process; the single-process reference uses 2 x BATCH
TIMEOUT=${TIMEOUT:-20}      # seconds a collective waits for a silent peer
SEED=3
TAG=dc$$                    # unique names; interface names must stay under 16 characters
NS_A=$TAG-a NS_B=$TAG-b VETH_A=$TAG-va VETH_B=$TAG-vb
ADDR_A=10.77.0.1 ADDR_B=10.77.0.2
WORK=$(mktemp -d /tmp/deepcompress-netns.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do  # each host was started as its own process group
        kill -- "-$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$NS_A" 2>/dev/null || true  # deleting a namespace deletes the veth end inside it
    ip netns del "$NS_B" 2>/dev/null || true
    [[ -n "${KEEP:-}" ]] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "== $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

[[ -x "$TORCHRUN" ]] || fail "$TORCHRUN not found (torch installs it beside python)"
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add "$VETH_A" type veth peer name "$VETH_B"
ip link set "$VETH_A" netns "$NS_A"
ip link set "$VETH_B" netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/24" dev "$VETH_A"
ip -n "$NS_B" addr add "$ADDR_B/24" dev "$VETH_B"
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set "$VETH_A" up
ip -n "$NS_B" link set "$VETH_B" up
say "hosts: $NS_A ($ADDR_A on $VETH_A) and $NS_B ($ADDR_B on $VETH_B)"

# A small training set both hosts read (a shared disk, as the torchrun docs require for --resume).
"$PY" - "$WORK/data" "$N_TRAIN" <<'EOF'
import struct, sys
from pathlib import Path
import numpy as np
from deepcompress.data import DataError
from deepcompress.data_torch import load_dataset
folder, n = Path(sys.argv[1]), int(sys.argv[2])
folder.mkdir()
try:
    d = load_dataset("mnist")
    parts = (d.train_x[:n], d.train_y[:n], d.test_x[:512], d.test_y[:512])
except DataError:  # not installed: random images and labels are enough to compare weights
    rng = np.random.default_rng(0)
    parts = (rng.random((n, 28, 28)), rng.integers(0, 10, n), rng.random((512, 28, 28)), rng.integers(0, 10, 512))
names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
for name, a in zip(names, parts):
    a = np.asarray(a)
    a = (a.reshape(len(a), 28, 28) * 255).round() if a.dtype.kind == "f" else a
    a = a.astype(np.uint8)
    (folder / name).write_bytes(struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())
EOF
COMMON=(--data-dir "$WORK/data" --epochs "$EPOCHS" --seed "$SEED" --quiet)

free_port() {  # inside host A, every port is ours; let the kernel pick one anyway
    ip netns exec "$NS_A" "$PY" -c "import socket; s = socket.socket(); s.bind(('$ADDR_A', 0)); print(s.getsockname()[1])"
}

start_host() {  # NS VETH NODE_RANK PORT OUT [extra options]: the documented command, on one host
    local ns=$1 veth=$2 rank=$3 port=$4 out=$5
    shift 5
    setsid ip netns exec "$ns" env GLOO_SOCKET_IFNAME="$veth" OMP_NUM_THREADS=1 \
        nice -n 15 timeout 300 "$TORCHRUN" --nnodes 2 --nproc-per-node 1 --node-rank "$rank" \
        --master-addr "$ADDR_A" --master-port "$port" \
        -m deepcompress.cli_parallel train-parallel --torchrun --batch-size "$BATCH" --timeout "$TIMEOUT" \
        "${COMMON[@]}" --out "$out" "$@" >"$out.$rank.log" 2>&1 &
    PIDS+=($!)
}

run_two_hosts() {  # OUT [extra options]: start both hosts; sets HOST_A and HOST_B to their pids
    local port
    port=$(free_port)
    start_host "$NS_A" "$VETH_A" 0 "$port" "$@"
    HOST_A=$!
    start_host "$NS_B" "$VETH_B" 1 "$port" "$@"
    HOST_B=$!
}

wait_hosts() {  # sets RC_A and RC_B
    RC_A=0 RC_B=0
    wait "$HOST_A" || RC_A=$?
    wait "$HOST_B" || RC_B=$?
}

same_weights() {  # A B: the two runs' model.pt agree to fp32 tolerance
    "$PY" - "$1/model.pt" "$2/model.pt" <<'EOF'
import sys
import torch
a, b = (torch.load(p, weights_only=True) for p in sys.argv[1:])
diff = max((a[k] - b[k]).abs().max().item() for k in a)
print(f"max |difference| over all weights: {diff:.2e}")
sys.exit(0 if diff <= 1e-6 else 1)
EOF
}

checkpoint_epoch() {
    "$PY" -c "from deepcompress.train import load_checkpoint; print(load_checkpoint('$1/checkpoint.pt')['epoch'])"
}

say "single-process reference: batch $((2 * BATCH)), $EPOCHS epochs"
OMP_NUM_THREADS=1 nice -n 15 "$PY" -m deepcompress.cli train "${COMMON[@]}" --batch-size $((2 * BATCH)) \
    --out "$WORK/ref" >"$WORK/ref.log" 2>&1 || { cat "$WORK/ref.log"; fail "reference run"; }

say "two hosts, one node each (torchrun --nnodes 2, gloo over the veth pair)"
SECONDS=0
run_two_hosts "$WORK/clean"
wait_hosts
[[ $RC_A == 0 && $RC_B == 0 ]] || { tail -n 20 "$WORK"/clean.*.log; fail "two-host run (exit $RC_A, $RC_B)"; }
grep -h "test error" "$WORK"/clean.*.log
say "two-host run took $SECONDS s; compared with the single process:"
same_weights "$WORK/clean" "$WORK/ref" || fail "two hosts and one process disagree"

say "two hosts again; host B's link is cut once the first checkpoint is written"
run_two_hosts "$WORK/cut"
for _ in $(seq 600); do
    [[ -f "$WORK/cut/checkpoint.pt" ]] && break
    kill -0 "$HOST_A" 2>/dev/null || break
    sleep 0.2
done
[[ -f "$WORK/cut/checkpoint.pt" ]] || fail "no checkpoint appeared"
ip -n "$NS_B" link set "$VETH_B" down
CUT_AT=$(checkpoint_epoch "$WORK/cut")
SECONDS=0
say "link $VETH_B down at checkpoint epoch $CUT_AT of $EPOCHS"
wait_hosts
say "both hosts ended $SECONDS s after the cut: host A exit $RC_A, host B exit $RC_B"
[[ $RC_A != 0 && $RC_B != 0 ]] || fail "the cut went unnoticed (the run finished before it?)"
for node in 0 1; do  # what each host reported: our message, then torchrun's failure summary
    echo "host $([[ $node == 0 ]] && echo A || echo B) reported:"
    grep -h -E "training failed|last checkpoint|^\s*(rank|exitcode)\s*:" "$WORK/cut.$node.log" | sed 's/^ */    /' || true
done
RESUME_AT=$(checkpoint_epoch "$WORK/cut")
(( RESUME_AT < EPOCHS )) || fail "the run had finished before the cut"

say "link up again; both hosts rerun the command with --resume from epoch $RESUME_AT"
ip -n "$NS_B" link set "$VETH_B" up
run_two_hosts "$WORK/cut" --resume
wait_hosts
[[ $RC_A == 0 && $RC_B == 0 ]] || { tail -n 20 "$WORK"/cut.*.log; fail "resumed run (exit $RC_A, $RC_B)"; }
grep -h "test error" "$WORK"/cut.*.log | tail -n 2
say "recovered run compared with the single process:"
same_weights "$WORK/cut" "$WORK/ref" || fail "recovered run disagrees with the uninterrupted one"
say "OK: two hosts equal one process; a cut link was detected, reported and recovered from epoch $RESUME_AT"
