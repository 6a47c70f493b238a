"""Is the Austen CharLSTM capacity-bound? Train small dense CharLSTMs with about as many weights as the 90%
pruned model keeps (about 24,000) exactly as any_model.py trains the dense austen-lstm (4 epochs, Adam 3e-3,
batch 32, seed 0, the whole corpus), and set their test perplexity beside the dense and the 90%-pruned
model's from benchmarks/results/any_model.json. A small dense model about as good as the pruned one says the
pruned model is short of capacity, not of retraining: the talk's LSTM (NeuralTalk, hidden 512) had spare
weights to remove; this one (hidden 128) has few.

    .venv/bin/python benchmarks/lstm_capacity.py                 # hidden 38, embed 16 (24,184 weights)
    .venv/bin/python benchmarks/lstm_capacity.py --sizes 16:38 32:32

Results go to benchmarks/results/lstm_capacity.json; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from deepcompress import atomic
from deepcompress.data import Dataset
from deepcompress.models_text import CharLSTM, sequence_loss
from deepcompress.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lstm_capacity.json"
ANY_MODEL = ROOT / "benchmarks" / "results" / "any_model.json"
TRAIN = {"epochs": 4, "batch_size": 32, "lr": 3e-3, "optimizer": "adam", "weight_decay": 0.0}  # any_model.py's


def weights(model: CharLSTM) -> int:
    """Weights in the layers the pruning counts (embedding, LSTM matrices, output; no biases)."""
    return sum(p.numel() for n, p in model.named_parameters() if "bias" not in n)


def corpus_data() -> tuple[Dataset, int]:
    """The Austen windows of 100 characters any_model.py trains on, and the vocabulary size."""
    from deepcompress.data_text import austen_corpus, lm_dataset

    corpus = austen_corpus()
    data = lm_dataset(corpus, 100)
    return Dataset(data.name, *(torch.from_numpy(a) for a in (data.train_x, data.train_y, data.test_x,
                                                              data.test_y))), len(corpus.vocab)


def run_size(data: Dataset, vocab: int, embed: int, hidden: int) -> dict:
    """Train one dense CharLSTM; its weights and test perplexity."""
    torch.manual_seed(0)
    model = CharLSTM(vocab, embed=embed, hidden=hidden)
    t0 = time.perf_counter()
    result = train(model, data, TrainConfig(**TRAIN), progress=False, verbose=True, loss=sequence_loss,
                   metric="loss")
    return {"embed": embed, "hidden": hidden, "weights": weights(model),
            "perplexity": math.exp(result.test_loss), "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    """Train each size, record and print them beside the any_model.json austen-lstm record."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["16:38"], help="EMBED:HIDDEN per model (default 16:38)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data, vocab = corpus_data()
    rows = [run_size(data, vocab, *map(int, s.split(":"))) for s in args.sizes]
    ref = next((r for r in json.loads(ANY_MODEL.read_text()) if r["model"] == "austen-lstm"), None)
    doc = {"command": "benchmarks/lstm_capacity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "train": TRAIN, "small_dense": rows,
           "reference": None if ref is None else {k: ref.get(k) for k in (
               "dense_perplexity", "file_perplexity", "kept", "hidden", "train_samples")}}
    atomic.write_json(RESULTS, doc)
    print(f"{'model':<32} {'weights':>9} {'perplexity':>11}")
    if ref:
        dense = weights(CharLSTM(vocab, hidden=ref["hidden"]))
        print(f"{'dense, hidden %d' % ref['hidden']:<32} {dense:>9,} {ref['dense_perplexity']:>11.3f}")
        print(f"{'90% pruned (from the file)':<32} {round(ref['kept'] * dense):>9,} {ref['file_perplexity']:>11.3f}")
    for r in rows:
        print(f"{'dense, embed %d hidden %d' % (r['embed'], r['hidden']):<32} {r['weights']:>9,} "
              f"{r['perplexity']:>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
