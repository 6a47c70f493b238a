"""Did the pruned word LSTM beat its dense parent only by training longer? The pruned austen-words-lstm of
benchmarks/any_model.py trains 3 dense epochs, then 4 epochs of gradual pruning and 1 of centroid
fine-tuning. Here the same dense model (its baseline-train.pt checkpoint in the any_model run folder)
trains those 4 + 1 epochs again with the same settings, nothing pruned or shared, and its test perplexity
after every epoch is set beside the dense and the file's perplexity from benchmarks/results/any_model.json.
That record's target is then judged against the dense model trained as long as well (`met` only if the
file is within 5% of both), since a dense parent still improving makes a pruned model look better than it is.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lstm_dense_control.py     # about 40 minutes on one loaded core
    .venv/bin/python benchmarks/lstm_dense_control.py --judge-only         # judge again from the kept results

Results go to benchmarks/results/lstm_dense_control.json; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

import any_model
from deepcompress import atomic
from deepcompress.errors import UserError
from deepcompress.train import TrainConfig, load_checkpoint, load_weights, train

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lstm_dense_control.json"
NAME = "austen-words-lstm"


def continued(model, data, spec) -> list[dict]:
    """Train `model` through the pruned model's later stages' settings (retraining, then fine-tuning),
    pruning nothing; the test perplexity after every epoch."""
    rows = []
    stages = (("retraining", spec.recipe["prune"]["retrain"]), ("fine-tuning", spec.recipe["quantize"]["finetune"]))
    for stage, cfg in stages:
        result = train(model, data, TrainConfig(**cfg), progress=False, verbose=True, loss=spec.loss, metric="loss")
        rows += [{"stage": stage, "epoch": h["epoch"], "perplexity": math.exp(h["test_loss"])} for h in result.history]
    return rows


def dense_epochs(checkpoint: Path, spec) -> int:
    """The epochs the dense training in `checkpoint` finished; UserError unless that is all of them (an
    interrupted parent would be continued from the wrong point and the judgement would be wrong)."""
    done = int(load_checkpoint(checkpoint).get("epoch", -1))
    if done != spec.train["epochs"]:
        raise UserError(f"{checkpoint}: the dense training finished {done} of {spec.train['epochs']} epochs; "
                        f"finish it first (benchmarks/any_model.py {NAME} --resume)")
    return done


def judge(doc: dict) -> dict | None:
    """any_model.json's austen-words-lstm record judged against the dense model trained as long too
    (written back); None when there is no such record or it is not the run the control continued."""
    records = json.loads(any_model.RESULTS.read_text())
    rec = next((r for r in records if r["model"] == NAME), None)
    if rec is None or doc["reference"] is None or rec["dense_perplexity"] != doc["reference"]["dense_perplexity"]:
        return None
    longer = doc["epochs"][-1]["perplexity"]
    rec["dense_trained_as_long_perplexity"] = longer
    rec["met_against_its_dense_parent"] = rec["file_perplexity"] <= any_model.LSTM_TARGET * rec["dense_perplexity"]
    rec["met"] = rec["met_against_its_dense_parent"] and rec["file_perplexity"] <= any_model.LSTM_TARGET * longer
    rec["target"] = (f"file perplexity <= {any_model.LSTM_TARGET} x dense at 90% pruning, against its dense parent "
                     f"and against that parent trained as long as the pruned model (benchmarks/lstm_dense_control.py)")
    atomic.write_json(any_model.RESULTS, records)
    return rec


def main(argv: list[str] | None = None) -> int:
    """Continue the dense word LSTM as the pruned one was trained; record and print it beside any_model.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/any_model/full", help="any_model.py's --work folder of that run")
    p.add_argument("--judge-only", action="store_true", help="only judge any_model.json from the kept results")
    args = p.parse_args(argv)
    if args.judge_only:
        if not RESULTS.is_file():
            p.error(f"--judge-only: {RESULTS} not found; run the control first")
        rec = judge(json.loads(RESULTS.read_text()))
        print("no matching austen-words-lstm record" if rec is None else f"met: {rec['met']}")
        return 0
    torch.set_num_threads(1)
    spec = any_model.SPECS[NAME]
    data, info = any_model.load_data(spec, quick=False)
    model = spec.build(info)
    checkpoint = Path(args.work) / NAME / "baseline-train.pt"
    try:
        dense_epochs(checkpoint, spec)
        load_weights(model, checkpoint, NAME)
    except UserError as exc:
        p.error(str(exc))
    t0 = time.perf_counter()
    rows = continued(model, data, spec)
    ref = next((r for r in json.loads(any_model.RESULTS.read_text()) if r["model"] == NAME), None)
    doc = {"command": "benchmarks/lstm_dense_control.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "from_checkpoint": str(checkpoint), "epochs": rows, "wall_s": round(time.perf_counter() - t0, 1),
           "reference": None if ref is None else {k: ref.get(k) for k in ("dense_perplexity", "file_perplexity", "kept")}}
    atomic.write_json(RESULTS, doc)
    judged = judge(doc)
    if judged:
        print(f"target met against both dense models: {judged['met']}")
    if ref:
        print(f"dense after 3 epochs {ref['dense_perplexity']:.2f}; 90% pruned, from the file {ref['file_perplexity']:.2f}")
    for r in rows:
        print(f"dense, {r['stage']} epoch {r['epoch']}: {r['perplexity']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
