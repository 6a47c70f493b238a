"""The hardware models on Embedding/LSTM files: EIE simulates each step of the recurrent matrices on the
real states, the other architectures cost one FC per step; the embedding lookup is listed as skipped."""

import pytest
import torch
from torch import nn

from deepcompress.hardware.model_sim import simulate_model
from test_recurrent import LanguageModel, compress_and_write, ids


def _costs(tmp_path, steps: int, arch: str) -> list[dict]:
    torch.manual_seed(0)
    path = tmp_path / f"lm{steps}.dcz"
    compress_and_write(LanguageModel(nn.LSTM, 2), ids(n=1, steps=steps), path, sparsity=0.7)
    return simulate_model(path, arch)


def test_eie_simulates_every_step_of_the_recurrent_matrices(tmp_path):
    short, long = ({r["layer"]: r for r in _costs(tmp_path, steps, "eie")} for steps in (4, 8))
    for name in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1"):
        assert long[name]["steps"] == 8 and len(long[name]["cycles_per_step"]) == 8
        assert sum(long[name]["cycles_per_step"]) == long[name]["cycles"]
    # the output Linear reads the 8 positions independently: one vector simulated, charged 8 times
    assert long["out"]["calls"] == 8 and long["out"]["time_us"] == pytest.approx(8 * long["out"]["sim_us"])
    # dense inputs: every step of an input matrix costs the same; the zero initial state is skipped
    ih, hh = long["rnn.weight_ih_l0"]["cycles_per_step"], long["rnn.weight_hh_l0"]["cycles_per_step"]
    assert min(ih) > 0 and len(set(ih)) == 1 and long["rnn.weight_ih_l0"]["cycles"] == 2 * short["rnn.weight_ih_l0"]["cycles"]
    assert hh[0] < min(hh[1:]) and len(set(hh[1:])) == 1
    assert long["rnn.weight_hh_l0"]["cycles"] - hh[0] == (7 / 3) * (short["rnn.weight_hh_l0"]["cycles"] - hh[0])
    assert long["emb"]["skipped"] and "embedding: a table lookup" in long["emb"]["note"]
    assert long["total"]["partial"] and long["total"]["skipped_layers"] == ["emb"]
    assert "lstm" not in long["total"]["not_costed"]


@pytest.mark.parametrize("arch", ["diannao", "cpu", "gpu"])
def test_other_architectures_cost_one_fc_per_step(tmp_path, arch):
    short, long = ({r["layer"]: r for r in _costs(tmp_path, steps, arch)} for steps in (4, 8))
    for name in ("rnn.weight_ih_l1", "rnn.weight_hh_l1"):
        assert long[name]["steps"] == 8 and long[name]["time_us"] > 0
        assert long[name]["time_us"] == pytest.approx(2 * short[name]["time_us"], rel=1e-12)
        assert long[name]["energy_j"] == pytest.approx(2 * short[name]["energy_j"], rel=1e-12)
    # the output Linear's positions are independent: all of them in one batched call, weights read once
    assert short["out"]["time_us"] < long["out"]["time_us"] <= 2 * short["out"]["time_us"] * (1 + 1e-12)
