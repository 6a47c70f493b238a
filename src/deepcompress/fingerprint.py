"""A short fingerprint of what a user's callable (a loss function) computes, so that a resumed run can tell
that it was given another one: its name, and a hash of its code, its defaults, the values it closes over
and, for a module, a functools.partial or a bound method, the settings, tensors and callables it holds,
followed a few levels deep.

    loss_fingerprint(F.cross_entropy)      # {"loss": "torch.nn.functional.cross_entropy", "loss code (sha256)": ...}

The same loss hashes alike in every process (sets are sorted, a callable counts by its code, never by its
address). Not covered: module-level globals the function reads (`SMOOTH = 0.1`) and functions it calls by
name. The hash depends on the Python version (bytecode differs between versions): a run resumed under
another one is refused, which is safe.
"""

from __future__ import annotations

import functools
import hashlib
import types

import numpy as np
import torch
from torch import nn

_NUMBERS = (int, float, complex, str, bytes, bool, type(None))
_DEPTH = 12  # how far nested callables, objects and containers are followed (each level counts)


def loss_fingerprint(fn) -> dict:
    """{"loss": its qualified name, "loss code (sha256)": 16 hex digits} for the callable `fn`."""
    digest = hashlib.sha256()
    _feed(fn, digest, depth=0)
    return {"loss": _name(fn), "loss code (sha256)": digest.hexdigest()[:16]}


def _name(fn) -> str:
    """The qualified name of a function or class, of a partial's function, else of the object's type."""
    if isinstance(fn, functools.partial):
        return f"partial({_name(fn.func)})"
    target = fn if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)) else type(fn)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(fn).__name__)}"


def _feed(fn, digest, depth: int) -> None:
    """Add what the callable `fn` computes to `digest`."""
    digest.update(_name(fn).encode())
    if depth > _DEPTH:
        return
    if isinstance(fn, functools.partial):
        _feed(fn.func, digest, depth + 1)
        _feed_value((fn.args, fn.keywords), digest, depth + 1)
    elif isinstance(fn, types.MethodType):
        _feed(fn.__func__, digest, depth + 1)
        _feed_value(fn.__self__, digest, depth + 1)
    elif isinstance(fn, types.FunctionType):
        digest.update(_code_bytes(fn.__code__))
        _feed_value((fn.__defaults__, fn.__kwdefaults__), digest, depth + 1)
        _feed_value(tuple(cell.cell_contents for cell in fn.__closure__ or ()), digest, depth + 1)
    elif not isinstance(fn, types.BuiltinFunctionType):  # a module or another callable object
        call = type(fn).forward if isinstance(fn, nn.Module) else type(fn).__call__
        if isinstance(call, types.FunctionType):
            digest.update(_code_bytes(call.__code__))
        _feed_object(fn, digest, depth)


def _feed_value(value, digest, depth: int) -> None:
    """Add a value a loss holds: numbers and strings by repr, tensors by bytes, containers item by item
    (sets sorted), callables by what they compute, other objects by their type and attributes."""
    if isinstance(value, _NUMBERS):
        digest.update(repr(value).encode())
    elif isinstance(value, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(value).detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode() + t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif depth > _DEPTH:
        digest.update(type(value).__name__.encode())
    elif isinstance(value, (tuple, list)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _feed_value(item, digest, depth + 1)
    elif isinstance(value, (set, frozenset)):
        digest.update(f"set{len(value)}".encode())
        for item in sorted(value, key=repr):
            _feed_value(item, digest, depth + 1)
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed_value(value[key], digest, depth + 1)
    elif callable(value):
        _feed(value, digest, depth + 1)
    else:
        digest.update(_name(value).encode())
        _feed_object(value, digest, depth)


def _feed_object(obj, digest, depth: int) -> None:
    """The public attributes an object holds (a loss module's reduction, label smoothing, its submodules'
    settings) and, for a module, its parameters and buffers."""
    attrs = vars(obj) if hasattr(obj, "__dict__") else {}
    _feed_value({k: v for k, v in attrs.items() if not k.startswith("_") and k != "training"}, digest, depth + 1)
    if isinstance(obj, nn.Module):
        _feed_value(dict(obj.state_dict()), digest, depth + 1)
        _feed_value({n: m for n, m in obj.named_children()}, digest, depth + 1)


def _code_bytes(code: types.CodeType) -> bytes:
    """The bytecode, names and constants of a code object and of the code objects nested in it (a
    frozenset constant, `x in {"a", "b"}`, sorted: its order changes between processes)."""
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_bytes(const))
        elif isinstance(const, frozenset):
            parts.append(repr(sorted(const, key=repr)).encode())
        else:
            parts.append(repr(const).encode())
    return b"".join(parts)
