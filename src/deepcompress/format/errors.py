"""The one error a .dcz reader raises, and a helper that says where in the file it happened."""

from __future__ import annotations

import contextlib
import struct

from deepcompress.errors import UserError


class FormatError(UserError):
    """A .dcz file (or a layer about to be written) is not valid.

    The message reads `<file>: layer <i> '<name>': <section>: <detail>`, each part present when known.
    """

    def __init__(self, detail: str, *, file=None, layer_index=None, layer_name=None, section=None):
        self.detail = detail
        self.file = None if file is None else str(file)
        self.layer_index = layer_index
        self.layer_name = layer_name
        self.section = section
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(self.file)
        if self.layer_index is not None or self.layer_name is not None:
            label = "layer"
            if self.layer_index is not None:
                label += f" {self.layer_index}"
            if self.layer_name is not None:
                label += f" {self.layer_name!r}"
            parts.append(label)
        if self.section is not None:
            parts.append(self.section)
        parts.append(self.detail)
        return ": ".join(parts)

    def add_context(self, **where) -> "FormatError":
        """Fill in whichever of file, layer_index, layer_name, section are still unknown."""
        for key, value in where.items():
            if getattr(self, key) is None and value is not None:
                setattr(self, key, str(value) if key == "file" else value)
        self.args = (self._message(),)
        return self


@contextlib.contextmanager
def located(**where):
    """Inside this block, a FormatError gains the given file/layer/section context if it lacks it."""
    try:
        yield
    except FormatError as err:
        err.add_context(**where)
        raise


# Errors a bug in a check could let through; a reader turns them into FormatError so callers never see them.
_UNEXPECTED = (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error, RecursionError,
               MemoryError, ZeroDivisionError)


@contextlib.contextmanager
def reading(file=None):
    """Around a whole read: FormatErrors name `file`, and any other parsing error becomes a FormatError."""
    with located(file=file):
        try:
            yield
        except _UNEXPECTED as err:
            raise FormatError(f"malformed file (uncaught {type(err).__name__}: {err})") from err
