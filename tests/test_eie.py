"""EIE simulator: storage layout, closed forms on small cases, the cycle-by-cycle oracle, energy, and the
nine benchmark layers against the paper."""

import numpy as np
import pytest
import scipy.sparse as sp

from deepcompress.errors import UserError
from deepcompress.hardware.eie import EIEConfig, simulate, simulate_spec
from deepcompress.hardware.eie_cycle import step_cycles
from deepcompress.hardware.eie_encode import encode
from deepcompress.hardware.eie_energy import REFERENCE_WORKLOAD
from deepcompress.hardware.eie_paper import geometric_mean, paper_records
from deepcompress.hardware.eie_tables import BENCHMARKS, table_v_record
from deepcompress.hardware.eie_timing import run_schedule
from deepcompress.hardware.layers import LayerSpec, parse_layer_spec, random_layer

P = EIEConfig().pipeline_cycles
# Cycles before the first entry of the first column: load the first activation row, broadcast, hand the
# FIFO head to the PE (its pointer read overlaps the first entry).
LEAD = 3


def column(rows, length):
    """A one-column matrix with nonzeros at `rows`."""
    w = np.zeros((length, 1))
    w[list(rows), 0] = 1.0
    return w


def both(weights, acts, config):
    """The fast schedule and the cycle-by-cycle oracle, checked equal; returns the fast one."""
    layout = encode(weights, config.num_pes, config.index_bits)
    fast, slow = run_schedule(layout, np.asarray(acts), config), step_cycles(layout, np.asarray(acts), config)
    for field in ("cycles", "broadcasts", "stall_cycles", "spmat_line_reads", "padding_processed"):
        assert getattr(fast, field) == getattr(slow, field), field
    for field in ("pe_busy", "pe_entries", "pe_macs"):
        assert np.array_equal(getattr(fast, field), getattr(slow, field)), field
    return fast


def test_rows_interleave_over_pes_and_gaps_of_15_and_16():
    layout = encode(column([0, 16], 40), num_pes=1)  # 15 zeros between: fits the 4-bit gap
    assert layout.padding.sum() == 0 and layout.entries.sum() == 2
    layout = encode(column([0, 17], 40), num_pes=1)  # 16 zeros between: one padding zero
    assert layout.padding.sum() == 1 and layout.entries.sum() == 3
    assert encode(column([16], 40), 1).padding.sum() == 1  # the gap before the first nonzero counts too
    assert encode(column([15], 40), 1).padding.sum() == 0
    assert encode(column([0, 33], 40), 1).padding.sum() == 2  # 32 zeros: two paddings
    # 4 PEs: rows 1, 5, 9 are PE 1's local rows 0, 1, 2; row 66 is PE 2's local row 16 (one padding)
    layout = encode(column([1, 5, 9, 66], 80), num_pes=4)
    assert layout.nonzeros[0].tolist() == [0, 3, 1, 0]
    assert layout.padding[0].tolist() == [0, 0, 1, 0]
    assert layout.pointers()[:, 1].tolist() == [0, 3]


def test_gap_of_15_vs_16_costs_exactly_one_cycle():
    acts = [1.0]
    a = both(column([0, 16], 40), acts, EIEConfig(num_pes=1))
    b = both(column([0, 17], 40), acts, EIEConfig(num_pes=1))
    assert (a.cycles, b.cycles) == (LEAD + 2 + P, LEAD + 3 + P)
    assert (a.padding_processed, b.padding_processed) == (0, 1) and a.macs == b.macs == 2


def test_one_pe_costs_max_one_entries_per_column():
    rng = np.random.default_rng(0)
    w = (rng.random((40, 30)) < 0.2) * 1.0
    entries = encode(w, 1).entries[:, 0]
    for depth in (2, 3, 8):
        r = both(w, np.ones(30), EIEConfig(num_pes=1, fifo_depth=depth))
        assert r.cycles == LEAD + int(np.maximum(entries, 1).sum()) + P


