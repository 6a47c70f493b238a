"""Errors the runtime raises for files it cannot run and inputs it cannot take (both user errors)."""

from __future__ import annotations

from deepcompress.errors import UserError


class ModelError(UserError):
    """A valid .dcz file whose forward pass the runtime cannot build: no ops, unsupported or inconsistent ones."""


class InputError(UserError, ValueError):
    """An input the model cannot take: wrong shape, non-floating dtype, NaN or infinite values."""
