"""The committed real .dcz files (tests/data): they decode whole, their sizes add up to the file, the hardware
models cost them, and tests/fixtures/make_lenet_dcz.py remakes them byte for byte."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURE_MODELS, fixture_file

from deepcompress import format as dcz
from deepcompress.cli import main
from deepcompress.hardware.model_sim import ARCHES
from deepcompress.models import build_model
from fixtures.make_lenet_dcz import HERE, fixture_paths


@pytest.mark.parametrize("model_name", FIXTURE_MODELS)
def test_every_layer_decodes_and_the_sizes_are_the_file(model_name):
    path, made = fixture_file(model_name)
    blob = path.read_bytes()
    layers, meta = dcz.read(path)
    shapes = {name: tuple(m.weight.shape) for name, m in build_model(model_name).named_modules()
              if hasattr(m, "weight")}
    assert meta["model"] == model_name and meta["dataset"] == "mnist" and meta["ops"]
    assert {layer.name: layer.shape for layer in layers} == shapes
    for layer in layers:
        dense = layer.to_dense()
        assert np.count_nonzero(dense) <= layer.nnz == made["layers"][layer.name]["nonzeros"]
        assert np.isin(dense[dense != 0], layer.codebook).all()
        assert (layer.index_bits, layer.gap_bits) == (made["layers"][layer.name]["index_bits"],
                                                      made["layers"][layer.name]["gap_bits"])
    sizes = dcz.file_size_breakdown(path)
    assert sizes.total == len(blob) == made["file_bytes"]
    assert sizes.file_header + sum(layer.total for layer in sizes.layers) == len(blob)
    assert round(sizes.ratio, 2) == made["ratio"]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("model_name", FIXTURE_MODELS)
def test_simulate_costs_every_layer(model_name, arch, capsys):
    path, made = fixture_file(model_name)
    assert main(["simulate", str(path), "--arch", arch, "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in records] == [*made["layers"], "total"]
    for r in records:
        assert not r.get("skipped") and math.isfinite(r["time_us"]) and math.isfinite(r["energy_j"])
        assert r["time_us"] > 0 and r["energy_j"] > 0, r["layer"]
    total = records[-1]
    assert total["time_us"] == pytest.approx(sum(r["time_us"] for r in records[:-1]))
    assert total["energy_j"] == pytest.approx(sum(r["energy_j"] for r in records[:-1]))


@pytest.mark.slow
@pytest.mark.parametrize("model_name", FIXTURE_MODELS)
def test_making_the_file_again_gives_the_same_bytes(model_name, tmp_path):
    subprocess.run([sys.executable, str(HERE / "make_lenet_dcz.py"), "--model", model_name, "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for committed, remade in zip(fixture_paths(model_name), fixture_paths(model_name, tmp_path)):
        assert remade.read_bytes() == committed.read_bytes(), committed.name
