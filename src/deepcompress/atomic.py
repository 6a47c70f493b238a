"""Atomic file output: write to a temporary file in the same folder, then rename into place."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UserError

# Below this much free space a failed write is reported as the disk being full: torch.save, for one,
# says only "file write failed".
NEARLY_FULL_BYTES = 1 << 20


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; on success rename it to `path`, on error delete it.

    A crash part-way never leaves a truncated `path`: readers see the old file or the complete new one.
    A failure on a full file system, or an OSError about the temporary file, is raised as an OSError
    naming `path` (errno.ENOSPC for the full disk).
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
    except BaseException as exc:
        # RuntimeError: what torch.save raises for a failed write
        full = isinstance(exc, (OSError, RuntimeError)) and _nearly_full(path.parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) == tmp:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def writable_folder(path: str | Path, option: str = "--out") -> Path:
    """`path` as a folder this process can create files in, made if missing; checked before any work, so
    a read-only file system, a missing permission or a file of that name is one UserError, not a failure
    after the first epoch."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: is a file, not a folder (the output goes into a folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


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


def update_json(path: str | Path, update, default=None):
    """Read the JSON at `path` (`default` if there is none), write `update(value)` back atomically, and
    return it, holding an exclusive lock on the folder throughout, so two processes updating the same
    file in turn both keep their changes (a read then a write apart lose one). POSIX only."""
    import fcntl  # not on Windows, where nothing else here needs it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        new = update(json.loads(path.read_text()) if path.exists() else default)
        write_json(path, new)
        return new
    finally:
        os.close(fd)  # releases the lock
