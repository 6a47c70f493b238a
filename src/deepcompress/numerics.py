"""Number formats: IEEE-style floats, fixed point Qm.n (integers are Qm.0) and binary.

Each format knows its range and precision and can round, quantize (to stored codes) and dequantize
arrays with round-to-nearest-even or stochastic rounding. Floats overflow to +-inf as IEEE arithmetic
does; fixed-point formats saturate at their largest and smallest values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .errors import UserError

ROUNDING_MODES = ("nearest", "stochastic")


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format with a sign bit, `exponent_bits` and `mantissa_bits` stored bits."""

    name: str
    exponent_bits: int
    mantissa_bits: int

    kind = "float"
    sign_bits = 1

    @property
    def bits(self) -> int:
        """Total storage bits."""
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        """Exponent bias."""
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        return self.bias

    @property
    def max_value(self) -> float:
        """Largest finite value."""
        return math.ldexp(2.0 - 2.0 ** -self.mantissa_bits, self.emax)

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value."""
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value (a subnormal)."""
        return math.ldexp(1.0, self.emin - self.mantissa_bits)

    @property
    def relative_accuracy(self) -> float:
        """Worst relative error of round-to-nearest on normal numbers (unit roundoff, 2^-(m+1))."""
        return 2.0 ** -(self.mantissa_bits + 1)


@dataclass(frozen=True)
class FixedFormat:
    """Fixed point Qm.n: an optional sign bit, `int_bits` integer bits and `frac_bits` fraction bits.

    Integers are Qm.0 (int8 is a sign bit and 7 magnitude bits); `binary` is one unsigned bit.
    """

    name: str
    int_bits: int
    frac_bits: int
    signed: bool = True

    kind = "fixed"
    exponent_bits = 0

    @property
    def sign_bits(self) -> int:
        """1 for a two's-complement format, 0 for unsigned."""
        return 1 if self.signed else 0

    @property
    def mantissa_bits(self) -> int:
        """Bits after the sign (integer plus fraction bits)."""
        return self.int_bits + self.frac_bits

    @property
    def bits(self) -> int:
        """Total storage bits."""
        return self.sign_bits + self.int_bits + self.frac_bits

    @property
    def resolution(self) -> float:
        """Step between neighbouring values (one LSB)."""
        return 2.0 ** -self.frac_bits

    @property
    def max_code(self) -> int:
        """Largest stored integer."""
        return 2 ** self.mantissa_bits - 1

    @property
    def min_code(self) -> int:
        """Smallest stored integer (two's complement when signed)."""
        return -(2 ** self.mantissa_bits) if self.signed else 0

    @property
    def max_value(self) -> float:
        """Largest value."""
        return self.max_code * self.resolution

    @property
    def min_value(self) -> float:
        """Most negative value (0 when unsigned)."""
        return self.min_code * self.resolution

    @property
    def min_normal(self) -> float:
        """Fixed point has no subnormals: the smallest positive value."""
        return self.resolution

    min_subnormal = min_normal

    @property
    def absolute_accuracy(self) -> float:
        """Worst absolute error of round-to-nearest inside the range (half an LSB)."""
        return self.resolution / 2


Format = FloatFormat | FixedFormat

FORMATS: dict[str, Format] = {
    "fp32": FloatFormat("fp32", 8, 23),
    "fp16": FloatFormat("fp16", 5, 10),
    "bf16": FloatFormat("bf16", 8, 7),
    "int32": FixedFormat("int32", 31, 0),
    "int16": FixedFormat("int16", 15, 0),
    "int8": FixedFormat("int8", 7, 0),
    "binary": FixedFormat("binary", 1, 0, signed=False),
}

# The rows of the talk's "Number Representation" slide, in its order (bf16 added after fp16).
SEED_TABLE_FORMATS = ("fp32", "fp16", "bf16", "int32", "int16", "int8", "binary")

_Q_PATTERN = re.compile(r"^u?q(\d+)\.(\d+)$", re.IGNORECASE)


