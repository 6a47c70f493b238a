"""Canonical, length-limited Huffman codes over small alphabets (at most 256 symbols).

Code lengths come from the package-merge algorithm (Larmore and Hirschberg, 1990), which gives an optimal
prefix code among those whose longest code is at most MAX_CODE_LEN bits; with no limit binding it equals
plain Huffman's cost. Codes are assigned canonically from the lengths alone, as DEFLATE (RFC 1951 s.3.2.2)
does, so a code is stored as its list of lengths. Decoding is table-driven and vectorised.
"""

from __future__ import annotations

import heapq

import numpy as np

from . import bitstream
from .errors import FormatError

MAX_CODE_LEN = 15  # lengths are stored in 4-bit fields; 2**15 >= 256 symbols always fits
LENGTH_FIELD_BITS = 4
_CHUNK_BITS = 1 << 18  # decode this many bit positions at a time, bounding memory


def code_lengths(freqs, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Optimal code length per symbol (0 for symbols that never occur), no length above `max_len`.

    A lone used symbol gets length 1, so every symbol costs at least one bit.
    """
    freqs = np.asarray(freqs, dtype=np.int64).reshape(-1)
    lengths = np.zeros(freqs.size, dtype=np.uint8)
    used = np.flatnonzero(freqs > 0)
    if used.size <= 1:
        lengths[used] = 1
        return lengths
    if used.size > (1 << max_len):
        raise ValueError(f"{used.size} symbols cannot be coded in at most {max_len} bits")
    order = used[np.argsort(freqs[used], kind="stable")]
    leaves = [(int(freqs[s]), int(s)) for s in order]
    items = leaves
    for _ in range(max_len - 1):
        packages = [(items[i][0] + items[i + 1][0], (items[i][1], items[i + 1][1]))
                    for i in range(0, len(items) - 1, 2)]
        items = list(heapq.merge(leaves, packages, key=lambda item: item[0]))
    counts = np.zeros(freqs.size, dtype=np.int64)
    stack = [node for _, node in items[: 2 * used.size - 2]]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(node)
        else:
            counts[node] += 1
    lengths[:] = counts
    return lengths


def kraft_sum(lengths) -> int:
    """Sum over used symbols of 2**(MAX_CODE_LEN - length): at most 2**MAX_CODE_LEN for a prefix code."""
    lengths = np.asarray(lengths, dtype=np.int64)
    used = lengths[lengths > 0]
    return int(np.sum(np.left_shift(1, MAX_CODE_LEN - used)))


def canonical_codes(lengths) -> np.ndarray:
    """The canonical code of each symbol: shorter codes first, ties in symbol order, counting upward."""
    lengths = np.asarray(lengths, dtype=np.int64)
    per_length = np.bincount(lengths, minlength=MAX_CODE_LEN + 1)
    per_length[0] = 0
    next_code = [0] * (MAX_CODE_LEN + 1)
    code = 0
    for bits in range(1, MAX_CODE_LEN + 1):
        code = (code + int(per_length[bits - 1])) << 1
        next_code[bits] = code
    codes = np.zeros(lengths.size, dtype=np.int64)
    for sym in np.flatnonzero(lengths):
        codes[sym] = next_code[lengths[sym]]
        next_code[lengths[sym]] += 1
    return codes


def serialize_lengths(lengths) -> bytes:
    """The code as stored: one 4-bit length per symbol of the alphabet, MSB-first, zero-padded."""
    return bitstream.pack(lengths, LENGTH_FIELD_BITS)


def table_size(alphabet: int) -> int:
    """Bytes taken by a serialised code over `alphabet` symbols."""
    return bitstream.packed_size(alphabet, LENGTH_FIELD_BITS)


def parse_lengths(data, alphabet: int) -> np.ndarray:
    """Read a serialised code of `alphabet` lengths; FormatError unless it is a valid prefix code and, for
    an odd alphabet, the 4 padding bits after the last length are zero."""
    try:
        lengths = bitstream.unpack(data, LENGTH_FIELD_BITS, alphabet).astype(np.uint8)
    except FormatError as err:
        raise FormatError(f"Huffman code table: {err.detail}") from None
    if kraft_sum(lengths) > (1 << MAX_CODE_LEN):
        raise FormatError("Huffman code table: lengths are over-subscribed (Kraft sum above 1)")
    return lengths


def encoded_bits(freqs, lengths) -> int:
    """Bits a stream with these symbol frequencies takes under these code lengths."""
    return int(np.dot(np.asarray(freqs, np.int64), np.asarray(lengths, np.int64)))


def encode(symbols, lengths) -> bytes:
    """Code a symbol stream MSB-first with the canonical code of `lengths`; zero-pad the last byte."""
    symbols = np.asarray(symbols, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = canonical_codes(lengths)
    if symbols.size and np.any(lengths[symbols] == 0):
        raise ValueError("a symbol in the stream has no code")
    data, _ = bitstream.pack_varlen(codes[symbols], lengths[symbols])
    return data


def _lookup_tables(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each MAX_CODE_LEN-bit window: the symbol whose code prefixes it and that code's length (0: none)."""
    codes = canonical_codes(lengths)
    symbol_of = np.zeros(1 << MAX_CODE_LEN, dtype=np.uint16)
    length_of = np.zeros(1 << MAX_CODE_LEN, dtype=np.int64)
    for sym in np.flatnonzero(lengths):
        spare = MAX_CODE_LEN - int(lengths[sym])
        lo = int(codes[sym]) << spare
        symbol_of[lo: lo + (1 << spare)] = sym
        length_of[lo: lo + (1 << spare)] = lengths[sym]
    return symbol_of, length_of


def _walk(jump: np.ndarray, stop: int) -> np.ndarray:
    """Positions 0, jump[0], jump[jump[0]], ... up to and including the first one >= stop.

    Positions >= stop must be fixed points of `jump`. Pointer doubling: O(n log n) vectorised work
    instead of a per-symbol Python loop.
    """
    walk = np.zeros(1, dtype=np.int64)
    power = jump
    while walk[-1] < stop:
        walk = np.concatenate([walk, power[walk]])
        if walk[-1] >= stop:
            break
        power = power[power]
    return walk[: int(np.searchsorted(walk, stop)) + 1]


def decode(data, lengths, count: int) -> np.ndarray:
    """Decode exactly `count` symbols (uint16) from a stream of exactly the coded size.

    FormatError on an invalid code word, a stream too short, extra bytes or nonzero padding.
    """
    data = bitstream.as_bytes_array(data)
    lengths = np.asarray(lengths, dtype=np.uint8)
    total_bits = data.size * 8
    if count > total_bits:
        raise FormatError(f"{count} symbols need at least {count} bits, the stream has {total_bits}")
    out = np.zeros(count, dtype=np.uint16)
    if count == 0:
        bitstream.check_padding(data, 0)
        return out
    symbol_of, length_of = _lookup_tables(lengths)
    done, start = 0, 0
    while done < count:
        if start >= total_bits:
            raise FormatError(f"stream ends after {done} of {count} symbols")
        span = min(_CHUNK_BITS, total_bits - start)
        window = bitstream.peek(data, np.arange(start, start + span, dtype=np.int64), MAX_CODE_LEN)
        step = length_of[window]
        sink = span + MAX_CODE_LEN + 1
        jump = np.arange(sink + 1, dtype=np.int64)
        jump[:span] += step
        jump[:span][step == 0] = sink
        walk = _walk(jump, span)
        valid = walk[:-1]
        bad = None
        if walk[-1] == sink:
            bad, valid = int(valid[-1]), valid[:-1]
        take = valid[: count - done]
        out[done: done + take.size] = symbol_of[window[take]]
        done += take.size
        if done == count:
            end = start + int(take[-1] + step[take[-1]])
            break
        if bad is not None:
            raise FormatError(f"invalid Huffman code word at bit {start + bad}")
        start += int(walk[-1])
    if end > total_bits:
        raise FormatError(f"stream ends inside the last code word ({end} bits needed, {total_bits} present)")
    bitstream.check_padding(data, end)
    return out
