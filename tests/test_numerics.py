"""Number formats: rounding against numpy/torch casts, codes, ranges, and unbiased stochastic rounding."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcompress.errors import UserError
from deepcompress.numerics import (
    dequantize,
    format_representation_table,
    get_format,
    quantize,
    representation_table,
    round_tensor,
    round_to,
)


def _wide_sample(seed=0, n=50_000):
    """Values spanning subnormals to overflow, plus exact halfway cases and specials."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * np.exp(rng.uniform(-35, 14, n))
    ties = (1 + (2 * np.arange(1, 50) + 1) * 2.0 ** -11)  # halfway between fp16 neighbours above 1
    special = [0.0, -0.0, np.inf, -np.inf, 65504, 65519.99, 65520, -65520, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26]
    return np.concatenate([x, ties, -ties, special]).astype(np.float32)


def _same(a, b):
    return np.all((a == b) | (np.isnan(a) & np.isnan(b))) and np.array_equal(np.signbit(a), np.signbit(b))


def test_fp16_matches_numpy_cast_bit_for_bit():
    x = _wide_sample()
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    assert _same(round_to(x, "fp16"), want.astype(np.float64))
    assert np.array_equal(quantize(x, "fp16"), want.view(np.uint16))
    assert _same(dequantize(quantize(x, "fp16"), "fp16"), want.astype(np.float64))


def test_bf16_matches_torch_cast_bit_for_bit():
    torch = pytest.importorskip("torch")
    x = _wide_sample(1)
    t = torch.from_numpy(x).to(torch.bfloat16)
    assert _same(round_to(x, "bf16"), t.to(torch.float64).numpy())
    assert np.array_equal(quantize(x, "bf16"), t.view(torch.int16).numpy().view(np.uint16))


def test_fp32_matches_numpy_cast_from_double():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(50_000) * np.exp(rng.uniform(-110, 90, 50_000))
    with np.errstate(over="ignore"):
        want = x.astype(np.float32)
    assert _same(round_to(x, "fp32"), want.astype(np.float64))
    assert np.array_equal(quantize(x, "fp32"), want.view(np.uint32))


def test_round_tensor_keeps_dtype_and_matches_half_cast():
    torch = pytest.importorskip("torch")
    t = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 100
    r = round_tensor(t, "fp16")
    assert r.dtype == torch.float32
    assert torch.equal(r, t.half().float())


def test_integer_and_fixed_point_round_and_saturate():
    x = np.array([-1000.0, -128.6, -2.5, -0.5, 0.5, 1.5, 126.5, 127.4, 1000.0])
    assert np.array_equal(round_to(x, "int8"), np.clip(np.rint(x), -128, 127))
    assert np.array_equal(quantize(x, "int8"), np.clip(np.rint(x), -128, 127).astype(np.int64))
    q = get_format("Q3.4")  # sign + 3 integer + 4 fraction bits: steps of 1/16 in [-8, 8 - 1/16]
    assert (q.bits, q.resolution, q.min_value, q.max_value) == (8, 1 / 16, -8.0, 8 - 1 / 16)
    y = np.array([0.03, 0.04, -0.09, 7.99, 100.0, -100.0])
    assert np.array_equal(round_to(y, q), [0.0, 0.0625, -0.0625, 7.9375, 7.9375, -8.0])
    assert np.array_equal(dequantize(quantize(y, q), q), round_to(y, q))
    assert np.array_equal(round_to([-3, 0.4, 0.6, 7], "binary"), [0, 0, 1, 1])


def test_table_reproduces_the_seed_slide():
    rows = {r["name"]: r for r in representation_table()}
    # S/E/M bits as on the slide
    assert [(rows[n]["sign_bits"], rows[n]["exponent_bits"], rows[n]["mantissa_bits"])
            for n in ("fp32", "fp16", "int32", "int16", "int8")] == [(1, 8, 23), (1, 5, 10), (1, 0, 31),
                                                                    (1, 0, 15), (1, 0, 7)]
    # FP32 10^-38 - 10^38 and .000006%; FP16 6x10^-8 - 6x10^4 and .05%
    assert math.floor(math.log10(rows["fp32"]["range_low"])) == -38
    assert math.floor(math.log10(rows["fp32"]["max"])) == 38
    assert f"{100 * rows['fp32']['accuracy']:.0e}" == "6e-06"
    assert f"{rows['fp16']['min_subnormal']:.0e}" == "6e-08" and math.floor(rows["fp16"]["max"] / 1e4) == 6
    assert f"{100 * rows['fp16']['accuracy']:.1g}" == "0.05"
    # Int32 up to 2x10^9, Int8 up to 127, Binary 0-1, integer accuracy 1/2
    assert f"{rows['int32']['max']:.0e}" == "2e+09" and rows["int8"]["max"] == 127
    assert (rows["binary"]["range_low"], rows["binary"]["max"]) == (0, 1)
    assert all(rows[n]["accuracy"] == 0.5 for n in ("int32", "int16", "int8", "binary"))
    # The slide's Int16 range reads 6x10^4 (unsigned 16 bits); sign + 15 bits gives 32,767.
    assert rows["int16"]["max"] == 32767
    text = format_representation_table(representation_table())
    assert "fp16" in text and "65,504" in text


@pytest.mark.parametrize("fmt,x", [("fp16", 1.0 + 0.3 * 2.0 ** -10), ("fp16", -3.3e-6), ("bf16", 0.1),
                                   ("Q3.4", 0.7 / 16), ("int8", -3.25)])
def test_stochastic_rounding_is_unbiased(fmt, x):
    rng = np.random.default_rng(123)
    n = 200_000
    samples = round_to(np.full(n, x), fmt, "stochastic", rng)
    lo, hi = np.unique(samples)  # exactly the two neighbours of x
    assert lo < x < hi
    assert set(np.unique(samples)) == {round_to(lo, fmt).item(), round_to(hi, fmt).item()}
    p = (x - lo) / (hi - lo)
    # the mean of n Bernoulli choices has standard deviation (hi - lo) sqrt(p (1 - p) / n); allow 5 of them
    # (a false failure about once in 1.7 million runs; the seed makes it deterministic anyway)
    sigma = (hi - lo) * math.sqrt(p * (1 - p) / n)
    assert abs(samples.mean() - x) < 5 * sigma


def test_stochastic_rounding_keeps_representable_values():
    x = np.array([1.0, 0.5, -2.0, 65504.0, 2.0 ** -24])
    assert np.array_equal(round_to(x, "fp16", "stochastic", np.random.default_rng(0)), x)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-6e4, max_value=6e4, allow_nan=False), st.sampled_from(["fp16", "bf16", "fp32"]))
def test_nearest_rounding_is_idempotent_and_within_half_ulp(x, name):
    fmt = get_format(name)
    y = round_to(x, fmt).item()
    assert round_to(y, fmt).item() == y
    if abs(x) >= fmt.min_normal:
        assert abs(y - x) <= fmt.relative_accuracy * abs(x)
    else:
        assert abs(y - x) <= fmt.min_subnormal / 2


def test_bad_names_and_modes_are_user_errors():
    with pytest.raises(UserError):
        get_format("fp12")
    with pytest.raises(UserError):
        round_to([1.0], "fp16", mode="truncate")
    with pytest.raises(UserError):
        quantize([np.nan], "int8")
    assert get_format("q1.14").name == "Q1.14" and get_format("UQ0.8").signed is False
