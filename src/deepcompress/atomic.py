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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | Path, blob: bytes) -> None:
    """Write `blob` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())
