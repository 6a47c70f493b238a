"""Retraining towards a teacher: the dense model's predicted distribution as a second target
(Hinton et al. 2015, "Distilling the knowledge in a neural network").

A pruned model retrained on labels alone can fit the training set as well as the dense model and still
generalise worse; the teacher's full distribution over classes (every word a language model thought
likely, not only the one that came) carries more per sample and regularises. Only the teacher's k most
probable classes per output are kept, so the targets of a word model (5,000 classes at each of 35
positions) fit in memory: they are packed after the label into the training targets, and `SoftTargets`
unpacks them. The test set keeps its plain labels, so scores stay comparable with the dense model's.

    data = with_soft_targets(data, dense_model, k=32)
    compress_model(model, data, recipe, out, objective=SoftTargets(objective_of(loss, metric), 0.5, 32))
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError
from .train import Objective


@torch.no_grad()
def soft_targets(teacher: nn.Module, x: torch.Tensor, k: int, batch_size: int = 256) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """The teacher's k most probable classes for every output of inputs `x` (classes on the outputs' last
    axis: (N, C) or (N, T, C)) and their probabilities, renormalised to sum to 1; in eval mode."""
    was_training = teacher.training
    teacher.eval()
    ids, probs = [], []
    for i in range(0, len(x), batch_size):
        out = teacher(x[i:i + batch_size])
        if k > out.shape[-1]:
            raise UserError(f"soft targets: k = {k} is more than the teacher's {out.shape[-1]} classes")
        top, idx = out.topk(k, dim=-1)
        ids.append(idx)
        probs.append(torch.softmax(top, dim=-1))
    teacher.train(was_training)
    return torch.cat(ids), torch.cat(probs)


def pack(labels: torch.Tensor, ids: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """One float32 target tensor: per output, its label, then the k class ids, then their k probabilities
    (class ids are exact in float32 below 2**24)."""
    if labels.is_floating_point() or ids.shape[:-1] != labels.shape:
        raise UserError(f"soft targets need integer class labels of the outputs' shape less the class axis "
                        f"{tuple(ids.shape[:-1])}; got {labels.dtype} {tuple(labels.shape)}")
    if int(ids.max()) >= 2 ** 24:
        raise UserError(f"soft targets: class ids up to {2 ** 24 - 1:,} can be packed; got {int(ids.max()):,}")
    return torch.cat([labels.unsqueeze(-1).float(), ids.float(), probs.float()], dim=-1)


def with_soft_targets(data, teacher: nn.Module, k: int):
    """`data` (a deepcompress.data.Dataset of tensors) whose training targets also carry the teacher's top-k
    distribution (see `pack`); the test set is unchanged."""
    ids, probs = soft_targets(teacher, torch.as_tensor(data.train_x), k)
    return replace(data, train_y=pack(torch.as_tensor(data.train_y), ids, probs))


class SoftTargets(Objective):
    """`base`'s objective mixed with the teacher's: (1 - weight) x base loss on the labels + weight x the
    cross-entropy of the outputs against the teacher's top-k distribution, for targets packed by `pack`.
    Plain labels (the test set) get `base` alone, so it scores as `base` does."""

    def __init__(self, base: Objective, weight: float, k: int):
        if not 0 <= weight <= 1 or k < 1:
            raise UserError(f"SoftTargets: need 0 <= weight <= 1 and k >= 1; got weight {weight}, k {k}")
        self.base, self.weight, self.k = base, weight, k
        self.metric = base.metric

    def _packed(self, out: torch.Tensor, y: torch.Tensor) -> bool:
        return y.is_floating_point() and y.shape == out.shape[:-1] + (1 + 2 * self.k,)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mixed mean loss of a batch (packed targets), or `base`'s (plain labels)."""
        if not self._packed(out, y):
            return self.base.loss(out, y)
        labels, ids, probs = y[..., 0].long(), y[..., 1:1 + self.k].long(), y[..., 1 + self.k:]
        logq = F.log_softmax(out, dim=-1).gather(-1, ids)
        soft = -(probs * logq).sum(-1).mean()
        return (1 - self.weight) * self.base.loss(out, labels) + self.weight * soft

    def errors(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """`base`'s per-sample errors against the labels."""
        return self.base.errors(out, y[..., 0].long() if self._packed(out, y) else y)
