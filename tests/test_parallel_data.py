"""Data parallel: N gloo workers with batch B train exactly like one worker with batch N x B."""

from __future__ import annotations

import torch

from conftest import separable_dataset
from deepcompress.compress.prune import Masks
from deepcompress.models import build_model
from deepcompress.parallel.data_parallel import RankShard, global_config, run_data_parallel
from deepcompress.train import TrainConfig, load_checkpoint, train

# 97 samples in global batches of 32: three full batches, then one sample, which leaves rank 1 empty-handed.
CFG = TrainConfig(epochs=2, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                  schedule="constant", seed=5)


def _half_pruned(model):
    """Training hooks for the test: a global 50% pruning mask kept during training."""
    masks = Masks(model)
    masks.prune_global(0.5)
    return (masks,)


def test_rank_shares_partition_each_batch_and_weight_the_loss():
    batch = torch.arange(7)
    shares = [RankShard(r, 3).select(batch) for r in range(3)]
    assert sorted(torch.cat(shares).tolist()) == list(range(7)) and [len(s) for s in shares] == [3, 2, 2]
    loss = torch.tensor(2.0)
    assert abs(RankShard(1, 3).objective(loss, torch.zeros(2, 10), 7).item() - 2.0 * 3 * 2 / 7) < 1e-6
    assert RankShard(0, 2).objective(loss, torch.zeros(4, 10), 8) is loss  # even shares: untouched
    assert RankShard(0, 2).writes and not RankShard(1, 2).writes
    assert global_config(CFG, 4).batch_size == 64


def test_two_workers_equal_one_worker_with_double_batch(tmp_path):
    data = separable_dataset(n_train=97, n_test=32, seed=1)
    result = run_data_parallel("lenet-300-100", data, CFG, workers=2, out=tmp_path, make_hooks=_half_pruned,
                               threads=1, timeout_s=80)

    torch.manual_seed(CFG.seed)
    reference = build_model("lenet-300-100")
    (masks,) = _half_pruned(reference)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers ran
    try:
        expected = train(reference, data, global_config(CFG, 2), hooks=(masks,), progress=False, verbose=False)
    finally:
        torch.set_num_threads(threads)

    for key, want in reference.state_dict().items():
        torch.testing.assert_close(result.state[key], want, rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")
    for name, module in masks.modules.items():  # the pruned weights stayed pruned on the workers too
        assert torch.all(result.state[f"{name}.weight"][~masks.masks[name]] == 0)
    assert len(result.history) == 2 and load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2
    for got, want in zip(result.history, expected.history):
        assert got["train_error"] == want["train_error"] and got["test_error"] == want["test_error"]
        assert abs(got["train_loss"] - want["train_loss"]) < 1e-5
