"""DianNao model: cycles and DRAM traffic of tiny layers by hand, the op-counting conventions against the
published 452 GOP/s, Table 6's area and power, and FC layers memory-bound at batch 1."""

import math

import pytest

from deepcompress.errors import UserError
from deepcompress.hardware.diannao import (BINARY_GIGA, DianNaoConfig, compute_cycles, diannao_area_mm2, dram_traffic,
                                           ops_per_cycle, paper_peak_gops, peak_gops,
                                           published_ops_per_cycle, simulate_layer,
                                           table6_energy_model)
from deepcompress.hardware.netspecs import ALEXNET, LayerShape, conv, fc

CFG = DianNaoConfig()


def test_fc_cycles_by_hand():
    # 32 x 32: 2 output groups x 2 input chunks of 16, one NFU cycle each
    assert compute_cycles(fc("a", 32, 32), 1, CFG) == 4
    # 17 inputs need two 16-wide chunks; 16 outputs one group; batch 3 repeats it
    assert compute_cycles(fc("b", 17, 16), 3, CFG) == 2 * 3


def test_conv_cycles_tile_the_six_loops():
    # 16 -> 16 maps, 4 x 4 input, 3 x 3 kernel: 2 x 2 outputs x 9 taps x 1 x 1 blocks
    layer = conv("c", 16, 16, 4, 3)
    assert layer.out_hw == (2, 2) and compute_cycles(layer, 1, CFG) == 36
    # two groups of 16 -> 16 each: twice the cycles; 20 maps round up to two output groups
    assert compute_cycles(conv("g", 32, 32, 4, 3, groups=2), 1, CFG) == 72
    assert compute_cycles(conv("r", 16, 20, 4, 3), 1, CFG) == 72
    # stride 2 and padding 1: (5 + 2 - 3) // 2 + 1 = 3 per side
    assert compute_cycles(conv("s", 16, 16, 5, 3, stride=2, pad=1), 1, CFG) == 9 * 9


def test_tiny_fc_is_memory_bound_by_hand():
    res = simulate_layer(fc("a", 32, 32), 1, CFG)
    # weights 1024 words once, the 32 inputs fit NBin, 32 outputs: 1088 words = 2176 bytes
    assert sum(res.dram_words.values()) == 1088 and res.dram_bytes == 2176
    bytes_per_cycle = 250e9 / 0.98e9  # the reference: the default 250 GB/s at the paper's 0.98 GHz
    assert res.memory_cycles == pytest.approx(2176 / bytes_per_cycle)
    assert res.memory_bound and res.cycles == math.ceil(2176 / bytes_per_cycle) + 3
    assert res.time_s == pytest.approx(res.cycles / 0.98e9)


def test_partial_sums_spill_when_weights_overflow_sb():
    # one output group's weights: 16 x 512 x 9 words = 4.5 SBs, so 5 blocks; 18 x 18 x 16 live partial
    # sums overflow NBout (1024 words), so 4 block boundaries each write and read them back
    layer = conv("big", 512, 16, 18, 3, pad=1)
    name, words = dram_traffic(layer, 1, CFG)
    assert name == "weights-resident"
    assert words == {"weights": 16 * 512 * 9, "inputs": 512 * 18 * 18, "outputs": 16 * 18 * 18,
                     "partial_sums": 2 * 4 * 18 * 18 * 16}
    # keeping inputs instead would re-stream all weights per output position
    small = conv("small", 16, 16, 4, 3)  # 144 inputs per position fit NBin 7 times: 4 positions in 1 tile
    assert dram_traffic(small, 1, CFG) == ("weights-resident", {"weights": 2304, "inputs": 256, "outputs": 64,
                                                                 "partial_sums": 0})


def test_peak_under_each_op_convention():
    assert ops_per_cycle(CFG, "tree") == 256 + 240
    assert ops_per_cycle(CFG, "mac2") == 512 and ops_per_cycle(CFG, "mult") == 256
    assert peak_gops(CFG, "tree") == pytest.approx(486.08)
    # a decimal giga needs 461.2 ops per 0.98 GHz cycle for 452 GOP/s, which no whole count of operators gives
    assert published_ops_per_cycle() == pytest.approx(461.2, abs=0.1)
    with pytest.raises(UserError):
        ops_per_cycle(CFG, "flops")


def test_peak_is_452_under_the_papers_convention():
    """496 ops per cycle (256 multiplies + 16 trees x 15 adds) at 0.98 GHz, counted in 2^30 op/s: 452.7, which
    the paper prints as 452. Tolerance 0.5%: the figure is truncated to whole GOP/s (+0.15%)."""
    assert paper_peak_gops(CFG) == pytest.approx(496 * 0.98e9 / 2**30)
    assert abs(paper_peak_gops(CFG) / 452 - 1) < 0.005
    assert int(paper_peak_gops(CFG)) == 452
    assert published_ops_per_cycle(BINARY_GIGA) == pytest.approx(495.2, abs=0.1)  # the NFU's 496, truncated
    # no other convention comes within 3% in either unit (2 per MAC in 2^30 op/s: 467.3, +3.4%)
    for conv in ("mac2", "mult"):
        for giga in (1e9, BINARY_GIGA):
            assert abs(peak_gops(CFG, conv, giga) / 452 - 1) > 0.03


def test_area_and_power_from_table6():
    assert diannao_area_mm2() == pytest.approx(3.02, abs=0.005)
    model = table6_energy_model()
    # every accessed block once per cycle + the static part = the published 485 mW
    per_cycle_pj = model.static_pj_per_cycle + sum(model.per_access_pj.values())
    assert per_cycle_pj * 1e-12 * 0.98e9 == pytest.approx(0.485)


def test_compute_bound_conv_draws_at_most_485_mw():
    res = simulate_layer(conv("c", 256, 256, 13, 3, pad=1), 1, CFG)
    assert not res.memory_bound and res.utilization > 0.99
    power = res.chip_energy_j / res.time_s
    assert 0.40 < power <= 0.485  # NBout is touched once per output line, not every cycle
    assert res.published_power_energy_j == pytest.approx(0.485 * res.time_s)


def test_fc_at_batch_1_is_memory_bound_and_batching_fixes_it():
    fc7 = ALEXNET[6]
    one = simulate_layer(fc7, 1, CFG)
    # 512 bytes of weights per cycle at full rate = 502 GB/s; at 250 GB/s the NFU idles half the time
    assert one.memory_bound and one.utilization == pytest.approx(250 / 502, rel=0.07)
    assert one.chip_energy_j / one.time_s < 0.485
    assert one.dram_energy_j > 10 * one.chip_energy_j  # off-chip weights dominate the energy
    fast = simulate_layer(fc7, 1, DianNaoConfig(dram_gbps=600))
    assert not fast.memory_bound
    batched = simulate_layer(fc7, 64, CFG)
    assert not batched.memory_bound and batched.dram_words["weights"] == fc7.weights


def test_invalid_inputs_are_user_errors():
    with pytest.raises(UserError):
        DianNaoConfig(sb_bytes=16)
    with pytest.raises(UserError):
        DianNaoConfig(dram_gbps=0)
    with pytest.raises(UserError):
        simulate_layer(fc("a", 4, 4), 0)
    with pytest.raises(UserError):
        LayerShape("x", "conv", 3, 4, (2, 2), (5, 5))
