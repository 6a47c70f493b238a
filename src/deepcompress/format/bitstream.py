"""Bit packing for .dcz streams.

Bit order (the whole format uses it): a stream is a sequence of bits written MSB-first. Bit i of the
stream is bit (7 - i % 8) of byte i // 8, so the first value occupies the most significant bits of the
first byte, and each value's own most significant bit comes first. The last byte is padded with zero bits.
"""

from __future__ import annotations

import numpy as np

from .errors import FormatError


def packed_size(count: int, width: int) -> int:
    """Bytes needed for `count` values of `width` bits each."""
    return (count * width + 7) // 8


def as_bytes_array(data) -> np.ndarray:
    """View bytes / bytearray / memoryview / uint8 array as a 1-D uint8 array (no copy when possible)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def pack(values, width: int) -> bytes:
    """Pack unsigned integers, `width` bits each (1..16), into an MSB-first bit stream."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if not 1 <= width <= 16:
        raise ValueError(f"bit width must be 1..16, got {width}")
    if values.size and (values.min() < 0 or values.max() >= (1 << width)):
        raise ValueError(f"values must lie in [0, {1 << width}) for a {width}-bit field")
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    bits = ((values[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(-1)).tobytes()


def check_padding(data: np.ndarray, used_bits: int) -> None:
    """Raise FormatError unless the stream has no whole unused byte and its padding bits are zero."""
    data = as_bytes_array(data)
    if data.size != (used_bits + 7) // 8:
        raise FormatError(f"expected {(used_bits + 7) // 8} bytes for {used_bits} bits, got {data.size}")
    spare = data.size * 8 - used_bits
    if spare and int(data[-1]) & ((1 << spare) - 1):
        raise FormatError(f"the {spare} padding bits at the end are not zero")


def unpack(data, width: int, count: int) -> np.ndarray:
    """Read `count` unsigned `width`-bit values (as uint16) from a stream of exactly the packed size."""
    data = as_bytes_array(data)
    check_padding(data, count * width)
    bits = np.unpackbits(data)[: count * width].reshape(count, width)
    out = np.zeros(count, dtype=np.uint16)
    for j in range(width):
        out = (out << 1) | bits[:, j]
    return out


def pack_varlen(codes: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Concatenate variable-length codes (code i is the low lengths[i] bits of codes[i], MSB first).

    Returns the packed bytes and the number of bits used.
    """
    codes = np.asarray(codes, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    bits = np.zeros(total, dtype=np.uint8)
    for j in range(int(lengths.max()) if lengths.size else 0):
        has = lengths > j
        bits[starts[has] + j] = (codes[has] >> (lengths[has] - 1 - j)) & 1
    return np.packbits(bits).tobytes(), total


PEEK_MAX = 17  # the 24-bit read in peek() leaves room for 17 bits after a 7-bit offset


def peek(data: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
    """The `width` bits (<= 17) starting at each bit position, as integers; bits past the end read as 0."""
    assert 1 <= width <= PEEK_MAX
    data = as_bytes_array(data)
    first = positions >> 3
    lo, hi = int(first.min()), int(first.max()) + 3
    window = np.zeros(hi - lo, dtype=np.int32)
    avail = data[lo:hi]
    window[: avail.size] = avail
    word = (window[:-2] << 16) | (window[1:-1] << 8) | window[2:]
    shift = 24 - width - (positions & 7)
    return (word[first - lo] >> shift) & ((1 << width) - 1)
