"""`deepcompress train --workers N`: the train command itself runs data-parallel local processes."""

from __future__ import annotations

import json

import torch

from conftest import write_idx_folder
from deepcompress.cli import main


def test_train_with_two_workers_equals_one_process_with_double_batch(tmp_path, capsys):
    write_idx_folder(tmp_path, n_train=12, n_test=5)
    common = ["train", "--data-dir", str(tmp_path), "--epochs", "2", "--seed", "1", "--quiet"]
    assert main(common + ["--workers", "2", "--batch-size", "3", "--out", str(tmp_path / "x2")]) == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker ran
    try:
        assert main(common + ["--batch-size", "6", "--out", str(tmp_path / "x1")]) == 0
    finally:
        torch.set_num_threads(threads)
    record = json.loads((tmp_path / "x2" / "train.json").read_text())
    assert record["workers"] == 2 and record["config"]["batch_size"] == 6 and record["restarts"] == 0
    assert "2 workers" in capsys.readouterr().out
    got, want = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("x2", "x1"))
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6)


def test_zero_workers_is_a_user_error(tmp_path, capsys):
    write_idx_folder(tmp_path, n_train=12, n_test=5)
    assert main(["train", "--data-dir", str(tmp_path), "--workers", "0", "--out", str(tmp_path / "o")]) == 1
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_train_ps_runs_downpour_and_prints_the_staleness_report(tmp_path, capsys):
    write_idx_folder(tmp_path, n_train=64, n_test=16)
    # 2 workers x 32 images, batch 8: 4 steps each, a push every 2 steps, so each shard applies 4 gradients.
    assert main(["train-ps", "--data-dir", str(tmp_path), "--workers", "2", "--shards", "2", "--epochs", "1",
                 "--batch-size", "8", "--n-fetch", "2", "--n-push", "2", "--lr", "0.05",
                 "--out", str(tmp_path / "ps")]) == 0
    out = capsys.readouterr().out
    assert "updates per shard: 4, 4; steps per worker: worker0 4, worker1 4" in out
    assert "staleness" in out and "8 gradients" in out
    record = json.loads((tmp_path / "ps" / "ps.json").read_text())
    assert record["updates"] == [4, 4] and record["staleness"]["gradients"] == 8 and not record["lost"]
    assert record["ps"]["n_fetch"] == 2 and record["config"]["momentum"] == 0.0
    assert set(torch.load(tmp_path / "ps" / "model.pt", weights_only=True)) == {
        f"ip{i}.{k}" for i in (1, 2, 3) for k in ("weight", "bias")}


def test_train_ps_rejects_zero_shards(tmp_path, capsys):
    write_idx_folder(tmp_path, n_train=12, n_test=5)
    assert main(["train-ps", "--data-dir", str(tmp_path), "--shards", "0", "--out", str(tmp_path / "o")]) == 1
    assert "must be >= 1" in capsys.readouterr().err
