"""Atomic writes: the file appears whole or not at all, with the mode a plain open() would give it."""

import json
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


def _append_many(path: str, tag: int, times: int) -> None:
    for i in range(times):
        atomic.update_json(path, lambda records: records + [[tag, i]], [])


def test_update_json_keeps_every_update_of_processes_writing_in_turn(tmp_path):
    import multiprocessing

    path = tmp_path / "records.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), tag, 40)) for tag in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    for p in procs:  # one still running after a minute failed; leave nothing behind
        if p.is_alive():
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0]
    records = json.loads(path.read_text())
    assert sorted(map(tuple, records)) == [(tag, i) for tag in range(3) for i in range(40)]
    assert not [f for f in tmp_path.iterdir() if f.name != "records.json"]  # no lock or temporary file left


def test_update_json_creates_the_folder_and_starts_from_the_default(tmp_path):
    path = tmp_path / "new" / "deeper" / "records.json"
    assert atomic.update_json(path, lambda records: records + [1], []) == [1]
    assert json.loads(path.read_text()) == [1]
