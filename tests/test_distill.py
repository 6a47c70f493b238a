"""Distillation towards a teacher's top-k distribution: the loss against PyTorch's cross-entropy with
probability targets, the packing, the refusals, and retraining through compress_model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepcompress.compress import compress_model
from deepcompress.data import Dataset
from deepcompress.distill import SoftTargets, pack, soft_targets, with_soft_targets
from deepcompress.errors import UserError
from deepcompress.train import objective_of


def _coarsened_cross_entropy(out: torch.Tensor, teacher_out: torch.Tensor, k: int) -> torch.Tensor:
    """The cross-entropy between teacher and student over k + 1 outcomes (the teacher's top k classes, and
    all the others together), averaged over outputs; in float64, written out from the definition."""
    p, q = torch.softmax(teacher_out.double(), -1), torch.softmax(out.double(), -1)
    top = p.topk(k, -1).indices
    p_top, q_top = p.gather(-1, top), q.gather(-1, top)
    rest = (1 - p_top.sum(-1)) * torch.log((1 - q_top.sum(-1)).clamp(min=1e-300)) if k < p.shape[-1] else 0
    return -((p_top * q_top.log()).sum(-1) + rest).mean()


def _packed(shape, k, seed):
    g = torch.Generator().manual_seed(seed)
    out, teacher_out = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    labels = torch.randint(0, shape[-1], shape[:-1], generator=g)
    top = torch.softmax(teacher_out, -1).topk(k, -1)
    return out, teacher_out, labels, pack(labels, top.indices, top.values)


def _last_axis_ce(o, t):
    return F.cross_entropy(o.reshape(-1, o.shape[-1]), t.reshape(-1))


@pytest.mark.parametrize("shape", [(6, 8), (4, 5, 8)])  # a classifier's (N, C), a sequence model's (N, T, C)
def test_with_every_class_kept_the_loss_is_pytorchs_cross_entropy_with_probability_targets(shape):
    out, teacher_out, labels, y = _packed(shape, 8, 0)
    flat = out.reshape(-1, shape[-1])
    want = 0.7 * F.cross_entropy(flat, labels.reshape(-1)) + 0.3 * F.cross_entropy(
        flat, torch.softmax(teacher_out, -1).reshape(-1, shape[-1]))
    assert torch.allclose(SoftTargets(objective_of(_last_axis_ce), 0.3, 8).loss(out, y), want, atol=1e-6)


@pytest.mark.parametrize("shape", [(6, 8), (4, 5, 8)])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_with_the_top_k_kept_the_rest_of_the_teachers_probability_is_one_more_outcome(shape, k):
    out, teacher_out, labels, y = _packed(shape, k, k)
    want = 0.6 * _last_axis_ce(out, labels) + 0.4 * _coarsened_cross_entropy(out, teacher_out, k)
    assert torch.allclose(SoftTargets(objective_of(_last_axis_ce), 0.4, k).loss(out, y), want.float(), atol=1e-6)


def test_the_soft_loss_does_not_push_the_student_out_of_the_classes_below_the_top_k():
    """A student that already matches the teacher is at the minimum: no gradient on any class (renormalising
    the top k would push the lower classes' probability towards 0)."""
    teacher_out = torch.randn(3, 10)
    out = teacher_out.clone().requires_grad_()
    top = torch.softmax(teacher_out, -1).topk(4, -1)
    y = pack(torch.zeros(3, dtype=torch.long), top.indices, top.values)
    SoftTargets(objective_of(), 1.0, 4).loss(out, y).backward()
    assert out.grad.abs().max() < 1e-6


def test_plain_labels_are_scored_by_the_base_objective_alone():
    out, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    ids, probs = soft_targets(nn.Identity(), torch.randn(8, 5), 3)
    obj = SoftTargets(objective_of(), 0.5, 3)
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
    want = torch.softmax(teacher[0](x).detach(), -1).topk(3, -1)
    assert torch.equal(ids, want.indices) and torch.allclose(probs, want.values)  # as they are, not renormalised


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
    for k in (0, 2.0, True):
        with pytest.raises(UserError, match="whole number"):
            soft_targets(nn.Linear(4, 6), torch.randn(2, 4), k)
    with pytest.raises(UserError, match="empty"):
        soft_targets(nn.Linear(4, 6), torch.randn(0, 4), 2)
    with pytest.raises(UserError, match="Dataset of tensors"):
        with_soft_targets((range(3), range(3)), nn.Linear(4, 6), 2)


def test_a_k_other_than_the_packings_or_one_that_mimics_class_scores_is_refused():
    out, _, labels, y = _packed((6, 8), 2, 0)
    with pytest.raises(UserError, match="same k"):
        SoftTargets(objective_of(), 0.5, 3).loss(out, y)
    with pytest.raises(UserError, match="as many as the 5 classes"):  # a one-hot (6, 5) would read as packed
        SoftTargets(objective_of(), 0.5, 2).loss(torch.randn(6, 5), F.one_hot(labels % 5, 5).float())


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


def test_positions_labelled_minus_100_are_skipped_as_cross_entropy_skips_them():
    """Padding (label -100, F.cross_entropy's ignore_index) adds nothing to either term of the mean."""
    out, teacher_out, labels, y = _packed((4, 6, 8), 3, 7)
    keep = torch.rand(4, 6, generator=torch.Generator().manual_seed(1)) < 0.6
    y[..., 0] = torch.where(keep, labels, torch.full_like(labels, -100)).float()
    want = 0.6 * F.cross_entropy(out[keep], labels[keep]) + 0.4 * _coarsened_cross_entropy(
        out[keep], teacher_out[keep], 3)
    assert torch.allclose(SoftTargets(objective_of(_last_axis_ce), 0.4, 3).loss(out, y), want.float(), atol=1e-6)
    y[..., 0] = -100  # a batch of padding alone: no loss and no gradient, not 0 / 0
    out.requires_grad_(True)
    loss = SoftTargets(objective_of(_last_axis_ce), 0.4, 3).loss(out, y)
    loss.backward()
    assert float(loss.detach()) == 0.0 and not out.grad.any()


def _toy_run(tmp_path, weight, resume, nudge=0.0, teacher_seed=0, name_teacher=True):
    torch.manual_seed(0)
    x = torch.randn(200, 10)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))
    torch.manual_seed(teacher_seed)
    teacher = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))
    y = model(x).argmax(1).detach()
    data = with_soft_targets(Dataset("toy", x[:150], y[:150], x[150:], y[150:]), teacher, 2)
    data.train_y[..., 3:] += nudge  # the teacher's probabilities a few ulps off, as another thread count gives
    recipe = {"prune": {"iterations": 1, "layers": {"0": 0.5}, "retrain": {"epochs": 1, "batch_size": 50}},
              "quantize": {"fc_bits": 5}}
    objective = SoftTargets(objective_of(), weight, 2, teacher=teacher if name_teacher else None)
    return compress_model(model, data, recipe, tmp_path / "run", example_input=x[:1], progress=False,
                          resume=resume, objective=objective)


