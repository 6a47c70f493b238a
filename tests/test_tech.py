"""The 45 nm table, the SRAM-by-capacity model, and the published EIE and DianNao block tables."""

import pytest

from deepcompress.errors import UserError
from deepcompress.hardware import tech


def test_sram_model_passes_through_horowitz_points_and_the_32bit_entry():
    for capacity, pj in tech.SRAM_64BIT_POINTS:
        assert tech.sram_access_energy_pj(capacity) == pytest.approx(pj)
    assert tech.sram_access_energy_pj(8 * 1024, 32) == pytest.approx(tech.operation("32b SRAM read (8 KB array)").energy_pj)


def test_sram_energy_grows_with_capacity_and_width():
    sizes = [1024 * 2 ** k for k in range(0, 14)]
    energies = [tech.sram_access_energy_pj(s) for s in sizes]
    assert all(a < b for a, b in zip(energies, energies[1:]))
    assert tech.sram_access_energy_pj(128 * 1024, 128) == pytest.approx(2 * tech.sram_access_energy_pj(128 * 1024))
    # between the points the fit stays between its neighbours' values
    assert 20 < tech.sram_access_energy_pj(128 * 1024) < 100
    with pytest.raises(UserError):
        tech.sram_access_energy_pj(0)
    with pytest.raises(UserError):
        tech.sram_access_energy_pj(1024, width_bits=0)


def test_dram_and_the_ratios_the_talk_stresses():
    assert tech.dram_access_energy_pj(32) == 640
    # 1.28 nJ per 64 bits: the table's 640 pJ / 32b is the low end of Horowitz's 1.3-2.6 nJ
    assert tech.dram_access_energy_pj(64) == pytest.approx(tech.DRAM_64BIT_RANGE_PJ[0], rel=0.02)
    r = tech.cost_ratios()
    assert r["DRAM read / SRAM read (32b, 8 KB)"] == pytest.approx(128)
    assert r["DRAM read / 32b FP mult"] == pytest.approx(640 / 3.7)
    assert r["SRAM 1 MB / SRAM 8 KB (per access)"] == pytest.approx(10)
    assert 0.55 < tech.fixed16_mult_energy_pj() < 0.65  # EIE: "about 0.6 pJ"
    text = tech.format_cost_table()
    assert all(op.name in text for op in tech.OPERATIONS_45NM)


def test_eie_table2_is_consistent():
    modules = [b for b in tech.EIE_PE_BLOCKS if b.group == "module"]
    types = [b for b in tech.EIE_PE_BLOCKS if b.group == "type"]
    for blocks in (modules, types):
        assert sum(b.power_mw or 0 for b in blocks) == pytest.approx(tech.EIE_PE_POWER_MW, abs=0.002)
        assert sum(b.area_um2 for b in blocks) == pytest.approx(tech.EIE_PE_AREA_UM2, abs=1)
    assert tech.eie_chip_area_mm2(64) == pytest.approx(40.8, abs=0.05)
    assert 64 * tech.EIE_PE_POWER_MW * 1e-3 == pytest.approx(0.59, abs=0.005)  # Table V's chip power
    with pytest.raises(UserError):
        tech.eie_block("Decoder")


def test_diannao_table_sums_to_the_accelerator():
    blocks = [b for b in tech.DIANNAO_BLOCKS if b.group == "block"]
    types = [b for b in tech.DIANNAO_BLOCKS if b.group == "type"]
    assert sum(b.area_um2 for b in blocks) == tech.DIANNAO_AREA_UM2
    assert sum(b.area_um2 for b in types) == tech.DIANNAO_AREA_UM2
    assert sum(b.power_mw for b in blocks) == tech.DIANNAO_POWER_MW
    assert sum(b.power_mw or 0 for b in types) == pytest.approx(tech.DIANNAO_POWER_MW, abs=1)
    assert tech.DIANNAO_AREA_UM2 * 1e-6 == pytest.approx(3.02, abs=0.005)
