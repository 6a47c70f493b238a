"""The training loop: learning, determinism, resume == uninterrupted, atomic checkpoints, hooks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepcompress import atomic
from deepcompress.errors import UserError
from deepcompress.models import build_model
from deepcompress.train import TrainConfig, TrainHook, evaluate, learning_rate, load_checkpoint, score, train

FAST = dict(epochs=3, batch_size=32, lr=0.05, schedule="cosine", seed=3)


class Crash(RuntimeError):
    pass


class CrashAt(TrainHook):
    """Raise in the middle of a given epoch, as a killed process would stop."""

    def __init__(self, epoch, step):
        self.epoch, self.step, self.count = epoch, step, 0

    def after_step(self, model):
        self.count += 1
        if self.count == self.epoch * self.steps_per_epoch + self.step:
            raise Crash


def _fresh(name, seed=3):
    torch.manual_seed(seed)
    return build_model(name)


@pytest.mark.parametrize("name", ["lenet-300-100", "lenet-5"])
def test_learns_a_separable_problem(tiny_data, name):
    model = _fresh(name)
    before = evaluate(model, tiny_data.test_x, tiny_data.test_y)
    result = train(model, tiny_data, TrainConfig(**FAST), progress=False, verbose=False)
    assert before > 0.5 and result.test_error < 0.1
    assert len(result.history) == 3 and result.history[-1]["test_error"] == result.test_error


def test_same_seed_same_weights(tiny_data):
    a, b = _fresh("lenet-300-100"), _fresh("lenet-300-100")
    for m in (a, b):
        train(m, tiny_data, TrainConfig(**FAST), progress=False, verbose=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("name,optimizer", [("lenet-300-100", "sgd"), ("lenet-5", "adam")])
def test_resume_equals_uninterrupted(tiny_data, tmp_path, name, optimizer):
    cfg = TrainConfig(**{**FAST, "optimizer": optimizer, "lr": 0.05 if optimizer == "sgd" else 1e-3})
    whole = _fresh(name)
    full = train(whole, tiny_data, cfg, progress=False, verbose=False)

    ckpt = tmp_path / "checkpoint.pt"
    crashed = _fresh(name)
    hook = CrashAt(epoch=2, step=3)
    hook.steps_per_epoch = math.ceil(len(tiny_data.train_y) / cfg.batch_size)
    with pytest.raises(Crash):
        train(crashed, tiny_data, cfg, checkpoint=ckpt, hooks=(hook,), progress=False, verbose=False)
    assert load_checkpoint(ckpt)["epoch"] == 2

    resumed_model = _fresh(name, seed=99)  # a new process: different initial weights, restored from disk
    resumed = train(resumed_model, tiny_data, cfg, checkpoint=ckpt, resume=True, progress=False, verbose=False)
    for (key, x), y in zip(whole.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(x, y), key
    assert resumed.history == full.history


def test_resume_with_other_settings_is_refused(tiny_data, tmp_path):
    ckpt = tmp_path / "c.pt"
    train(_fresh("lenet-300-100"), tiny_data, TrainConfig(**{**FAST, "epochs": 1}), checkpoint=ckpt,
          progress=False, verbose=False)
    with pytest.raises(UserError, match="different settings"):
        train(_fresh("lenet-300-100"), tiny_data, TrainConfig(**{**FAST, "lr": 0.1}), checkpoint=ckpt,
              resume=True, progress=False, verbose=False)


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="unreadable"):
        load_checkpoint(bad)


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    atomic.write_bytes(target, b"old")
    with pytest.raises(Crash):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise Crash
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


class KeepZero(TrainHook):
    """A mask hook in miniature: the first half of ip1's weights must stay exactly zero."""

    def __init__(self, model):
        self.mask = torch.ones_like(model.ip1.weight)
        self.mask[:150] = 0
        with torch.no_grad():
            model.ip1.weight.mul_(self.mask)

    def after_backward(self, model):
        model.ip1.weight.grad.mul_(self.mask)

    def after_step(self, model):
        with torch.no_grad():
            model.ip1.weight.mul_(self.mask)


