"""Downpour SGD (parameter server, 2 workers x 2 shards) vs synchronous SGD: LeNet-300-100 on MNIST.

    python benchmarks/parallel_ps.py                 # 5 epochs, n_fetch = n_push = 1 and 5
    python benchmarks/parallel_ps.py --epochs 2      # quicker

Synchronous SGD with 2 workers of batch B is computed as one process with batch 2B (the data-parallel tests
show the two give the same weights). Downpour: 2 worker processes of batch B, each on its half of the
training set, parameters in 2 server shards over torch.distributed.rpc on 127.0.0.1; same learning rate,
schedule and weight decay, plain SGD (no momentum) everywhere. One fault run kills worker 1 halfway.
One torch thread per process. Writes benchmarks/results/parallel_ps.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from deepcompress.data_torch import load_dataset
from deepcompress.models import build_model
from deepcompress.parallel.param_server import PSConfig, run_parameter_server
from deepcompress.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"


def synchronous(data, cfg: TrainConfig, workers: int) -> dict:
    """Synchronous data-parallel SGD with `workers` x cfg.batch_size, as one process with the global batch."""
    torch.manual_seed(cfg.seed)
    model = build_model("lenet-300-100")
    result = train(model, data, replace(cfg, batch_size=cfg.batch_size * workers), progress=False, verbose=False)
    steps = -(-len(data.train_y) // (cfg.batch_size * workers)) * cfg.epochs
    return {"test_error": result.test_error, "wall_s": result.wall_s, "updates": steps}


def downpour(data, cfg: TrainConfig, ps: PSConfig, kill=None) -> dict:
    """One Downpour run's error, wall time, staleness and fate of its workers."""
    r = run_parameter_server("lenet-300-100", data, cfg, ps, timeout_s=3600, kill=kill)
    return {"test_error": r.test_error, "wall_s": r.wall_s, "updates": r.updates, "staleness": r.staleness,
            "steps": r.steps, "lost": r.lost, "exits": r.exits, "server_log": r.log}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd", lr=args.lr, momentum=0.0,
                      weight_decay=1e-4, schedule="cosine", seed=0)
    data = load_dataset("mnist")
    steps = -(-len(data.train_y) // 2 // cfg.batch_size) * cfg.epochs  # per worker
    runs = [("synchronous SGD, 2 x batch", None, None),
            ("Downpour 2 workers x 2 shards, n_fetch=n_push=1", PSConfig(workers=2, shards=2), None),
            ("Downpour 2 x 2, n_fetch=n_push=5", PSConfig(workers=2, shards=2, n_fetch=5, n_push=5), None),
            ("Downpour 2 x 2, worker 1 killed halfway", PSConfig(workers=2, shards=2, liveness_s=5), (1, steps // 2))]
    print(f"LeNet-300-100 on MNIST, {cfg.epochs} epochs, batch {cfg.batch_size} per worker, sgd lr {cfg.lr} "
          f"{cfg.schedule}, no momentum")
    print(f"{'run':<50} {'test error':>10} {'wall s':>7} {'updates':>13} {'staleness mean/max':>19}")
    records = []
    for label, ps, kill in runs:
        start_load = os.getloadavg()[0]
        rec = synchronous(data, cfg, 2) if ps is None else downpour(data, cfg, ps, kill)
        rec |= {"label": label, "ps": asdict(ps) if ps else None, "kill": kill, "loadavg_1min": start_load}
        records.append(rec)
        st = rec.get("staleness")
        stale = "-" if st is None else f"{st['mean']:.1f} / {st['max']}"
        print(f"{label:<50} {100 * rec['test_error']:>9.2f}% {rec['wall_s']:>7.0f} {str(rec['updates']):>13} "
              f"{stale:>19}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"model": "lenet-300-100", "dataset": "mnist", "config": asdict(cfg), "threads_per_process": 1,
           "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"), "runs": records,
           "reference": "Dean et al. 2012 (DistBelief): Downpour SGD, n_fetch / n_push, asynchronous shards"}
    (RESULTS / "parallel_ps.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'parallel_ps.json'}")


if __name__ == "__main__":
    main()
