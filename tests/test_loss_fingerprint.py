"""A user's loss function is part of what a resumable compression run is made from: the fingerprint
tells losses apart (code, defaults, closed-over values, module settings and tensors, partial arguments)
and is the same for the same loss; a resume under another loss is refused."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepcompress.compress import compress_model
from deepcompress.data import Dataset
from deepcompress.errors import UserError
from deepcompress.fingerprint import loss_fingerprint
from deepcompress.train import objective_of


def _smoothed(out, y, smoothing=0.1):
    return F.cross_entropy(out, y, label_smoothing=smoothing)


def _sharper(out, y, smoothing=0.1):
    return F.cross_entropy(2 * out, y, label_smoothing=smoothing)


def _closing_over(scale):
    return lambda out, y: F.cross_entropy(scale * out, y)


def _renamed_sharper():
    """_sharper under _smoothed's name: only the code tells them apart."""
    code = _sharper.__code__.replace(co_name="_smoothed", co_qualname="_smoothed")
    return type(_sharper)(code, globals(), "_smoothed", _sharper.__defaults__)


def _digest(fn) -> str:
    return loss_fingerprint(fn)["loss code (sha256)"]


def test_the_same_loss_gives_the_same_fingerprint_and_any_change_another():
    assert loss_fingerprint(_smoothed) == loss_fingerprint(_smoothed)
    assert loss_fingerprint(_smoothed)["loss"] == f"{__name__}._smoothed"
    assert loss_fingerprint(nn.CrossEntropyLoss()) == loss_fingerprint(nn.CrossEntropyLoss())
    variants = [
        _smoothed, _sharper, F.cross_entropy,
        functools.partial(_smoothed, smoothing=0.2), functools.partial(_smoothed, smoothing=0.3),
        _closing_over(2.0), _closing_over(3.0),
        nn.CrossEntropyLoss(), nn.CrossEntropyLoss(label_smoothing=0.1),
        nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0])), nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0])),
        nn.MSELoss(),
    ]
    digests = [_digest(fn) for fn in variants]
    assert len(set(digests)) == len(variants), digests


def test_a_module_loss_in_eval_mode_is_the_same_loss():
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    before = loss_fingerprint(loss)
    assert loss_fingerprint(loss.eval()) == before


def test_the_default_objective_has_no_loss_settings_and_a_user_loss_has():
    assert objective_of().settings() == {}
    assert objective_of(_smoothed).settings() == loss_fingerprint(_smoothed)


def _toy_run(tmp_path, loss, resume):
    torch.manual_seed(0)
    x = torch.randn(200, 10)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))
    y = model(x).argmax(1).detach()
    recipe = {"prune": {"iterations": 1, "layers": {"0": 0.5}, "retrain": {"epochs": 1, "batch_size": 50}},
              "quantize": {"fc_bits": 5}}
    return compress_model(model, Dataset("toy", x[:150], y[:150], x[150:], y[150:]), recipe, tmp_path / "run",
                          example_input=x[:1], progress=False, resume=resume, loss=loss)


def test_a_run_resumes_only_under_the_same_loss(tmp_path):
    _toy_run(tmp_path, _smoothed, resume=False)
    with pytest.raises(UserError, match=r"objective loss = '.*_smoothed', this run has '.*_sharper'"):
        _toy_run(tmp_path, _sharper, resume=True)
    with pytest.raises(UserError, match=r"objective loss code \(sha256\)"):  # the same name, other code
        _toy_run(tmp_path, _renamed_sharper(), resume=True)
    assert _toy_run(tmp_path, _smoothed, resume=True)["metric"] == "loss"
