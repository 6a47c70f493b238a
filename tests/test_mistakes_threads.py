"""A newcomer's mistakes with worker and thread counts (issue 15): far too many are refused in one line
before any work, a few too many warn once, fewer than one are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepcompress.errors import UserError, usable_cores
from test_mistakes import _cli, _compress, _one_error_line, _train, idx, recipe  # noqa: F401 (fixtures)


@pytest.mark.parametrize("command", ["train", "compress"])
def test_far_too_many_workers_are_refused(idx, recipe, tmp_path, capsys, command):
    many = 4 * usable_cores() + 1
    argv = (_train(idx, tmp_path / "r") if command == "train" else _compress(idx, recipe, tmp_path / "r"))
    code, _, err = _cli([*argv, "--workers", str(many)], capsys)
    assert code == 1 and _one_error_line(err, command) == (
        f"--workers {many}: this machine has {usable_cores()} cores; at most {4 * usable_cores()} (4 per core) "
        f"make sense")


def test_main_job_refuses_far_too_many_threads_before_any_work(tmp_path, capsys):
    many = 4 * usable_cores() + 1
    code, _, err = _cli(["main", "--threads", many, "--data-dir", tmp_path / "no-data", "--runs", tmp_path / "r"],
                        capsys)
    assert code == 1 and _one_error_line(err, "main") == (
        f"--threads {many}: this machine has {usable_cores()} cores; at most {4 * usable_cores()} (4 per core) "
        f"make sense")
    assert not (tmp_path / "r").exists()


def test_worker_counts_below_one_are_refused():
    from deepcompress.errors import check_parallelism

    with pytest.raises(UserError, match="must be at least 1"):
        check_parallelism("--workers", 0)


def test_more_workers_than_cores_print_one_warning(capsys):
    from deepcompress.errors import check_parallelism

    check_parallelism("--workers", usable_cores())
    assert capsys.readouterr().err == ""
    check_parallelism("--threads", usable_cores() + 1)
    assert capsys.readouterr().err == (f"warning: --threads {usable_cores() + 1} exceeds the {usable_cores()} "
                                       f"cores here; they will take turns (slower, same result)\n")


def test_run_refuses_absurd_thread_counts_in_one_line(capsys):
    from deepcompress import cli

    fixture = Path(__file__).parent / "data" / "lenet-300-100-mnist.dcz"
    assert cli.main(["run", str(fixture), "--threads", "1000"]) != 0
    err = capsys.readouterr().err
    assert f"--threads 1000: this machine has {usable_cores()} cores" in err and "Traceback" not in err