def test_a_resumed_run_must_distill_alike_but_not_to_the_last_bit(tmp_path):
    _toy_run(tmp_path, 0.5, resume=False)
    with pytest.raises(UserError, match="objective soft targets weight = 0.5, this run has 0.9"):
        _toy_run(tmp_path, 0.9, resume=True)
    with pytest.raises(UserError, match=r"objective soft targets teacher \(sha256\) = "):
        _toy_run(tmp_path, 0.5, resume=True, teacher_seed=1)
    assert _toy_run(tmp_path, 0.5, resume=True, nudge=1e-7)["metric"] == "error"


def test_without_the_teacher_a_resumed_run_checks_the_packed_targets_whole(tmp_path):
    _toy_run(tmp_path, 0.5, resume=False, name_teacher=False)
    with pytest.raises(UserError, match="data fingerprint"):  # another teacher's probabilities
        _toy_run(tmp_path, 0.5, resume=True, teacher_seed=1, name_teacher=False)


def test_a_weight_of_any_number_type_is_taken_and_a_non_number_refused():
    assert SoftTargets(objective_of(), np.float32(0.25), 2).settings()["soft targets weight"] == 0.25
    assert SoftTargets(objective_of(), torch.tensor(0.5), 2).weight == 0.5
    with pytest.raises(UserError, match="weight must be a number, got 'half'"):
        SoftTargets(objective_of(), "half", 2)
