"""The `deepcompress` command: every command has --help; user errors are one clear line, not a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import write_idx_folder
from deepcompress.cli import build_parser, main
from deepcompress.cli_train import MODEL_NAMES
from deepcompress.models import MODELS


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "deepcompress.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in _commands():
        assert name in out.stdout
    assert {"data", "train"} <= set(_commands())


@pytest.mark.parametrize("name", _commands())
def test_each_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0 and "usage: deepcompress" in capsys.readouterr().out


def test_model_choices_are_the_models():
    """The --model choices are named without importing torch; they must be the models that exist."""
    assert MODEL_NAMES == tuple(sorted(MODELS))


def test_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_train_from_idx_folder_records_result(tmp_path, capsys):
    write_idx_folder(tmp_path, n_train=64, n_test=16)
    record = tmp_path / "results.json"
    code = main(["train", "--model", "lenet-300-100", "--data-dir", str(tmp_path), "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--record", str(record), "--quiet"])
    assert code == 0
    (entry,) = json.loads(record.read_text())
    assert entry["model"] == "lenet-300-100" and entry["epochs"] == 1 and 0 <= entry["test_error"] <= 1
    assert entry["command"].startswith("deepcompress train --model lenet-300-100")
    assert (tmp_path / "run" / "model.pt").exists() and (tmp_path / "run" / "checkpoint.pt").exists()
    assert "test error" in capsys.readouterr().out
