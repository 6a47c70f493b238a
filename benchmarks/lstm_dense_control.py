"""Did a pruned word LSTM beat its dense parent only by training longer? austen-words-lstm and
austen-words-lstm-cells of benchmarks/any_model.py train the same dense model, then 5 epochs of gradual
pruning and 1 of centroid fine-tuning. Here that dense model (its baseline-train.pt checkpoint in the
any_model run folder) trains those epochs again with the same settings, nothing pruned or shared, and its
test perplexity after every epoch is recorded (at its own dropout, 0.25: the pruned models retrain at
0.079 only because they keep a tenth of the weights). Each record compressed from that checkpoint is then judged
against the dense model trained as long as well (`met` only if the file is within 5% of both), since a dense
parent still improving makes a pruned model look better than it is.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lstm_dense_control.py     # about 15-20 minutes at one thread
    .venv/bin/python benchmarks/lstm_dense_control.py --judge-only         # judge again from the kept results

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lstm_dense_control.py --model austen-words-lstm-650  # ~1 h

Results go to benchmarks/results/lstm_dense_control.json (lstm_dense_control_650.json for the 650-unit
model); a table is printed.
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
from deepcompress.train import TrainConfig, load_checkpoint, load_weights, objective_of, score, train

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lstm_dense_control.json"
NAME = "austen-words-lstm"  # the default: whose dense checkpoint and retraining settings the control takes
# each dense parent: the any_model records compressed from it (the same dense model, pruned differently) and
# where its control is written
PARENTS = {NAME: ((NAME, "austen-words-lstm-cells"), RESULTS),
           "austen-words-lstm-650": (("austen-words-lstm-650",), RESULTS.with_name("lstm_dense_control_650.json"))}


def continued(model, data, spec) -> list[dict]:
    """Train `model` through the pruned model's later stages' settings (retraining, then fine-tuning),
    pruning nothing; the test perplexity after every epoch."""
    rows = []
    stages = (("retraining", spec.recipe["prune"]["retrain"]), ("fine-tuning", spec.recipe["quantize"]["finetune"]))
    for stage, cfg in stages:
        result = train(model, data, TrainConfig(**cfg), progress=False, verbose=True, loss=spec.loss, metric="loss")
        rows += [{"stage": stage, "epoch": h["epoch"], "perplexity": math.exp(h["test_loss"])} for h in result.history]
    return rows


def dense_epochs(checkpoint: Path, spec, name: str = NAME) -> int:
    """The epochs the dense training in `checkpoint` finished; UserError unless that is all of them (an
    interrupted parent would be continued from the wrong point and the judgement would be wrong)."""
    done = int(load_checkpoint(checkpoint).get("epoch", -1))
    if done != spec.train["epochs"]:
        raise UserError(f"{checkpoint}: the dense training finished {done} of {spec.train['epochs']} epochs; "
                        f"finish it first (benchmarks/any_model.py {name} --resume)")
    return done


def same_parent(rec: dict, doc: dict) -> bool:
    """Whether the any_model record `rec` was compressed from the checkpoint the control continued: its dense
    perplexity is the one the control measured on that checkpoint before training it (the record may be
    written after the control starts, or belong to an earlier run)."""
    start = doc.get("checkpoint_perplexity")
    return start is not None and math.isclose(rec["dense_perplexity"], start, rel_tol=1e-4)


def judge(doc: dict) -> list[dict]:
    """any_model.json's records of the control's parent (PARENTS; NAME for a control written before it named
    its model) compressed from the checkpoint it continued, each judged against that dense model trained as
    long too (written back); [] when there are none."""
    if not any_model.RESULTS.is_file():
        return []
    judged, names = [], PARENTS[doc.get("model", NAME)][0]

    def mark(records: list) -> list:
        judged.extend(r for r in records if r["model"] in names and same_parent(r, doc))
        _mark(judged, doc["epochs"][-1]["perplexity"])
        return records

    atomic.update_json(any_model.RESULTS, mark, [])  # under the lock: an any_model.py run may be writing it
    return judged


def _mark(judged: list, longer: float) -> None:
    """Judge each record against its dense parent and against that parent trained as long (`longer`)."""
    for rec in judged:
        rec["dense_trained_as_long_perplexity"] = longer
        own = any_model._judged(dict(rec))  # its own rule, kept fraction included
        rec["met_against_its_dense_parent"] = own["met"]
        rec["met"] = own["met"] and rec["file_perplexity"] <= any_model.LSTM_TARGET * longer
        rec["target"] = (own["target"] + ", against its dense parent and against that parent trained as long as "
                         "the pruned model (benchmarks/lstm_dense_control.py)")


def main(argv: list[str] | None = None) -> int:
    """Continue the dense word LSTM as the pruned one was trained; record and print it beside any_model.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/any_model/full", help="any_model.py's --work folder of that run")
    p.add_argument("--judge-only", action="store_true", help="only judge any_model.json from the kept results")
    p.add_argument("--model", default=NAME, choices=sorted(PARENTS), help="whose dense parent to continue")
    args = p.parse_args(argv)
    name, (_, results) = args.model, PARENTS[args.model]
    if args.judge_only:
        if not results.is_file():
            p.error(f"--judge-only: {results} not found; run the control first")
        judged = judge(json.loads(results.read_text()))
        print("\n".join(f"{r['model']}: met {r['met']}" for r in judged) or "no matching word-LSTM record")
        return 0
    torch.set_num_threads(1)
    spec = any_model.SPECS[name]
    data, info = any_model.load_data(spec, quick=False)
    model = spec.build(info)
    checkpoint = Path(args.work) / name / "baseline-train.pt"
    try:
        dense_epochs(checkpoint, spec, name)
        load_weights(model, checkpoint, name)
    except UserError as exc:
        p.error(str(exc))
    t0 = time.perf_counter()
    start = math.exp(score(model, (data.test_x, data.test_y), objective_of(spec.loss, "loss"), batch_size=500))
    rows = continued(model, data, spec)
    doc = {"command": "benchmarks/lstm_dense_control.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": name, "from_checkpoint": str(checkpoint), "checkpoint_perplexity": start, "epochs": rows,
           "wall_s": round(time.perf_counter() - t0, 1)}
    atomic.write_json(results, doc)
    judged = judge(doc)
    print(f"dense after {spec.train['epochs']} epochs (the checkpoint): {start:.2f}")
    for rec in judged:
        print(f"{rec['model']}: from the file {rec['file_perplexity']:.2f}; target met against both dense models: "
              f"{rec['met']}")
    if not judged:
        print(f"no word-LSTM record compressed from this checkpoint in {any_model.RESULTS} yet; once there is, "
              "run this with --judge-only")
    for r in rows:
        print(f"dense, {r['stage']} epoch {r['epoch']}: {r['perplexity']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