def test_hooks_keep_a_mask_applied(tiny_data):
    model = _fresh("lenet-300-100")
    hook = KeepZero(model)
    result = train(model, tiny_data, TrainConfig(**FAST), hooks=(hook,), progress=False, verbose=False)
    assert torch.count_nonzero(model.ip1.weight[:150]) == 0
    assert torch.count_nonzero(model.ip1.weight[150:]) > 0 and result.test_error < 0.2


def test_learning_rate_schedules():
    step = TrainConfig(lr=0.1, schedule="step", step_size=2, gamma=0.5, epochs=6)
    assert [learning_rate(step, e) for e in range(5)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    cos = TrainConfig(lr=0.1, schedule="cosine", epochs=4)
    assert [learning_rate(cos, e) for e in range(4)] == pytest.approx(
        [0.1 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])
    assert learning_rate(TrainConfig(lr=0.3, schedule="constant"), 7) == 0.3


def test_config_refuses_unknown_and_bad_values():
    with pytest.raises(UserError, match=r"^recipe: \[train\] unknown key 'epoch' \(did you mean 'epochs'\?\)$"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(UserError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")


def test_top1_error_takes_class_ids_on_either_axis_or_one_hot_rows():
    from deepcompress.train import top1_wrong

    gen = torch.Generator().manual_seed(0)
    out, y = torch.randn(6, 5, generator=gen), torch.randint(0, 5, (6,), generator=gen)
    ref = (out.argmax(1) != y).float()
    assert torch.equal(top1_wrong(out, y), ref)
    assert torch.equal(top1_wrong(out, F.one_hot(y, 5).float()), ref)  # one-hot targets: the same errors
    seq, ids = torch.randn(3, 4, 7, generator=gen), torch.randint(0, 7, (3, 4), generator=gen)
    assert torch.equal(top1_wrong(seq, ids), (seq.argmax(-1) != ids).float().mean(1))  # (N, T, V) logits
    maps, pix = torch.randn(2, 3, 4, 4, generator=gen), torch.randint(0, 3, (2, 4, 4), generator=gen)
    assert torch.equal(top1_wrong(maps, pix), (maps.argmax(1) != pix).float().flatten(1).mean(1))  # cross_entropy's
    soft = F.one_hot(pix, 3).permute(0, 3, 1, 2).float()  # scores on axis 1, as F.cross_entropy reads them
    assert torch.equal(top1_wrong(maps, soft), top1_wrong(maps, pix))


def test_top1_error_leaves_padded_positions_out():
    from deepcompress.train import top1_wrong

    gen = torch.Generator().manual_seed(1)
    seq, ids = torch.randn(3, 5, 7, generator=gen), torch.randint(0, 7, (3, 5), generator=gen)
    ids[0, 3:], ids[2] = -100, -100  # a short sequence, and one of padding alone
    want = torch.tensor([(seq[0, :3].argmax(-1) != ids[0, :3]).float().mean(),
                         (seq[1].argmax(-1) != ids[1]).float().mean(), float("nan")])  # nan: nothing to score
    torch.testing.assert_close(top1_wrong(seq, ids), want, equal_nan=True)
    torch.testing.assert_close(top1_wrong(seq.transpose(1, 2), ids), want, equal_nan=True)  # classes on axis 1
    model = torch.nn.Identity()  # score() leaves the sample of padding alone out of the mean
    assert score(model, (seq, ids)) == pytest.approx(float(want[:2].mean()))


@pytest.mark.parametrize("out, y, why", [
    (torch.zeros(6, 5), torch.zeros(6, 2), "expected integer class ids of shape"),
    (torch.zeros(6, 5), torch.zeros(6), "expected integer class ids"),  # float regression targets
    (torch.zeros(6, 1), torch.zeros(6, 1), "no class axis of two or more"),  # one logit: nothing to rank
    (torch.zeros(2, 4, 4), torch.zeros(2, 4, dtype=torch.long), "could be axis 1 or the last axis"),
])
def test_top1_error_refuses_targets_it_cannot_read(out, y, why):
    from deepcompress.train import top1_wrong

    with pytest.raises(UserError, match=why):
        top1_wrong(out, y)
