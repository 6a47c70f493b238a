"""Retraining towards a teacher: the dense model's predicted distribution as a second target
(Hinton et al. 2015, "Distilling the knowledge in a neural network", at temperature 1).

A pruned model retrained on labels alone can fit the training set as well as the dense model and still
generalise worse; the teacher's distribution over classes (every word a language model thought likely,
not only the one that came) carries more per sample. Only the teacher's k most probable classes per
output are kept, with their probabilities as they are, so the targets of a word model (5,000 classes at
each of 35 positions) fit in memory; the rest of the teacher's probability is one more target, the
student's probability of all the other classes together. That is the exact cross-entropy between the two
distributions coarsened to k + 1 outcomes: the student is not pushed to empty the classes the teacher
ranked below k (renormalising the top k would, and the true word is often among them). The targets are
packed after the label into the training targets, and `SoftTargets` unpacks them; the test set keeps its
plain labels, so scores stay comparable with the dense model's.

    data = with_soft_targets(data, dense_model, k=32)
    objective = SoftTargets(objective_of(loss, metric), 0.5, 32, teacher=dense_model)
    compress_model(model, data, recipe, out, objective=objective)
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .compress.run_folder import weights_digest
from .errors import UserError
from .train import IGNORE_INDEX, Objective


def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"soft targets: k must be a whole number >= 1, got {k!r}")


@torch.no_grad()
def soft_targets(teacher: nn.Module, x: torch.Tensor, k: int, batch_size: int = 256) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """The teacher's k most probable classes for every output of inputs `x` and their probabilities (the
    teacher's outputs are logits with the classes on the last axis: (N, C) or (N, T, C)); in eval mode."""
    _check_k(k)
    if len(x) == 0:
        raise UserError("soft targets: the training set is empty")
    was_training = teacher.training
    teacher.eval()
    ids, probs = [], []
    try:
        for i in range(0, len(x), batch_size):
            out = teacher(x[i:i + batch_size])
            if k > out.shape[-1]:
                raise UserError(f"soft targets: k = {k} is more than the teacher's {out.shape[-1]} classes")
            top = torch.softmax(out.float(), dim=-1).topk(k, dim=-1)
            ids.append(top.indices)
            probs.append(top.values)
    finally:
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
    distribution (see `pack`); the test set is unchanged. For DataLoaders, pack with `soft_targets` and `pack`
    into your own training set."""
    if not all(hasattr(data, a) for a in ("train_x", "train_y", "test_x", "test_y")):
        raise UserError(f"with_soft_targets takes a deepcompress Dataset of tensors, got {type(data).__name__}; "
                        "with DataLoaders, build the training targets with soft_targets and pack")
    ids, probs = soft_targets(teacher, torch.as_tensor(data.train_x), k)
    return replace(data, train_y=pack(torch.as_tensor(data.train_y), ids, probs))


class SoftTargets(Objective):
    """`base`'s objective mixed with the teacher's, for targets packed by `pack` with the same k:
    (1 - weight) x base loss on the labels + weight x the cross-entropy against the teacher's top-k
    probabilities and the rest of its probability on all other classes together (mean over the outputs
    whose label is not IGNORE_INDEX, -100, which F.cross_entropy skips too). Plain labels (the test set) get
    `base` alone, so it scores as `base` does. `base` must take labels for outputs with the classes on the
    last axis (as F.cross_entropy does for (N, C)). Given the `teacher` that packed the targets, a resumed
    compression run checks the teacher's weights instead of its float outputs (which can differ in the last
    bit at another thread count); without it, the packed targets are checked whole."""

    def __init__(self, base: Objective, weight: float, k: int, teacher: nn.Module | None = None):
        _check_k(k)
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise UserError(f"SoftTargets: weight must be a number, got {weight!r}") from None
        if not 0 <= weight <= 1:
            raise UserError(f"SoftTargets: need 0 <= weight <= 1; got weight {weight}")
        self.base, self.weight, self.k = base, weight, k
        self.teacher = None if teacher is None else weights_digest(teacher)
        self.metric = base.metric

    @property
    def _width(self) -> int:
        """Numbers per output in targets packed with this k: the label, k ids, k probabilities."""
        return 1 + 2 * self.k

    def _packed(self, out: torch.Tensor, y: torch.Tensor) -> bool:
        """Whether `y` holds packed targets (else plain labels or targets of base's own kind)."""
        width = self._width
        if not y.is_floating_point() or y.shape[:-1] != out.shape[:-1] or y.dim() != out.dim():
            return False
        if out.shape[-1] == width:
            raise UserError(f"SoftTargets: k = {self.k} packs {width} numbers per output, as many as the "
                            f"{width} classes, so packed targets look like class scores; choose another k")
        if y.shape[-1] == width:
            return True
        if y.shape[-1] != out.shape[-1]:
            raise UserError(f"SoftTargets: targets of {y.shape[-1]} numbers per output are neither packed with "
                            f"k = {self.k} ({width}) nor scores of the {out.shape[-1]} classes; pack and "
                            "SoftTargets need the same k")
        return False

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mixed mean loss of a batch (packed targets), or `base`'s (plain labels)."""
        if not self._packed(out, y):
            return self.base.loss(out, y)
        labels, ids, probs = y[..., 0].long(), y[..., 1:1 + self.k].long(), y[..., 1 + self.k:]
        logz = torch.logsumexp(out, dim=-1, keepdim=True)
        soft = -(probs * (out.gather(-1, ids) - logz)).sum(-1)
        if self.k < out.shape[-1]:  # the teacher's remaining probability on the student's remaining classes
            rest = torch.logsumexp(out.scatter(-1, ids, float("-inf")), dim=-1) - logz.squeeze(-1)
            soft = soft - (1 - probs.sum(-1)).clamp(min=0) * rest
        kept = labels != IGNORE_INDEX
        if not kept.any():  # all padding: nothing to learn (F.cross_entropy's mean would be 0 / 0)
            return out.sum() * 0.0
        return (1 - self.weight) * self.base.loss(out, labels) + self.weight * soft[kept].mean()

    def settings(self) -> dict:
        """The base objective's settings, k, the weight and (if given) a hash of the teacher's weights."""
        own = {"soft targets k": self.k, "soft targets weight": self.weight}
        if self.teacher:
            own["soft targets teacher (sha256)"] = self.teacher
        return {**self.base.settings(), **own}

    def data_targets(self, y: torch.Tensor) -> torch.Tensor:
        """With the teacher given, the labels of packed targets (the teacher's part follows from its weights
        and the inputs, both hashed); else the packed targets whole."""
        if self.teacher and y.is_floating_point() and y.dim() >= 1 and y.shape[-1] == self._width:
            return self.base.data_targets(y[..., 0].long())
        return self.base.data_targets(y)

    def errors(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """`base`'s per-sample errors against the labels."""
        return self.base.errors(out, y[..., 0].long() if self._packed(out, y) else y)