def get_format(name: str | Format) -> Format:
    """The format called `name`: one of FORMATS, or fixed point 'Qm.n' (signed) / 'UQm.n' (unsigned)."""
    if isinstance(name, (FloatFormat, FixedFormat)):
        return name
    key = str(name).strip().lower()
    if key in FORMATS:
        return FORMATS[key]
    match = _Q_PATTERN.match(key)
    if match:
        m, n = int(match.group(1)), int(match.group(2))
        signed = not key.startswith("u")
        if m + n + signed < 1 or m + n > 62:
            raise UserError(f"fixed-point format {name!r}: need 1 to 63 bits in all")
        return FixedFormat(f"{'Q' if signed else 'UQ'}{m}.{n}", m, n, signed)
    raise UserError(f"unknown number format {name!r}; choose one of {', '.join(FORMATS)} or Qm.n")


def _check_mode(mode: str) -> None:
    if mode not in ROUNDING_MODES:
        raise UserError(f"unknown rounding mode {mode!r}; choose one of {', '.join(ROUNDING_MODES)}")


def _round_steps(scaled: np.ndarray, mode: str, rng: np.random.Generator | None) -> np.ndarray:
    """Round values already expressed in units of the local step to integers."""
    if mode == "nearest":
        return np.rint(scaled)  # ties to even, as IEEE round-to-nearest
    rng = rng if rng is not None else np.random.default_rng()
    return np.floor(scaled + rng.random(scaled.shape))


def _float_step(fmt: FloatFormat, x: np.ndarray) -> np.ndarray:
    """Spacing of representable values around each |x| (the subnormal spacing below min_normal)."""
    _, e = np.frexp(x)
    exponent = np.maximum(e.astype(np.int64) - 1, fmt.emin)
    return np.ldexp(1.0, exponent - fmt.mantissa_bits)


def round_to(x, fmt: str | Format, mode: str = "nearest", rng: np.random.Generator | None = None) -> np.ndarray:
    """`x` rounded to values representable in `fmt`, as float64 (`rng` drives stochastic rounding)."""
    fmt = get_format(fmt)
    _check_mode(mode)
    x = np.asarray(x, dtype=np.float64)
    if fmt.kind == "fixed":
        return _round_fixed_codes(fmt, x, mode, rng) * fmt.resolution
    finite = np.isfinite(x)
    xf = np.where(finite, x, 0.0)
    step = _float_step(fmt, xf)
    y = _round_steps(xf / step, mode, rng) * step
    y = np.where(np.abs(y) > fmt.max_value, np.copysign(np.inf, y), y)
    y = np.where(y == 0, np.copysign(0.0, xf), y)  # keep the sign of zero, as IEEE does
    return np.where(finite, y, x)


def _round_fixed_codes(fmt: FixedFormat, x: np.ndarray, mode: str, rng) -> np.ndarray:
    if np.isnan(x).any():
        raise UserError(f"cannot quantize NaN to fixed-point format {fmt.name}")
    scaled = np.clip(x * 2.0 ** fmt.frac_bits, fmt.min_code - 1.0, fmt.max_code + 1.0)
    return np.clip(_round_steps(scaled, mode, rng), fmt.min_code, fmt.max_code)


def quantize(x, fmt: str | Format, mode: str = "nearest", rng: np.random.Generator | None = None) -> np.ndarray:
    """Stored codes of `x` in `fmt`: signed integers (value = code x 2^-n) for fixed point, or the
    bit patterns (uint16/uint32/uint64) for floats."""
    fmt = get_format(fmt)
    _check_mode(mode)
    if fmt.kind == "fixed":
        return _round_fixed_codes(fmt, np.asarray(x, dtype=np.float64), mode, rng).astype(np.int64)
    return _float_bits(fmt, round_to(x, fmt, mode, rng))


def dequantize(codes, fmt: str | Format) -> np.ndarray:
    """The float64 values that the stored `codes` of `fmt` stand for (inverse of `quantize`)."""
    fmt = get_format(fmt)
    codes = np.asarray(codes)
    if fmt.kind == "fixed":
        return codes.astype(np.float64) * fmt.resolution
    return _float_from_bits(fmt, codes)


def _bits_dtype(fmt: FloatFormat):
    return np.uint16 if fmt.bits <= 16 else np.uint32 if fmt.bits <= 32 else np.uint64


