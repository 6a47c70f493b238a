"""The one base class for errors caused by the user's input (files, options, data), not by a bug, and the
turning of file-system errors into such one-line messages."""

from __future__ import annotations

import functools


class UserError(Exception):
    """Bad input: the message names the file, section or option and what was expected."""


def os_error_line(exc: OSError) -> str:
    """One line for a file-system error: the path(s) it concerns and the cause, e.g.
    "runs/x/model.pt: No space left on device"."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {cause}" if paths else f"{cause} ({type(exc).__name__})"


def one_line_os_errors(func):
    """Wrap a command's function so that any OSError it raises becomes a UserError naming path and cause."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            raise UserError(os_error_line(exc)) from None

    return wrapper
