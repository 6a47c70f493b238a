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


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_parallelism(option: str, value: int, refuse_per_core: int | None = None) -> None:
    """Check a count of processes or threads (`option`, e.g. "--workers"): below 1, or above
    `refuse_per_core` per core, is a UserError; above the cores, a one-line warning on stderr."""
    import sys

    cores = usable_cores()
    if value < 1:
        raise UserError(f"{option} must be at least 1, got {value}")
    if refuse_per_core is not None and value > refuse_per_core * cores:
        raise UserError(f"{option} {value}: this machine has {cores} cores; at most {refuse_per_core * cores} "
                        f"({refuse_per_core} per core) make sense")
    if value > cores:
        print(f"warning: {option} {value} exceeds the {cores} cores here; they will take turns (slower, "
              f"same result)", file=sys.stderr, flush=True)
