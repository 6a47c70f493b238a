"""Reproducibility (issue 15): on one machine with one thread count, the same command gives the same
.dcz file byte for byte, whatever state torch's global generator was left in."""

from __future__ import annotations

import json

import torch

from conftest import write_idx_folder
from deepcompress.cli import main
from test_mistakes import TINY_RECIPE


def test_two_identical_compress_runs_give_byte_identical_files(tmp_path, capsys):
    write_idx_folder(tmp_path, n_train=256, n_test=64)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    files = []
    for i, seed in enumerate((7, 12345)):
        torch.manual_seed(seed)  # the ambient generator differs between the runs
        torch.rand(seed % 97 + 1)
        out = tmp_path / f"run{i}"
        assert main(["compress", "--data-dir", str(tmp_path), "--recipe", str(recipe), "--out", str(out),
                     "--quiet"]) == 0
        files.append((out / "model.dcz").read_bytes())
        record = json.loads((out / "results.json").read_text())
        assert record["torch_threads"] == torch.get_num_threads()
    capsys.readouterr()
    assert files[0] == files[1]
