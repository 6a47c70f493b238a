"""Jane Austen's six novels as a character-level language-modelling corpus (numpy only).

The text comes from the Debian package r-cran-janeaustenr (R data in a lazy-load database, read with
deepcompress.rserial; `deepcompress data fetch austen` installs it), checked by sha256. Each novel is its
lines joined with newlines. The split is by novel, so the test text is a book the model never saw:

    train: Sense and Sensibility, Pride and Prejudice, Mansfield Park, Emma (3.12M characters)
    valid: Northanger Abbey (0.43M)          test: Persuasion (0.47M)

Two levels. Characters (`austen_corpus`): the vocabulary is the 81 characters of the training novels
(plus one id for a character they lack), so Embedding and output layers stay small and the LSTM's gate
matrices hold most of the weights. Words (`austen_word_corpus`, like the talk's NeuralTalk LSTM): the
lower-cased text cut into words, numbers, runs of dashes and single punctuation marks (the training novels:
672k tokens, 12.4k distinct); the `vocab_size - 1` most frequent training tokens keep an id, every other token
is id 0 (5,000: 98.0% of training tokens and 95.1% of the test novel's have their own id). There the
Embedding and output layers hold most of the weights.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError, Dataset, data_root, sha256_bytes

AUSTEN = "austen"
AUSTEN_DEB = "r-cran-janeaustenr"
AUSTEN_SYSTEM_DIR = Path("/usr/lib/R/site-library/janeaustenr/data")
AUSTEN_SHA256 = {
    "Rdata.rdx": "cab8cbe4ce965d3b42b35c03383bafccc0eb78151f70e4748ead45270470c22f",
    "Rdata.rdb": "8fb5198960d0da724b1562f96e4221e5c1b41ff455000280b02c55980c3d8f21",
}
AUSTEN_SPLITS = {
    "train": ("sensesensibility", "prideprejudice", "mansfieldpark", "emma"),
    "valid": ("northangerabbey",),
    "test": ("persuasion",),
}
UNKNOWN = 0  # the id of a character (or word) the training novels do not have
AUSTEN_WORDS = "austen-words"
WORD_VOCAB = 5000
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|[0-9]+|-+|[^\sa-z0-9-]")  # on lower-cased text


def austen_folder(folder: str | Path | None = None) -> Path:
    """Where the corpus files are: `folder`, else $DEEPCOMPRESS_DATA/austen, else the installed R package."""
    if folder is not None:
        return Path(folder)
    local = data_root() / AUSTEN
    return local if (local / "Rdata.rdb").is_file() or not AUSTEN_SYSTEM_DIR.is_dir() else AUSTEN_SYSTEM_DIR


def load_austen_novels(folder: str | Path | None = None) -> dict[str, str]:
    """Each novel's text by its janeaustenr name (e.g. "emma"), verified by checksum."""
    from .rserial import RObject, read_lazyload

    where = austen_folder(folder)
    for name, expected in AUSTEN_SHA256.items():
        path = where / name
        if not path.is_file():
            raise DataError(f"{AUSTEN}: {path} not found; run `deepcompress data fetch {AUSTEN}`")
        got = sha256_bytes(path.read_bytes())
        if got != expected:
            raise DataError(f"{AUSTEN}: checksum mismatch for {path}: expected sha256 {expected}, got {got}; "
                            f"delete it and run `deepcompress data fetch {AUSTEN}`")
    novels = read_lazyload(where / "Rdata.rdx", where / "Rdata.rdb")
    texts = {}
    for name in (n for split in AUSTEN_SPLITS.values() for n in split):
        lines = novels.get(name)
        if not (isinstance(lines, RObject) and isinstance(lines.value, list)):
            raise DataError(f"{AUSTEN}: {where} has no character vector {name!r}")
        texts[name] = "\n".join(line or "" for line in lines.value)
    return texts


@dataclass
class CharCorpus:
    """A corpus as character ids: `vocab[i]` is the character of id i (id 0: unknown)."""

    vocab: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def decode(self, ids) -> str:
        """The text of a sequence of ids (unknown characters as U+FFFD)."""
        return "".join(self.vocab[i] if i != UNKNOWN else "\ufffd" for i in np.asarray(ids).tolist())

    def encode(self, text: str) -> list[int]:
        """The ids of text's characters (UNKNOWN for a character the vocabulary lacks)."""
        return _ids(self.vocab, text)


