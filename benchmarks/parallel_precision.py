"""MNIST test error of LeNet-300-100 trained in fp32, bf16 and fp16 mixed precision, and with 16-bit fixed-point
weights under stochastic rounding vs round-to-nearest (Gupta et al. 2015), at several fraction widths.

    python benchmarks/parallel_precision.py              # 3 epochs per run
    python benchmarks/parallel_precision.py --epochs 1   # quicker

Settings: the LeNet-300-100 recipe's [train] table (SGD, momentum 0.9, lr 0.05, cosine, batch 64), epochs
overridden, same seed for every run, 1 torch thread. Mixed precision: torch.autocast on the CPU with fp32
master weights; fp16 with dynamic loss scaling. Fixed point: every weight and bias rounded to Q(15-n).n
after each step. Writes benchmarks/results/parallel_precision.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from deepcompress.data_torch import load_dataset
from deepcompress.models import build_model
from deepcompress.parallel.precision import FixedPointWeights, fixed16, mixed_precision
from deepcompress.recipes import load_recipe, stage
from deepcompress.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
FRACTION_BITS = (8, 12, 14)


def runs() -> list[tuple[str, dict]]:
    """(label, settings) of every configuration in the table."""
    out = [("fp32", {}), ("bf16 mixed", {"mixed": "bf16"}), ("fp16 mixed + loss scaling", {"mixed": "fp16"})]
    for n in FRACTION_BITS:
        for mode in ("stochastic", "nearest"):
            out.append((f"fixed16 {fixed16(n)} {mode}", {"fixed": fixed16(n), "mode": mode}))
    return out


def run_one(data, cfg: TrainConfig, settings: dict) -> dict:
    """Train one configuration and return its errors and extras."""
    torch.manual_seed(cfg.seed)
    model = build_model("lenet-300-100")
    hooks, extra = (), {}
    if "mixed" in settings:
        hooks = (mixed_precision(model, settings["mixed"]),)
    elif "fixed" in settings:
        hooks = (FixedPointWeights(model, settings["fixed"], settings["mode"], seed=cfg.seed),)
    result = train(model, data, cfg, hooks=hooks, progress=False, verbose=False)
    if "mixed" in settings:
        extra = {"loss_scale": hooks[0].scale, "skipped_steps": hooks[0].skipped}
    return {"test_error": result.test_error, "train_loss": result.history[-1]["train_loss"],
            "wall_s": result.wall_s, "history": result.history, **settings, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    values = stage(load_recipe("lenet-300-100", None), "train", "mnist")
    cfg = TrainConfig.from_dict({**values, "epochs": args.epochs})
    data = load_dataset("mnist")
    records = []
    print(f"LeNet-300-100 on MNIST, {cfg.epochs} epochs, sgd lr {cfg.lr} {cfg.schedule}, batch {cfg.batch_size}")
    print(f"{'configuration':<34} {'test error':>10} {'train loss':>10} {'wall s':>7}")
    for label, settings in runs():
        rec = {"label": label, **run_one(data, cfg, settings)}
        records.append(rec)
        print(f"{label:<34} {100 * rec['test_error']:>9.2f}% {rec['train_loss']:>10.4f} {rec['wall_s']:>7.0f}",
              flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"model": "lenet-300-100", "dataset": "mnist", "config": vars(cfg), "threads": 1, "runs": records,
           "reference": "Gupta et al. 2015: 16-bit fixed point with stochastic rounding trains MNIST to fp32 "
                        "accuracy; Micikevicius et al. 2018: mixed precision with loss scaling (REFERENCE.md s.7)"}
    (RESULTS / "parallel_precision.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'parallel_precision.json'}")


if __name__ == "__main__":
    main()
