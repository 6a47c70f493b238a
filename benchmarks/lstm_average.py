"""Does averaging the weights help a pruned word LSTM generalise? Train a record's pruned model on at its
mask (with its recipe's distillation targets) at a constant learning rate and score, every few steps, the
current weights and their running average (torch.optim.swa_utils.AveragedModel: uniform, as SWA and the
averaged SGD of Merity et al.'s AWD-LSTM, or exponential) on the validation novel.

The pruned models fit the training windows within 4-6% of the dense model and test 10-13% worse
(benchmarks/lstm_fit.py): they generalise worse. An average of weights along a training path at a fixed mask
is as sparse as the mask, so it can be stored like any pruned model.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/lstm_average.py \
        --record austen-words-lstm-650-layers-distill-64-long --lr 3e-4 --steps 600   # about 10 minutes

Results go to benchmarks/results/lstm_average.json; a table is printed.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import any_model
from deepcompress import atomic
from deepcompress.distill import SoftTargets, with_soft_targets
from deepcompress.models_text import set_dropout
from deepcompress.train import load_weights, objective_of
from any_model_specs import layer_weight
from lstm_sensitivity import mean_loss, validation

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lstm_average.json"


def masks_of(model, layers) -> dict[str, torch.Tensor]:
    """Each pruned layer's mask: where its weight is nonzero."""
    return {name: layer_weight(model, name) != 0 for name in layers}


@torch.no_grad()
def apply_masks(model, masks: dict[str, torch.Tensor]) -> None:
    """Zero every weight outside its layer's mask (Adam's moments move pruned weights off zero)."""
    for name, mask in masks.items():
        layer_weight(model, name).mul_(mask)


def averaged_path(model, data, objective, masks, lr: float, dropout: float, steps: int, every: int,
                  val: tuple, ema: float | None = None, batch: int = 32, seed: int = 0) -> tuple:
    """Train a copy of `model` `steps` Adam steps at `lr` and `dropout`, held at `masks`, averaging its weights
    after every step (uniformly, or exponentially with decay `ema`). Returns the validation perplexity of the
    current and the averaged weights at step 0 and every `every` steps, the last weights and their average."""
    model = copy.deepcopy(model)
    set_dropout(model, dropout)
    avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema) if ema else None, use_buffers=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed))
    start = math.exp(mean_loss(model, *val))
    points = [{"step": 0, "current": start, "average": start}]
    for step in range(1, steps + 1):
        rows = order[(step - 1) * batch % len(order):][:batch]
        model.train()
        opt.zero_grad()
        objective.loss(model(data.train_x[rows]), data.train_y[rows]).backward()
        opt.step()
        apply_masks(model, masks)
        avg.update_parameters(model)
        if step % every == 0 or step == steps:
            points.append({"step": step, "current": math.exp(mean_loss(model, *val)),
                           "average": math.exp(mean_loss(avg.module, *val))})
            print(f"  step {step}: current {points[-1]['current']:.2f} average {points[-1]['average']:.2f}",
                  flush=True)
    return points, model, avg.module


def main(argv: list[str] | None = None) -> int:
    """Probe each learning rate, print the curves, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", default="austen-words-lstm-650-layers-distill-64-long",
                        choices=sorted(m for m in any_model.LSTM_MODELS if m.startswith("austen-words-lstm-650-layers")))
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "any_model" / "full")
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-4])
    parser.add_argument("--ema", type=float, default=None, help="exponential decay per step (default: uniform)")
    parser.add_argument("--steps", type=int, default=600, help="Adam steps of 32 windows (600: an epoch)")
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--windows", type=int, default=800, help="validation windows scored (default 800)")
    parser.add_argument("--test", action="store_true", help="also score the last weights on the whole test set")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    spec = any_model.SPECS[args.record]
    data, info = any_model.load_data(spec, quick=False)
    run_dir = args.work / args.record
    teacher, pruned = spec.build(info), spec.build(info)
    load_weights(teacher, run_dir / "baseline-train.pt", args.record)
    load_weights(pruned, run_dir / "prune-gradual-train.pt", args.record)
    objective = objective_of(spec.loss, spec.metric)
    if spec.distill:
        data = with_soft_targets(data, teacher, spec.distill["k"])
        objective = SoftTargets(objective, spec.distill["weight"], spec.distill["k"])
    masks = masks_of(pruned, spec.recipe["prune"]["layers"])
    val = validation(spec, args.windows)
    curves = []
    for lr in args.lr:
        print(f"lr {lr:g}, {'uniform' if args.ema is None else f'ema {args.ema}'} average:", flush=True)
        points, last, avg = averaged_path(pruned, data, objective, masks, lr, spec.retrain_dropout, args.steps,
                                          args.every, val, args.ema)
        curve = {"lr": lr, "points": points}
        if args.test:
            curve["test"] = {name: math.exp(mean_loss(m, data.test_x, data.test_y))
                             for name, m in (("pruned", pruned), ("current", last), ("average", avg))}
            print(f"  test: {curve['test']}", flush=True)
        curves.append(curve)
    atomic.write_json(args.out, {"record": args.record, "validation_windows": args.windows, "batch": 32,
                                 "ema": args.ema, "dropout": spec.retrain_dropout, "distill": spec.distill,
                                 "curves": curves, "wall_s": round(time.perf_counter() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
