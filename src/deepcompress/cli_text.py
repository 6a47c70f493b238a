"""`deepcompress run FILE --text A [--text B]`: sentence embeddings from a text-model file (all-MiniLM-L6-v2,
meta "text_model"), run by the CPU runtime without torch: the first dims and the norm of each text's
pooled state, the cosine of two texts, the batch-1 latency.

A file written with a variable sequence axis (meta "variable_axes" [1]) embeds texts of any length; an
older file holds the one sequence length T it was captured at (input_shape [2, T]), and a text that does
not tokenize to exactly T word pieces, [CLS] and [SEP] included, is refused in one line.
"""

from __future__ import annotations

import time

import numpy as np

from .errors import UserError
from .minilm_text import TEXT_MODEL, load_tokenizer, positions_of

SHOWN_DIMS = 6
ROUNDS = 5


def is_text_model(meta: dict) -> bool:
    """Whether the file's meta says it holds the all-MiniLM-L6-v2 sentence encoder."""
    return meta.get("text_model") == TEXT_MODEL


def embed_file_texts(model, texts: list[str], source: str) -> dict:
    """Per text: its first dims, the norm of its pooled state and the batch-1 median latency; with two
    texts, their cosine similarity. `model` is a runtime CompressedModel of a text-model file."""
    length = model.input_shape[-1]
    fixed = len(model.input_shape) - 1 not in model.variable_axes
    tokenizer = load_tokenizer()
    rows = []
    for i, text in enumerate(texts, 1):
        ids = tokenizer.encode(text).ids
        if fixed and len(ids) != length:
            raise UserError(f"--text {i} is {len(ids)} word pieces with [CLS] and [SEP]; {source} was captured "
                            f"at {length} (a file holds one sequence length)")
        x = positions_of(np.array([ids], dtype=np.int64))
        model(x)  # warm-up
        times = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            pooled = model(x)[0]
            times.append(time.perf_counter() - start)
        rows.append({"text": text, "first_dims": pooled[:SHOWN_DIMS].tolist(),
                     "norm": float(np.linalg.norm(pooled)), "latency_ms": 1e3 * float(np.median(times)),
                     "pooled": pooled})
    out = {"file": source, "tokens": length, "texts": rows}
    if len(rows) == 2:
        a, b = (r["pooled"] for r in rows)
        out["cosine"] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    for r in rows:
        del r["pooled"]
    return out


def print_embeddings(res: dict) -> None:
    """The text report of `embed_file_texts`."""
    print(f"{res['file']}: sentence encoder, {res['tokens']} tokens per text")
    for i, r in enumerate(res["texts"], 1):
        dims = ", ".join(f"{v:+.4f}" for v in r["first_dims"])
        print(f"  text {i}: [{dims}, ...] norm {r['norm']:.4f}, batch-1 latency {r['latency_ms']:.2f} ms")
    if "cosine" in res:
        print(f"  cosine(text 1, text 2) = {res['cosine']:.4f}")
