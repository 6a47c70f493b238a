"""A short fingerprint of what a user's callable (a loss function) computes, so that a resumed run can tell
that it was given another one: its name, and a hash of its code, its defaults, the simple values it
closes over, and, for a module or a functools.partial, the settings and tensors it holds.

    loss_fingerprint(F.cross_entropy)      # {"loss": "torch.nn.functional.cross_entropy", "loss code (sha256)": ...}

The hash depends on the Python version (bytecode differs between versions): a run resumed under another
one is refused, which is safe.
"""

from __future__ import annotations

import functools
import hashlib
import types

from torch import nn

_SIMPLE = (int, float, str, bool, type(None), tuple)


def loss_fingerprint(fn) -> dict:
    """{"loss": its qualified name, "loss code (sha256)": 16 hex digits} for the callable `fn`."""
    digest = hashlib.sha256()
    _feed(fn, digest, depth=0)
    return {"loss": _name(fn), "loss code (sha256)": digest.hexdigest()[:16]}


def _name(fn) -> str:
    if isinstance(fn, functools.partial):
        return f"partial({_name(fn.func)})"
    target = fn if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)) else type(fn)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(fn).__name__)}"


def _feed(fn, digest, depth: int) -> None:
    """Add what `fn` computes to `digest` (nested partials and methods followed a few levels deep)."""
    digest.update(_name(fn).encode())
    if depth > 4:
        return
    if isinstance(fn, functools.partial):
        _feed(fn.func, digest, depth + 1)
        digest.update(repr((fn.args, sorted(fn.keywords.items()))).encode())
    elif isinstance(fn, types.MethodType):
        _feed(fn.__func__, digest, depth + 1)
        _feed_object(fn.__self__, digest)
    elif isinstance(fn, types.FunctionType):
        digest.update(_code_bytes(fn.__code__))
        digest.update(repr((fn.__defaults__, sorted((fn.__kwdefaults__ or {}).items()))).encode())
        for cell in fn.__closure__ or ():
            value = cell.cell_contents
            digest.update(repr(value).encode() if isinstance(value, _SIMPLE) else _name(value).encode())
    elif not isinstance(fn, types.BuiltinFunctionType):  # a module or another callable object
        call = type(fn).forward if isinstance(fn, nn.Module) else type(fn).__call__
        if isinstance(call, types.FunctionType):
            digest.update(_code_bytes(call.__code__))
        _feed_object(fn, digest)


def _feed_object(obj, digest) -> None:
    """The simple attributes and tensors an object holds (a loss module's reduction, label smoothing,
    class weights)."""
    for key, value in sorted(vars(obj).items()) if hasattr(obj, "__dict__") else ():
        if isinstance(value, _SIMPLE) and not key.startswith("_") and key != "training":
            digest.update(f"{key}={value!r}".encode())
    if isinstance(obj, nn.Module):
        for key, tensor in obj.state_dict().items():
            digest.update(key.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())


def _code_bytes(code: types.CodeType) -> bytes:
    """The bytecode, names and constants of a code object and of the code objects nested in it."""
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode())
    return b"".join(parts)
