"""Distillation towards a teacher's top-k distribution: the loss against PyTorch's cross-entropy with
probability targets, the packing, the refusals, and retraining through compress_model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepcompress.compress import compress_model
from deepcompress.data import Dataset
from deepcompress.distill import SoftTargets, pack, soft_targets, with_soft_targets
from deepcompress.errors import UserError
from deepcompress.train import objective_of


def _top_k_reference(teacher_out: torch.Tensor, k: int) -> torch.Tensor:
    """The teacher's softmax with all but its k largest classes zeroed, renormalised."""
    probs = torch.softmax(teacher_out, -1)
    kept = torch.zeros_like(probs).scatter(-1, probs.topk(k, -1).indices, 1.0) * probs
    return kept / kept.sum(-1, keepdim=True)


@pytest.mark.parametrize("shape", [(6, 7), (4, 5, 7)])  # a classifier's (N, C), a sequence model's (N, T, C)
@pytest.mark.parametrize("k", [7, 3, 1])
def test_the_mixed_loss_is_pytorchs_cross_entropy_with_label_and_probability_targets(shape, k):
    g = torch.Generator().manual_seed(k)
    out, teacher_out = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    labels = torch.randint(0, shape[-1], shape[:-1], generator=g)
    top = teacher_out.topk(k, -1)
    y = pack(labels, top.indices, torch.softmax(top.values, -1))
    obj = SoftTargets(objective_of(lambda o, t: F.cross_entropy(o.reshape(-1, o.shape[-1]), t.reshape(-1))),
                      0.3, k)
    flat = out.reshape(-1, shape[-1])
    want = 0.7 * F.cross_entropy(flat, labels.reshape(-1)) + 0.3 * F.cross_entropy(
        flat, _top_k_reference(teacher_out, k).reshape(-1, shape[-1]))
    assert torch.allclose(obj.loss(out, y), want, atol=1e-6)


def test_plain_labels_are_scored_by_the_base_objective_alone():
    out, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    ids, probs = soft_targets(nn.Identity(), torch.randn(8, 5), 2)
    obj = SoftTargets(objective_of(), 0.5, 2)
    assert obj.metric == "error"
    assert torch.equal(obj.loss(out, labels), F.cross_entropy(out, labels))
    assert torch.equal(obj.errors(out, pack(labels, ids, probs)), obj.errors(out, labels))
    assert torch.equal(obj.errors(out, labels), (out.argmax(1) != labels).float())


def test_soft_targets_are_the_teachers_top_classes_in_eval_mode():
    teacher = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.9))
    teacher.train()
    x = torch.randn(10, 4)
    ids, probs = soft_targets(teacher, x, 3, batch_size=4)
    assert teacher.training  # restored
    want = teacher[0](x).detach().topk(3, -1)
    assert torch.equal(ids, want.indices)
    assert torch.allclose(probs, torch.softmax(want.values, -1)) and torch.allclose(probs.sum(-1), torch.ones(10))


def test_with_soft_targets_packs_the_training_set_and_leaves_the_test_set():
    data = Dataset("toy", torch.randn(9, 4), torch.randint(0, 6, (9,)), torch.randn(3, 4), torch.randint(0, 6, (3,)))
    packed = with_soft_targets(data, nn.Linear(4, 6), 2)
    assert packed.train_y.shape == (9, 5) and torch.equal(packed.train_y[:, 0].long(), data.train_y)
    assert packed.test_y is data.test_y and packed.train_x is data.train_x


def test_refusals_name_the_problem():
    with pytest.raises(UserError, match="more than the teacher's 6 classes"):
        soft_targets(nn.Linear(4, 6), torch.randn(2, 4), 7)
    with pytest.raises(UserError, match="integer class labels"):
        pack(torch.rand(3), torch.zeros(3, 2, dtype=torch.long), torch.rand(3, 2))
    with pytest.raises(UserError, match="integer class labels"):
        pack(torch.zeros(3, dtype=torch.long), torch.zeros(3, 4, 2, dtype=torch.long), torch.rand(3, 4, 2))
    with pytest.raises(UserError, match="weight"):
        SoftTargets(objective_of(), 1.5, 2)


def test_compress_model_retrains_towards_the_teacher(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(400, 10)
    teacher = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))
    y = teacher(x).argmax(1).detach()
    data = with_soft_targets(Dataset("toy", x[:300], y[:300], x[300:], y[300:]), teacher, 3)
    student = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))
    student.load_state_dict(teacher.state_dict())
    recipe = {"prune": {"iterations": 1, "layers": {"0": 0.5, "2": 0.5},
                        "retrain": {"epochs": 2, "batch_size": 32, "lr": 0.01}},
              "quantize": {"fc_bits": 5}}
    outcome = compress_model(student, data, recipe, tmp_path / "run", example_input=x[:1], progress=False,
                             objective=SoftTargets(objective_of(), 0.5, 3))
    assert outcome["metric"] == "error" and 0 <= outcome["test_error"] <= 0.25