def test_one_nonzero_per_column_streams_one_column_per_cycle():
    # every PE owns one row holding a nonzero in every column: one cycle per column, no stall bubbles
    n, cols = 8, 64
    r = both(np.ones((n, cols)), np.ones(cols), EIEConfig(num_pes=n, fifo_depth=2))
    assert r.cycles == LEAD + cols + P
    assert r.pe_busy.tolist() == [cols] * n
    # with a one-entry FIFO each column waits for the next broadcast: two cycles per column
    r = both(np.ones((n, cols)), np.ones(cols), EIEConfig(num_pes=n, fifo_depth=1))
    assert r.cycles == LEAD + 2 * cols - 1 + P


def test_column_longer_than_the_fifo_stalls_the_broadcast():
    w = np.zeros((60, 6))
    w[:50, 0] = 1.0  # 50 entries in column 0, then one entry per column
    w[0, 1:] = 1.0
    r = both(w, np.ones(6), EIEConfig(num_pes=1, fifo_depth=2))
    assert r.cycles == LEAD + 50 + 5 + P
    # columns 1 and 2 fill the FIFO; column 3 waits until column 1 leaves it at cycle 3 + 50
    assert r.stall_cycles == (LEAD + 50) - 4


def test_all_zero_activations_only_scan():
    w, _ = random_layer(LayerSpec(100, 50, 0.3, 0.0))
    res = simulate(w, np.zeros(100), EIEConfig(num_pes=4))
    assert res.cycles == 25 + 1 + P  # one cycle per activation row of 4, then the last check
    assert res.activity.macs == 0 and res.activity.spmat_line_reads == 0
    assert set(k for k, v in res.energy_pj.items() if v > 0) <= {"ActRW", "clock network"}


def test_zero_activations_are_skipped_and_negative_ones_are_not():
    w = np.ones((4, 8))
    acts = np.array([0, -1.0, 0, 0, 2.0, 0, 0, 0])
    r = both(w, acts, EIEConfig(num_pes=4))
    assert r.broadcasts == 2 and r.macs == 8


def test_all_work_on_one_pe_is_imbalanced():
    w = np.zeros((64, 100))
    w[0::8, :] = 1.0  # every nonzero row is a multiple of 8: all on PE 0 of 8
    res = simulate(w, np.ones(100), EIEConfig(num_pes=8))
    # PE 0 holds 8 entries per column; each other PE spends one pointer-read cycle per (empty) column
    assert res.activity.pe_macs[1:].sum() == 0
    assert res.activity.pe_busy.tolist() == [800] + [100] * 7
    assert res.cycles == LEAD + 800 + P
    assert res.load_balance_efficiency == pytest.approx(1500 / (8 * res.cycles))


@pytest.mark.parametrize("seed", range(40))
def test_fast_schedule_equals_cycle_by_cycle_model(seed):
    rng = np.random.default_rng(seed)
    spec = LayerSpec(int(rng.integers(1, 70)), int(rng.integers(1, 90)), float(rng.uniform(0, 0.6)),
                     float(rng.uniform(0, 1)), seed=seed)
    config = EIEConfig(num_pes=int(rng.integers(1, 9)), fifo_depth=int(rng.integers(1, 6)),
                       spmat_width_bits=int(rng.choice([8, 16, 64, 128])), index_bits=int(rng.integers(1, 5)))
    both(*random_layer(spec), config)


def test_fifo_depth_one_finishes_and_loses_to_deeper_fifos():
    w, a = random_layer(LayerSpec(512, 256, 0.1, 0.5, seed=3))
    shallow = both(w, a, EIEConfig(num_pes=16, fifo_depth=1))
    deep = both(w, a, EIEConfig(num_pes=16, fifo_depth=8))
    assert shallow.cycles > deep.cycles
    assert np.array_equal(shallow.pe_busy, deep.pe_busy)  # same work, more waiting


def test_spmat_line_reads_follow_the_width():
    w = np.ones((64, 1))  # one column, 64 entries on one PE
    for width, reads in ((64, 8), (128, 4), (8, 64)):
        res = simulate(w, [1.0], EIEConfig(num_pes=1, spmat_width_bits=width))
        assert res.activity.spmat_line_reads == reads


