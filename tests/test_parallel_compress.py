"""Compression stages data-parallel: 2 ranks with the recipe's global batch 2B (B each) equal one process
with batch 2B after pruning and after centroid fine-tuning; masks and codebooks are rank 0's everywhere;
only rank 0 writes the .dcz."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import separable_dataset, write_idx_folder
from deepcompress import format as dcz
from deepcompress.cli import main
from deepcompress.compress import compress_model, load_into
from deepcompress.parallel.compression import RankTeam
from deepcompress.parallel.launch import spawn
from deepcompress.train import TrainConfig, train

# Global batch 32 (16 per rank); 193 samples leave a last batch of one, so rank 1's share is empty there.
RETRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.02, "momentum": 0.9, "schedule": "constant"}
FINETUNE = {"epochs": 2, "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}
RECIPES = {
    "iterative": {"prune": {"iterations": 2, "layers": {"1": 0.8, "3": 0.5}, "retrain": RETRAIN},
                  "quantize": {"fc_bits": 3, "finetune": FINETUNE}, "encode": {"fc_gap_bits": 4}},
    "gradual": {"prune": {"schedule": "gradual", "every": 3, "layers": {"1": 0.8, "3": 0.5}, "retrain": RETRAIN},
                "quantize": {"fc_bits": 3, "finetune": FINETUNE}, "encode": {"fc_gap_bits": 4}},
}


def tiny_model() -> nn.Module:
    """784-16-10 perceptron: its Linear layers are "1" and "3"."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


