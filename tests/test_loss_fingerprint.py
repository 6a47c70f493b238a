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


def _in_set(out, y):
    if str(y.dtype) in {"torch.int64", "torch.long", "torch.int32"}:  # a frozenset constant
        return F.cross_entropy(out, y)
    return F.mse_loss(out, y)


def _wrapped(out, y, inner=None):
    return inner(out, y)


HASHED_IN_A_SUBPROCESS = """
import functools, sys
sys.path.insert(0, {tests!r})
from test_loss_fingerprint import _in_set, _wrapped, _smoothed
from deepcompress.fingerprint import loss_fingerprint
print(loss_fingerprint(_in_set)["loss code (sha256)"],
      loss_fingerprint(functools.partial(_wrapped, inner=_smoothed))["loss code (sha256)"])
"""


def test_the_fingerprint_is_the_same_in_every_process():
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = HASHED_IN_A_SUBPROCESS.format(tests=str(Path(__file__).parent))
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1 and len(runs.pop().split()) == 2


class _Smoothing(nn.Module):
    def __init__(self, smoothing):
        super().__init__()
        self.inner = nn.CrossEntropyLoss(label_smoothing=smoothing)

    def forward(self, out, y):
        return self.inner(out, y)


def _over(value):
    return lambda out, y: F.cross_entropy(out, y, weight=value) if isinstance(value, torch.Tensor) else value(out, y)


def test_what_a_loss_holds_deeper_down_counts_too():
    pairs = [
        (_over(torch.tensor([1.0, 2.0])), _over(torch.tensor([1.0, 5.0]))),  # a closure over a tensor
        (_over(nn.CrossEntropyLoss()), _over(nn.CrossEntropyLoss(label_smoothing=0.3))),  # over a loss module
        (_Smoothing(0.0), _Smoothing(0.3)),  # a setting in a submodule
        (functools.partial(_smoothed, smoothing=torch.full((5000,), 1.00001)),
         functools.partial(_smoothed, smoothing=torch.full((5000,), 1.00002))),  # reprs alike, values not
    ]
    for a, b in pairs:
        assert _digest(a) != _digest(b)
        assert _digest(a) == _digest(a)


def test_a_loss_holding_bfloat16_tensors_is_fingerprinted():
    loss = nn.CrossEntropyLoss(weight=torch.ones(3, dtype=torch.bfloat16))
    assert _digest(loss) != _digest(nn.CrossEntropyLoss(weight=torch.ones(3)))


def test_stages_made_before_losses_were_recorded_are_refused_with_the_reason(tmp_path):
    import json

    _toy_run(tmp_path, _smoothed, resume=False)
    path = tmp_path / "run" / "stages.json"
    made = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("objective loss")}
    path.write_text(json.dumps(made))
    with pytest.raises(UserError, match=r"this run has .*_smoothed' \(those stages were made before deepcompress "
                                        r"recorded a user's loss function\)"):
        _toy_run(tmp_path, _smoothed, resume=True)
