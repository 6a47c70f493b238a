"""Atomic writes: the file appears whole or not at all, with the mode a plain open() would give it."""

import os

import pytest

from deepcompress import atomic


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic.write_bytes(tmp_path / "a.bin", b"x")
        with open(tmp_path / "b.bin", "wb") as fh:  # the reference: what open() creates
            fh.write(b"x")
    finally:
        os.umask(old)
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("a.bin") == mode("b.bin") == 0o666 & ~mask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.json"
    atomic.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert path.read_text() == '{\n  "a": 1\n}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
