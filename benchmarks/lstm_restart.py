"""What restarting training does to the trained dense word LSTM, before anything is pruned: Adam from fresh
moments at a learning rate and dropout, the test perplexity (dropout off) every few steps.

The compression recipe retrains the dense model (trained with a cosine schedule down to lr 7.6e-5) at lr 1e-3
with a fresh optimizer. If that alone moves the model out of the minimum it was trained into, part of what
the pruned model loses is the restart, not the pruning, and a lower retraining rate is the next design.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/lstm_restart.py \
        --checkpoint runs/any_model/full/austen-words-lstm-650-layers-long/baseline-train.pt \
        --lr 1e-3 2e-4 --dropout 0.5 0.158 --steps 150      # about 5 minutes a setting

Results go to benchmarks/results/lstm_restart.json; a table is printed.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import sys
import time
from pathlib import Path

import torch

import any_model
from deepcompress import atomic
from deepcompress.models_text import sequence_loss, set_dropout
from deepcompress.train import load_weights
from lstm_sensitivity import mean_loss

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lstm_restart.json"


def restart(model, data, lr: float, dropout: float, steps: int, every: int, windows: int, batch: int = 32,
            seed: int = 0) -> list[tuple[int, float]]:
    """Train a copy of `model` for `steps` Adam steps (fresh moments, learning rate `lr`, every dropout at
    `dropout`) on shuffled training windows; (step, test perplexity on the first `windows` test windows, in
    eval mode) at step 0 and every `every` steps."""
    model = copy.deepcopy(model)
    set_dropout(model, dropout)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed))
    x_test, y_test = data.test_x[:windows], data.test_y[:windows]
    points = [(0, math.exp(mean_loss(model, x_test, y_test)))]
    for step in range(1, steps + 1):
        rows = order[(step - 1) * batch % len(order):][:batch]
        model.train()
        opt.zero_grad()
        sequence_loss(model(data.train_x[rows]), data.train_y[rows]).backward()
        opt.step()
        if step % every == 0 or step == steps:
            points.append((step, math.exp(mean_loss(model, x_test, y_test))))
    return points


def main(argv: list[str] | None = None) -> int:
    """Probe each (lr, dropout) pair, print the curves, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="austen-words-lstm-650-layers-long", choices=sorted(any_model.LSTM_MODELS))
    parser.add_argument("--checkpoint", type=Path, required=True, help="the record's dense baseline-train.pt")
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 2e-4])
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.5, 0.158])
    parser.add_argument("--steps", type=int, default=150, help="Adam steps of 32 windows (150: a quarter epoch)")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--windows", type=int, default=800, help="test windows scored (default 800)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    spec = any_model.SPECS[args.model]
    data, info = any_model.load_data(spec, quick=False)
    model = spec.build(info)
    load_weights(model, args.checkpoint, args.model)
    curves = []
    for lr, dropout in itertools.product(args.lr, args.dropout):
        points = restart(model, data, lr, dropout, args.steps, args.every, args.windows)
        curves.append({"lr": lr, "dropout": dropout, "points": points})
        print(f"lr {lr:g} dropout {dropout:g}: " + ", ".join(f"step {s} {p:.2f}" for s, p in points), flush=True)
    atomic.write_json(args.out, {"model": args.model, "checkpoint": str(args.checkpoint), "batch": 32,
                                 "test_windows": args.windows, "curves": curves,
                                 "wall_s": round(time.perf_counter() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