def _float_bits(fmt: FloatFormat, y: np.ndarray) -> np.ndarray:
    m = fmt.mantissa_bits
    all_ones = (1 << fmt.exponent_bits) - 1
    sign = np.signbit(y).astype(np.uint64)
    a = np.abs(y)
    finite = np.isfinite(a)
    af = np.where(finite, a, 0.0)
    _, e = np.frexp(af)
    exponent = e.astype(np.int64) - 1
    normal = (af > 0) & (exponent >= fmt.emin)
    frac_sub = np.ldexp(af, m - fmt.emin)
    frac_norm = np.ldexp(af, m - exponent) - 2.0 ** m
    frac = np.where(normal, frac_norm, frac_sub).astype(np.uint64)
    exp_field = np.where(normal, exponent + fmt.bias, 0).astype(np.uint64)
    exp_field = np.where(finite, exp_field, all_ones).astype(np.uint64)
    frac = np.where(finite, frac, np.where(np.isnan(a), 1 << (m - 1), 0)).astype(np.uint64)
    bits = (sign << np.uint64(fmt.bits - 1)) | (exp_field << np.uint64(m)) | frac
    return bits.astype(_bits_dtype(fmt))


def _float_from_bits(fmt: FloatFormat, codes: np.ndarray) -> np.ndarray:
    m = fmt.mantissa_bits
    c = codes.astype(np.uint64)
    sign = np.where((c >> np.uint64(fmt.bits - 1)) & np.uint64(1), -1.0, 1.0)
    exp_field = ((c >> np.uint64(m)) & np.uint64((1 << fmt.exponent_bits) - 1)).astype(np.int64)
    frac = (c & np.uint64((1 << m) - 1)).astype(np.float64)
    all_ones = (1 << fmt.exponent_bits) - 1
    normal = np.ldexp(1.0 + frac / 2.0 ** m, exp_field - fmt.bias)
    sub = np.ldexp(frac, fmt.emin - m)
    special = np.where(frac == 0, np.inf, np.nan)
    value = np.where(exp_field == 0, sub, np.where(exp_field == all_ones, special, normal))
    return sign * value


def round_tensor(t, fmt: str | Format, mode: str = "nearest", seed: int | None = None):
    """A torch tensor rounded to `fmt`, returned in the input's dtype and device (thin wrapper of round_to)."""
    import torch

    rng = np.random.default_rng(seed)
    values = round_to(t.detach().to("cpu", torch.float64).numpy(), fmt, mode, rng)
    return torch.from_numpy(values).to(device=t.device, dtype=t.dtype)


def _format_row(fmt: Format) -> dict:
    if fmt.kind == "float":
        accuracy, accuracy_kind = fmt.relative_accuracy, "relative"
        low = fmt.min_normal
    else:
        accuracy, accuracy_kind = fmt.absolute_accuracy, "absolute"
        low = fmt.min_value
    return {
        "name": fmt.name,
        "sign_bits": fmt.sign_bits,
        "exponent_bits": fmt.exponent_bits,
        "mantissa_bits": fmt.mantissa_bits,
        "bits": fmt.bits,
        "range_low": low,
        "min_subnormal": fmt.min_subnormal,
        "max": fmt.max_value,
        "accuracy": accuracy,
        "accuracy_kind": accuracy_kind,
    }


def representation_table(names=SEED_TABLE_FORMATS) -> list[dict]:
    """Rows of the talk's "Number Representation" table computed from each format: bit fields,
    range (lowest value or smallest normal, smallest subnormal, largest) and accuracy (relative
    rounding error for floats, absolute error in units for fixed point)."""
    return [_format_row(get_format(n)) for n in names]


def _sci(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e6 and float(v).is_integer():
        return f"{v:,.0f}"
    if 1e-3 <= abs(v) < 1e6:
        return f"{v:.6g}"
    return f"{v:.3g}"


def format_representation_table(rows: list[dict]) -> str:
    """The representation table as aligned text."""
    header = f"{'format':<8}{'S':>3}{'E':>4}{'M':>4}  {'range':<24}{'min subnormal':>14}  accuracy"
    lines = [header, "-" * len(header)]
    for r in rows:
        rng = f"{_sci(r['range_low'])} - {_sci(r['max'])}"
        if r["accuracy_kind"] == "relative":
            acc = f"{100 * r['accuracy']:.2g}% relative"
        else:
            acc = f"{r['accuracy']:g} absolute"
        sub = _sci(r["min_subnormal"]) if r["exponent_bits"] else "-"
        lines.append(f"{r['name']:<8}{r['sign_bits']:>3}{r['exponent_bits'] or '':>4}{r['mantissa_bits']:>4}  "
                     f"{rng:<24}{sub:>14}  {acc}")
    return "\n".join(lines)
