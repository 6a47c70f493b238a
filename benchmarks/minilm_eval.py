"""What benchmarks/minilm.py and minilm_recipe_runs.py measure all-MiniLM-L6-v2 on: WordSim353, SimLex-999,
Lee-50 and lee_background's held-out sentences (all of them, or the first few with --quick), the three
correlations and the mean cosine to the dense model, and held-out windows of real text as batch-1 inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepcompress import text_eval
from deepcompress.minilm_distill import token_windows, untruncated
from deepcompress.minilm_text import Encoder, positions_of


@dataclass
class EvalSets:
    """What every setting is measured on (all of it, or the first few items with --quick)."""

    wordsim: text_eval.WordPairs
    simlex: text_eval.WordPairs
    lee_docs: list[str]
    lee_human: np.ndarray
    sentences: list[str]


def _head(pairs: text_eval.WordPairs, n: int | None) -> text_eval.WordPairs:
    return text_eval.WordPairs(pairs.name, pairs.first[:n], pairs.second[:n], pairs.human[:n])


def test_sets(size: dict) -> EvalSets:
    """The three test sets and lee_background's held-out sentences, cut to `size`."""
    docs, human = text_eval.lee50()
    n = size["docs"] or len(docs)
    return EvalSets(_head(text_eval.wordsim353(), size["pairs"]), _head(text_eval.simlex999(), size["pairs"]),
                    docs[:n], human[:n, :n], text_eval.held_out_sentences()[: size["sentences"]])


def quality(encoder: Encoder, sets: EvalSets, dense_sentences: np.ndarray) -> dict:
    """The three correlations and the mean cosine to the dense model's held-out sentence embeddings."""
    return {"wordsim353": text_eval.word_similarity(encoder.embed, sets.wordsim),
            "simlex999": text_eval.word_similarity(encoder.embed, sets.simlex),
            "lee50": text_eval.lee_correlation(encoder.embed, sets.lee_docs, sets.lee_human),
            "cosine_to_dense": text_eval.mean_cosine(encoder.embed(sets.sentences), dense_sentences)}


def real_windows(tokenizer, length: int) -> np.ndarray:
    """Held-out lee_background text as batch-1 inputs of `length` tokens, with their positions ([N, 2, T])."""
    _, held = text_eval.split_background()
    return positions_of(token_windows(untruncated(tokenizer), held, length))
