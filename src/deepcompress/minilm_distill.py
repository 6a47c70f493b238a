"""Distillation data and objective for compressing all-MiniLM-L6-v2 without labels: the compressed model
(student) is retrained to give the uncompressed model's (teacher's) sentence embeddings on real text.

Data: unlabelled documents cut into fixed-length windows of word pieces, [CLS] + T-2 pieces + [SEP], so
every sample has the same length and needs no padding or attention mask (the shape the compression
pipeline's tensors need: x [N, 2, T] ids with their positions (`with_positions`), y [N, D] the teacher's
pooled states). Text: gensim's
lee_background.cor (300 news documents), the last tenth held out whole for evaluation.

Objective: 1 - cosine(student, teacher) per sample, averaged: the squared distance between the unit-length
sentence embeddings, halved, so it is what the evaluations (cosine similarities) see and ignores the
pooled vector's scale.

    data = distill_data(teacher, tokenizer, recipe.distill)   # a Dataset of windows and teacher states
    compress_model(student, data, recipe, "out/", objective=CosineDistill(teacher), example_input=data.test_x[:1])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import text_eval
from .compress.recipe import DistillStage
from .compress.run_folder import weights_digest
from .data import Dataset
from .errors import UserError
from .minilm_text import positions_of
from .train import Objective

NAME = "lee-background"  # the Dataset's name, as a recipe's [distill] corpus names it


def token_windows(tokenizer, docs: Sequence[str], length: int, stride: int | None = None) -> np.ndarray:
    """Windows [N, length] (int64) of [CLS] + length-2 consecutive word pieces of one document + [SEP];
    a document's last, shorter piece is dropped. `stride` (default length-2) is the step between windows.
    `tokenizer` must not truncate (see `untruncated`)."""
    if length < 3:
        raise UserError(f"a window of {length} tokens has no room for text between [CLS] and [SEP]")
    body = length - 2
    stride = stride or body
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    rows = []
    for enc in tokenizer.encode_batch(list(docs), add_special_tokens=False):
        ids = enc.ids
        rows += [[cls, *ids[s : s + body], sep] for s in range(0, len(ids) - body + 1, stride)]
    if not rows:
        raise UserError(f"no document has {body} word pieces; use a shorter window")
    return np.array(rows, dtype=np.int64)


@torch.no_grad()
def targets(teacher: nn.Module, ids: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The teacher's pooled states [N, D] for windows `ids` [N, 2, T] (`with_positions`)."""
    teacher.eval()
    return torch.cat([teacher(ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)])


def distill_data(teacher: nn.Module, tokenizer, text: DistillStage | None = None) -> Dataset:
    """The recipe's [distill] corpus as a Dataset: train_x / test_x are token windows of the training /
    held-out documents, train_y / test_y the teacher's pooled states for them. With `max_windows`, that
    many training windows and an eighth as many held-out ones (a quick run)."""
    text = text or DistillStage()
    train_docs, held_docs = text_eval.split_background(text.held_out)
    vocab = teacher.cfg.vocab_size  # the joint table's position rows follow the teacher's word pieces
    train_x = torch.from_numpy(positions_of(token_windows(untruncated(tokenizer), train_docs, text.window), vocab))
    test_x = torch.from_numpy(positions_of(token_windows(untruncated(tokenizer), held_docs, text.window), vocab))
    if text.max_windows:
        train_x, test_x = train_x[: text.max_windows], test_x[: max(1, text.max_windows // 8)]
    return Dataset(NAME, train_x, targets(teacher, train_x), test_x, targets(teacher, test_x))


def untruncated(tokenizer):
    """A copy of `tokenizer` that keeps whole documents (windows are cut from the full text)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cosine similarity between corresponding rows (pooled states [N, D])."""
    return (1 - F.cosine_similarity(student, teacher, dim=1)).mean()


class CosineDistill(Objective):
    """Distillation as a training objective: the loss is `cosine_loss`, each sample's error is 1 - its
    cosine similarity to the teacher's output (targets y are the teacher's pooled states). Given the
    `teacher` that computed them, a resumed compression run checks the teacher's weights instead of its
    float outputs (which can differ in the last bit at another thread count)."""

    def __init__(self, teacher: nn.Module | None = None):
        self.teacher = None if teacher is None else weights_digest(teacher)

    def settings(self) -> dict:
        """The teacher's weights hash, if given."""
        return {"teacher (sha256)": self.teacher} if self.teacher else {}

    def data_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Nothing with the teacher given (every target is its output); else the targets."""
        return y[:0] if self.teacher else y

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean 1 - cosine similarity."""
        return cosine_loss(out, y)

    def errors(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """1 - cosine similarity per sample."""
        return 1 - F.cosine_similarity(out, y, dim=1)


def cosine_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    """1 - mean cosine similarity of `model`'s pooled states on windows `x` to the targets `y` (0 is
    the teacher itself): the distillation counterpart of a classifier's test error."""
    return CosineDistill().error(model, x, y, batch_size)