def char_corpus(texts: dict[str, str], splits: dict[str, tuple[str, ...]] = AUSTEN_SPLITS) -> CharCorpus:
    """Texts joined per split (novels separated by a blank line) and encoded with the training split's
    characters (sorted; id 0 reserved for characters absent from training)."""
    joined = {part: "\n\n".join(texts[n] for n in names) for part, names in splits.items()}
    vocab = "\0" + "".join(sorted(set(joined["train"])))
    table = {c: i for i, c in enumerate(vocab) if i != UNKNOWN}
    encode = {part: np.fromiter((table.get(c, UNKNOWN) for c in text), np.int64, len(text))
              for part, text in joined.items()}
    return CharCorpus(vocab, encode["train"], encode["valid"], encode["test"])


def austen_corpus(folder: str | Path | None = None) -> CharCorpus:
    """The six novels as a character-level corpus, split by novel (see the module docstring)."""
    return char_corpus(load_austen_novels(folder))


@dataclass
class WordCorpus:
    """A corpus as word ids: `vocab[i]` is the token of id i (id 0: any token outside the vocabulary)."""

    vocab: tuple[str, ...]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def decode(self, ids) -> str:
        """The tokens of a sequence of ids, separated by spaces (unknown ones as <unk>)."""
        return " ".join(self.vocab[i] for i in np.asarray(ids).tolist())

    def encode(self, text: str) -> list[int]:
        """The ids of text's tokens (words_of; UNKNOWN for a token the vocabulary lacks)."""
        return _ids(self.vocab, words_of(text))


def _ids(vocab, tokens) -> list[int]:
    table = {t: i for i, t in enumerate(vocab) if i != UNKNOWN}
    return [table.get(t, UNKNOWN) for t in tokens]


def words_of(text: str) -> list[str]:
    """The text's tokens: lower-cased words (with inner apostrophes), numbers, dash runs, punctuation marks."""
    return WORD.findall(text.lower())


def word_corpus(texts: dict[str, str], vocab_size: int = WORD_VOCAB,
                splits: dict[str, tuple[str, ...]] = AUSTEN_SPLITS) -> WordCorpus:
    """Texts' tokens per split, encoded with the `vocab_size - 1` most frequent training tokens (ties in
    alphabetical order; id 0 for every other token)."""
    if vocab_size < 2:
        raise DataError(f"word vocabulary size must be at least 2 (the unknown token and one word), got {vocab_size}")
    tokens = {part: [w for n in names for w in words_of(texts[n])] for part, names in splits.items()}
    counts = Counter(tokens["train"])
    vocab = ("<unk>", *sorted(counts, key=lambda w: (-counts[w], w))[:vocab_size - 1])
    table = {w: i for i, w in enumerate(vocab) if i != UNKNOWN}
    encode = {part: np.fromiter((table.get(w, UNKNOWN) for w in words), np.int64, len(words))
              for part, words in tokens.items()}
    return WordCorpus(vocab, encode["train"], encode["valid"], encode["test"])


def austen_word_corpus(folder: str | Path | None = None, vocab_size: int = WORD_VOCAB) -> WordCorpus:
    """The six novels as a word-level corpus, split by novel (see the module docstring)."""
    return word_corpus(load_austen_novels(folder), vocab_size)


def austen_corpus_named(dataset: str, vocab_size: int = WORD_VOCAB) -> CharCorpus | WordCorpus:
    """The Austen corpus a data set name stands for: AUSTEN (characters) or AUSTEN_WORDS (words)."""
    if dataset == AUSTEN:
        return austen_corpus()
    if dataset == AUSTEN_WORDS:
        return austen_word_corpus(vocab_size=vocab_size)
    raise DataError(f"no Austen corpus named {dataset!r}; expected {AUSTEN!r} or {AUSTEN_WORDS!r}")


def windows(ids: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows of `length` ids and the ids that follow each: (x, y), both (N, length)."""
    if length < 1:
        raise DataError(f"sequence length must be at least 1, got {length}")
    n = (len(ids) - 1) // length
    x = ids[: n * length].reshape(n, length)
    y = ids[1 : n * length + 1].reshape(n, length)
    return x, y


def lm_dataset(corpus: CharCorpus | WordCorpus, length: int, name: str = AUSTEN) -> Dataset:
    """Next-token prediction as a Dataset: x (N, length) ids, y (N, length) the following ids."""
    train, valid, test = (windows(ids, length) for ids in (corpus.train, corpus.valid, corpus.test))
    return Dataset(name, train[0], train[1], test[0], test[1], valid[0], valid[1])
