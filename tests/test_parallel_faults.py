"""Faults: a data-parallel worker killed mid-run is reported and the job resumes from its last checkpoint."""

from __future__ import annotations

import torch

from conftest import separable_dataset
from deepcompress.models import build_model
from deepcompress.parallel.data_parallel import global_config, run_data_parallel
from deepcompress.parallel.faults import FaultDrill, claim_once
from deepcompress.parallel.launch import describe_exit
from deepcompress.train import TrainConfig, load_checkpoint, train

# 97 samples in global batches of 32: 4 steps per epoch; rank 1 dies at step 6, inside epoch 2.
CFG = TrainConfig(epochs=3, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                  schedule="cosine", seed=3)


def test_exit_descriptions_and_claim_once(tmp_path):
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(1) == "exited with code 1"
    marker = tmp_path / "once"
    assert claim_once(marker) and not claim_once(marker)


def test_killed_worker_is_reported_and_the_job_resumes_exactly(tmp_path, capfd):
    data = separable_dataset(n_train=97, n_test=32, seed=2)
    drill = FaultDrill(rank=1, step=6, marker=tmp_path / "killed")
    result = run_data_parallel("lenet-300-100", data, CFG, workers=2, out=tmp_path / "run", make_hooks=drill,
                               threads=1, timeout_s=80, restarts=1)

    assert (tmp_path / "killed").exists() and len(result.faults) == 1
    assert "rank 1 killed by SIGKILL (first to fail)" in result.faults[0]
    err = capfd.readouterr().err
    assert "rank 1 killed by SIGKILL" in err and "(epoch 1 of 3)" in err  # restarted from epoch 1's checkpoint

    torch.manual_seed(CFG.seed)
    reference = build_model("lenet-300-100")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = train(reference, data, global_config(CFG, 2), progress=False, verbose=False)
    finally:
        torch.set_num_threads(threads)
    for key, want in reference.state_dict().items():  # no step lost, none counted twice
        torch.testing.assert_close(result.state[key], want, rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert [h["train_error"] for h in result.history] == [h["train_error"] for h in expected.history]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 3

