"""How well each stage of a word-LSTM record fits its training windows, next to its test score: the dense
model, the model at the end of pruning, and after centroid fine-tuning, all with dropout off; and how much
of each model's probability its top k words hold, and how often the word that came is outside them (what
distillation from the top k, deepcompress.distill, keeps of the dense model).

A pruned model that is worse on the test text can be worse on the training text too (it lacks capacity or
training) or only on the test text (it generalises worse); training losses logged while dropout is on cannot
tell the two apart when the dense and the pruned model were trained at different dropout rates.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/lstm_fit.py austen-words-lstm-650-layers-long \
        austen-words-lstm-650-layers-distill            # about 3 minutes a record

Each record's checkpoints are read from its run folder (--work, as benchmarks/any_model.py wrote them).
Results go to benchmarks/results/lstm_fit.json; a table is printed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import any_model
from deepcompress import atomic
from deepcompress.errors import UserError
from deepcompress.models_text import sequence_loss
from deepcompress.train import load_weights

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lstm_fit.json"
STAGES = (("dense", "baseline-train.pt"), ("pruned", "prune-gradual-train.pt"),
          ("fine-tuned", "quantize-train.pt"))
TOP_K = (32, 64, 128)


@torch.no_grad()
def fit(model, x: torch.Tensor, y: torch.Tensor, ks: tuple = TOP_K, batch: int = 200) -> dict:
    """In eval mode on windows (x, y): perplexity, and per k of `ks` the mean probability the model's top k
    words hold and the fraction of positions whose word is outside them."""
    model.eval()
    loss, mass, outside = 0.0, dict.fromkeys(ks, 0.0), dict.fromkeys(ks, 0.0)
    for i in range(0, len(x), batch):
        out, target = model(x[i:i + batch]), y[i:i + batch]
        loss += float(sequence_loss(out, target)) * len(target)
        top = torch.softmax(out, -1).topk(max(ks), -1)
        for k in ks:
            mass[k] += float(top.values[..., :k].sum(-1).mean()) * len(target)
            outside[k] += float((top.indices[..., :k] != target.unsqueeze(-1)).all(-1).double().mean()) * len(target)
    n = len(x)
    return {"perplexity": math.exp(loss / n), "top_k_mass": {k: v / n for k, v in mass.items()},
            "outside_top_k": {k: v / n for k, v in outside.items()}}


def record_fit(name: str, spec, data, info: dict, run_dir: Path, windows: int, ks: tuple = TOP_K) -> dict:
    """Eval-mode perplexity of each stage checkpoint of record `name` (`spec`, its data set `data` and what
    building its model needs, `info`, as any_model.load_data gives them) on the first `windows` training and
    test windows; {stage: {"train": fit(..), "test": fit(..)}} for the stages whose checkpoint exists."""
    found = [(stage, run_dir / file) for stage, file in STAGES if (run_dir / file).is_file()]
    if not found:
        raise UserError(f"{run_dir}: none of {', '.join(f for _, f in STAGES)}; run benchmarks/any_model.py "
                        f"{name} first")
    numbers = {}
    for stage, path in found:
        model = spec.build(info)
        load_weights(model, path, name)
        numbers[stage] = {part: fit(model, x[:windows], y[:windows], ks) for part, x, y in
                          (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y))}
    return numbers


def main(argv: list[str] | None = None) -> int:
    """Measure each record named, print a table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=sorted(any_model.LSTM_MODELS), metavar="MODEL")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "any_model" / "full",
                        help="folder holding each record's run folder")
    parser.add_argument("--windows", type=int, default=1600, help="training and test windows each (1600)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    t0, records = time.perf_counter(), {}
    print(f"{'record':40s} {'stage':11s} {'train':>8s} {'test':>8s}   top-32 mass, word outside: train; test")
    for name in args.models:
        try:
            spec = any_model.SPECS[name]
            records[name] = record_fit(name, spec, *any_model.load_data(spec, quick=False), args.work / name,
                                       args.windows)
        except UserError as e:
            print(f"lstm_fit: {e}", file=sys.stderr)
            return 2
        for stage, p in records[name].items():
            train, test = p["train"], p["test"]
            print(f"{name:40s} {stage:11s} {train['perplexity']:8.2f} {test['perplexity']:8.2f}   "
                  f"{train['top_k_mass'][32]:.3f} {train['outside_top_k'][32]:.3f}; "
                  f"{test['top_k_mass'][32]:.3f} {test['outside_top_k'][32]:.3f}", flush=True)
    atomic.write_json(args.out, {"windows": args.windows, "dropout": "off (eval mode)",
                                 "perplexity": records, "wall_s": round(time.perf_counter() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
