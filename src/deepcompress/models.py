"""The networks of Deep Compression's MNIST table: LeNet-300-100 and LeNet-5 (Caffe variant)."""

from __future__ import annotations

import importlib.util
import traceback
from pathlib import Path

from torch import nn

from .errors import UserError


class LeNet300100(nn.Module):
    """Fully connected 784-300-100-10 with ReLU: 266,610 parameters."""

    def __init__(self):
        super().__init__()
        self.ip1 = nn.Linear(784, 300)
        self.ip2 = nn.Linear(300, 100)
        self.ip3 = nn.Linear(100, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = x.flatten(1)
        x = self.relu(self.ip1(x))
        x = self.relu(self.ip2(x))
        return self.ip3(x)


class LeNet5(nn.Module):
    """Caffe LeNet: conv 20 5x5, max-pool, conv 50 5x5, max-pool, fc 800-500, ReLU, fc 500-10 (431,080)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.ip1 = nn.Linear(800, 500)
        self.ip2 = nn.Linear(500, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.pool(self.conv1(x))
        x = self.pool(self.conv2(x))
        x = self.relu(self.ip1(x.flatten(1)))
        return self.ip2(x)


MODELS = {"lenet-300-100": LeNet300100, "lenet-5": LeNet5}


def build_model(name: str) -> nn.Module:
    """A freshly initialised model: a built-in one by name (see MODELS), or `path/to/file.py:function`,
    a function of the user's that takes no arguments and returns an nn.Module."""
    if is_user_model(name):
        return _user_model(name)
    try:
        return MODELS[name]()
    except KeyError:
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(MODELS)} or give "
                        f"path/to/file.py:function") from None


def is_user_model(name: str) -> bool:
    """Whether `name` names a user's model function (`FILE.py:FUNCTION`) rather than a built-in model."""
    path, sep, func = name.rpartition(":")
    return bool(sep) and path.endswith(".py") and func.isidentifier()


def _user_model(name: str) -> nn.Module:
    path, _, func = name.rpartition(":")
    if not Path(path).is_file():
        raise UserError(f"--model {name}: {path} is not a file")
    spec = importlib.util.spec_from_file_location(f"deepcompress_user_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code failed: show its own error on one line
        raise UserError(f"--model {name}: importing {path} failed ({type(exc).__name__}: {exc})") from None
    build = getattr(module, func, None)
    if not callable(build):
        raise UserError(f"--model {name}: {path} defines no function {func!r}")
    try:
        model = build()
    except Exception as exc:  # likewise, with the line of the user's file it failed at
        raise UserError(f"--model {name}: {func}() failed{_where_in(exc, path)} ({type(exc).__name__}: "
                        f"{exc})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {name}: {func}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _where_in(exc: BaseException, path: str) -> str:
    """' at FILE:LINE' for the last frame of exc's traceback in the file `path` ('' if none is)."""
    target = Path(path).resolve()
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == target]
    return f" at {path}:{lines[-1]}" if lines else ""


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (weights and biases)."""
    return sum(p.numel() for p in model.parameters())
