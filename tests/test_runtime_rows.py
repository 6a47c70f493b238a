"""FC layers on many input rows (tokens x batch) and the float32 element-wise kernels of a transformer:
the sgemm path on a decoded matrix and the cost model that picks it (policy.gemm_min_rows), the GELU,
exp, softmax and layer norm kernels, each against PyTorch or numpy; and a BERT-style encoder run from its
file at many rows against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepcompress.runtime import SparseLinear, from_positions, load, policy
from deepcompress.runtime.fastexp import exp_nonpositive
from deepcompress.runtime.gelu import gelu_erf
from deepcompress.runtime.rowwise import layernorm_last, softmax_last
from test_attention_ops import REL_TOL, rel_error, written_encoder

ROOT = Path(__file__).resolve().parents[1]


def random_layer(shape, density, seed=0, k=32):
    """A random weight-shared layer: uniform positions, k centroids."""
    rng = np.random.default_rng(seed)
    n = int(shape[0] * shape[1] * density)
    positions = np.sort(rng.choice(shape[0] * shape[1], n, replace=False))
    return from_positions(shape, positions, rng.integers(0, k, n), rng.standard_normal(k).astype(np.float32))


def test_dense_layers_run_many_rows_as_sgemm_and_match_torch():
    nz = random_layer((48, 40), 0.8)
    bias = np.random.default_rng(1).standard_normal(48).astype(np.float32)
    layer = SparseLinear.from_layer(nz, bias)
    assert layer.gemm_rows == policy.gemm_min_rows(nz) == 2 and layer.decoded_bytes == 0
    x = np.random.default_rng(2).standard_normal((100, 40)).astype(np.float32)
    expected = F.linear(torch.from_numpy(x), torch.from_numpy(nz.to_dense()), torch.from_numpy(bias)).numpy()
    got = layer(x)
    assert layer.decoded_bytes == 48 * 40 * 4  # decoded once, kept
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    panel = SparseLinear.from_layer(nz, bias, layout="panel", batch=100)  # a named layout: never sgemm
    assert panel.gemm_rows is None
    np.testing.assert_allclose(panel(x), got, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(x[0]), expected[0], rtol=1e-5, atol=1e-5)  # one row: the layout


def test_decoding_from_the_layout_alone_is_exact():
    nz = random_layer((30, 70), 0.3, seed=3)
    for name in ("panel", "csc"):
        assert np.array_equal(SparseLinear.from_layer(nz, layout=name).decoded(), nz.to_dense())


def test_cost_model_keeps_very_sparse_layers_on_the_sparse_kernel():
    dense, sparse = random_layer((384, 1536), 0.8), random_layer((384, 1536), 0.05)
    assert policy.gemm_min_rows(dense) == 2
    assert policy.gemm_min_rows(sparse) is None
    rows = np.arange(2, 300)
    assert np.all(policy.predicted_fc_ns(dense, rows, "gemm") < policy.predicted_fc_ns(dense, rows, "panel"))
    with pytest.raises(ValueError, match="no cost model"):
        policy.predicted_fc_ns(dense, 4, "csc")


def test_cost_model_constants_are_the_benchmark_fit():
    fit = json.loads((ROOT / "benchmarks" / "results" / "fc_rows.json").read_text())["fit"]
    panel, gemm = fit["panel_ns"], fit["gemm_ns"]
    measured = (panel["per_nonzero"], panel["per_nonzero_lane"], panel["per_row_panel_lane"])
    assert policy.PANEL_NS == pytest.approx(measured, rel=5e-3)
    assert policy.GEMM_NS == pytest.approx((gemm["per_weight"], gemm["per_weight_row"]), rel=5e-3)


def test_gelu_matches_the_exact_erf_gelu():
    """Against the closed form in float64, not torch's F.gelu: torch's float32 GELU is itself up to 1.1e-6
    from it (measured on a Zen 4 machine), so ours and torch's could differ by more than either's error."""
    from scipy.special import erf

    x = np.concatenate([np.linspace(-12, 12, 100_001), [0.0, -0.0, 1e-30, -1e-30, 40, -40]]).astype(np.float32)
    exact = x.astype(np.float64) / 2 * (1 + erf(x.astype(np.float64) / np.sqrt(2)))
    expected = exact.astype(np.float32)
    np.testing.assert_allclose(gelu_erf(x), expected, rtol=1e-5, atol=1e-6)
    batch = x[:100_000].reshape(4, 25, 1000).copy()
    out = gelu_erf(batch, batch)
    assert out is batch
    np.testing.assert_allclose(out, expected[:100_000].reshape(4, 25, 1000), rtol=1e-5, atol=1e-6)
    assert np.isnan(gelu_erf(np.array([np.nan], np.float32)))[0]


def test_exp_of_non_positive_values_matches_numpy():
    x = -np.concatenate([np.linspace(0, 87, 200_001), np.geomspace(1e-30, 1, 1000)]).astype(np.float32)
    got, expected = exp_nonpositive(x), np.exp(x.astype(np.float64))
    assert np.max(np.abs(got - expected) / expected) < 3e-7  # a few float32 ulps
    special = exp_nonpositive(np.array([-0.0, -87.4, -100, -np.inf, np.nan], np.float32))
    assert special[0] == 1 and np.array_equal(special[1:4], [0, 0, 0]) and np.isnan(special[4])


def test_softmax_and_layernorm_rows_match_torch():
    rng = np.random.default_rng(4)
    scores = (rng.standard_normal((2, 3, 17, 33)) * 5).astype(np.float32)
    np.testing.assert_allclose(softmax_last(scores), torch.from_numpy(scores).softmax(-1).numpy(),
                               rtol=1e-5, atol=1e-7)
    scores[0, 1, 2, 3] = np.nan
    rows = softmax_last(scores)
    assert np.isnan(rows[0, 1, 2]).all() and not np.isnan(rows[0, 1, 3]).any()
    x = (rng.standard_normal((5, 7, 384)) * 3 + 1).astype(np.float32)
    w, b = rng.standard_normal(384).astype(np.float32), rng.standard_normal(384).astype(np.float32)
    expected = F.layer_norm(torch.from_numpy(x), (384,), torch.from_numpy(w), torch.from_numpy(b), 1e-12).numpy()
    np.testing.assert_allclose(layernorm_last(x, w, b, 1e-12), expected, rtol=1e-5, atol=1e-5)


def test_an_encoder_file_at_many_rows_runs_its_fcs_as_sgemm_like_torch(tmp_path):
    model, path = written_encoder(tmp_path, seq=6)  # pruned to 50%, 4-bit weights
    runtime = load(path)
    x = torch.randn(32, 6, 32, generator=torch.Generator().manual_seed(5))  # 192 rows per FC call
    with torch.no_grad():
        expected = model(x).numpy()
    assert rel_error(runtime(x.numpy()), expected) < REL_TOL
    fcs = [s for s in runtime.summary() if s["kind"] == "fc"]
    ran = [s for s in fcs if s["gemm_from_rows"] is not None and s["gemm_from_rows"] <= 192]
    assert ran and all(s["decoded_bytes"] == 4 * s["shape"][0] * s["shape"][1] for s in ran)
    assert all(f"{s['gemm_from_rows']}+" in s["rows"] for s in ran)
