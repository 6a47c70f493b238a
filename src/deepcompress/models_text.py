"""The character-level LSTM language model (Jane Austen, data_text.py) and its loss, shared by
benchmarks/any_model.py's `austen-lstm` and the pruning-lstm study."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .runtime.measure import sequence_ce  # noqa: F401  (the runtime's side of sequence_loss; imported from here)


class CharLSTM(nn.Module):
    """Embedding(V, E) -> LSTM(E, H, num_layers=2, batch_first=True) -> Linear(H, V): next-token logits
    (characters or words: V is the vocabulary). `dropout` > 0 drops the embedding's output, the first LSTM
    layer's output and the second's while training (Zaremba et al.'s regularised LSTM); evaluation is
    unaffected. `tie` makes the output layer's weight the embedding's (Press & Wolf 2017; needs E = H), both
    drawn from U(-0.1, 0.1) as PyTorch's word_language_model does, with the output bias a parameter of its own
    (`out_bias`: the file stores a tied weight once with one bias, and the embedding has none)."""

    def __init__(self, vocab: int, embed: int = 64, hidden: int = 256, dropout: float = 0.0, tie: bool = False):
        super().__init__()
        if tie and embed != hidden:
            raise ValueError(f"tie needs the embedding as wide as the hidden state; got {embed} and {hidden}")
        self.tie = tie
        self.embed = nn.Embedding(vocab, embed)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True, dropout=dropout)
        self.out = nn.Linear(hidden, vocab, bias=not tie)
        if tie:
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)
            self.out.weight = self.embed.weight
            self.out_bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, x):
        h, _ = self.lstm(self.drop(self.embed(x)))
        logits = self.out(self.drop(h))
        return logits + self.out_bias if self.tie else logits


# The word-level model and how it is trained and pruned: benchmarks/any_model.py's austen-words-lstm(-cells)
# and the pruning-lstm study's full mode. 10 dense epochs, not 3: a parent still improving made the pruned
# model look better than it was. Retraining dropout is Han et al.'s D_r = D_o sqrt(C_r / C_o) at 10% kept: at
# 0.25 the every-matrix model reached perplexity 131 (1.46x dense), at 0.079 119.
WORD_LSTM = {"length": 35, "embed": 200, "hidden": 200, "dropout": 0.25,
             "retrain_dropout": round(0.25 * 0.1 ** 0.5, 3), "epochs": 10, "lr": 2e-3, "batch_size": 32,
             "retrain_epochs": 5, "retrain_lr": 1e-3}

# Zhu & Gupta's large-sparse design at the size of Zaremba et al.'s "medium" PTB LSTM (650 units, dropout
# 0.5): every matrix at 10% leaves 65 weights per word in the embedding and output layer, where the 200-unit
# model's 20 cost it 1.32x in perplexity. Fewer dense epochs than WORD_LSTM: an epoch takes 5.5 minutes at two
# threads here (0.9 s a batch), and Adam converges this model in fewer passes.
WORD_LSTM_LARGE = {**WORD_LSTM, "embed": 650, "hidden": 650, "dropout": 0.5,
                   "retrain_dropout": round(0.5 * 0.1 ** 0.5, 3), "epochs": 8}

# Zhu & Gupta and Distiller's AGP tutorial prune a wider, tied LSTM within 1-3% of dense at 90% (Distiller:
# hidden 1500, tied, 85.67 against 83.85 on WikiText-2), where every 650-unit design here settled at 1.09x:
# 1,000 units, the embedding tied to the output layer (21M weights, 2.1x the 650 model's time a step: 1.2 s at
# two threads), dropout between Zaremba et al.'s medium 0.5 and large 0.65
WORD_LSTM_TIED = {**WORD_LSTM, "embed": 1000, "hidden": 1000, "dropout": 0.6, "tie": True,
                  "retrain_dropout": round(0.6 * 0.1 ** 0.5, 3), "epochs": 8}

# The tied design at the 650-unit model's width and dropout (about 10M weights, 0.52 s a step at two threads
# against 1.05 s at 1,000 units): whether tying, not width, is what closes the 650 model's 1.09x, in a run that
# fits one sitting
WORD_LSTM_TIED_650 = {**WORD_LSTM_LARGE, "tie": True}

LSTM_MATRICES = tuple(f"lstm.weight_{kind}_l{layer}" for layer in (0, 1) for kind in ("ih", "hh"))


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout rate of `model` (dropout modules, recurrent layers' dropout between layers) to p;
    ValueError unless 0 <= p < 1 (the modules' own check, which setting the attribute bypasses)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout rate {p}: expected 0 <= p < 1")
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = p
        elif isinstance(m, nn.RNNBase):
            m.dropout = p


def charlstm_sparsity(model: CharLSTM, target: float) -> dict[str, float]:
    """Fraction of weights to remove per layer (Masks names) so that `target` of all the model's weights is
    removed: the embedding keeps 3x and the output layer 1.5x the overall kept fraction, the four LSTM
    matrices one shared fraction making up the rest. Per layer, not one global threshold: a global cut at 90%
    left lstm.weight_hh_l1 at 2.9% and cost 25% in perplexity."""
    sizes = {"embed": model.embed.weight.numel(), "out": model.out.weight.numel(),
             **{n: getattr(model.lstm, n.split(".", 1)[1]).numel() for n in LSTM_MATRICES}}
    kept = 1.0 - target
    keep = {"embed": min(1.0, 3 * kept), "out": min(1.0, 1.5 * kept)}
    rest = kept * sum(sizes.values()) - sum(keep[n] * sizes[n] for n in keep)
    lstm_keep = rest / sum(sizes[n] for n in LSTM_MATRICES)
    if not 0 < lstm_keep <= 1:
        raise ValueError(f"cannot prune {target:.0%} of this CharLSTM with the embedding and output kept denser")
    keep.update({n: lstm_keep for n in LSTM_MATRICES})
    return {n: 1.0 - k for n, k in keep.items()}


def sequence_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per character over (N, T, V) logits and (N, T) targets."""
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def sequence_ce(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sequence, the mean cross-entropy per position of (N, T, V) logits against (N, T) targets (numpy,
    float64: the runtime's side of sequence_loss)."""
    flat = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    top = flat.max(1)
    logz = np.log(np.exp(flat - top[:, None]).sum(1)) + top
    return (logz - flat[np.arange(len(flat)), y.reshape(-1)]).reshape(len(logits), -1).mean(1)