def _compress_rank(rank, world, data, start, out):
    """Each rank compresses both recipes from the same start and keeps its final weights for the test."""
    for name, recipe in RECIPES.items():
        model = tiny_model()
        model.load_state_dict(start)
        outcome = compress_model(model, data, recipe, out / name, progress=False, team=RankTeam())
        torch.save({"state": model.state_dict(), "returned": outcome is not None}, out / f"{name}-rank{rank}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same compression with 2 ranks (out/x2) and with one process (out/x1), from one trained start."""
    out = tmp_path_factory.mktemp("parallel-compress")
    data = separable_dataset(n_train=193, n_test=64, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank runs
    try:
        torch.manual_seed(0)
        start = tiny_model()
        train(start, data, TrainConfig(epochs=1, batch_size=32, lr=0.05), progress=False, verbose=False)
        start = start.state_dict()
        spawn(_compress_rank, (data, start, out / "x2"), workers=2, timeout_s=120, threads=1)
        for name, recipe in RECIPES.items():
            model = tiny_model()
            model.load_state_dict(start)
            compress_model(model, data, recipe, out / "x1" / name, progress=False)
            torch.save({"state": model.state_dict()}, out / "x1" / f"{name}-rank0.pt")
    finally:
        torch.set_num_threads(threads)
    return out


def _load(path):
    return torch.load(path, weights_only=True)


def _pruned(out, name):
    """Weights and masks at the end of the pruning stage (as written by rank 0 / the single process)."""
    if name == "gradual":
        state = _load(out / name / "prune-gradual-train.pt")["model"]
        return state, {n: state[f"{n}.weight"] != 0 for n in ("1", "3")}
    saved = _load(out / name / "prune-2.pt")
    return saved["model"], saved["masks"]


@pytest.mark.parametrize("name", list(RECIPES))
def test_two_ranks_equal_one_process_after_pruning_and_fine_tuning(runs, name):
    (state2, masks2), (state1, masks1) = _pruned(runs / "x2", name), _pruned(runs / "x1", name)
    for n in masks1:
        assert torch.equal(masks2[n], masks1[n]), n
    for key, want in state1.items():
        torch.testing.assert_close(state2[key], want, rtol=0, atol=1e-5, msg=lambda m: f"pruned {key}: {m}")

    final = _load(runs / "x2" / f"{name}-rank0.pt")["state"]
    for key, want in _load(runs / "x1" / f"{name}-rank0.pt")["state"].items():
        torch.testing.assert_close(final[key], want, rtol=0, atol=1e-5, msg=lambda m: f"fine-tuned {key}: {m}")
    for n, mask in masks2.items():  # pruned weights stayed exactly zero through fine-tuning
        assert torch.all(final[f"{n}.weight"][~mask] == 0)
    got, want = dcz.read(runs / "x2" / name / "model.dcz")[0], dcz.read(runs / "x1" / name / "model.dcz")[0]
    for a, b in zip(got, want):
        assert len(a.codebook) == len(b.codebook) and abs(a.codebook - b.codebook).max() < 1e-5


@pytest.mark.parametrize("name", list(RECIPES))
def test_ranks_agree_and_only_rank_0_writes_the_file(runs, name):
    rank0, rank1 = (_load(runs / "x2" / f"{name}-rank{r}.pt") for r in (0, 1))
    for key, value in rank0["state"].items():  # same masks and codebooks: bit-identical weights
        assert torch.equal(rank1["state"][key], value), key
    assert rank0["returned"] and not rank1["returned"]
    folder = runs / "x2" / name
    assert [p.name for p in folder.glob("*.dcz")] == ["model.dcz"] and not list(folder.glob(".*.tmp"))
    model = tiny_model()
    load_into(model, folder / "model.dcz")
    for key, value in model.state_dict().items():
        assert torch.equal(value, rank0["state"][key]), key


def _cli_setup(tmp_path, prune: str) -> list[str]:
    """A tiny IDX data set and a one-epoch-per-stage recipe with the given [prune] lines; the common
    `compress` arguments for them."""
    (tmp_path / "idx").mkdir()
    write_idx_folder(tmp_path / "idx", n_train=48, n_test=16)
    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\nepochs = 1\nbatch_size = 16\n'
                      f'[prune]\n{prune}[prune.layers]\nip1 = 0.9\n[prune.retrain]\nepochs = 1\nbatch_size = 16\n'
                      '[quantize]\nfc_bits = 3\n[quantize.finetune]\nepochs = 1\nbatch_size = 16\n')
    return ["compress", "--data-dir", str(tmp_path / "idx"), "--recipe", str(recipe), "--quiet"]


def test_compress_command_with_two_workers_trains_writes_and_resumes(tmp_path):
    """Baseline training, gradual pruning and fine-tuning on 2 workers; a resumed run gives the same bytes."""
    out = tmp_path / "out"
    command = _cli_setup(tmp_path, 'schedule = "gradual"\nevery = 2\n') + ["--out", str(out), "--workers", "2"]
    assert main(command) == 0
    rec = json.loads((out / "results.json").read_text())
    first = (out / "model.dcz").read_bytes()
    assert rec["file_bytes"] == len(first) and "ratio" in (out / "report.md").read_text()
    assert [s["stage"] for s in rec["stages"]][0] == "baseline" and (out / "baseline-train.pt").exists()

    for name in ("model.dcz", "quantize-train.pt"):  # as if stopped after pruning: resume redoes the rest
        (out / name).unlink()
    assert main(command + ["--resume"]) == 0
    assert (out / "model.dcz").read_bytes() == first


def test_compress_rejects_zero_workers(tmp_path, capsys):
    write_idx_folder(tmp_path, n_train=12, n_test=5)
    assert main(["compress", "--data-dir", str(tmp_path), "--workers", "0", "--out", str(tmp_path / "o")]) == 1
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_compress_under_torchrun_equals_local_workers(tmp_path):
    """The multi-host form (one torchrun job, 2 ranks on 127.0.0.1) writes the same bytes as --workers 2."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from deepcompress.parallel.launch import free_port

    common = _cli_setup(tmp_path, "")
    assert main(common + ["--out", str(tmp_path / "local"), "--workers", "2"]) == 0
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run([str(torchrun), "--nnodes", "1", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                           "--master-port", str(free_port()), "-m", "deepcompress.cli", *common,
                           "--out", str(tmp_path / "tr"), "--torchrun", "--timeout", "60"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "tr" / "model.dcz").read_bytes() == (tmp_path / "local" / "model.dcz").read_bytes()
