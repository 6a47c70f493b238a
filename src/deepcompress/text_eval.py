"""Sentence-embedding test sets shipped in the gensim wheel (installed with --no-deps; only its data files
are read, gensim's code is never imported), and the scores computed on them.

- WordSim353 (353 word pairs) and SimLex-999 (999 pairs): Spearman correlation between the human score
  and the cosine similarity of the two words' embeddings, each word embedded as a sentence on its own.
- Lee-50 (Lee, Pincombe & Welsh 2005): 50 news documents and the mean human similarity of every pair;
  Pearson correlation over the 1,225 pairs (the upper triangle), as gensim's own test computes it.
- lee_background.cor: 300 other news documents, unlabelled text for distillation and held-out sentences.

`embed` below is any function from a list of texts to unit-length embeddings [N, D]
(deepcompress.minilm_text.Encoder.embed).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

PIP = "pip install --no-deps gensim==4.4.0"
Embed = Callable[[Sequence[str]], np.ndarray]


def data_dir() -> Path:
    """gensim's test_data folder, found without importing gensim."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the gensim test data is not installed; install it with: {PIP}")
    return Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data"


def _read(name: str, folder: Path | None) -> str:
    path = (folder or data_dir()) / name
    try:
        return path.read_bytes().decode("latin-1")  # lee.cor has Latin-1 bytes; the others are ASCII
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); reinstall with: {PIP} --force-reinstall") from None


@dataclass(frozen=True)
class WordPairs:
    """Word pairs with a human similarity score."""

    name: str
    first: tuple[str, ...]
    second: tuple[str, ...]
    human: np.ndarray


def word_pairs(name: str, folder: Path | None = None) -> WordPairs:
    """A word-pair file (wordsim353.tsv, simlex999.txt): '#' comment lines, then WORD1 TAB WORD2 TAB SCORE."""
    rows = []
    for number, line in enumerate(_read(name, folder).splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        try:
            rows.append((parts[0].strip(), parts[1].strip(), float(parts[2])))
        except (IndexError, ValueError):
            raise UserError(f"{name} line {number}: expected WORD<TAB>WORD<TAB>SCORE, got {line[:60]!r}") from None
    first, second, human = zip(*rows)
    return WordPairs(name, first, second, np.array(human))


def wordsim353(folder: Path | None = None) -> WordPairs:
    """WordSim353 (Finkelstein et al. 2002): 353 pairs, relatedness scores 0-10."""
    return word_pairs("wordsim353.tsv", folder)


def simlex999(folder: Path | None = None) -> WordPairs:
    """SimLex-999 (Hill et al. 2015): 999 pairs, similarity (not relatedness) scores 0-10."""
    return word_pairs("simlex999.txt", folder)


def lines(name: str, folder: Path | None = None) -> list[str]:
    """The non-empty lines of a one-document-per-line corpus (lee.cor, lee_background.cor)."""
    return [line.strip() for line in _read(name, folder).splitlines() if line.strip()]


def lee50(folder: Path | None = None) -> tuple[list[str], np.ndarray]:
    """The 50 Lee documents and their 50x50 human similarity matrix (upper triangle filled, 0..1)."""
    docs = lines("lee.cor", folder)
    try:
        matrix = np.array([[float(v) for v in row.split()] for row in lines("similarities0-1.txt", folder)])
    except ValueError as exc:
        raise UserError(f"similarities0-1.txt: not a matrix of numbers ({exc})") from None
    if len(docs) != 50 or matrix.shape != (50, 50):
        raise UserError(f"expected 50 Lee documents and a 50x50 matrix, got {len(docs)} and {matrix.shape}")
    return docs, matrix


def ranks(values) -> np.ndarray:
    """1-based ranks of `values`, ties sharing their mean rank (as Spearman's correlation needs)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=ranked) / counts)[group]


def spearman(a, b) -> float:
    """Spearman's rank correlation: Pearson's correlation of the (tie-averaged) ranks."""
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def word_similarity(embed: Embed, pairs: WordPairs) -> float:
    """Spearman correlation of the pairs' cosine similarities with the human scores."""
    words = sorted(set(pairs.first) | set(pairs.second))
    vectors = dict(zip(words, embed(words)))
    cosine = [float(vectors[a] @ vectors[b]) for a, b in zip(pairs.first, pairs.second)]
    return spearman(cosine, pairs.human)


def lee_correlation(embed: Embed, docs: Sequence[str], human: np.ndarray) -> float:
    """Pearson correlation of the documents' pairwise cosine similarities with the human matrix, over the
    pairs above the diagonal."""
    x = embed(list(docs))
    upper = np.triu_indices(len(docs), 1)
    return float(np.corrcoef((x @ x.T)[upper], human[upper])[0, 1])


def sentences(doc: str) -> list[str]:
    """A document split into sentences at '.', '!' or '?' followed by a space and a capital or a quote."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", doc) if s.strip()]


def split_background(held_out: float = 0.1, folder: Path | None = None) -> tuple[list[str], list[str]]:
    """lee_background.cor as (training documents, held-out documents): the last `held_out` fraction of
    the documents is held out whole, so no training text is evaluated."""
    docs = lines("lee_background.cor", folder)
    cut = len(docs) - max(1, round(held_out * len(docs)))
    return docs[:cut], docs[cut:]


def held_out_sentences(held_out: float = 0.1, folder: Path | None = None) -> list[str]:
    """The sentences of lee_background.cor's held-out documents (see `split_background`)."""
    return [s for doc in split_background(held_out, folder)[1] for s in sentences(doc)]


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of corresponding rows of two unit-length embedding matrices."""
    return float(np.mean(np.sum(a * b, axis=1)))


def scores(embed: Embed, folder: Path | None = None) -> dict[str, float]:
    """WordSim353 and SimLex-999 Spearman, Lee-50 Pearson of an embedding function."""
    docs, human = lee50(folder)
    return {"wordsim353": word_similarity(embed, wordsim353(folder)),
            "simlex999": word_similarity(embed, simlex999(folder)),
            "lee50": lee_correlation(embed, docs, human)}