def test_reference_workload_draws_table2_power_and_table5_rates():
    res = simulate_spec(REFERENCE_WORKLOAD)
    # the calibration point itself: Table II's modules (they sum to 9.158 mW, the total reads 9.157)
    assert res.power_w == pytest.approx(64 * 9.157e-3, rel=2e-4)
    paper = table_v_record("EIE 64 PE")
    assert res.area_mm2 == pytest.approx(paper["area_mm2"], abs=0.05)
    # Table V: 81,967 frames/s and 138,927 frames/J on AlexNet FC7; 10% tolerance (issue 4)
    assert res.frames_per_s == pytest.approx(paper["frames_per_s"], rel=0.10)
    assert res.frames_per_j == pytest.approx(paper["frames_per_j"], rel=0.10)
    assert res.frames_per_s_mm2 == pytest.approx(paper["frames_per_s_mm2"], rel=0.10)


def test_energy_follows_activity():
    spec = LayerSpec(1024, 1024, 0.1, 0.5, seed=1)
    dense_acts = simulate_spec(LayerSpec(1024, 1024, 0.1, 1.0, seed=1))
    half = simulate_spec(spec)
    assert half.energy_j < 0.7 * dense_acts.energy_j
    assert half.energy_pj["ArithmUnit"] < 0.6 * dense_acts.energy_pj["ArithmUnit"]
    # short PE columns (16 rows at 10%) share SRAM lines with their neighbours when every column is
    # read; skipping half the columns saves far fewer line reads than entries
    assert half.energy_pj["SpmatRead"] > 0.7 * dense_acts.energy_pj["SpmatRead"]


def test_nine_layers_against_the_paper():
    """Every layer within 30% of the paper's "actual" time and the geometric mean within 10%.

    Why these bounds: the paper ran real pruned weights, which are less even than our uniform random
    ones (VGG-6 most of all), so a faithful uniform-random simulation runs faster there; the authors'
    own simulator on uniform random layers lands at 0.74-1.05 of "actual" (geometric mean 0.92,
    REFERENCE.md s.5). Against those authors' figures, same shapes but their random draws, we allow 5%.
    """
    records = paper_records()
    assert [r["layer"] for r in records] == [b.name for b in BENCHMARKS]
    for r in records:
        assert 0.70 <= r["sim_over_actual"] <= 1.30, r["layer"]
        assert r["sim_us"] == pytest.approx(r["authors_sim_us"], rel=0.05), r["layer"]
        assert r["theoretical_us"] <= r["sim_us"]
        for key in ("layer", "theoretical_us", "sim_us", "paper_theoretical_us", "paper_actual_us",
                    "frames_per_s", "frames_per_j"):
            assert key in r
    assert 0.90 <= geometric_mean(r["sim_over_actual"] for r in records) <= 1.10


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserError):
        EIEConfig(fifo_depth=0)
    with pytest.raises(UserError):
        EIEConfig(spmat_width_bits=4)
    with pytest.raises(UserError):
        simulate(np.ones((4, 3)), np.ones(4))
    with pytest.raises(UserError):
        simulate(np.ones((4, 3)), [1.0, np.nan, 0.0])
    with pytest.raises(UserError):
        parse_layer_spec("10,10,0.1")
    with pytest.raises(UserError):
        LayerSpec(10, 10, 1.5, 0.1)
    assert parse_layer_spec("4096,1000,25%,0.375").weight_density == 0.25


def test_accepts_scipy_matrices_with_duplicates_and_stored_zeros():
    coo = sp.coo_matrix(([1.0, 1.0, 0.0, 2.0], ([0, 0, 1, 3], [0, 0, 1, 1])), shape=(4, 2))
    res = simulate(coo, [1.0, 1.0], EIEConfig(num_pes=2))
    assert res.nonzero_weights == 2 and res.activity.macs == 2
