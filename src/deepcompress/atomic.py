"""Atomic file output: write to a temporary file in the same folder, then rename into place."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; on success rename it to `path`, on error delete it.

    A crash part-way never leaves a truncated `path`: readers see the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600; give it the mode open() would have
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's file-creation mask: from /proc where Linux gives it, else by setting it and setting
    it straight back (the only portable way to read it, racy against other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, blob: bytes) -> None:
    """Write `blob` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())
